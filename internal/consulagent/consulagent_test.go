package consulagent

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
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
