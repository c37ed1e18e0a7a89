package swarm

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestConformanceFixtures compares sdhub's discoverer with Prometheus's on
// the engine responses Prometheus's own tests use (read at test time from
// the prometheus module): a five-node swarm with workers, tasks on other
// nodes and many services, and a swarm with a plugin service (no
// ContainerSpec). They cover what a one-node test swarm cannot.
func TestConformanceFixtures(t *testing.T) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/prometheus/prometheus").Output()
	if err != nil {
		t.Fatalf("locating the prometheus module: %v", err)
	}
	base := filepath.Join(strings.TrimSpace(string(out)), "discovery", "moby", "testdata")
	for _, tc := range []struct {
		set   string
		roles []string
	}{
		{set: "swarmprom", roles: []string{"services", "tasks", "nodes"}},
		{set: "swarmprom-plugin", roles: []string{"services"}},
	} {
		for _, role := range tc.roles {
			t.Run(tc.set+"/"+role, func(t *testing.T) {
				srv := httptest.NewServer(fixtureHandler(t, filepath.Join(base, tc.set)))
				defer srv.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				d := newTestDiscovery(t, srv.URL, role, nil)
				ours := flatten(t, mustRefresh(t, ctx, d))
				theirs := flatten(t, prometheusRefresh(t, ctx, srv.URL, role, nil))
				if len(ours) == 0 {
					t.Fatal("no targets: the fixture exercises nothing")
				}
				if !slices.Equal(ours, theirs) {
					t.Fatalf("sdhub and Prometheus differ:\n%s", diff(ours, theirs))
				}
				t.Logf("%d identical targets", len(ours))
			})
		}
	}
}

// fixtureHandler serves <dir>/<endpoint>.json for GET /v<version>/<endpoint>
// and answers /_ping; query strings (filters) are ignored.
func fixtureHandler(t *testing.T, dir string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/_ping" {
			w.Header().Set("API-Version", "1.40")
			fmt.Fprint(w, "OK")
			return
		}
		name := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
		b, err := os.ReadFile(filepath.Join(dir, name+".json"))
		if err != nil {
			t.Errorf("fixture for %s: %v", r.URL.Path, err)
			http.Error(w, `{"message":"no fixture"}`, http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	})
}
