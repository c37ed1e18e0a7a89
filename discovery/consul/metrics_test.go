package consul

import (
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	promconsul "github.com/prometheus/prometheus/discovery/consul"

	"github.com/sdhub/sdhub/discovery"
)

// TestMetricsMatchPrometheus: the consul metrics Prometheus has are
// registered under the same names, types and help, and the mechanism's
// NewMetrics registers once per registry.
func TestMetricsMatchPrometheus(t *testing.T) {
	mine := prometheus.NewRegistry()
	m, err := Mechanism.NewMetrics(mine, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Mechanism.NewMetrics(mine, nil); err == nil {
		t.Fatal("registering the consul metrics twice succeeded")
	}
	theirs := prometheus.NewRegistry()
	pm := (&promconsul.SDConfig{}).NewDiscovererMetrics(theirs, nil)
	if err := pm.Register(); err != nil {
		t.Fatal(err)
	}
	want := describe(t, theirs)
	got := describe(t, mine)
	for name, w := range want {
		if got[name] != w {
			t.Errorf("metric %s: sdhub %q, prometheus %q", name, got[name], w)
		}
	}
	if len(want) != 2 {
		t.Fatalf("prometheus has %d consul metrics, want 2: %v", len(want), want)
	}
	m.Unregister()
	if left := describe(t, mine); len(left) != 0 {
		t.Fatalf("after Unregister: %v", left)
	}
}

// TestWrongMetrics: a discoverer handed another mechanism's metrics fails.
func TestWrongMetrics(t *testing.T) {
	c := DefaultSDConfig
	if _, err := c.NewDiscoverer(discovery.Options{Metrics: otherMetrics{}}); err != errInvalidMetrics {
		t.Fatalf("error = %v, want %v", err, errInvalidMetrics)
	}
}

type otherMetrics struct{}

func (otherMetrics) Unregister() {}

// describe maps each gathered metric family to "type help [label names]".
func describe(t *testing.T, g prometheus.Gatherer) map[string]string {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "prometheus_sd_consul_") {
			continue
		}
		var labels []string
		if ms := mf.GetMetric(); len(ms) > 0 {
			for _, lp := range ms[0].GetLabel() {
				labels = append(labels, lp.GetName())
			}
		}
		sort.Strings(labels)
		out[mf.GetName()] = dto.MetricType_name[int32(mf.GetType())] + " " + mf.GetHelp() + " " + strings.Join(labels, ",")
	}
	return out
}
