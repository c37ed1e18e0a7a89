package web

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"go.uber.org/goleak"

	"github.com/sdhub/sdhub/internal/outputtest"
	"github.com/sdhub/sdhub/output"
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

// Under a route prefix every endpoint is served below it, "/" and the
// prefix itself redirect, and the pages link relatively.
func TestRoutePrefix(t *testing.T) {
	for _, prefix := range []string{"/sdhub", "sdhub/", "/a/b/"} {
		t.Run(prefix, func(t *testing.T) {
			o := knownState(t)
			o.RoutePrefix = prefix
			h := NewHandler(o)
			p := RoutePrefix(prefix)
			for _, c := range []struct {
				path, location string
				code           int
				body           string
			}{
				{p + "/", "", 200, `<a href="./job/node">node</a>`},
				{p + "/job/node", "", 200, `<a href="../">Status</a><a href="../metrics">Metrics</a>`},
				{p + "/job/node", "", 200, `<a href="../api/v1/sd/node"><code>../api/v1/sd/node</code></a>`},
				{p + "/metrics", "", 200, ""},
				{p + "/-/healthy", "", 200, "sdhub is Healthy."},
				{p + "/-/ready", "", 200, "sdhub is Ready."},
				{p + "/api/v1/sd/node", "", 200, `"10.0.0.1:9100"`},
				{p + "/debug/pprof/", "", 200, "<html>"},
				{"/", p + "/", http.StatusFound, ""},
				{p, p + "/", http.StatusFound, ""},
				{"/metrics", "", 404, ""},
				{"/job/node", "", 404, ""},
				{p + "x/", "", 404, ""},
			} {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, c.path, nil))
				if rec.Code != c.code || rec.Header().Get("Location") != c.location || !strings.Contains(rec.Body.String(), c.body) {
					t.Errorf("GET %s = %d, Location %q, want %d, %q, a body with %q", c.path, rec.Code, rec.Header().Get("Location"), c.code, c.location, c.body)
				}
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, p+"/-/reload", nil))
			if rec.Code != http.StatusForbidden && rec.Code != http.StatusOK {
				t.Errorf("POST %s/-/reload = %d, want it served", p, rec.Code)
			}
		})
	}
	for _, c := range []struct{ in, want string }{{"", "/"}, {"/", "/"}, {"x", "/x"}, {"/x/y/", "/x/y"}} {
		if got := RoutePrefix(c.in); got != c.want {
			t.Errorf("RoutePrefix(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// With an external URL the pages give the full http_sd URL under it, and
// the prefix without its slash redirects to the external URL's path: a
// proxy serves /sd/ from sdhub's /.
func TestExternalURL(t *testing.T) {
	o := knownState(t)
	o.ExternalURL = &url.URL{Scheme: "https", Host: "sdhub.example:9099", Path: "/sd"}
	o.RoutePrefix = "/internal"
	h := NewHandler(o)
	_, _, body := do(t, h, http.MethodGet, "/internal/job/api%20%3Cbeta%3E")
	if want := `<a href="https://sdhub.example:9099/sd/api/v1/sd/api%20%3Cbeta%3E"><code>https://sdhub.example:9099/sd/api/v1/sd/api%20%3Cbeta%3E</code></a>`; !strings.Contains(body, want) {
		t.Errorf("the job page lacks %s", want)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/internal", nil))
	if rec.Code != http.StatusFound || rec.Header().Get("Location") != "/sd/" {
		t.Errorf("GET /internal = %d, Location %q; want 302 to /sd/", rec.Code, rec.Header().Get("Location"))
	}
}

// A job name with a slash, as Prometheus Operator makes them, is one path
// segment, escaped, with and without a route prefix.
func TestJobNameWithSlash(t *testing.T) {
	const job = "serviceMonitor/monitoring/node-exporter/0"
	for _, prefix := range []string{"/", "/sdhub"} {
		h := NewHandler(Options{Gatherer: prometheus.NewRegistry(), RoutePrefix: prefix, Outputs: &fakeOutputs{applied: true,
			jobs: map[string]*output.Snapshot{job: outputtest.NewSnapshot(job, []*targetgroup.Group{group("a", nil, "10.0.0.1:9100")})}}})
		p := strings.TrimSuffix(RoutePrefix(prefix), "/")
		_, _, status := do(t, h, http.MethodGet, p+"/")
		if want := `<a href="./job/serviceMonitor%2Fmonitoring%2Fnode-exporter%2F0">` + job + `</a>`; !strings.Contains(status, want) {
			t.Errorf("prefix %s: the status page lacks %s", prefix, want)
		}
		for _, path := range []string{"/job/serviceMonitor%2Fmonitoring%2Fnode-exporter%2F0", "/api/v1/sd/serviceMonitor%2Fmonitoring%2Fnode-exporter%2F0"} {
			if code, _, body := do(t, h, http.MethodGet, p+path); code != 200 || !strings.Contains(body, "10.0.0.1:9100") {
				t.Errorf("prefix %s: GET %s = %d %s", prefix, path, code, body)
			}
		}
	}
}
