package main

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/sdhub/sdhub/internal/consulagent"
	"github.com/sdhub/sdhub/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestSmoke runs every part at a small size against sdhub built from this
// module and a real Prometheus: the sdhub sides' active targets must be
// native's, and every table must be printed. It asserts no figure.
func TestSmoke(t *testing.T) {
	prom := os.Getenv("SDHUB_PROMETHEUS_BIN")
	if prom == "" {
		prom, _ = exec.LookPath("prometheus")
	}
	testenv.Require(t, "prometheus", prom != "", "not on PATH and SDHUB_PROMETHEUS_BIN unset (scripts/deps/prometheus.sh installs it)")
	kept := fmt.Sprint(newPopulation(2000, 100, 0.05).keptCount())
	var out strings.Builder
	err := run(benchConfig{
		targets: 2000, files: 4, services: 100, keep: 0.05, changes: 5, shards: 4,
		prometheus: prom, dir: t.TempDir(),
	}, &out)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"## bench/hubfilter, ",
		"\n- commit: ",
		"\n| native | 2000 | ",
		"\n| sdhub, filtered | " + kept + " | ",
		"\n| sdhub, unfiltered | 2000 | ",
		"- active targets, native and sdhub, filtered: identical (" + kept + " label sets)\n",
		"- active targets, native and sdhub, unfiltered: identical (" + kept + " label sets)\n",
		"sdhub's http_sd serves " + kept + " targets with the digest, 2000 without",
		"\n| 3 | ",
		"\n| on | " + kept + " of 2000 targets | ",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in the output", want)
		}
	}
}

func TestFirstDifference(t *testing.T) {
	for _, c := range []struct {
		a, b []string
		want string
	}{
		{[]string{"x", "y"}, []string{"x", "y"}, ""},
		{nil, nil, ""},
		{[]string{"x", "y"}, []string{"x"}, "A has y, B does not"},
		{[]string{"x"}, []string{"w", "x"}, "B has w, A does not"},
		{[]string{"a", "c"}, []string{"a", "b", "c"}, "B has b, A does not"},
	} {
		if got := firstDifference(c.a, c.b, "A", "B"); got != c.want {
			t.Errorf("firstDifference(%q, %q) = %q, want %q", c.a, c.b, got, c.want)
		}
	}
}

// TestSmokeConsul runs the consul source at a small size: a real Consul
// agent, Prometheus 3 on every side.
func TestSmokeConsul(t *testing.T) {
	_, ok, why := consulagent.Binary()
	testenv.Require(t, "consul", ok, why)
	prom, err := prometheus3()
	if err != nil {
		// Not a dependency of CI (a build of minutes, for this benchmark
		// alone): skipped there even with SDHUB_REQUIRE_INTEGRATION=1.
		t.Skipf("needs Prometheus 3 (scripts/deps/prometheus3.sh): %v", err)
	}
	kept := fmt.Sprint(consulCatalog{services: 50, instances: 2, keep: 0.05}.keptServices() * 2)
	var out strings.Builder
	err = run(benchConfig{source: "consul", services: 50, instances: 2, keep: 0.05, shards: 4, prometheus: prom, dir: t.TempDir()}, &out)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"\n- versions: Go ",
		"\nMethod: the source is a real Consul agent (consul " + consulagent.Version,
		"of 50 services × 2 instances on 50 nodes",
		"\n| native | 101 | ", // and the agent's own service
		"\n| sdhub, filtered | " + kept + " | ",
		"\n| sdhub, unfiltered | 101 | ",
		"\n- the Consul agent: RSS ",
		"droppedTargetCounts of the job says 95, 0 and 95",
		"- active targets, native and sdhub, filtered: identical (" + kept + " label sets)\n",
		"- active targets, native and sdhub, unfiltered: identical (" + kept + " label sets)\n",
		"sdhub's http_sd serves " + kept + " targets with the digest, 101 without",
		"\n| 3 | ",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in the output", want)
		}
	}
}

func TestConsulCatalogKept(t *testing.T) {
	for _, c := range []struct {
		services int
		keep     float64
		want     int
	}{{5000, 0.05, 250}, {50, 0.05, 3}, {1000, 0.5, 500}, {10000, 0.03, 300}, {7, 1, 7}} {
		cat := consulCatalog{services: c.services, instances: 1, keep: c.keep}
		if got := cat.keptServices(); got != c.want {
			t.Errorf("%d services, keep %v: %d kept, want %d", c.services, c.keep, got, c.want)
		}
	}
	cat := consulCatalog{services: 5000, instances: 10, keep: 0.05}
	for s := range cat.services {
		if cat.kept(s) != (s%20 == 0) {
			t.Fatalf("keep 0.05: service %d kept %v", s, cat.kept(s))
		}
	}
}
