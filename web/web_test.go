package web

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// do sends one request to h and returns the status, content type and body.
func do(t *testing.T, h http.Handler, method, target string) (int, string, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	body, err := io.ReadAll(rec.Result().Body)
	if err != nil {
		t.Fatal(err)
	}
	return rec.Code, rec.Header().Get("Content-Type"), string(body)
}

func TestLifecycle(t *testing.T) {
	reloads := 0
	failing := func() error {
		reloads++
		return errors.New(`sdhub.yml:3: unknown field "scrape_confgs" in the top level`)
	}
	for _, c := range []struct {
		name      string
		enabled   bool
		reload    func() error
		method    string
		code      int
		body      string
		reloadsTo int
	}{
		{"disabled", false, failing, http.MethodPost, http.StatusForbidden, "Lifecycle API is not enabled.\n", 0},
		{"get", true, failing, http.MethodGet, http.StatusMethodNotAllowed, "This endpoint requires a POST or PUT request.\n", 0},
		{"failing", true, failing, http.MethodPost, http.StatusInternalServerError,
			"failed to reload config: sdhub.yml:3: unknown field \"scrape_confgs\" in the top level\n", 1},
		{"ok", true, func() error { reloads++; return nil }, http.MethodPut, http.StatusOK, "", 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			reloads = 0
			h := NewHandler(Options{Gatherer: prometheus.NewRegistry(), Reload: c.reload, EnableLifecycle: c.enabled})
			code, _, body := do(t, h, c.method, "/-/reload")
			if code != c.code || body != c.body || reloads != c.reloadsTo {
				t.Errorf("%s /-/reload = %d %q with %d reloads, want %d %q with %d", c.method, code, body, reloads, c.code, c.body, c.reloadsTo)
			}
		})
	}
}

func TestProbes(t *testing.T) {
	outputs := &fakeOutputs{}
	h := NewHandler(Options{Gatherer: prometheus.NewRegistry(), Outputs: outputs})
	for _, c := range []struct {
		path  string
		ready bool
		code  int
		body  string
	}{
		{"/-/healthy", false, 200, "sdhub is Healthy.\n"},
		{"/-/ready", false, 503, "sdhub is not ready"},
		{"/-/ready", true, 200, "sdhub is Ready.\n"},
		{"/debug/pprof/", false, 200, "<html>"},
		{"/debug/pprof/heap?debug=1", false, 200, "heap profile:"},
	} {
		outputs.applied = c.ready
		code, _, body := do(t, h, http.MethodGet, c.path)
		if code != c.code || !strings.HasPrefix(body, c.body) {
			t.Errorf("GET %s (ready=%v) = %d %q, want %d %q", c.path, c.ready, code, body, c.code, c.body)
		}
	}
	if code, _, _ := do(t, h, http.MethodGet, "/nothing"); code != http.StatusNotFound {
		t.Errorf("GET /nothing = %d, want 404", code)
	}
}
