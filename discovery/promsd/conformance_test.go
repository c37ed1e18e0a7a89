package promsd

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	promdiscovery "github.com/prometheus/prometheus/discovery"
	_ "github.com/prometheus/prometheus/discovery/moby"     // docker_sd_configs
	_ "github.com/prometheus/prometheus/discovery/ovhcloud" // ovhcloud_sd_configs
	_ "github.com/prometheus/prometheus/discovery/puppetdb" // puppetdb_sd_configs
	_ "github.com/prometheus/prometheus/discovery/scaleway" // scaleway_sd_configs

	"github.com/sdhub/sdhub/discovery"
)

// promDir is the directory of the Prometheus module in the module cache,
// whose discovery packages ship mock API fixtures.
func promDir(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/prometheus/prometheus").Output()
	if err != nil {
		t.Fatalf("go list the prometheus module: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// fixture is a mechanism's mock API built from the fixtures in
// Prometheus's module, and a config block pointing at it.
type fixture struct {
	name    string            // mechanism
	what    string            // the subtest's name, when not the mechanism's
	block   string            // the config block; %[1]s is the mock's URL
	routes  map[string]string // URL path -> fixture file, under the module's discovery/
	headers map[string]string // on every answer
	byQuery string            // puppetdb: the fixture is <byQuery>/<the JSON body's query>.json
	empty   bool              // answer other paths with an empty 200, as Prometheus's mock does
}

func (f fixture) serve(t *testing.T, dir string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, v := range f.headers {
			w.Header().Set(k, v)
		}
		file, ok := f.routes[r.URL.Path]
		if f.byQuery != "" {
			var req struct {
				Query string `json:"query"`
			}
			if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			file, ok = filepath.Join(f.byQuery, req.Query+".json"), true
		}
		if !ok && f.empty {
			w.Header().Set("Content-Type", "application/json")
			return
		}
		if !ok {
			http.NotFound(w, r)
			return
		}
		data, err := os.ReadFile(filepath.Join(dir, "discovery", file))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(data)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestConformance runs mechanisms that need a cloud or a cluster against
// mock APIs serving the fixtures Prometheus's own tests use, through the
// adapter and through Prometheus's discoverer: both find the same targets,
// label for label.
func TestConformance(t *testing.T) {
	dir := promDir(t)
	for _, f := range []fixture{
		{
			name:    "puppetdb",
			block:   "url: %[1]s\nquery: vhosts\nport: 80\n",
			byQuery: "puppetdb/fixtures",
		},
		{
			name: "scaleway",
			block: "role: instance\nproject_id: 8feda53f-15f0-447f-badf-ebe32dad2fc0\naccess_key: SCW0W8NG6024YHRJ7723\n" +
				"secret_key: 6d6579e5-a5b9-49fc-a35f-b4feb9b87301\napi_url: %[1]s\n",
			routes: map[string]string{"/instance/v1/zones/fr-par-1/servers": "scaleway/testdata/instance.json"},
		},
		{
			name:  "ovhcloud",
			what:  "ovhcloud vps",
			block: "service: vps\nendpoint: %[1]s\napplication_key: TDPKJdwZwAQPwKX2\napplication_secret: 9ufkBmLaTQ9nz5yMUlg79taH0GNnzDjk\nconsumer_key: 5mBuy6SUQcRw2ZUxg0cG68BoDKpED4KY\n",
			empty: true,
			routes: map[string]string{
				"/vps":         "ovhcloud/testdata/vps/vps.json",
				"/vps/abc":     "ovhcloud/testdata/vps/vps_details.json",
				"/vps/abc/ips": "ovhcloud/testdata/vps/vps_abc_ips.json",
			},
		},
		{
			name:  "ovhcloud",
			what:  "ovhcloud dedicated_server",
			block: "service: dedicated_server\nendpoint: %[1]s\napplication_key: TDPKJdwZwAQPwKX2\napplication_secret: 9ufkBmLaTQ9nz5yMUlg79taH0GNnzDjk\nconsumer_key: 5mBuy6SUQcRw2ZUxg0cG68BoDKpED4KY\n",
			empty: true,
			routes: map[string]string{
				"/dedicated/server":           "ovhcloud/testdata/dedicated_server/dedicated_servers.json",
				"/dedicated/server/abcde":     "ovhcloud/testdata/dedicated_server/dedicated_servers_details.json",
				"/dedicated/server/abcde/ips": "ovhcloud/testdata/dedicated_server/dedicated_servers_abcde_ips.json",
			},
		},
		{
			name:    "docker",
			block:   "host: %[1]s\n",
			headers: map[string]string{"Api-Version": "1.40", "Ostype": "linux"},
			routes: map[string]string{
				"/_ping":                 "moby/testdata/dockerprom/_ping.json",
				"/v1.40/containers/json": "moby/testdata/dockerprom/containers/json.json",
				"/v1.40/networks":        "moby/testdata/dockerprom/networks.json",
			},
		},
		{
			name:   "http",
			block:  "url: %[1]s/sd\n",
			routes: map[string]string{"/sd": "http/fixtures/http_sd.good.json"},
		},
	} {
		what := f.what
		if what == "" {
			what = f.name
		}
		t.Run(what, func(t *testing.T) {
			srv := f.serve(t, dir)
			block := fmt.Sprintf(f.block, srv.URL)
			ours, theirs := decode(t, f.name, block), decode(t, f.name, block)

			reg := prometheus.NewRegistry()
			refresh, err := discovery.NewRefreshMetrics(reg)
			if err != nil {
				t.Fatal(err)
			}
			var mech discovery.Mechanism
			for _, m := range Mechanisms() {
				if m.Name == f.name {
					mech = m
				}
			}
			metrics, err := mech.NewMetrics(reg, refresh)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(metrics.Unregister)
			h := newHealth()
			d, err := ours.NewDiscoverer(discovery.Options{SetName: "job", Metrics: metrics, Health: h})
			if err != nil {
				t.Fatal(err)
			}
			pd, err := theirs.Config.NewDiscoverer(promdiscovery.DiscovererOptions{
				Metrics: theirs.Config.NewDiscovererMetrics(prometheus.NewRegistry(), promdiscovery.NewRefreshMetrics(prometheus.NewRegistry())),
				SetName: "job",
			})
			if err != nil {
				t.Fatal(err)
			}
			got := flatten(next(t, run(t, d), "the adapter's first update"))
			want := flatten(next(t, run(t, pd), "Prometheus's first update"))
			if len(got) == 0 || !slices.Equal(got, want) {
				t.Fatalf("targets:\n adapter:    %q\n Prometheus: %q", got, want)
			}
			if failed, _ := h.state(); len(failed) > 0 {
				t.Errorf("failures reported: %q", failed)
			}
			t.Logf("%d targets, e.g. %s", len(got), got[0])
		})
	}
}
