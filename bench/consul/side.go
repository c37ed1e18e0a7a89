package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	promdiscovery "github.com/prometheus/prometheus/discovery"
	promconsul "github.com/prometheus/prometheus/discovery/consul"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/sdhub/sdhub/discovery"
	"github.com/sdhub/sdhub/discovery/consul"
	"github.com/sdhub/sdhub/manager"
	"github.com/sdhub/sdhub/output"
)

// A side is one discovery pipeline under test, run in a child process so
// that its RSS, CPU time and connections are its own. Each side is measured
// where a user would take its targets from: sdhub's at the file its writer
// writes into dir (the parent watches it), Prometheus's at its discovery
// manager's output. It writes lines to stdout (sdhub's side only the last):
//
//	targets <n> <unix-nanos>   application targets found (not the agent's own service)
//	critical <n> <unix-nanos>  targets whose health is critical
//	final <targets> <critical> <rpc-failures> <peak-rss-kib> <cpu-seconds>
//
// and stops when its stdin closes.
func runSide(side, server, dir string) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { // the parent closes stdin to stop us
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	out := bufio.NewWriter(os.Stdout)
	var mu sync.Mutex
	emit := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(out, format+"\n", args...)
		_ = out.Flush()
	}
	switch side {
	case "sdhub":
		return runHub(ctx, server, dir, emit)
	case "prometheus":
		reg := prometheus.NewRegistry()
		sdm, err := promdiscovery.CreateAndRegisterSDMetrics(reg)
		if err != nil {
			return err
		}
		logger := slog.New(slog.DiscardHandler)
		mgr := promdiscovery.NewManager(ctx, logger, reg, sdm, promdiscovery.Name("bench"))
		go func() { _ = mgr.Run() }()
		c := promconsul.DefaultSDConfig
		c.Server = server
		if err := mgr.ApplyConfig(map[string]promdiscovery.Configs{"bench": {&c}}); err != nil {
			return err
		}
		failures := func() float64 { return gathered(reg, "prometheus_sd_consul_rpc_failures_total") }
		var counts counter
		for {
			select {
			case <-ctx.Done():
				return final(emit, counts, failures())
			case tsets, ok := <-mgr.SyncCh():
				if !ok {
					return final(emit, counts, failures())
				}
				counts.report(emit, tsets["bench"], time.Now())
			}
		}
	}
	return fmt.Errorf("unknown side %q (one of: sdhub, prometheus)", side)
}

// runHub runs sdhub as a user does: its manager, with one job "bench" whose
// only config is a consul SD config, and its writer, at the default flush
// interval, writing into dir. The parent watches the job's file there, so
// that reading and counting it costs this process nothing: its RSS and CPU
// time are sdhub's own.
func runHub(ctx context.Context, server, dir string, emit func(string, ...any)) error {
	// The consul mechanism's metrics are handed to the manager as
	// cmd/sdhub does, so that the discoverer counts its RPC failures here.
	reg := prometheus.NewRegistry()
	refresh, err := discovery.NewRefreshMetrics(reg)
	if err != nil {
		return err
	}
	cm, err := consul.Mechanism.NewMetrics(reg, refresh)
	if err != nil {
		return err
	}
	mgr, err := manager.New(manager.Options{
		Registerer:     reg,
		FlushInterval:  manager.DefaultFlushInterval,
		Metrics:        map[string]discovery.Metrics{consul.Mechanism.Name: cm},
		RefreshMetrics: refresh,
	})
	if err != nil {
		return err
	}
	w, err := output.New(dir, output.Options{Registerer: reg})
	if err != nil {
		return err
	}
	c := consul.DefaultSDConfig
	c.Server = server
	if err := mgr.ApplyConfig(map[string]discovery.Configs{"bench": {&c}}); err != nil {
		return err
	}
	var wg sync.WaitGroup
	wg.Go(func() { _ = mgr.Run(ctx) })
	wg.Go(func() { _ = w.Run(ctx, mgr.SyncCh()) })
	<-ctx.Done()
	wg.Wait()
	return final(emit, counter{}, gathered(reg, "prometheus_sd_consul_rpc_failures_total"))
}

// watchFile reports the counts of the job's file in dir to c each time the
// writer renames a new version into place, stamped with the time of the
// fsnotify event: when the version became visible to a reader. It returns
// when stop is closed.
func watchFile(dir string, c *child, ready chan<- error, stop <-chan struct{}) {
	watcher, err := fsnotify.NewWatcher()
	if err != nil {
		ready <- err
		return
	}
	defer watcher.Close()
	if err := watcher.Add(dir); err != nil {
		ready <- err
		return
	}
	ready <- nil
	file := output.Path(dir, "bench")
	for {
		select {
		case <-stop:
			return
		case err := <-watcher.Errors:
			fmt.Fprintf(os.Stderr, "consul-bench: watching %s: %v\n", dir, err)
			return
		case ev := <-watcher.Events:
			if ev.Name != file || !ev.Has(fsnotify.Create) && !ev.Has(fsnotify.Write) {
				continue
			}
			at := time.Now()
			targets, critical, err := countFile(file)
			if err != nil {
				fmt.Fprintf(os.Stderr, "consul-bench: %v\n", err)
				continue
			}
			c.counted(targets, critical, at)
		}
	}
}

// fileEntry is one group of a file_sd file, with only the labels counted.
type fileEntry struct {
	Targets []string `json:"targets"`
	Labels  struct {
		Service string `json:"__meta_consul_service"`
		Health  string `json:"__meta_consul_health"`
	} `json:"labels"`
}

// countFile counts the targets of a file_sd file and those whose health is
// critical, leaving out the agent's own service.
func countFile(path string) (targets, critical int, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, err
	}
	var entries []fileEntry
	if err := json.Unmarshal(b, &entries); err != nil {
		return 0, 0, fmt.Errorf("reading %s: %w", path, err)
	}
	for _, e := range entries {
		if e.Labels.Service == "consul" {
			continue
		}
		targets += len(e.Targets)
		if e.Labels.Health == "critical" {
			critical += len(e.Targets)
		}
	}
	return targets, critical, nil
}

type counter struct{ targets, critical int }

// report counts the groups received at time at and emits the counts that changed.
func (c *counter) report(emit func(string, ...any), groups []*targetgroup.Group, at time.Time) {
	var targets, critical int
	for _, g := range groups {
		if g == nil || g.Labels["__meta_consul_service"] == "consul" {
			continue
		}
		targets += len(g.Targets)
		for _, t := range g.Targets {
			if t[model.LabelName("__meta_consul_health")] == "critical" {
				critical++
			}
		}
	}
	c.set(emit, targets, critical, at)
}

// set emits the counts that changed, stamped at.
func (c *counter) set(emit func(string, ...any), targets, critical int, at time.Time) {
	if targets != c.targets {
		c.targets = targets
		emit("targets %d %d", targets, at.UnixNano())
	}
	if critical != c.critical {
		c.critical = critical
		emit("critical %d %d", critical, at.UnixNano())
	}
}

func final(emit func(string, ...any), c counter, failures float64) error {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	emit("final %d %d %.0f %d %.2f", c.targets, c.critical, failures, peakRSS(), cpu)
	return nil
}

// peakRSS is VmHWM from /proc/self/status, in KiB.
func peakRSS() int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			return n
		}
	}
	return 0
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
