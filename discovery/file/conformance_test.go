package file

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	promfile "github.com/prometheus/prometheus/discovery/file"
	"github.com/prometheus/prometheus/discovery/targetgroup"
)

// TestConformance runs Prometheus's own file discoverer and sdhub's over
// the same directory through the same changes, and compares the target
// sets a manager builds from their messages (groups by Source, flattened to
// one label set per target). Each step ends by writing a sentinel file with
// the step number, and the states must agree once both have seen it.
func TestConformance(t *testing.T) {
	dir := t.TempDir()
	p := func(name string) string { return filepath.Join(dir, name) }
	patterns := []string{p("*.json"), p("*.yml"), p("*.yaml")}

	steps := []struct {
		name  string
		files map[string]string // content to write; "" deletes
	}{
		{"initial", map[string]string{
			"a.json": `[{"targets": ["a0:1", "a1:1"], "labels": {"env": "prod", "team": "x"}}, {"targets": ["[::1]:9"]}]`,
			"b.yml":  "- targets: [b0:1]\n  labels: {port: 8080, on: yes, f: 1.0, n: ~, q: 'quoted', u: \"ünï\"}\n- targets: [b1:1, b2:1]\n",
			"c.yaml": "- targets: [c0:1]\n",
		}},
		{"change and shrink", map[string]string{
			"a.json": `[{"targets": ["a0:1"], "labels": {"env": "staging"}}]`,
			"b.yml":  "- targets: [b0:2]\n",
		}},
		{"broken files keep their targets", map[string]string{
			"a.json": `[{"targets": ["a0:1"],`,
			"b.yml":  "- targets: [b0:3]\n  label: {x: y}\n",
		}},
		{"deleted while broken; fixed", map[string]string{
			"a.json": "",
			"b.yml":  "- targets: [b0:4]\n- targets: [b1:4]\n",
		}},
		{"new file; emptied yaml", map[string]string{
			"d.json": `[{"targets": ["d0:1"], "labels": {"__meta_filepath": "spoofed", "__scheme__": "https"}}]`,
			"c.yaml": "",
		}},
		{"null element; unknown json key", map[string]string{
			"d.json": `[{"targets": ["d0:2"]}, null]`,
			"e.json": `[{"targets": ["e0:1"], "labelz": {}}]`,
		}},
		{"json null and empty list", map[string]string{
			"d.json": `null`,
			"e.json": `[]`,
		}},
		{"yaml anchors, merge keys, multiple documents", map[string]string{
			"f.yaml": "- &g\n  targets: [f0:1]\n  labels: &l {a: b}\n- targets: [f1:1]\n  labels:\n    <<: *l\n    c: d\n---\n- targets: [ignored:1]\n",
		}},
		{"yaml scalars of other types", map[string]string{
			"g.yml": "- targets: [1, 2.5, true, 0x10, '007']\n  labels: {k1: 0o17, k2: 1e3, k3: .inf, k4: 2001-12-14, k5: off, k6: null}\n",
		}},
		{"yaml block scalars and tabs", map[string]string{
			"h.yml": "- targets:\n  - h0:1\n  labels:\n    desc: |\n      two\n      lines\n    folded: >\n      a\n      b\n",
			"i.yml": "- targets: [i:1]\n\tlabels: {}\n",
		}},
		{"invalid label names", map[string]string{
			"j.json": `[{"targets": ["j:1"], "labels": {"": "x"}}]`,
			"k.yml":  "- targets: [k:1]\n  labels: {\"a b\": x, \"ü\": y}\n",
		}},
		{"json number label value; duplicate yaml key", map[string]string{
			"l.json": `[{"targets": ["l:1"], "labels": {"n": 1}}]`,
			"m.yml":  "- targets: [m:1]\n  targets: [m:2]\n",
		}},
		{"everything deleted", map[string]string{
			"b.yml": "", "d.json": "", "e.json": "", "f.yaml": "", "g.yml": "", "h.yml": "", "i.yml": "",
			"j.json": "", "k.yml": "", "l.json": "", "m.yml": "",
		}},
	}

	// Prometheus's discoverer, with its metrics on a private registry.
	pconf := &promfile.SDConfig{Files: patterns, RefreshInterval: model.Duration(time.Hour)}
	pm := pconf.NewDiscovererMetrics(prometheus.NewRegistry(), nil)
	if err := pm.Register(); err != nil {
		t.Fatal(err)
	}
	defer pm.Unregister()
	pd, err := promfile.NewDiscovery(pconf, nil, pm)
	if err != nil {
		t.Fatal(err)
	}
	ours, _ := newTestDiscovery(t, prometheus.NewRegistry(), time.Hour, patterns...)

	ctx, cancel := context.WithCancel(t.Context())
	prom, mine := newTracker(), newTracker()
	pdone, mdone := make(chan struct{}), make(chan struct{})
	go func() { defer close(pdone); pd.Run(ctx, prom.up) }()
	go func() { defer close(mdone); ours.Run(ctx, mine.up) }()
	defer func() {
		cancel()
		<-pdone
		<-mdone
	}()

	sentinel := p("zz-step.json")
	// Prometheus adds its watches after its first read, so what changes
	// before then goes unseen until refresh_interval. Rewrite the sentinel
	// until Prometheus reports it: from then on both watch.
	probe := time.NewTicker(50 * time.Millisecond)
	deadline := time.After(wait)
	for k := 0; !strings.HasPrefix(prom.step(sentinel), "probe"); {
		select {
		case msg := <-prom.up:
			prom.apply(msg)
		case msg := <-mine.up:
			mine.apply(msg)
		case <-probe.C:
			k++
			writeFile(t, sentinel, `[{"targets": ["sentinel:1"], "labels": {"step": "probe`+strconv.Itoa(k)+`"}}]`)
		case <-deadline:
			t.Fatalf("Prometheus's discoverer saw no change within %v", wait)
		}
	}
	probe.Stop()

	for i, s := range steps {
		for _, name := range slices.Sorted(func(yield func(string) bool) {
			for k := range s.files {
				if !yield(k) {
					return
				}
			}
		}) {
			if content := s.files[name]; content == "" {
				if err := os.Remove(p(name)); err != nil {
					t.Fatalf("%s: %v", s.name, err)
				}
			} else {
				writeFile(t, p(name), content)
			}
		}
		step := strconv.Itoa(i)
		writeFile(t, sentinel, `[{"targets": ["sentinel:1"], "labels": {"step": "`+step+`"}}]`)

		deadline := time.After(wait)
		for !(prom.step(sentinel) == step && mine.step(sentinel) == step && slices.Equal(prom.flat(), mine.flat())) {
			select {
			case msg := <-prom.up:
				prom.apply(msg)
			case msg := <-mine.up:
				mine.apply(msg)
			case <-deadline:
				t.Fatalf("step %q: states differ after %v\nprometheus:\n%s\nsdhub:\n%s", s.name, wait,
					strings.Join(prom.flat(), "\n"), strings.Join(mine.flat(), "\n"))
			}
		}
		t.Logf("step %q: %d targets agree", s.name, len(mine.flat()))
	}
}

// tracker builds a manager's view of one discoverer's messages.
type tracker struct {
	up    chan []*targetgroup.Group
	state map[string]*targetgroup.Group
}

func newTracker() *tracker {
	return &tracker{up: make(chan []*targetgroup.Group), state: map[string]*targetgroup.Group{}}
}

func (tr *tracker) apply(msg []*targetgroup.Group) {
	for _, g := range msg {
		if len(g.Targets) == 0 {
			delete(tr.state, g.Source)
		} else {
			tr.state[g.Source] = g
		}
	}
}

func (tr *tracker) flat() []string {
	var gs []*targetgroup.Group
	for _, g := range tr.state {
		gs = append(gs, g)
	}
	return flat(gs)
}

// step is the step label of the sentinel file's group, "" before it is seen.
func (tr *tracker) step(sentinel string) string {
	g, ok := tr.state[source(sentinel, 0)]
	if !ok {
		return ""
	}
	return string(g.Labels["step"])
}
