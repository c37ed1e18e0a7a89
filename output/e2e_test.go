package output

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	pdiscovery "github.com/prometheus/prometheus/discovery"
	pfile "github.com/prometheus/prometheus/discovery/file"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/sdhub/sdhub/discovery"
	"github.com/sdhub/sdhub/discovery/static"
	"github.com/sdhub/sdhub/manager"
)

// promTargets runs Prometheus's own file_sd (with fsnotify) on dir/*.json
// and keeps what it discovered: the label sets of every target, with group
// labels merged in as Prometheus merges them and __meta_filepath reduced to
// the file's base name, by file.
type promTargets struct {
	ch    chan []*targetgroup.Group
	state map[string]*targetgroup.Group
}

func runPrometheusFileSD(t *testing.T, ctx context.Context, dir string) *promTargets {
	t.Helper()
	conf := &pfile.SDConfig{Files: []string{filepath.Join(dir, "*.json")}, RefreshInterval: model.Duration(time.Hour)}
	reg := prometheus.NewRegistry()
	met := conf.NewDiscovererMetrics(reg, pdiscovery.NewRefreshMetrics(reg))
	if err := met.Register(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(met.Unregister)
	d, err := pfile.NewDiscovery(conf, nil, met)
	if err != nil {
		t.Fatal(err)
	}
	p := &promTargets{ch: make(chan []*targetgroup.Group), state: map[string]*targetgroup.Group{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.Run(ctx, p.ch)
	}()
	t.Cleanup(func() { <-done })
	return p
}

// byFile returns the sorted, printed label sets of every target, by file.
func (p *promTargets) byFile() map[string][]string {
	out := map[string][]string{}
	for _, g := range p.state {
		for _, tg := range g.Targets {
			ls := maps.Clone(g.Labels)
			maps.Copy(ls, tg)
			file := filepath.Base(string(ls["__meta_filepath"]))
			delete(ls, "__meta_filepath")
			out[file] = append(out[file], ls.String())
		}
	}
	for _, v := range out {
		slices.Sort(v)
	}
	return out
}

// waitFor receives from Prometheus's file_sd until want holds, for at most 10 s.
func (p *promTargets) waitFor(t *testing.T, want map[string][]string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		if got := p.byFile(); fmt.Sprint(got) == fmt.Sprint(want) {
			return
		}
		select {
		case tgs := <-p.ch:
			for _, g := range tgs {
				p.state[g.Source] = g
			}
		case <-timeout:
			t.Fatalf("Prometheus's file_sd sees\n%v\nwant\n%v", p.byFile(), want)
		}
	}
}

// TestPrometheusReadsOutput runs the manager and the writer, and reads the
// output with Prometheus's own file_sd: it must see exactly the targets and
// labels the discoverers produced, and none of a removed job's.
func TestPrometheusReadsOutput(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	m, err := manager.New(manager.Options{FlushInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	w := newWriter(t, dir)
	mDone, wDone := make(chan error, 1), make(chan error, 1)
	go func() { mDone <- m.Run(ctx) }()
	go func() { wDone <- w.Run(ctx, m.SyncCh()) }()
	defer func() {
		cancel()
		if err := <-mDone; err != nil {
			t.Errorf("manager Run: %v", err)
		}
		if err := <-wDone; err != nil {
			t.Errorf("writer Run: %v", err)
		}
	}()
	prom := runPrometheusFileSD(t, ctx, dir)

	web := static.FromGroups([]*targetgroup.Group{
		{Targets: []model.LabelSet{{"__address__": "web-1:80"}, {"__address__": "web-2:80", "zone": "b"}}, Labels: model.LabelSet{"zone": "a", "env": "prod"}},
		{Targets: []model.LabelSet{{"__address__": "web-3:80", "__meta_x": "quote\" and \\ and\nnewline"}}},
	})
	api := static.FromGroups([]*targetgroup.Group{{Targets: []model.LabelSet{{"__address__": "api:8080"}}}})
	if err := m.ApplyConfig(map[string]discovery.Configs{"web": {web}, "api": {api}, "none": nil}); err != nil {
		t.Fatal(err)
	}
	prom.waitFor(t, map[string][]string{
		"api.json": {`{__address__="api:8080"}`},
		"web.json": {
			`{__address__="web-1:80", env="prod", zone="a"}`,
			`{__address__="web-2:80", env="prod", zone="b"}`,
			`{__address__="web-3:80", __meta_x="quote\" and \\ and\nnewline"}`,
		},
	})
	if err := m.ApplyConfig(map[string]discovery.Configs{"web": {web}}); err != nil {
		t.Fatal(err)
	}
	prom.waitFor(t, map[string][]string{
		"web.json": {
			`{__address__="web-1:80", env="prod", zone="a"}`,
			`{__address__="web-2:80", env="prod", zone="b"}`,
			`{__address__="web-3:80", __meta_x="quote\" and \\ and\nnewline"}`,
		},
	})
	// The same Apply removes none.json, maybe just after Prometheus saw api.json go.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	timeout := time.After(10 * time.Second)
	for names := listDir(t, dir); strings.Join(names, " ") != ManifestName+" web.json"; names = listDir(t, dir) {
		select {
		case <-tick.C:
		case <-timeout:
			t.Fatalf("dir = %v, want the manifest and web.json", names)
		}
	}
}
