// Command pipeline compares sdhub on a large file_sd job with Prometheus's
// own discovery manager reading the same input, in one run, and prints the
// figures as markdown tables.
//
// sdhub runs as the real binary, as a user runs it: on a generated
// prometheus.yml whose one job "big" has a file_sd_configs reading the
// input, measured at its output file (this process watches it with
// fsnotify). Prometheus's side is its discovery manager with its file SD,
// in a child process (this program again), measured when its manager's
// channel delivers the change. RSS and CPU time of both come from /proc.
// The sides run one after the other, each through the same inputs, so
// that on a small machine neither takes CPU time from the other.
//
// Workloads:
//
//   - big: one file_sd job of -targets targets, one label set per target,
//     12 labels each. Time to the complete set, then -changes changes of one
//     group's labels and -changes changes of every target (all ports), each
//     made by an atomic rename of a new input after -gap of quiet: the time
//     from the rename to sdhub's output file changing, or to Prometheus's
//     manager delivering it; peak RSS and CPU seconds of each.
//
//   - soak (sdhub only): -soak-changes changes at -soak-rate per second to
//     a job of -soak-targets targets, each to another group (its labels or
//     its target, in turn): that every change reached the output, its
//     latency, sdhub's RSS after the first 100 changes and after the soak,
//     and its goroutines before and after.
//
//     go run ./bench/pipeline                          # full size, about 15 minutes
//     go run ./bench/pipeline -sdhub main=/tmp/sdhub-main,wip=/tmp/sdhub
//     go run ./bench/pipeline -targets 2000 -changes 2 -gap 100ms -soak-targets 1000 -soak-changes 100 -soak-rate 50
//
// Without -sdhub it builds ./cmd/sdhub of the module it runs in.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/sdhub/sdhub/internal/benchproc"
	"github.com/sdhub/sdhub/internal/benchreport"
	"github.com/sdhub/sdhub/internal/reliability"
)

func main() {
	if input := os.Getenv(childEnv); input != "" {
		if err := runChild(input); err != nil {
			fmt.Fprintln(os.Stderr, "pipeline (prometheus side):", err)
			os.Exit(1)
		}
		return
	}
	var cfg config
	flag.StringVar(&cfg.sdhub, "sdhub", "", "sdhub binaries to run, comma separated, each name=path (default: build ./cmd/sdhub as \"sdhub\")")
	flag.StringVar(&cfg.workloads, "workloads", "big,soak", "workloads to run, comma separated (big, soak)")
	flag.BoolVar(&cfg.noProm, "no-prometheus", false, "leave out Prometheus's side of the big workload")
	flag.IntVar(&cfg.targets, "targets", 100_000, "big: targets of the job")
	flag.IntVar(&cfg.changes, "changes", 5, "big: changes of each kind (one group, every target)")
	flag.DurationVar(&cfg.gap, "gap", 6*time.Second, "big: quiet time before each change (Prometheus's manager throttles updates within 5 s of the last one)")
	flag.IntVar(&cfg.soakTargets, "soak-targets", 50_000, "soak: targets of the job")
	flag.IntVar(&cfg.soakChanges, "soak-changes", 10_000, "soak: changes, each to another group (at most -soak-targets)")
	flag.Float64Var(&cfg.soakRate, "soak-rate", 20, "soak: changes per second")
	flag.DurationVar(&cfg.timeout, "timeout", 5*time.Minute, "how long to wait for a side to show the complete set or a change")
	flag.StringVar(&cfg.keep, "keep", "", "also run each sdhub with its job's relabel_configs keeping the targets whose __meta_consul_metadata_rack (r0 to r6) matches this regex, so that it filters them at the hub (side <name>-filtered)")
	flag.StringVar(&cfg.dir, "dir", "", "work directory (default: a new temporary directory, removed at the end)")
	flag.Parse()
	if err := run(cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "pipeline:", err)
		os.Exit(1)
	}
}

type config struct {
	sdhub, workloads string
	noProm           bool
	targets, changes int
	gap              time.Duration
	soakTargets      int
	soakChanges      int
	soakRate         float64
	timeout          time.Duration
	keep             string
	dir              string
}

// binary is an sdhub binary under test, and the regex of its job's keep
// rule ("" for none).
type binary struct{ name, path, keep string }

func run(cfg config, w io.Writer) error {
	if cfg.soakChanges > cfg.soakTargets {
		return fmt.Errorf("-soak-changes %d is more than -soak-targets %d: each change goes to another group", cfg.soakChanges, cfg.soakTargets)
	}
	if cfg.targets < 1 || cfg.soakTargets < 1 || cfg.soakRate <= 0 {
		return fmt.Errorf("-targets, -soak-targets and -soak-rate must be positive")
	}
	dir := cfg.dir
	if dir == "" {
		d, err := os.MkdirTemp("", "sdhub-pipeline-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	bins, err := binaries(cfg.sdhub, dir)
	if err != nil {
		return err
	}
	if cfg.keep != "" { // each binary also with its job filtered at the hub, in the same run
		var both []binary
		for _, b := range bins {
			both = append(both, b, binary{name: b.name + "-filtered", path: b.path, keep: cfg.keep})
		}
		bins = both
	}
	workloads := strings.Split(cfg.workloads, ",")
	if err := benchreport.New("bench/pipeline", benchreport.Module("github.com/prometheus/prometheus")).Write(w); err != nil {
		return err
	}
	if slices.Contains(workloads, "big") {
		var results []bigResult
		for _, b := range bins {
			results = append(results, runBig(cfg, b.name, filepath.Join(dir, "big-"+b.name), func(in string) (*side, error) {
				return startSdhub(b.name, b.path, filepath.Join(dir, "big-"+b.name), in, cfg.targets, b.keep)
			}))
		}
		if !cfg.noProm {
			results = append(results, runBig(cfg, "prometheus", filepath.Join(dir, "big-prometheus"), func(in string) (*side, error) {
				return startPrometheus(in, cfg.targets)
			}))
		}
		printBig(w, cfg, results)
		for _, r := range results {
			if r.err != nil {
				err = fmt.Errorf("big, %s: %w", r.name, r.err)
			}
		}
	}
	if slices.Contains(workloads, "soak") {
		var results []soakResult
		for _, b := range bins {
			sub := filepath.Join(dir, "soak-"+b.name)
			results = append(results, runSoak(cfg, b.name, sub, func(in string) (*side, error) {
				return startSdhub(b.name, b.path, sub, in, cfg.soakTargets, b.keep)
			}))
		}
		printSoak(w, cfg, results)
		for _, r := range results {
			if r.err != nil {
				err = fmt.Errorf("soak, %s: %w", r.name, r.err)
			}
		}
	}
	return err
}

// binaries parses -sdhub, or builds ./cmd/sdhub into dir.
func binaries(list, dir string) ([]binary, error) {
	if list == "" {
		bin, err := reliability.Build(context.Background(), "", dir)
		if err != nil {
			return nil, err
		}
		return []binary{{name: "sdhub", path: bin}}, nil
	}
	var bins []binary
	for _, item := range strings.Split(list, ",") {
		name, path, ok := strings.Cut(item, "=")
		if !ok || name == "" || path == "" || name == "prometheus" {
			return nil, fmt.Errorf("invalid -sdhub item %q (want name=path, name not \"prometheus\")", item)
		}
		bins = append(bins, binary{name: name, path: path})
	}
	return bins, nil
}

// stride is a step through n indexes that visits each once: coprime with n.
func stride(n int) int {
	s := n/2 + 1
	for gcd(s, n) != 1 {
		s++
	}
	return s
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// percentile and ms are the benchmarks' own, by shorter names for the
// tables.
var (
	percentile = benchproc.Percentile
	ms         = benchproc.Ms
)

func mib(b int64) string { return fmt.Sprintf("%d MiB", b>>20) }
