package file

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
)

// TestDecodeJSONLikePrometheus holds the hand-written decoder to
// Prometheus's decoding on the edges of the file_sd schema.
func TestDecodeJSONLikePrometheus(t *testing.T) {
	for _, s := range []string{
		`null`, ` null `, `[]`, ` [ ] `, `{}`, `"x"`, `5`, `[null]`, `[1]`, `["x"]`, `[[]]`, `[true]`, `[{}]`,
		`[{"TARGETS":["a"]}]`, `[{"Labels":{"a":"b"}}]`, `[{"la\u0062els":{"a":"b"}}]`,
		`[{"targets":["a","b"],"targets":["c"]}]`, `[{"targets":["a"],"labels":{"a":"b"},"targets":null}]`,
		`[{"targets":null}]`, `[{"targets":[null,"a"]}]`, `[{"labels":null}]`,
		`[{"labels":{"a":"1"},"labels":{"b":"2"}}]`, `[{"labels":{"a":"b","a":"c"}}]`,
		`[{"labels":{"a":1}}]`, `[{"labels":{"a":null}}]`, `[{"labels":{"":"x"}}]`, `[{"labels":[]}]`,
		`[{"targets":{}}]`, `[{"targets":"a"}]`, `[{"targets":[true]}]`, `[{"targets":[1]}, {"labels":{"":"x"}}]`,
		`[null, {"targets":[1]}]`, `[{"targets":["a"]}, null]`, `[{"x":1}]`, `[{"targets":["a"],"x":{"y":[1,2]}}]`,
		`[{"targets":["a"]} , 5]`, `[{"targets":["a"]}]x`, `[{"targets":["a"]}`, `[{"targets":["a"]},]`, `[,]`,
		`[{"targets":["\ud800"]}]`, `[{"targets":["\ud83d\ude00\udc00\ud800\u0041\ud800\\u0041"]}]`,
		`[{"targets":["\u00E9\u00e9\b\f\n\r\t\"\\\/"]}]`, `[{"targets":["\x"]}]`, `[{"targets":["\u12"]}]`,
		"[{\"targets\":[\"\xff\xfe\xc3\"],\"labels\":{\"\xff\":\"\xed\xa0\x80\"}}]",
		"[{\"targets\":[\"a\tb\"]}]", "[{\"targets\":[\"a\x00b\"]}]", "\xef\xbb\xbf[]",
		`[{"labels":{"a.b-c/d":"x","__meta_ü":"y"}}]`, `[-1, 0, 1.5e3]`, `[01]`, `[1.]`, `[.5]`, `[1e]`, `[-]`,
		`[tru]`, `[nul]`, `[true false]`, "[\n{\r\"targets\"\t:\n[]}\n]\n",
		strings.Repeat("[", 600) + strings.Repeat("]", 600),
		`[` + strings.Repeat(`{"targets":[],"labels":{"x":`, 300) + `""` + strings.Repeat(`}}`, 300) + `]`,
	} {
		decodeLikeProm(t, newReader(), []byte(s), nil)
	}
}

// TestDecodeJSONRandom holds the decoder to Prometheus's decoding on random
// files in the file_sd shape with random oddities, each read fresh and then
// again after one element changed, moved, was added or removed.
func TestDecodeJSONRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	n := 3000
	if testing.Short() {
		n = 300
	}
	for range n {
		elems := make([]randElem, rng.IntN(6)+rng.IntN(2)*rng.IntN(20)) // past 8 misses, moved elements are looked up
		for i := range elems {
			elems[i] = randElement(rng)
		}
		// Read it, then change it and read it again twice, each read
		// after the one before.
		r := newReader()
		if rng.IntN(4) > 0 { // read through a small window, which grows
			r.window = 1 + rng.IntN(64)
		}
		prev := decodeLikeProm(t, r, []byte(randFile(rng, elems)), nil)
		for range 2 {
			elems = mutate(rng, elems)
			prev = decodeLikeProm(t, r, []byte(randFile(rng, elems)), prev)
		}
	}
}

// mutate changes, adds, removes or moves elements, or changes one field
// of each.
func mutate(rng *rand.Rand, elems []randElem) []randElem {
	elems = slices.Clone(elems)
	switch i := rng.IntN(len(elems) + 1); rng.IntN(5) {
	case 0:
		if i < len(elems) {
			elems[i] = randElement(rng)
		}
	case 1:
		elems = slices.Insert(elems, i, randElement(rng))
	case 2:
		if i < len(elems) {
			elems = slices.Delete(elems, i, i+1)
		}
	case 3:
		rng.Shuffle(len(elems), func(a, b int) { elems[a], elems[b] = elems[b], elems[a] })
	case 4: // one field of each element changes, the other keeps its bytes
		for i := range elems {
			if f := elems[i].fields; len(f) > 0 {
				f = slices.Clone(f)
				j := rng.IntN(len(f))
				f[j] = randField(rng, strings.Contains(f[j], "abels"))
				elems[i].fields = f
			}
		}
	}
	return elems
}

// randElem is an element of a random file: raw, or an object of fields.
type randElem struct {
	raw    string
	fields []string
	ws     [3]string
}

func (e randElem) String() string {
	if e.raw != "" {
		return e.raw
	}
	return "{" + e.ws[0] + strings.Join(e.fields, ","+e.ws[1]) + e.ws[2] + "}"
}

func randFile(rng *rand.Rand, elems []randElem) string {
	var ss []string
	for _, e := range elems {
		ss = append(ss, e.String())
	}
	s := ws(rng) + "[" + ws(rng) + strings.Join(ss, ws(rng)+","+ws(rng)) + ws(rng) + "]" + ws(rng)
	switch rng.IntN(40) {
	case 0:
		return s[:rng.IntN(len(s)+1)]
	case 1:
		return s + "x"
	case 2:
		return "null"
	}
	return s
}

func ws(rng *rand.Rand) string { return []string{"", "", "", " ", "\n  ", "\t", "\r\n"}[rng.IntN(7)] }

func randElement(rng *rand.Rand) randElem {
	switch rng.IntN(30) {
	case 0:
		return randElem{raw: "null"}
	case 1:
		return randElem{raw: []string{`1`, `"x"`, `[]`, `true`, `{"targets":[],"extra":{}}`}[rng.IntN(5)]}
	}
	var fields []string
	if rng.IntN(8) > 0 {
		fields = append(fields, randField(rng, false))
	}
	if rng.IntN(8) > 0 {
		fields = append(fields, randField(rng, true))
	}
	switch rng.IntN(20) {
	case 0:
		fields = append(fields, `"targets":null`)
	case 1:
		fields = append(fields, `"labels":null`)
	case 2:
		fields = append(fields, `"other":1`)
	}
	rng.Shuffle(len(fields), func(a, b int) { fields[a], fields[b] = fields[b], fields[a] })
	return randElem{fields: fields, ws: [3]string{ws(rng), ws(rng), ws(rng)}}
}

// randField is a "targets" or a "labels" key and its value.
func randField(rng *rand.Rand, labels bool) string {
	if !labels {
		var ts []string
		for range rng.IntN(4) {
			ts = append(ts, randString(rng, false))
		}
		return randKey(rng, "targets") + ":" + ws(rng) + "[" + strings.Join(ts, ",") + "]"
	}
	var ls []string
	for range rng.IntN(5) {
		ls = append(ls, randString(rng, true)+ws(rng)+":"+ws(rng)+randString(rng, false))
	}
	return randKey(rng, "labels") + ":" + ws(rng) + "{" + strings.Join(ls, ",") + "}"
}

func randKey(rng *rand.Rand, key string) string {
	switch rng.IntN(30) {
	case 0:
		return `"` + strings.ToUpper(key) + `"`
	case 1:
		return `"\u` + fmt.Sprintf("%04x", key[0]) + key[1:] + `"`
	}
	return `"` + key + `"`
}

// randString is a JSON string, mostly plain; a name is a label name.
func randString(rng *rand.Rand, name bool) string {
	if !name && rng.IntN(40) == 0 {
		return []string{"null", "1", "true", "{}"}[rng.IntN(4)]
	}
	if name && rng.IntN(4) > 0 {
		return `"` + []string{"env", "job", "__meta_x", "a.b", "zone", "team"}[rng.IntN(6)] + `"`
	}
	pieces := []string{
		"a", "host:9100", "prod", "", " ", "é", `\u00e9`, `\n`, `\"`, `\\`, `\/`, `\ud83d\ude00`, `\ud800`,
		`\udc00`, `\ud800\u0041`, "\xff", "\xc3", "\xed\xa0\x80", "\uFFFD", "ü", "\x01", `\x`, `\u12`,
	}
	var sb strings.Builder
	sb.WriteByte('"')
	for range rng.IntN(4) {
		p := pieces[rng.IntN(len(pieces))]
		if (p == "\x01" || p == `\x` || p == `\u12`) && rng.IntN(10) > 0 {
			continue // invalid JSON, now and then only
		}
		sb.WriteString(p)
	}
	sb.WriteByte('"')
	return sb.String()
}

// TestReadReuse checks that a read keeps the groups of unchanged elements
// (the same pointers), decodes the changed one, and does not decode an
// unchanged file at all.
func TestReadReuse(t *testing.T) {
	const name = "/sd/in.json"
	elem := func(i, v int) string {
		return fmt.Sprintf(`{"targets":["h%d:9100"],"labels":{"env":"prod","v":"%d"}}`, i, v)
	}
	file := func(elems ...string) []byte { return []byte("[" + strings.Join(elems, ",") + "]") }
	var elems []string
	for i := range 20 {
		elems = append(elems, elem(i, 0))
	}
	r := newReader()
	first, err := r.decode(name, file(elems...), nil)
	if err != nil {
		t.Fatal(err)
	}

	if st, err := r.decode(name, file(elems...), first); err != nil || st != first {
		t.Fatalf("unchanged content: state %p (err %v), want the previous one %p", st, err, first)
	}

	elems[7] = elem(7, 1)
	second, err := r.decode(name, file(elems...), first)
	if err != nil {
		t.Fatal(err)
	}
	for i, g := range second.groups {
		if same := g == first.groups[i]; same != (i != 7) {
			t.Fatalf("group %d reused: %v", i, same)
		}
	}
	if got := second.groups[7].Labels["v"]; got != "1" {
		t.Fatalf("changed group's v = %q", got)
	}

	// A change of an element's targets keeps its decoded labels, and the
	// other way round.
	elems[3] = `{"targets":["h3:9999"],"labels":{"env":"prod","v":"0"}}`
	elems[4] = `{"targets":["h4:9100"],"labels":{"env":"prod","v":"9"}}`
	parted, err := r.decode(name, file(elems...), second)
	if err != nil {
		t.Fatal(err)
	}
	g3, g4 := parted.groups[3], parted.groups[4]
	if g3.Targets[0][model.AddressLabel] != "h3:9999" || reflect.ValueOf(g3.Labels).UnsafePointer() != reflect.ValueOf(second.groups[3].Labels).UnsafePointer() {
		t.Fatalf("targets changed: %s; labels reused: %v", flat(parted.groups[3:4]), reflect.ValueOf(g3.Labels).UnsafePointer() == reflect.ValueOf(second.groups[3].Labels).UnsafePointer())
	}
	if g4.Labels["v"] != "9" || unsafe.SliceData(g4.Targets) != unsafe.SliceData(second.groups[4].Targets) {
		t.Fatalf("labels changed: %s; targets reused: %v", flat(parted.groups[4:5]), unsafe.SliceData(g4.Targets) == unsafe.SliceData(second.groups[4].Targets))
	}
	second = parted

	// A new element in front moves every other one: their groups are new
	// (their Source changed) but their decoded labels are reused.
	third, err := r.decode(name, file(append([]string{elem(99, 0)}, elems...)...), second)
	if err != nil {
		t.Fatal(err)
	}
	for i, g := range third.groups[1:] {
		p := second.groups[i]
		if g == p || g.Source != source(name, i+1) {
			t.Fatalf("moved group %d: same pointer %v, source %q", i, g == p, g.Source)
		}
		if i >= 8 && unsafe.Pointer(&g.Targets[0]) != unsafe.Pointer(&p.Targets[0]) {
			t.Fatalf("moved group %d was decoded again", i)
		}
	}
}

// TestInterning checks that repeated names and values are one string each,
// that values which do not repeat are not kept in the table, and that the
// table stays bounded over many changes.
func TestInterning(t *testing.T) {
	const name = "/sd/in.json"
	elems := make([]string, 400)
	elem := func(i, v int) string {
		return fmt.Sprintf(`{"targets":["10.0.%d.%d:9100"],"labels":{"env":"prod","id":"id-%d","v":"v%d"}}`, i/256, i%256, i, v)
	}
	for i := range elems {
		elems[i] = elem(i, 0)
	}
	file := func() []byte { return []byte("[" + strings.Join(elems, ",") + "]") }
	r := newReader()
	st, err := r.decode(name, file(), nil)
	if err != nil {
		t.Fatal(err)
	}
	data := func(g *targetgroup.Group, l model.LabelName) *byte { return unsafe.StringData(string(g.Labels[l])) }
	for _, l := range []model.LabelName{"env", "v", filepathLabel} {
		if data(st.groups[0], l) != data(st.groups[399], l) {
			t.Errorf("label %s: the same value is two strings", l)
		}
	}
	for l := range st.groups[0].Labels {
		for l2 := range st.groups[399].Labels {
			if l2 == l && unsafe.StringData(string(l)) != unsafe.StringData(string(l2)) {
				t.Errorf("label name %s is two strings", l)
			}
		}
	}
	if n := len(r.in.values); n > 2*sampleValues+10 {
		t.Errorf("%d values in the table after 400 groups whose id and address never repeat", n)
	}

	// Each change gives 16 groups' v a value, a new one every other time,
	// so that v's values go on being interned; the table must not keep the
	// values no group holds any more.
	held := func(yield func(*targetgroup.Group) bool) {
		for _, g := range st.groups {
			if !yield(g) {
				return
			}
		}
	}
	for k := 1; k <= 3*minRebuild/16; k++ {
		for j := range 16 {
			i := (16*k + j) % len(elems)
			elems[i] = elem(i, (16*k+j)/2)
		}
		if st, err = r.decode(name, file(), st); err != nil {
			t.Fatal(err)
		}
		r.in.maybeRebuild(held)
		if n := r.in.size(); n > max(2*r.in.live, minRebuild) {
			t.Fatalf("change %d: table of %d entries, %d at the last rebuild", k, n, r.in.live)
		}
	}
	if r.in.live == 0 {
		t.Fatal("the table was never rebuilt")
	}
	// The groups hold at most one v value each, "prod" and the file name;
	// addresses and ids are not interned.
	if r.in.live > len(elems)+10 {
		t.Errorf("%d entries kept at the last rebuild; the groups need at most %d", r.in.live, len(elems)+10)
	}
}
