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
// writes, Prometheus's at its discovery manager's output. It writes lines to
// stdout:
//
//	targets <n> <unix-nanos>   application targets found (not the agent's own service)
//	critical <n> <unix-nanos>  targets whose health is critical
//	final <targets> <critical> <rpc-failures> <peak-rss-kib> <cpu-seconds>
//
// and stops when its stdin closes.
func runSide(side, server string) error {
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
		return runHub(ctx, server, emit)
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
// interval, writing into a temporary directory. The side is measured at the
// job's file: on each fsnotify event for it the file is read and counted, and
// the counts are stamped with the time of the event.
func runHub(ctx context.Context, server string, emit func(string, ...any)) error {
	dir, err := os.MkdirTemp("", "sdhub-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	watcher, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer watcher.Close()
	if err := watcher.Add(dir); err != nil {
		return err
	}

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
	failures := func() float64 { return gathered(reg, "prometheus_sd_consul_rpc_failures_total") }

	// The deferred cancel runs first, so the writer is done with dir before
	// it is removed.
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Go(func() { _ = mgr.Run(ctx) })
	wg.Go(func() { _ = w.Run(ctx, mgr.SyncCh()) })

	file := output.Path(dir, "bench")
	var counts counter
	for {
		select {
		case <-ctx.Done():
			return final(emit, counts, failures())
		case err := <-watcher.Errors:
			return fmt.Errorf("watching %s: %w", dir, err)
		case ev := <-watcher.Events:
			// The writer renames a finished temp file into place: a create.
			if ev.Name != file || !ev.Has(fsnotify.Create) && !ev.Has(fsnotify.Write) {
				continue
			}
			at := time.Now()
			targets, critical, err := countFile(file)
			if err != nil {
				return err
			}
			counts.set(emit, targets, critical, at)
		}
	}
}

// fileEntry is one group of a file_sd file.
type fileEntry struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
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
		if e.Labels["__meta_consul_service"] == "consul" {
			continue
		}
		targets += len(e.Targets)
		if e.Labels["__meta_consul_health"] == "critical" {
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
