package reliability

import (
	"context"
	"flag"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sdhub/sdhub/internal/testenv"
)

// Sizes of the scenarios under `go test`; cmd/reliability runs them at full
// size (200 kills, 1,000 reloads).
var (
	kills   = flag.Int("reliability.kills", 30, "SIGKILLs in TestCrash")
	targets = flag.Int("reliability.targets", 50000, "targets of the job in TestCrash")
	reloads = flag.Int("reliability.reloads", 1000, "reloads in TestReloadStorm")
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var sdhubBin string

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
	sizes, rss := []int{10_000, 50_000, 100_000}, 100_000
	if testing.Short() {
		sizes, rss = []int{1_000, 10_000}, 0
	}
	report(t, WriterCost(t.Context(), WriterOptions{Bin: binary(t), Dir: t.TempDir(), Sizes: sizes, Reps: 5, RSSTargets: rss}))
}
