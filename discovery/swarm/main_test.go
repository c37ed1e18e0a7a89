package swarm

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/sdhub/sdhub/discovery"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// Prometheus's discoverer, run by the conformance test, never closes
		// its Docker client, so its idle keep-alive connections outlive it.
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
	)
}

func discoveryOptions() discovery.Options {
	return discovery.Options{SetName: "test"}
}

func testutilCount(c prometheus.Collector) float64 { return testutil.ToFloat64(c) }
