package consulagent

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sdhub/sdhub/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestStartRestartKeepsCatalog(t *testing.T) {
	a := StartT(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := a.put(ctx, "/v1/agent/service/register", `{"Name":"web","Port":80}`); err != nil {
		t.Fatal(err)
	}
	if err := a.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	// The agent re-registers its own services from its data directory.
	deadline := time.Now().Add(30 * time.Second)
	for {
		body, err := a.get(ctx, "/v1/catalog/services")
		if err == nil && strings.Contains(body, `"web"`) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("service web missing after restart: %q, %v", body, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestFreePortsDistinct(t *testing.T) {
	for range 200 {
		ports, err := freePorts()
		if err != nil {
			t.Fatal(err)
		}
		seen := map[int]bool{}
		for _, p := range ports {
			if p == 0 || seen[p] {
				t.Fatalf("ports %v: zero or repeated", ports)
			}
			seen[p] = true
		}
	}
}

// A port taken between the search and the agent's bind makes the agent
// exit; Start then tries new ports.
func TestStartRetriesTakenPort(t *testing.T) {
	bin, ok, why := Binary()
	testenv.Require(t, "consul", ok, why)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = taken.Close() }()
	calls := 0
	pickPorts = func() ([4]int, error) {
		calls++
		ports, err := freePorts()
		if calls == 1 {
			ports[0] = taken.Addr().(*net.TCPAddr).Port
		}
		return ports, err
	}
	defer func() { pickPorts = freePorts }()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, err := Start(ctx, bin, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if calls != 2 {
		t.Fatalf("pickPorts called %d times, want 2", calls)
	}
	if a.HTTPPort() == taken.Addr().(*net.TCPAddr).Port {
		t.Fatal("agent kept the taken port")
	}
}
