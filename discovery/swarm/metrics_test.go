package swarm

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sdhub/sdhub/discovery"
)

// TestRefreshMetrics: a failed refresh counts
// prometheus_sd_refresh_failures_total{mechanism="dockerswarm",config=<job>}
// on the registry the mechanism's metrics were made with.
func TestRefreshMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	rm, err := discovery.NewRefreshMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Mechanism.NewMetrics(reg, rm)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Mechanism.NewMetrics(reg, rm); err == nil {
		t.Fatal("registering the metrics twice succeeded")
	}

	f := &fakeEngine{}
	f.set("error", "")
	d := newFakeDiscoveryOpts(t, f, time.Second, discovery.Options{SetName: "job1", Metrics: m})
	if _, err := d.instrumentedRefresh(context.Background()); err == nil {
		t.Fatal("refresh against an erroring engine succeeded")
	}
	want := `
# HELP prometheus_sd_refresh_failures_total Number of refresh failures for the given SD mechanism.
# TYPE prometheus_sd_refresh_failures_total counter
prometheus_sd_refresh_failures_total{config="job1",mechanism="dockerswarm"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "prometheus_sd_refresh_failures_total"); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(reg, "prometheus_sd_refresh_duration_seconds"); err != nil || n != 1 {
		t.Fatalf("refresh duration series: %d, %v", n, err)
	}

	m.Unregister()
	if _, err := Mechanism.NewMetrics(reg, rm); err != nil {
		t.Fatalf("registering again after Unregister: %v", err)
	}
}

func TestWrongMetricsType(t *testing.T) {
	c := DefaultSDConfig
	c.Host, c.Role = "unix:///var/run/docker.sock", "nodes"
	_, err := NewDiscovery(&c, discovery.Options{Metrics: otherMetrics{}})
	want := "dockerswarm_sd_configs: metrics of type swarm.otherMetrics, want *swarm.Metrics"
	if err == nil || err.Error() != want {
		t.Fatalf("error = %v, want %q", err, want)
	}
}

type otherMetrics struct{}

func (otherMetrics) Unregister() {}
