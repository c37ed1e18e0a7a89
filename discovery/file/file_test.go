package file

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"go.uber.org/goleak"

	"github.com/sdhub/sdhub/discovery"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// writeFile replaces name atomically: a temp file whose name no pattern
// matches, then a rename, as a well-behaved writer does.
func writeFile(t *testing.T, name, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(name), "."+filepath.Base(name)+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, name); err != nil {
		t.Fatal(err)
	}
}

// flat renders groups as sorted "source {labels}" lines, one per target
// (group labels merged under target labels), and "source -" for a group
// without targets.
func flat(groups []*targetgroup.Group) []string {
	var out []string
	for _, g := range groups {
		if len(g.Targets) == 0 {
			out = append(out, g.Source+" -")
			continue
		}
		for _, tl := range g.Targets {
			out = append(out, g.Source+" "+g.Labels.Merge(tl).String())
		}
	}
	slices.Sort(out)
	return out
}

func newTestDiscovery(t *testing.T, reg prometheus.Registerer, interval time.Duration, patterns ...string) (*Discovery, *Metrics) {
	t.Helper()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	d, err := NewDiscovery(&SDConfig{Files: patterns, RefreshInterval: model.Duration(interval)}, discovery.Options{Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	return d, m
}

func TestRefreshParse(t *testing.T) {
	for _, tc := range []struct {
		name, file, content string
		want                []string // flat groups; nil with err
		err                 string   // after `read "<path>": `
	}{
		{
			name: "json", file: "a.json",
			content: `[{"targets": ["h1:9100", "h2:9100"], "labels": {"env": "prod", "__meta_filepath": "spoofed"}},
			           {"targets": ["h3:80"]}]`,
			want: []string{
				`@:0 {__address__="h1:9100", __meta_filepath="@", env="prod"}`,
				`@:0 {__address__="h2:9100", __meta_filepath="@", env="prod"}`,
				`@:1 {__address__="h3:80", __meta_filepath="@"}`,
			},
		},
		{
			name: "yaml", file: "a.yml",
			content: "- targets: [h1:9100]\n  labels: {port: 8080, on: yes, empty: ~}\n- targets: []\n",
			want: []string{
				`@:0 {__address__="h1:9100", __meta_filepath="@", empty="", on="yes", port="8080"}`,
				`@:1 -`,
			},
		},
		{name: "upper-case extension", file: "a.YAML", content: "- targets: [h:1]\n", want: []string{`@:0 {__address__="h:1", __meta_filepath="@"}`}},
		{name: "json null", file: "a.json", content: "null", want: nil},
		{name: "json empty list", file: "a.json", content: "[]", want: nil},
		{name: "yaml empty file", file: "a.yaml", content: "", want: nil},
		{name: "yaml comment only", file: "a.yaml", content: "# nothing yet\n", want: nil},
		{name: "json empty file", file: "a.json", content: "", err: "unexpected end of JSON input"},
		{name: "json truncated", file: "a.json", content: `[{"targets": ["h1:9`, err: "unexpected end of JSON input"},
		{name: "json garbage", file: "a.json", content: "garbage", err: "invalid character 'g' looking for beginning of value"},
		{name: "json unknown key", file: "a.json", content: `[{"target": ["h1:9100"]}]`, err: `json: unknown field "target"`},
		{name: "json null element", file: "a.json", content: `[{"targets": ["h:1"]}, null]`, err: "nil target group item found"},
		{name: "yaml null element", file: "a.yml", content: "- targets: [h:1]\n- null\n", err: "nil target group item found"},
		{name: "yaml unknown key", file: "a.yml", content: "- targets: [h:1]\n  label: {a: b}\n", err: "yaml: unmarshal errors:\n  line 2: field label not found in type struct { Targets []string \"yaml:\\\"targets\\\"\"; Labels model.LabelSet \"yaml:\\\"labels\\\"\" }"},
		{name: "yaml duplicate key", file: "a.yml", content: "- targets: [h:1]\n  targets: [h:2]\n", err: "yaml: unmarshal errors:\n  line 2: mapping key \"targets\" already defined at line 1"},
		{name: "yaml invalid label name", file: "a.yml", content: "- targets: [h:1]\n  labels: {\"\": x}\n", err: `"" is not a valid label name`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, tc.file)
			writeFile(t, path, tc.content)
			d, m := newTestDiscovery(t, nil, time.Minute, filepath.Join(dir, "*"+filepath.Ext(tc.file)))
			groups, err := d.refresh(t.Context())
			if tc.err != "" {
				want := `read "` + path + `": ` + tc.err
				if err == nil || err.Error() != want {
					t.Fatalf("error = %v, want %q", err, want)
				}
				if len(groups) != 0 {
					t.Fatalf("broken file gave groups %q", flat(groups))
				}
				if n := testutil.ToFloat64(m.readErrors); n != 1 {
					t.Fatalf("read errors = %v, want 1", n)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, w := range tc.want {
				want = append(want, strings.ReplaceAll(w, "@", path))
			}
			if got := flat(groups); !slices.Equal(got, want) {
				t.Fatalf("groups:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

// TestRefreshSequence checks what each refresh reports as a file changes,
// breaks, shrinks and disappears.
func TestRefreshSequence(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.json"), filepath.Join(dir, "b.yml")
	d, m := newTestDiscovery(t, nil, time.Minute, filepath.Join(dir, "*.json"), filepath.Join(dir, "*.yml"), a)
	ga := func(i int, addr string) string {
		return a + ":" + string(rune('0'+i)) + ` {__address__="` + addr + `", __meta_filepath="` + a + `"}`
	}
	gb := func(i int, addr string) string {
		return b + ":" + string(rune('0'+i)) + ` {__address__="` + addr + `", __meta_filepath="` + b + `"}`
	}
	steps := []struct {
		name       string
		change     func()
		want       []string
		readErrors float64
	}{
		{"nothing yet", func() {}, nil, 0},
		{"two files", func() {
			writeFile(t, a, `[{"targets":["a0:1"]},{"targets":["a1:1"]},{"targets":["a2:1"]}]`)
			writeFile(t, b, "- targets: [b0:1]\n")
		}, []string{ga(0, "a0:1"), ga(1, "a1:1"), ga(2, "a2:1"), gb(0, "b0:1")}, 0},
		{"a shrinks", func() { writeFile(t, a, `[{"targets":["a0:2"]}]`) },
			[]string{ga(0, "a0:2"), a + ":1 -", a + ":2 -", gb(0, "b0:1")}, 0},
		{"a broken: nothing for a, no removal", func() { writeFile(t, a, `[{"targets":`) },
			[]string{gb(0, "b0:1")}, 1},
		{"a still broken", func() {}, []string{gb(0, "b0:1")}, 2},
		{"a deleted after it broke: its last good index goes", func() { rm(t, a) },
			[]string{a + ":0 -", gb(0, "b0:1")}, 2},
		{"b emptied", func() { writeFile(t, b, "") }, []string{b + ":0 -"}, 2},
		{"a back", func() { writeFile(t, a, `[{"targets":["a0:3"]}]`) }, []string{ga(0, "a0:3")}, 2},
	}
	for _, s := range steps {
		s.change()
		groups, err := d.refresh(t.Context())
		wantErr := strings.Contains(s.name, "broken")
		if (err != nil) != wantErr {
			t.Fatalf("%s: error = %v, want an error: %v", s.name, err, wantErr)
		}
		if got := flat(groups); !slices.Equal(got, s.want) {
			t.Fatalf("%s: groups:\n%s\nwant:\n%s", s.name, strings.Join(got, "\n"), strings.Join(s.want, "\n"))
		}
		if n := testutil.ToFloat64(m.readErrors); n != s.readErrors {
			t.Fatalf("%s: read errors = %v, want %v", s.name, n, s.readErrors)
		}
	}
}

func rm(t *testing.T, name string) {
	t.Helper()
	if err := os.Remove(name); err != nil {
		t.Fatal(err)
	}
}

func TestChanges(t *testing.T) {
	g := func(src string, addrs ...string) *targetgroup.Group {
		tg := &targetgroup.Group{Source: src, Labels: model.LabelSet{}}
		for _, a := range addrs {
			tg.Targets = append(tg.Targets, model.LabelSet{model.AddressLabel: model.LabelValue(a)})
		}
		return tg
	}
	sent := map[string]*targetgroup.Group{}
	for _, step := range []struct {
		name string
		in   []*targetgroup.Group
		want []string
	}{
		{"new groups", []*targetgroup.Group{g("f:0", "a"), g("f:1", "b"), g("f:2")}, []string{`f:0 {__address__="a"}`, `f:1 {__address__="b"}`}},
		{"nothing changed", []*targetgroup.Group{g("f:0", "a"), g("f:1", "b")}, nil},
		{"one changed", []*targetgroup.Group{g("f:0", "a"), g("f:1", "c")}, []string{`f:1 {__address__="c"}`}},
		{"one removed", []*targetgroup.Group{g("f:0", "a"), g("f:1")}, []string{"f:1 -"}},
		{"removed again", []*targetgroup.Group{g("f:0", "a"), g("f:1")}, nil},
		{"back", []*targetgroup.Group{g("f:0", "a"), g("f:1", "c")}, []string{`f:1 {__address__="c"}`}},
	} {
		if got := flat(changes(step.in, sent)); !slices.Equal(got, step.want) {
			t.Fatalf("%s: got %q, want %q", step.name, got, step.want)
		}
	}
}

// BenchmarkRefresh reads 100 JSON files of 10 groups of 5 targets each.
func BenchmarkRefresh(b *testing.B) {
	dir := b.TempDir()
	var sb strings.Builder
	sb.WriteString("[")
	for g := range 10 {
		if g > 0 {
			sb.WriteString(",")
		}
		sb.WriteString(`{"targets": ["h1:9100", "h2:9100", "h3:9100", "h4:9100", "h5:9100"], "labels": {"env": "prod", "zone": "z1", "team": "infra"}}`)
	}
	sb.WriteString("]")
	for i := range 100 {
		if err := os.WriteFile(filepath.Join(dir, "f"+strconv.Itoa(i)+".json"), []byte(sb.String()), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	m, _ := NewMetrics(nil)
	d, err := NewDiscovery(&SDConfig{Files: []string{filepath.Join(dir, "*.json")}, RefreshInterval: DefaultSDConfig.RefreshInterval}, discovery.Options{Metrics: m})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		groups, err := d.refresh(b.Context())
		if err != nil || len(groups) != 1000 {
			b.Fatalf("%d groups, err %v", len(groups), err)
		}
	}
}
