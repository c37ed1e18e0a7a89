package swarm

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/prometheus/common/config"
)

// TestHTTPClientSettings: for an https host the HTTP client settings apply
// (TLS, basic auth) and the User-Agent is sdhub's, as Prometheus applies its
// own settings to http and https hosts.
func TestHTTPClientSettings(t *testing.T) {
	f := &fakeEngine{}
	f.set("good", "10.0.0.1")
	var (
		mu     sync.Mutex
		agents = map[string]bool{}
	)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		agents[r.UserAgent()] = true
		mu.Unlock()
		if u, p, ok := r.BasicAuth(); !ok || u != "prom" || p != "s3cret" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"message":"unauthorized"}`))
			return
		}
		f.ServeHTTP(w, r)
	}))
	defer srv.Close()

	for _, tc := range []struct {
		name string
		auth *config.BasicAuth
		err  string
	}{
		{name: "with basic auth", auth: &config.BasicAuth{Username: "prom", Password: "s3cret"}},
		{name: "without", err: "error while negotiating the Docker API version: Error response from daemon: unauthorized"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultSDConfig
			c.Host, c.Role = srv.URL, "nodes"
			c.HTTPClientConfig.TLSConfig.InsecureSkipVerify = true
			c.HTTPClientConfig.BasicAuth = tc.auth
			d, err := NewDiscovery(&c, discoveryOptions())
			if err != nil {
				t.Fatal(err)
			}
			defer d.client.Close()
			tgs, err := d.refresh(context.Background())
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("error = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := flatten(t, tgs); len(got) != 1 {
				t.Fatalf("targets: %v", got)
			}
		})
	}
	mu.Lock()
	defer mu.Unlock()
	if len(agents) != 1 || !agents["sdhub"] {
		t.Errorf("User-Agent headers seen: %v, want only sdhub", agents)
	}
}
