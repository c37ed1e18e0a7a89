package output

import (
	"cmp"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/util/strutil"
)

// FuzzSanitizeLabelName fuzzes the label-name sanitiser the consul and
// dockerswarm mechanisms use for metadata keys (Prometheus's
// strutil.SanitizeLabelName, behind a fixed prefix): the name must always
// be valid in the legacy scheme, sanitising must be idempotent, and a
// target labelled with it must survive the writer and parse in
// Prometheus's file_sd.
//
//	go test -run '^$' -fuzz '^FuzzSanitizeLabelName$' -fuzztime 10s ./output
func FuzzSanitizeLabelName(f *testing.F) {
	for _, s := range []string{"", "a", "a.b", "a-b", "a b", "0", "é", "\xff", "a\x00b", "__", "ünïcödé-κλειδί", "a/../b", strings.Repeat("x.", 100)} {
		f.Add(s, "value")
	}
	f.Fuzz(func(t *testing.T, key, value string) {
		s := strutil.SanitizeLabelName(key)
		name := "__meta_consul_service_metadata_" + s
		if !model.LegacyValidation.IsValidLabelName(name) {
			t.Fatalf("sanitised %q to %q: not a valid label name", key, s)
		}
		if again := strutil.SanitizeLabelName(s); again != s {
			t.Fatalf("not idempotent: %q → %q → %q", key, s, again)
		}
		if key != "" && s == "" {
			t.Fatalf("non-empty %q sanitised to nothing", key)
		}
		g := &targetgroup.Group{Source: "s", Targets: []model.LabelSet{{model.AddressLabel: "h:1", model.LabelName(name): model.LabelValue(value)}}}
		written := renderChecked(t, []*targetgroup.Group{g})
		want := 0 // a value that is not UTF-8 drops the target
		if utf8.ValidString(value) {
			want = 1
		}
		if written != want {
			t.Fatalf("%d targets written, want %d", written, want)
		}
	})
}

// FuzzRenderHostile gives the writer a good target and one whose address,
// label name and value are arbitrary. The file must always parse in
// Prometheus's file_sd (every name valid in the legacy scheme, valid
// UTF-8), the good target must always be written, and the hostile one
// written exactly when Prometheus would read it into the consuming job's
// relabelling.
//
//	go test -run '^$' -fuzz '^FuzzRenderHostile$' -fuzztime 10s ./output
func FuzzRenderHostile(f *testing.F) {
	for _, s := range [][3]string{
		{"h:1", "a", "b"}, {"", "a", "b"}, {"h:1/x", "a", "b"}, {"h:1", "a.b", "v"}, {"h:1", "", "v"},
		{"h:1", "a", "\xff"}, {"h\n:1", "a", "line\nbreak"}, {"[::1]:1", "__address__", "x"}, {"h:1", "a", "\u2028\"\\"},
		{"../../etc/cron.d/x", "job", "x"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, addr, name, value string) {
		hostile := model.LabelSet{model.AddressLabel: model.LabelValue(addr), model.LabelName(name): model.LabelValue(value)}
		groups := []*targetgroup.Group{
			{Source: "good", Labels: model.LabelSet{"env": "prod"}, Targets: []model.LabelSet{{model.AddressLabel: "good:1"}}},
			{Source: "bad", Targets: []model.LabelSet{hostile}},
		}
		written := renderChecked(t, groups)
		a := string(hostile[model.AddressLabel]) // name may be __address__
		// An empty address, or one with a "/", is kept: Prometheus checks it
		// only after the consumer's relabelling.
		accept := utf8.ValidString(a) &&
			(name == model.AddressLabel || model.LegacyValidation.IsValidLabelName(name) && utf8.ValidString(value))
		want := 1
		if accept && !(a == "good:1" && hostile.Equal(model.LabelSet{model.AddressLabel: "good:1", "env": "prod"})) {
			want = 2
		}
		if written != want {
			t.Fatalf("%d targets written, want %d (hostile accepted: %v)", written, want, accept)
		}
	})
}

// renderChecked renders groups, parses the file as
// Prometheus's file_sd does and checks it as Prometheus 2.x would; it
// returns how many (address, labels) targets the file holds.
func renderChecked(t *testing.T, groups []*targetgroup.Group) int {
	t.Helper()
	data := Render(groups)
	if !utf8.Valid(data) {
		t.Fatalf("output not valid UTF-8: %q", data)
	}
	var parsed []*targetgroup.Group
	if err := json.Unmarshal(data, &parsed); err != nil {
		t.Fatalf("Prometheus's file_sd rejects the file: %v\n%s", err, data)
	}
	n := 0
	for _, g := range parsed {
		if g == nil {
			t.Fatalf("null entry:\n%s", data)
		}
		for ln := range g.Labels {
			if !model.LegacyValidation.IsValidLabelName(string(ln)) {
				t.Fatalf("label name %q: Prometheus 2.x rejects the whole file", ln)
			}
		}
		n += len(g.Targets)
	}
	return n
}

// FuzzCompareLabelsBodies holds the order of two label sets' bodies, which
// compareLabelsBodies reads through the table of label names, to the order
// of the sets themselves: pair by pair, name then value, a prefix first. Each
// input is a set: pairs separated by "\x1e", name and value by "\x1f";
// names are made valid, values that are not UTF-8 (dropped before they
// get here) skip the input.
//
//	go test -run '^$' -fuzz '^FuzzCompareLabelsBodies$' -fuzztime 10s ./output
func FuzzCompareLabelsBodies(f *testing.F) {
	for _, s := range [][2]string{
		{"a\x1fx", "a\x1fy"}, {"a\x1fx", "a\x1fx\x1eb\x1fy"}, {"a\x1fx y", "a\x1fx"}, {"a\x1f\n", "a\x1f\t"},
		{"a\x1f\x01", "a\x1fn"}, {"a\x1f\"", "a\x1f\\"}, {"ab\x1fx", "a\x1fx"}, {"a\x1f\u2028", "a\x1f\u2029"},
		{"a\x1fx,", "a\x1fx"}, {"a\x1fx:\x1eb\x1f1", "a\x1fx\x1eb\x1f1"}, {"a\x1fé", "a\x1fe"}, {"a\x1f<", "a\x1f>"},
	} {
		f.Add(s[0], s[1])
	}
	pairs := func(s string) ([]labelPair, bool) {
		byName := map[string]string{}
		for p := range strings.SplitSeq(s, "\x1e") {
			name, value, _ := strings.Cut(p, "\x1f")
			if !utf8.ValidString(value) {
				return nil, false
			}
			byName[strutil.SanitizeLabelName(name)+"_"] = value
		}
		ps := make([]labelPair, 0, len(byName))
		for n, v := range byName {
			ps = append(ps, labelPair{n, v})
		}
		slices.SortFunc(ps, func(a, b labelPair) int { return strings.Compare(a.name, b.name) })
		return ps, true
	}
	names := newLabelNames()
	f.Fuzz(func(t *testing.T, x, y string) {
		a, ok := pairs(x)
		b, ok2 := pairs(y)
		if !ok || !ok2 {
			t.Skip()
		}
		want := 0
		for i := 0; i < min(len(a), len(b)) && want == 0; i++ {
			want = cmp.Or(strings.Compare(a[i].name, b[i].name), strings.Compare(a[i].value, b[i].value))
		}
		if want == 0 {
			want = cmp.Compare(len(a), len(b))
		}
		ba, bb := string(names.appendLabelsBody(nil, a, nil)), string(names.appendLabelsBody(nil, b, nil))
		if got := names.compareLabelsBodies(ba, bb); got != want {
			t.Fatalf("compareLabelsBodies(%q, %q) = %d, want %d (%v, %v)", ba, bb, got, want, a, b)
		}
		if got := names.compareLabelsBodies(bb, ba); got != -want {
			t.Fatalf("compareLabelsBodies(%q, %q) = %d, want %d", bb, ba, got, -want)
		}
	})
}
