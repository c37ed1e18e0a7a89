package output

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// consulLike returns n targets shaped like consul_sd's: one group per
// service with group labels, per-target __meta labels.
func consulLike(n int) []*targetgroup.Group {
	const perService = 50
	var groups []*targetgroup.Group
	for i := 0; i < n; i++ {
		svc := i / perService
		if i%perService == 0 {
			groups = append(groups, &targetgroup.Group{
				Source: fmt.Sprintf("svc-%d", svc),
				Labels: model.LabelSet{
					"__meta_consul_service": model.LabelValue(fmt.Sprintf("svc-%d", svc)),
					"__meta_consul_dc":      "dc1",
				},
			})
		}
		g := groups[len(groups)-1]
		node := fmt.Sprintf("node-%d", i%97)
		addr := fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
		g.Targets = append(g.Targets, model.LabelSet{
			"__address__":                          model.LabelValue(addr + ":8080"),
			"__meta_consul_address":                model.LabelValue(addr),
			"__meta_consul_node":                   model.LabelValue(node),
			"__meta_consul_namespace":              "",
			"__meta_consul_partition":              "",
			"__meta_consul_tags":                   ",prod,http,",
			"__meta_consul_service_address":        model.LabelValue(addr),
			"__meta_consul_service_port":           "8080",
			"__meta_consul_service_id":             model.LabelValue(fmt.Sprintf("svc-%d-%d", svc, i)),
			"__meta_consul_health":                 "passing",
			"__meta_consul_metadata_rack":          model.LabelValue(fmt.Sprintf("r%d", i%7)),
			"__meta_consul_service_metadata_owner": "team-a",
			"__meta_consul_tagged_address_lan":     model.LabelValue(addr),
		})
	}
	return groups
}

func TestRenderGolden(t *testing.T) {
	for _, tc := range []struct {
		name   string
		groups []*targetgroup.Group
	}{
		{"consul", consulLike(5)},
		{"merged", []*targetgroup.Group{
			{Source: "b", Labels: model.LabelSet{"env": "prod", "zone": "a"}, Targets: []model.LabelSet{
				{"__address__": "b:2"}, {"__address__": "a:1"}, {"__address__": "a:1"},
				{"__address__": "c:3", "zone": "b"},
			}},
			{Source: "a", Labels: model.LabelSet{"env": "prod", "zone": "a"}, Targets: []model.LabelSet{
				{"__address__": "d:4"},
			}},
			{Source: "c", Targets: []model.LabelSet{{"__address__": "e:5"}, {"other": "x"}}},
			{Source: "empty"},
			nil,
		}},
		{"empty", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Render(tc.groups)
			path := filepath.Join("testdata", tc.name+".golden.json")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("Render differs from %s (run go test -update after checking):\n%s", path, got)
			}
		})
	}
}

// naive is a plain, slow rendering of groups, used as the reference: the
// same structure encoded by encoding/json.
func naive(t *testing.T, groups []*targetgroup.Group) []byte {
	type out struct {
		Targets []string          `json:"targets"`
		Labels  map[string]string `json:"labels"`
	}
	byKey := map[string]*out{}
	for _, g := range groups {
		if g == nil {
			continue
		}
		for _, tg := range g.Targets {
			merged := map[string]string{}
			for n, v := range g.Labels {
				merged[string(n)] = string(v)
			}
			for n, v := range tg {
				merged[string(n)] = string(v)
			}
			addr := merged["__address__"]
			delete(merged, "__address__")
			if !utf8.ValidString(addr) || slices.ContainsFunc(slices.Collect(maps.Values(merged)), func(v string) bool { return !utf8.ValidString(v) }) {
				continue // Prometheus would reject it: left out
			}
			for _, n := range []string{"__meta_filepath", "__meta_url"} {
				if v, ok := merged[n]; ok {
					delete(merged, n)
					merged[strings.Replace(n, "__meta_", "__meta_sdhub_", 1)] = v
				}
			}
			k := canon(merged)
			o := byKey[k]
			if o == nil {
				o = &out{Labels: merged}
				byKey[k] = o
			}
			if !slices.Contains(o.Targets, addr) {
				o.Targets = append(o.Targets, addr)
			}
		}
	}
	all := []*out{}
	for _, o := range byKey {
		slices.Sort(o.Targets)
		all = append(all, o)
	}
	// The same order as Render: first target, then the label set.
	slices.SortFunc(all, func(a, b *out) int {
		if c := strings.Compare(a.Targets[0], b.Targets[0]); c != 0 {
			return c
		}
		return slices.Compare(sortedPairs(a.Labels), sortedPairs(b.Labels))
	})
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(all); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// sortedPairs flattens m into name, value, name, value..., sorted by name.
func sortedPairs(m map[string]string) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names)
	var out []string
	for _, n := range names {
		out = append(out, n, m[n])
	}
	return out
}

func canon(m map[string]string) string { return fmt.Sprintf("%q", sortedPairs(m)) }

func TestRenderMatchesReference(t *testing.T) {
	checkAgainstReference(t, func(i int) string { return fmt.Sprintf("l%d", i) }, newLabelNames())
}

// TestRenderInlineNames: once the table of label names is full, new names
// are held inline; the output is the same, ordered the same, alongside
// names that have ids.
func TestRenderInlineNames(t *testing.T) {
	names := newLabelNames()
	names.id("l0")
	names.id("l2")
	names.limit = len(names.table())
	checkAgainstReference(t, func(i int) string {
		if i%2 == 0 {
			return fmt.Sprintf("l%d", i) // has an id
		}
		return fmt.Sprintf("inline_%d", i)
	}, names)
	if _, inline := names.ids["inline_1"]; inline {
		t.Fatal("a name past the limit went into the table")
	}
}

// checkAgainstReference renders random groups whose label names are
// nameOf(0..3), with the label names in names, and compares the output
// with naive's.
func checkAgainstReference(t *testing.T, nameOf func(int) string, names *labelNames) {
	t.Helper()
	odd := []string{
		"", "plain", `quote"back\slash`, "nl\ncr\rtab\tbs\bff\f", "\x00\x01\x1f\x7f", "<html>&amp;",
		"\u2028\u2029", "héllo 世界 🙂", "bad\xffutf8\xc3", "\xed\xa0\x80",
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 200 {
		var groups []*targetgroup.Group
		for g := range rng.IntN(4) {
			grp := &targetgroup.Group{Source: fmt.Sprint(g), Labels: model.LabelSet{}}
			for range rng.IntN(3) {
				grp.Labels[model.LabelName(nameOf(rng.IntN(4)))] = model.LabelValue(odd[rng.IntN(len(odd))])
			}
			for range rng.IntN(5) {
				tg := model.LabelSet{"__address__": model.LabelValue(odd[rng.IntN(len(odd))])}
				for range rng.IntN(3) {
					tg[model.LabelName(nameOf(rng.IntN(4)))] = model.LabelValue(odd[rng.IntN(len(odd))])
				}
				grp.Targets = append(grp.Targets, tg)
			}
			groups = append(groups, grp)
		}
		got := render(groups, names)
		if want := naive(t, groups); !bytes.Equal(got, want) {
			t.Fatalf("case %d: Render =\n%s\nwant (encoding/json)\n%s", i, got, want)
		}
		// Size, which http_sd sends as Content-Length, is the text's, for
		// the output and its shards (odd addresses are escaped).
		s := newSnapshot("j", groups, names)
		if s.Size != len(got) {
			t.Fatalf("case %d: Size %d, output %d bytes", i, s.Size, len(got))
		}
		// Entries, which the pages and discover show, are what the file says.
		var file []struct {
			Targets []string          `json:"targets"`
			Labels  map[string]string `json:"labels"`
		}
		if err := json.Unmarshal(got, &file); err != nil {
			t.Fatal(err)
		}
		entries := s.Entries()
		if len(entries) != len(file) {
			t.Fatalf("case %d: %d entries, the file has %d", i, len(entries), len(file))
		}
		for j, e := range entries {
			labels := map[string]string{}
			for _, p := range e.Labels {
				labels[p.Name] = p.Value
			}
			if !slices.Equal(e.Targets, file[j].Targets) || !maps.Equal(labels, file[j].Labels) {
				t.Fatalf("case %d: entry %d is %v %q, the file has %v %q", i, j, e.Targets, labels, file[j].Targets, file[j].Labels)
			}
		}
		for n := 2; n <= 3; n++ {
			for k := range n {
				if part := s.Shard(ShardSpec{Shard: k, Shards: n}); part.Size != len(part.Bytes()) {
					t.Fatalf("case %d: shard %d/%d: Size %d, %d bytes", i, k, n, part.Size, len(part.Bytes()))
				}
			}
		}
		// Prometheus's own parser accepts it.
		var parsed []*targetgroup.Group
		if err := json.Unmarshal(got, &parsed); err != nil {
			t.Fatalf("case %d: Prometheus cannot parse the output: %v\n%s", i, err, got)
		}
		// The bytes do not depend on the order of groups and targets.
		slices.Reverse(groups)
		for _, g := range groups {
			slices.Reverse(g.Targets)
		}
		again := Render(groups)
		if !bytes.Equal(got, again) {
			t.Fatalf("case %d: output depends on input order:\n%s\nvs\n%s", i, got, again)
		}
	}
}

func TestRenderDropsInvalidLabelName(t *testing.T) {
	for _, tc := range []struct {
		name   string
		labels model.LabelSet
	}{
		{"empty", model.LabelSet{"": "x"}},
		{"not utf8", model.LabelSet{"a\xff": "x"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg := model.LabelSet{"__address__": "a:1"}
			for n, v := range tc.labels {
				tg[n] = v
			}
			if got := Render([]*targetgroup.Group{{Source: "g", Targets: []model.LabelSet{tg}}}); string(got) != "[]\n" {
				t.Errorf("Render = %q, want the target left out", got)
			}
		})
	}
}

func TestRenderAddsNothing(t *testing.T) {
	got := Render([]*targetgroup.Group{{
		Source:  "g",
		Targets: []model.LabelSet{{"__address__": "a:1"}},
	}})
	want := "[\n  {\n    \"targets\": [\n      \"a:1\"\n    ],\n    \"labels\": {}\n  }\n]\n"
	if string(got) != want {
		t.Errorf("Render = %q, want %q", got, want)
	}
}

func BenchmarkRender(b *testing.B) {
	for _, n := range []int{10_000, 50_000, 100_000} {
		groups := consulLike(n)
		b.Run(fmt.Sprintf("targets=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			var size int
			for b.Loop() {
				size = len(Render(groups))
			}
			b.ReportMetric(float64(size), "bytes/file")
		})
	}
}

// Label sets that a concatenated key would confuse stay apart.
func TestRenderKeepsDistinctLabelSetsApart(t *testing.T) {
	got := Render([]*targetgroup.Group{{Source: "g", Targets: []model.LabelSet{
		{"__address__": "a:1", "a": "x\",\n      \"b\": \"y"},
		{"__address__": "a:2", "a": "x", "b": "y"},
	}}})
	var parsed []*targetgroup.Group
	if err := json.Unmarshal(got, &parsed); err != nil {
		t.Fatal(err)
	}
	if len(parsed) != 2 {
		t.Errorf("Render made %d entries, want 2:\n%s", len(parsed), got)
	}
}
