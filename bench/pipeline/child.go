package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	promconfig "github.com/prometheus/prometheus/config"
	promdiscovery "github.com/prometheus/prometheus/discovery"
	promfile "github.com/prometheus/prometheus/discovery/file"
)

// childEnv set to an input file makes this program Prometheus's side: its
// discovery manager, as Prometheus runs it for the scrape manager, with one
// job "big" whose one file_sd_configs reads the file. For every update its
// channel delivers, it writes a line to stdout: the job's target count,
// the time of the delivery (Unix nanoseconds) and the markers (input.go)
// it had not delivered before. It stops when stdin closes. Unless GOGC is
// set, it runs at Prometheus's GOGC (config.DefaultGoGCPercentage, 75),
// which Prometheus sets at startup.
const childEnv = "SDHUB_BENCH_PIPELINE_INPUT"

func runChild(input string) error {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(promconfig.DefaultGoGCPercentage)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { // the parent closes stdin to stop us
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	reg := prometheus.NewRegistry()
	sdm, err := promdiscovery.CreateAndRegisterSDMetrics(reg)
	if err != nil {
		return err
	}
	mgr := promdiscovery.NewManager(ctx, slog.New(slog.DiscardHandler), reg, sdm, promdiscovery.Name("scrape"))
	if mgr == nil {
		return fmt.Errorf("cannot create Prometheus's discovery manager")
	}
	go func() { _ = mgr.Run() }()
	cfg := promfile.DefaultSDConfig
	cfg.Files = []string{input}
	if err := mgr.ApplyConfig(map[string]promdiscovery.Configs{"big": {&cfg}}); err != nil {
		return err
	}
	out := bufio.NewWriter(os.Stdout)
	seen := map[int]bool{}
	for {
		select {
		case <-ctx.Done():
			return nil
		case tsets, ok := <-mgr.SyncCh():
			if !ok {
				return nil
			}
			at := now()
			targets := 0
			var line strings.Builder
			for _, g := range tsets["big"] {
				targets += len(g.Targets)
				v, ok := strings.CutPrefix(string(g.Labels[model.LabelName("bench_change")]), "chg-")
				if !ok {
					continue
				}
				if k, err := strconv.Atoi(v); err == nil && !seen[k] {
					seen[k] = true
					line.WriteString(" " + v)
				}
			}
			fmt.Fprintf(out, "%d %d%s\n", targets, at, line.String())
			if err := out.Flush(); err != nil {
				return err
			}
		}
	}
}
