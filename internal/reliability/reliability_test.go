package reliability

import (
	"context"
	"flag"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sdhub/sdhub/internal/consulagent"
	"github.com/sdhub/sdhub/internal/testenv"
)

// Sizes of the scenarios under `go test` (CI runs them with -race): small
// enough to check the machinery in about a minute. cmd/reliability runs
// them at full size (200 kills, 1,000 reloads, the writer at 100k targets)
// and prints the table: `make reliability`.
var (
	kills   = flag.Int("reliability.kills", 20, "SIGKILLs in TestCrash")
	targets = flag.Int("reliability.targets", 50000, "targets of the job in TestCrash")
	reloads = flag.Int("reliability.reloads", 200, "reloads in TestReloadStorm")
	sizes   = flag.String("reliability.writer-sizes", "1000,10000", "comma-separated job sizes of TestWriterCost")
	rssJob  = flag.Int("reliability.rss-targets", 0, "targets of the job whose RSS TestWriterCost measures (0: none)")
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) {
		if binDir != "" {
			_ = os.RemoveAll(binDir)
		}
	}))
}

var sdhubBin, binDir string

// binary builds sdhub once per test binary.
func binary(t *testing.T) string {
	t.Helper()
	if sdhubBin != "" {
		return sdhubBin
	}
	dir, err := os.MkdirTemp("", "sdhub-reliability-bin-")
	if err != nil {
		t.Fatal(err)
	}
	binDir = dir
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin, err := Build(ctx, "", dir)
	if err != nil {
		t.Fatal(err)
	}
	sdhubBin = bin
	return bin
}

// report logs the result's row and fails the test on any failure.
func report(t *testing.T, r Result) {
	t.Helper()
	var b strings.Builder
	PrintTable(&b, []Result{r})
	t.Log("\n" + b.String())
	testenv.Require(t, r.Scenario, r.Skipped == "", r.Skipped)
	if !r.OK() {
		t.Fatalf("%s: %d failures of %d runs", r.Scenario, r.Failures, r.Runs)
	}
}

func TestCrash(t *testing.T) {
	n := *kills
	if testing.Short() {
		n = 5
	}
	report(t, Crash(t.Context(), CrashOptions{Bin: binary(t), Dir: t.TempDir(), Kills: n, Targets: *targets, MaxDelay: time.Second}))
}

func TestDiskFull(t *testing.T) {
	report(t, DiskFull(t.Context(), DiskOptions{Bin: binary(t), Dir: t.TempDir()}))
}

func TestHostile(t *testing.T) {
	prom := os.Getenv("SDHUB_PROMETHEUS_BIN")
	if prom == "" {
		prom, _ = exec.LookPath("prometheus")
	}
	testenv.Require(t, "prometheus", prom != "", "not on PATH and SDHUB_PROMETHEUS_BIN unset (scripts/deps/prometheus.sh installs it)")
	report(t, Hostile(t.Context(), HostileOptions{Bin: binary(t), Dir: t.TempDir(), Prometheus: prom}))
}

func TestSecrets(t *testing.T) {
	report(t, Secrets(t.Context(), SecretsOptions{Bin: binary(t), Dir: t.TempDir()}))
}

func TestReloadStorm(t *testing.T) {
	n := *reloads
	if testing.Short() {
		n = 30
	}
	report(t, ReloadStorm(t.Context(), ReloadOptions{Bin: binary(t), Dir: t.TempDir(), Reloads: n}))
}

func TestWriterCost(t *testing.T) {
	var ns []int
	for _, f := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			t.Fatalf("-reliability.writer-sizes: %v", err)
		}
		ns = append(ns, n)
	}
	report(t, WriterCost(t.Context(), WriterOptions{Bin: binary(t), Dir: t.TempDir(), Sizes: ns, Reps: 5, RSSTargets: *rssJob}))
}

func TestConsulOutage(t *testing.T) {
	bin, ok, why := consulagent.Binary()
	testenv.Require(t, "consul", ok, why)
	report(t, ConsulOutage(t.Context(), ConsulOptions{Bin: binary(t), Dir: t.TempDir(), ConsulBin: bin, Services: 20}))
}

func TestSwarmOutage(t *testing.T) {
	ok, why := SwarmAvailable(t.Context())
	testenv.Require(t, "docker swarm", ok, why)
	network, address, err := EngineAddress()
	if err != nil {
		t.Fatal(err)
	}
	report(t, SwarmOutage(t.Context(), SwarmOptions{Bin: binary(t), Dir: t.TempDir(), Network: network, Address: address}))
}
