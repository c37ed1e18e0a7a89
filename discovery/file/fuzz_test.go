package file

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
)

// promRead decodes a JSON file_sd file as Prometheus's file discoverer
// does (discovery/file's readFile): encoding/json into
// []*targetgroup.Group, then no nil group, and each group's Source and
// __meta_filepath set. It is the reference the hand-written decoder is held
// to.
func promRead(name string, content []byte) ([]*targetgroup.Group, error) {
	var groups []*targetgroup.Group
	if err := json.Unmarshal(content, &groups); err != nil {
		return nil, err
	}
	for i, g := range groups {
		if g == nil {
			return nil, errors.New("nil target group item found")
		}
		g.Source = source(name, i)
		if g.Labels == nil {
			g.Labels = model.LabelSet{}
		}
		g.Labels[filepathLabel] = model.LabelValue(name)
	}
	return groups, nil
}

// sameAsProm fails t unless groups and err are what promRead gives for
// content: the same groups, or the same error after `read "<name>": `.
func sameAsProm(t *testing.T, name string, content []byte, groups []*targetgroup.Group, err error) {
	t.Helper()
	want, wantErr := promRead(name, content)
	if wantErr != nil {
		if err == nil {
			t.Fatalf("%q accepted, Prometheus rejects it: %v\ngroups:\n%s", content, wantErr, strings.Join(flat(groups), "\n"))
		}
		if got, w := err.Error(), fmt.Sprintf("read %q: %v", name, wantErr); got != w {
			t.Fatalf("%q: error\n%s\nwant\n%s", content, got, w)
		}
		return
	}
	if err != nil {
		t.Fatalf("%q rejected (%v), Prometheus accepts it:\n%s", content, err, strings.Join(flat(want), "\n"))
	}
	if len(groups) != len(want) {
		t.Fatalf("%q: %d groups, Prometheus %d", content, len(groups), len(want))
	}
	for i := range want {
		if !groupEqual(groups[i], want[i]) || (groups[i].Targets == nil) != (want[i].Targets == nil) {
			t.Fatalf("%q: group %d\n%s\nPrometheus:\n%s", content, i,
				strings.Join(flat(groups[i:i+1]), "\n"), strings.Join(flat(want[i:i+1]), "\n"))
		}
	}
}

// FuzzReadFile feeds the file_sd input parser arbitrary files, as JSON and
// as YAML. It must never panic or hang; every rejection names the file. A
// JSON file must decode exactly as Prometheus decodes it (the same groups,
// or the same error text); every accepted group is non-nil, has its Source
// and __meta_filepath, and only valid label names. The committed corpus is
// in testdata/fuzz/FuzzReadFile.
//
//	go test -run '^$' -fuzz '^FuzzReadFile$' -fuzztime 10s ./discovery/file
func FuzzReadFile(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte, yml bool) {
		name := filepath.Join(dir, "in.json")
		if yml {
			name = filepath.Join(dir, "in.yml")
		}
		if err := os.WriteFile(name, data, 0o644); err != nil {
			t.Fatal(err)
		}
		tm := time.AfterFunc(10*time.Second, func() { panic(fmt.Sprintf("read hangs on %q", data)) })
		defer tm.Stop()
		var groups []*targetgroup.Group
		st, err := newReader().read(name, nil)
		if st != nil {
			groups = st.groups
		}
		if !yml {
			sameAsProm(t, name, data, groups, err)
		}
		if err != nil {
			if !strings.HasPrefix(err.Error(), fmt.Sprintf("read %q: ", name)) {
				t.Fatalf("error does not name the file: %q", err)
			}
			return
		}
		for i, g := range groups {
			if g == nil {
				t.Fatalf("group %d is nil", i)
			}
			if g.Source != source(name, i) || g.Labels[filepathLabel] != model.LabelValue(name) {
				t.Fatalf("group %d: source %q, labels %v", i, g.Source, g.Labels)
			}
			for n := range g.Labels {
				if !model.UTF8Validation.IsValidLabelName(string(n)) {
					t.Fatalf("group %d: invalid label name %q accepted", i, n)
				}
			}
			for _, tg := range g.Targets {
				for n := range tg {
					if !model.UTF8Validation.IsValidLabelName(string(n)) {
						t.Fatalf("group %d: invalid target label name %q accepted", i, n)
					}
				}
			}
		}
	})
}

// FuzzReadJSONAfter reads a JSON file at one content, then at another: the
// second read, which reuses the groups of the first wherever an element's
// bytes are unchanged, must still give exactly what Prometheus decodes from
// the second content; an unchanged content must give the first read back.
// The committed corpus is in testdata/fuzz/FuzzReadJSONAfter.
//
//	go test -run '^$' -fuzz '^FuzzReadJSONAfter$' -fuzztime 10s ./discovery/file
func FuzzReadJSONAfter(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(`[{"targets":["a:1"]},{"targets":["b:1"],"labels":{"x":"y"}}]`), []byte(s))
		f.Add([]byte(s), []byte(`[{"targets":["b:1"],"labels":{"x":"y"}},{"targets":["a:1"]},{}]`))
	}
	for _, pair := range [][2]string{
		{`[{"targets":["a"]},{"targets":["b"]},{"targets":["c"]}]`, `[{"targets":["z"]},{"targets":["a"]},{"targets":["b"]},{"targets":["c"]}]`},
		{`[{"targets":["a"]},{"targets":["b"]},{"targets":["c"]}]`, `[{"targets":["a"]},{"targets":["c"]}]`},
		{`[{"targets":["a"]},{"targets":["a"]}]`, `[{"targets":["a"]},{"targets":["a"]},{"targets":["a"]}]`},
		{`[{"TARGETS":["a"]}]`, `[{"TARGETS":["a"]},{"targets":["b"],"labels":{"n":"\u00e9"}}]`},
	} {
		f.Add([]byte(pair[0]), []byte(pair[1]))
	}
	f.Fuzz(func(t *testing.T, first, second []byte) {
		r := newReader()
		r.window = 1 + len(first)%32 // windows that end anywhere, and grow
		prev := decodeLikeProm(t, r, first, nil)
		st := decodeLikeProm(t, r, second, prev)
		if prev != nil && st != nil && string(first) == string(second) && st != prev {
			t.Fatal("an unchanged file was decoded again")
		}
	})
}

// decodeLikeProm decodes content as the file "/sd/in.json" after prev, and
// fails t unless the result is Prometheus's.
func decodeLikeProm(t *testing.T, r *reader, content []byte, prev *fileState) *fileState {
	t.Helper()
	const name = "/sd/in.json"
	st, err := r.decode(name, content, prev)
	var groups []*targetgroup.Group
	if err != nil {
		err = fmt.Errorf("read %q: %w", name, err)
	} else {
		groups = st.groups
	}
	sameAsProm(t, name, content, groups, err)
	if st != nil && st.parts != nil {
		// What a later read reuses by must be the parts' own hashes.
		w := window{rd: bytes.NewReader(content), buf: make([]byte, 16), sum: xxhash.New()}
		i := 0
		_ = w.elements(func(b []byte) bool {
			_, ps, _, err := newReader().dec.decodeGroup(b, nil, parts{})
			if err == nil && st.parts[i] != (parts{}) && st.parts[i] != ps {
				t.Fatalf("%q: element %d: kept parts %x, its bytes hash to %x", content, i, st.parts[i], ps)
			}
			i++
			return true
		})
	}
	return st
}

var fuzzSeeds = []string{
	`[{"targets":["a:1","b:2"],"labels":{"env":"prod"}}]`,
	`[{"targets":[],"labels":{}}]`,
	`[]`,
	`[null]`,
	`[{"targets":["a:1"],"labels":{"a.b":"x"}}]`,
	`[{"targets":["a:1"],"labels":{"":"x"}}]`,
	"[{\"targets\":[\"a:1\"],\"labels\":{\"x\":\"\xff\xfe\"}}]",
	"[{\"targets\":[\"a:1\"],\"labels\":{\"\xff\":\"x\"}}]",
	`[{"targets":["a/b:1"],"extra":1}]`,
	`[{"targets":["\ud83d\ude00 \ud800 \udc00\u0041 \u00e9\n\t\"\\\/"],"labels":{"\u0061":"\ud800\ud800"}}]`,
	`[{"Targets":["a"],"LABELS":{"x":"y"}}]`,
	`[{"targets":["a"],"targets":["b"]}]`,
	`[{"targets":[null,"a"]},{"labels":{"a":null}}]`,
	`[{"labels":{"a":1}}]`,
	`[{"targets":null,"labels":null}]`,
	`[1, {}]`,
	` [ { "targets" : [ "a" ] , "labels" : { "k" : "v" } } ] `,
	`[{"targets":["a"]}] x`,
	`[{"targets":["a"]}, null, {"targets":[1]}]`,
	`[-0.5e+10, 1E3, 01]`,
	`{"targets":["a"]}`,
	"- targets: [a:1]\n  labels: {env: prod}\n",
	"- targets: [a:1]\n  labels: {\"\\xff\": v}\n",
	"- targets: &a [a:1]\n- targets: *a\n",
	"",
	"null",
}
