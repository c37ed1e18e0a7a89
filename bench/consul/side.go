package main

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/config"
	"github.com/prometheus/procfs"
	promdiscovery "github.com/prometheus/prometheus/discovery"
	promconsul "github.com/prometheus/prometheus/discovery/consul"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/sdhub/sdhub/discovery"
	"github.com/sdhub/sdhub/discovery/consul"
	"github.com/sdhub/sdhub/manager"
	"github.com/sdhub/sdhub/output"
)

// A side is one discovery pipeline under test, run in a child process so
// that its RSS, CPU time and connections are its own. It is measured at two
// points: at its discoverer's channel ("d"), and at its discovery
// manager's output ("o"), which the rest of the program reads: sdhub's
// output stage, Prometheus's scrape manager. It reads lines from stdin:
//
//	expect <id> <predicate...>  a change was made; report when it holds
//
// and writes lines to stdout:
//
//	complete <unix-nanos>            the output first had every target
//	seen <id> <d|o> <unix-nanos>     a change's predicate first held
//	stat <requests> <cpu-seconds> <unix-nanos>   every second
//	final <targets> <rpc-failures> <peak-rss-kib> <cpu-seconds>
//
// and stops when its stdin closes.
type sideArgs struct {
	side, proto, server, caFile string
	want                        int    // targets at start, without the agent's own
	profile                     string // a directory for a CPU profile of the side; "" for none
	parts                       int    // sdhub's output layout: the job's parts (--output.parts)
}

func runSide(a sideArgs) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if a.profile != "" {
		f, err := os.Create(filepath.Join(a.profile, a.side+"-"+a.proto+".cpu.pprof"))
		if err != nil {
			return err
		}
		defer func() { _ = f.Close() }()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	out := bufio.NewWriter(os.Stdout)
	var mu sync.Mutex
	emit := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(out, format+"\n", args...)
		_ = out.Flush()
	}
	disc, outp := newPoint("d", emit), newPoint("o", emit)
	outp.onComplete = func(at time.Time) { emit("complete %d", at.UnixNano()) }
	outp.want = a.want
	go func() { // the parent sends expectations, then closes stdin to stop us
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) >= 3 && f[0] == "expect" {
				p := pred{id: f[1], words: f[2:]}
				disc.expect(p)
				outp.expect(p)
			}
		}
		cancel()
	}()
	reg := prometheus.NewRegistry()
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				emit("stat %.0f %.2f %d", requests(reg), cpuSeconds(), now.UnixNano())
			}
		}
	}()
	side, list, hasList := strings.Cut(a.side, ":list=")
	var tuning discovery.Tuning
	if hasList {
		d, err := time.ParseDuration(list)
		if err != nil || side != "sdhub" {
			return fmt.Errorf("side %q: want sdhub:list=<duration>", a.side)
		}
		tuning.ConsulServiceListInterval = d
	}
	switch side {
	case "sdhub", "sdhub-plain":
		c := consul.DefaultSDConfig
		c.Server = a.server
		if a.side == "sdhub-plain" {
			c.MaxConnections = consul.DefaultMaxConnections
		}
		if a.proto == "https" {
			c.Scheme, c.HTTPClientConfig.TLSConfig = "https", config.TLSConfig{CAFile: a.caFile}
		}
		dir, err := os.MkdirTemp("", "consul-bench-")
		if err != nil {
			return err
		}
		defer func() { _ = os.RemoveAll(dir) }()
		// sdhub run's output: the job in parts, the whole file at most
		// every 5 s (--output.parts, --output.whole-file-interval).
		stage, err := output.New(dir, output.Options{Registerer: reg, WholeFileInterval: 5 * time.Second})
		if err != nil {
			return err
		}
		if a.parts > 1 {
			if err := stage.SetLayout(map[string]int{"bench": a.parts}); err != nil {
				return err
			}
		}
		logs := newTally()
		defer logs.print(os.Stderr, "consul-bench: sdhub over "+a.proto+" logged")
		updates, wait, err := startHub(ctx, &tapped{SDConfig: &c, tap: disc.groups}, reg, slog.New(logs), tuning)
		if err != nil {
			return err
		}
		var last uint64
		for u := range updates {
			// What Stage.Run does with each update: render the job and
			// write its files. The change is in its part once Apply
			// returns.
			if err := stage.Apply(u); err != nil {
				return err
			}
			jt := u["bench"]
			if jt == nil || !jt.Complete || jt.Gen == last {
				continue
			}
			last = jt.Gen
			tgs := make([]*targetgroup.Group, len(jt.Groups))
			for i, g := range jt.Groups {
				tgs[i] = g.Group
			}
			outp.all(tgs)
		}
		wait()
	case "prometheus":
		sdm, err := promdiscovery.CreateAndRegisterSDMetrics(reg)
		if err != nil {
			return err
		}
		logs := newTally()
		defer logs.print(os.Stderr, "consul-bench: prometheus over "+a.proto+" logged")
		mgr := promdiscovery.NewManager(ctx, slog.New(logs), reg, sdm, promdiscovery.Name("bench"))
		go func() { _ = mgr.Run() }()
		c := promconsul.DefaultSDConfig
		c.Server = a.server
		if a.proto == "https" {
			c.Scheme, c.HTTPClientConfig.TLSConfig = "https", config.TLSConfig{CAFile: a.caFile}
		}
		if err := mgr.ApplyConfig(map[string]promdiscovery.Configs{"bench": {&tappedProm{SDConfig: &c, tap: disc.groups}}}); err != nil {
			return err
		}
	loop:
		for {
			select {
			case <-ctx.Done():
				break loop
			case tsets, ok := <-mgr.SyncCh():
				if !ok {
					break loop
				}
				outp.all(tsets["bench"])
			}
		}
	default:
		return fmt.Errorf("unknown side %q (one of: sdhub, sdhub:list=<duration>, sdhub-plain, prometheus)", a.side)
	}
	emit("final %d %.0f %d %.2f", outp.targets(), gathered(reg, "prometheus_sd_consul_rpc_failures_total"), peakRSS(), cpuSeconds())
	fmt.Fprintf(os.Stderr, "consul-bench: %s over %s sent %s\n", a.side, a.proto, requestMix(reg))
	return nil
}

// requestMix lists the side's requests by the endpoint and call labels
// of prometheus_sd_consul_rpc_duration_seconds.
func requestMix(g prometheus.Gatherer) string {
	mfs, _ := g.Gather()
	var parts []string
	for _, mf := range mfs {
		if mf.GetName() != "prometheus_sd_consul_rpc_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var l []string
			for _, lp := range m.GetLabel() {
				l = append(l, lp.GetValue())
			}
			parts = append(parts, fmt.Sprintf("%s %d", strings.Join(l, "/"), m.GetSummary().GetSampleCount()))
		}
	}
	return strings.Join(parts, ", ")
}

// startHub runs sdhub's pipeline for one job "bench" whose one config is
// cfg, as cmd/sdhub runs it: the discovery manager, at its default flush
// interval. Its updates are what the output stage reads (runSide applies
// them to one). The channel closes once ctx ends; wait then waits for the
// manager to stop.
func startHub(ctx context.Context, cfg discovery.Config, reg *prometheus.Registry, logger *slog.Logger, tuning discovery.Tuning) (updates <-chan manager.Update, wait func(), err error) {
	refresh, err := discovery.NewRefreshMetrics(reg)
	if err != nil {
		return nil, nil, err
	}
	cm, err := consul.Mechanism.NewMetrics(reg, refresh)
	if err != nil {
		return nil, nil, err
	}
	mgr, err := manager.New(manager.Options{Logger: logger, Registerer: reg, Metrics: map[string]discovery.Metrics{consul.Mechanism.Name: cm}, RefreshMetrics: refresh, Tuning: tuning})
	if err != nil {
		return nil, nil, err
	}
	if err := mgr.ApplyConfig(map[string]discovery.Configs{"bench": {cfg}}); err != nil {
		return nil, nil, err
	}
	var wg sync.WaitGroup
	wg.Go(func() { _ = mgr.Run(ctx) })
	return mgr.SyncCh(), wg.Wait, nil
}

// tapped is sdhub's consul config with its discoverer's messages copied to
// tap on their way to the manager.
type tapped struct {
	*consul.SDConfig
	tap func([]*targetgroup.Group, time.Time)
}

func (c *tapped) NewDiscoverer(o discovery.Options) (discovery.Discoverer, error) {
	d, err := c.SDConfig.NewDiscoverer(o)
	return tapRun{run: d.Run, tap: c.tap}, err
}

// tappedProm is the same for Prometheus's consul config.
type tappedProm struct {
	*promconsul.SDConfig
	tap func([]*targetgroup.Group, time.Time)
}

func (c *tappedProm) NewDiscoverer(o promdiscovery.DiscovererOptions) (promdiscovery.Discoverer, error) {
	d, err := c.SDConfig.NewDiscoverer(o)
	if err != nil {
		return nil, err
	}
	return tapRun{run: d.Run, tap: c.tap}, nil
}

type tapRun struct {
	run func(context.Context, chan<- []*targetgroup.Group)
	tap func([]*targetgroup.Group, time.Time)
}

func (t tapRun) Run(ctx context.Context, up chan<- []*targetgroup.Group) {
	in := make(chan []*targetgroup.Group)
	go t.run(ctx, in)
	for {
		select {
		case <-ctx.Done():
			return
		case tgs := <-in:
			at := time.Now()
			select {
			case up <- tgs:
			case <-ctx.Done():
				return
			}
			t.tap(tgs, at)
		}
	}
}

// requests is how many requests the side sent to Consul: the count of
// prometheus_sd_consul_rpc_duration_seconds, which both observe for every
// request (Prometheus for its two kinds, sdhub for all of its own).
func requests(g prometheus.Gatherer) float64 {
	mfs, err := g.Gather()
	if err != nil {
		fmt.Fprintln(os.Stderr, "consul-bench: gathering:", err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() == "prometheus_sd_consul_rpc_duration_seconds" {
			for _, m := range mf.GetMetric() {
				n += float64(m.GetSummary().GetSampleCount())
			}
		}
	}
	return n
}

func gathered(g prometheus.Gatherer, name string) float64 {
	mfs, err := g.Gather()
	if err != nil {
		return 0
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			var sum float64
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
			return sum
		}
	}
	return 0
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// peakRSS is VmHWM from /proc/self/status, in KiB.
func peakRSS() int {
	p, err := procfs.Self()
	if err != nil {
		return 0
	}
	st, err := p.NewStatus()
	if err != nil {
		return 0
	}
	return int(st.VmHWM >> 10)
}
