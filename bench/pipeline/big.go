package main

import (
	"fmt"
	"io"
	"runtime"
	"strings"
	"time"
)

// bigResult is one side's figures on the big workload.
type bigResult struct {
	name       string
	inputBytes int
	complete   time.Duration
	one, all   []time.Duration // change latencies: one group, every target
	peak       int64
	cpu        float64 // CPU seconds, start to end
	cpuChanges float64 // CPU seconds from the complete set to the end
	err        error
}

// runBig runs one side through the big workload in dir.
func runBig(cfg config, name, dir string, start func(input string) (*side, error)) (r bigResult) {
	r.name = name
	in, s, err := setUp(dir, "big.json", cfg.targets, start)
	if in != nil {
		r.inputBytes = len(in.b)
	}
	if err != nil {
		r.err = err
		return r
	}
	defer keepFirst(&r.err, s.stop)
	full, err := s.obs.waitFull(cfg.timeout)
	if err != nil {
		r.err = err
		return r
	}
	r.complete = time.Duration(full - s.started)
	u0, err := s.usage()
	if err != nil {
		r.err = err
		return r
	}

	k := 0
	change := func(apply func(k int)) (time.Duration, error) {
		<-time.After(cfg.gap)
		k++
		apply(k)
		at, err := in.write()
		if err != nil {
			return 0, err
		}
		seen, err := s.obs.waitMarker(k, cfg.timeout)
		return time.Duration(seen - at), err
	}
	step := stride(cfg.targets)
	for range cfg.changes {
		lat, err := change(func(k int) { in.setLabels(k*step%cfg.targets, k) })
		if err != nil {
			r.err = err
			return r
		}
		r.one = append(r.one, lat)
	}
	for range cfg.changes {
		lat, err := change(in.setAll)
		if err != nil {
			r.err = err
			return r
		}
		r.all = append(r.all, lat)
	}
	u1, err := s.usage()
	if err != nil {
		r.err = err
		return r
	}
	r.peak, r.cpu, r.cpuChanges = u1.peak, u1.cpu, u1.cpu-u0.cpu
	s.obs.mu.Lock()
	targets := s.obs.targets
	s.obs.mu.Unlock()
	if targets != cfg.targets {
		r.err = fmt.Errorf("%d targets at the end, want %d", targets, cfg.targets)
	}
	return r
}

func printBig(w io.Writer, cfg config, rs []bigResult) {
	size := 0
	for _, r := range rs {
		size = max(size, r.inputBytes)
	}
	fmt.Fprintf(w, "\n### One file_sd job of %d targets (%.1f MB input): input change to output\n\n", cfg.targets, float64(size)/1e6)
	fmt.Fprintf(w, "%d changes of each kind, each after %v of quiet; sdhub measured at its output file, Prometheus at its discovery manager's channel.\n\n", cfg.changes, cfg.gap)
	fmt.Fprintln(w, "| side | time to complete | one group changed: p50 / max | every target changed: p50 / max | peak RSS | CPU, start to end | CPU of the changes |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	var prom *bigResult
	for i, r := range rs {
		if r.err != nil {
			fmt.Fprintf(w, "| %s | failed: %v | | | | | |\n", r.name, oneLine(r.err))
			continue
		}
		if r.name == "prometheus" {
			prom = &rs[i]
		}
		fmt.Fprintf(w, "| %s | %s | %s / %s | %s / %s | %s | %.1f s | %.1f s |\n", label(r.name), ms(r.complete),
			ms(percentile(r.one, 0.5)), ms(percentile(r.one, 1)), ms(percentile(r.all, 0.5)), ms(percentile(r.all, 1)),
			mib(r.peak), r.cpu, r.cpuChanges)
	}
	if prom == nil {
		return
	}
	fmt.Fprintln(w)
	for _, r := range rs {
		if r.err != nil || r.name == "prometheus" {
			continue
		}
		fmt.Fprintf(w, "- %s / Prometheus: peak RSS %.2fx (goal at most 0.6x); one group changed p50 %.2fx, every target changed p50 %.2fx (goal at most 1x); CPU %.2fx\n",
			r.name, float64(r.peak)/float64(prom.peak),
			ratio(percentile(r.one, 0.5), percentile(prom.one, 0.5)), ratio(percentile(r.all, 0.5), percentile(prom.all, 0.5)),
			r.cpu/prom.cpu)
	}
}

func ratio(a, b time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// label names a side in a table.
func label(name string) string {
	if name == "prometheus" {
		return "Prometheus's discovery manager"
	}
	return name
}

// oneLine is the first line of err's text.
func oneLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

func numCPU() int { return runtime.NumCPU() }
