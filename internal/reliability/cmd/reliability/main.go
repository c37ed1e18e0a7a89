// Command reliability runs sdhub's reliability and security scenarios at
// full size against a freshly built sdhub and prints one table of figures.
// It exits 1 when a scenario has a failure, or was skipped (no consul, no
// Docker swarm, no Prometheus, no root for the tmpfs) while
// SDHUB_REQUIRE_INTEGRATION=1. `make reliability`
// runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/sdhub/sdhub/internal/consulagent"
	"github.com/sdhub/sdhub/internal/reliability"
	"github.com/sdhub/sdhub/internal/testenv"
)

func main() {
	os.Exit(run())
}

func run() int {
	var (
		kills    = flag.Int("kills", 200, "SIGKILLs of the crash scenario")
		targets  = flag.Int("targets", 50000, "targets of the crash scenario's job")
		reloads  = flag.Int("reloads", 1000, "reloads of the reload storm")
		only     = flag.String("only", "", "comma-separated scenarios to run (crash, diskfull, hostile, secrets, reload, consul, swarm, writer); empty runs all")
		maxDelay = flag.Duration("kill.max-delay", time.Second, "longest random wait between sdhub listening and its kill")
	)
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	want := func(name string) bool {
		if *only == "" {
			return true
		}
		for _, s := range strings.Split(*only, ",") {
			if strings.TrimSpace(s) == name {
				return true
			}
		}
		return false
	}
	tmp, err := os.MkdirTemp("", "sdhub-reliability-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	fmt.Fprintln(os.Stderr, "building sdhub")
	bin, err := reliability.Build(ctx, "", tmp)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	dir := func(name string) string {
		d, err := os.MkdirTemp(tmp, name+"-")
		if err != nil {
			panic(err)
		}
		return d
	}

	var results []reliability.Result
	add := func(r reliability.Result) {
		fmt.Fprintf(os.Stderr, "%s: %d runs, %d failures, %s\n", r.Scenario, r.Runs, r.Failures, r.Duration.Round(time.Millisecond))
		results = append(results, r)
	}
	if want("crash") {
		add(reliability.Crash(ctx, reliability.CrashOptions{Bin: bin, Dir: dir("crash"), Kills: *kills, Targets: *targets, MaxDelay: *maxDelay}))
	}
	if want("diskfull") {
		add(reliability.DiskFull(ctx, reliability.DiskOptions{Bin: bin, Dir: dir("diskfull")}))
	}
	if want("hostile") {
		prom := os.Getenv("SDHUB_PROMETHEUS_BIN")
		if prom == "" {
			prom, _ = exec.LookPath("prometheus")
		}
		if prom == "" && testenv.Required() {
			add(reliability.Result{Scenario: "hostile values", Skipped: "no prometheus binary (SDHUB_PROMETHEUS_BIN, or prometheus on PATH)"})
		} else {
			add(reliability.Hostile(ctx, reliability.HostileOptions{Bin: bin, Dir: dir("hostile"), Prometheus: prom}))
		}
	}
	if want("secrets") {
		add(reliability.Secrets(ctx, reliability.SecretsOptions{Bin: bin, Dir: dir("secrets")}))
	}
	if want("reload") {
		add(reliability.ReloadStorm(ctx, reliability.ReloadOptions{Bin: bin, Dir: dir("reload"), Reloads: *reloads}))
	}
	if want("consul") {
		cbin, ok, why := consulagent.Binary()
		if ok {
			add(reliability.ConsulOutage(ctx, reliability.ConsulOptions{Bin: bin, Dir: dir("consul"), ConsulBin: cbin, Services: 20}))
		} else {
			add(reliability.Result{Scenario: "consul outage", Skipped: why})
		}
	}
	if want("swarm") {
		network, address, err := reliability.EngineAddress()
		ok, why := reliability.SwarmAvailable(ctx)
		if err != nil {
			ok, why = false, err.Error()
		}
		if ok {
			add(reliability.SwarmOutage(ctx, reliability.SwarmOptions{Bin: bin, Dir: dir("swarm"), Network: network, Address: address}))
		} else {
			add(reliability.Result{Scenario: "docker engine outage", Skipped: why})
		}
	}
	if want("writer") {
		add(reliability.WriterCost(ctx, reliability.WriterOptions{Bin: bin, Dir: dir("writer"), Sizes: []int{10_000, 50_000, 100_000}, Reps: 5, RSSTargets: 100_000}))
	}
	reliability.PrintTable(os.Stdout, results)
	for _, r := range results {
		if !r.OK() || r.Skipped != "" && testenv.Required() {
			return 1
		}
	}
	return 0
}
