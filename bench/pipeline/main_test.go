package main

import (
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if input := os.Getenv(childEnv); input != "" { // Prometheus's side, this test binary re-executed
		if err := runChild(input); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// TestSmoke runs both workloads at a small size against sdhub built from
// this module and Prometheus's side: every change must reach both, and the
// tables must be printed. It asserts no timing.
func TestSmoke(t *testing.T) {
	var out strings.Builder
	err := run(config{
		workloads: "big,soak", targets: 2000, changes: 2, gap: 50 * time.Millisecond,
		soakTargets: 1000, soakChanges: 60, soakRate: 50, timeout: time.Minute, dir: t.TempDir(),
	}, &out)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"## bench/pipeline, ",
		"\n- commit: ",
		"\n- versions: Go go",
		"### One file_sd job of 2000 targets",
		"\n| sdhub | ",
		"\n| Prometheus's discovery manager | ",
		"- sdhub / Prometheus: peak RSS ",
		"### Soak: 60 changes at 50 per second to a job of 1000 targets",
		" | 60 of 60 | ",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in the output", want)
		}
	}
}
