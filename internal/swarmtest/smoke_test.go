package swarmtest

import (
	"testing"
	"time"
)

func TestEngineSmoke(t *testing.T) {
	e := New(t)
	e.CreateNetwork(t, "net")
	e.CreateService(t, "svc", []string{"--replicas", "2", "--network", e.Name("net")})
	start := time.Now()
	e.WaitRunning(t, "svc", 2, time.Minute)
	t.Logf("running after %v", time.Since(start))
}
