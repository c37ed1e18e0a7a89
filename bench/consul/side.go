package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	promdiscovery "github.com/prometheus/prometheus/discovery"
	promconsul "github.com/prometheus/prometheus/discovery/consul"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/sdhub/sdhub/discovery"
	"github.com/sdhub/sdhub/discovery/consul"
)

// A side is one discoverer under test, run in a child process so that its
// RSS, CPU time and connections are its own. It writes lines to stdout:
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
	var (
		counts   counter
		failures func() float64
	)
	switch side {
	case "sdhub":
		c := consul.DefaultSDConfig
		c.Server = server
		reg := prometheus.NewRegistry()
		m, err := consul.NewMetrics(reg)
		if err != nil {
			return err
		}
		d, err := consul.NewDiscovery(&c, discovery.Options{Metrics: m})
		if err != nil {
			return err
		}
		failures = func() float64 { return gathered(reg, "prometheus_sd_consul_rpc_failures_total") }
		up := make(chan []*targetgroup.Group)
		go d.Run(ctx, up)
		groups := map[string]*targetgroup.Group{}
		for {
			select {
			case <-ctx.Done():
				return final(emit, counts, failures())
			case tgs := <-up:
				for _, g := range tgs {
					groups[g.Source] = g
				}
				counts.report(emit, groupsOf(groups))
			}
		}
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
		failures = func() float64 { return gathered(reg, "prometheus_sd_consul_rpc_failures_total") }
		for {
			select {
			case <-ctx.Done():
				return final(emit, counts, failures())
			case tsets, ok := <-mgr.SyncCh():
				if !ok {
					return final(emit, counts, failures())
				}
				counts.report(emit, tsets["bench"])
			}
		}
	}
	return fmt.Errorf("unknown side %q (one of: sdhub, prometheus)", side)
}

func groupsOf(m map[string]*targetgroup.Group) []*targetgroup.Group {
	out := make([]*targetgroup.Group, 0, len(m))
	for _, g := range m {
		out = append(out, g)
	}
	return out
}

type counter struct{ targets, critical int }

func (c *counter) report(emit func(string, ...any), groups []*targetgroup.Group) {
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
	now := time.Now().UnixNano()
	if targets != c.targets {
		c.targets = targets
		emit("targets %d %d", targets, now)
	}
	if critical != c.critical {
		c.critical = critical
		emit("critical %d %d", critical, now)
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
