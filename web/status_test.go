package web

import (
	"errors"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/model/relabel"
	"gopkg.in/yaml.v3"

	"github.com/sdhub/sdhub/config"
	"github.com/sdhub/sdhub/discovery"
	"github.com/sdhub/sdhub/discovery/consul"
	"github.com/sdhub/sdhub/discovery/static"
	"github.com/sdhub/sdhub/internal/outputtest"
	"github.com/sdhub/sdhub/manager"
	"github.com/sdhub/sdhub/output"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// The secrets of the test config: none may appear on a page.
var secrets = []string{"consul-acl-token-s3cr3t", "basic-auth-pa55word", "oauth2-client-s3cr3t", "proxy-pa55"}

const consulYAML = `
- server: consul.example:8500
  token: consul-acl-token-s3cr3t
  services: [web]
  basic_auth: {username: prom, password: basic-auth-pa55word}
  proxy_url: http://proxyuser:proxy-pa55@proxy.example:3128
- server: consul2.example:8500
  oauth2:
    client_id: sdhub
    client_secret: oauth2-client-s3cr3t
    token_url: https://auth.example/token
`

// knownState is a fixed state of a hub: three jobs, one waiting, one with
// a write error, providers shared and not, failing, recovered and
// healthy; the last reload failed; the consuming Prometheus's job node
// drops one of its two targets.
func knownState(t *testing.T) Options {
	t.Helper()
	var consuls []*consul.SDConfig
	if err := yaml.Unmarshal([]byte(consulYAML), &consuls); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)
	cfg := &config.Config{
		Filename: "/etc/sdhub/sdhub.yml",
		ScrapeConfigs: []*config.ScrapeConfig{
			{JobName: "node", ServiceDiscoveryConfigs: discovery.Configs{static.FromGroups([]*targetgroup.Group{
				group("", map[model.LabelName]model.LabelValue{"env": "prod"}, "10.0.0.1:9100", "10.0.0.2:9100"),
			})}},
			{JobName: "web", ServiceDiscoveryConfigs: discovery.Configs{consuls[0], consuls[1]}},
			{JobName: "api <beta>", ServiceDiscoveryConfigs: discovery.Configs{consuls[0]}},
		},
		Warnings: []string{`job "kube": kubernetes_sd_configs left to Prometheus (sdhub does not implement it)`},
	}
	node := outputtest.NewSnapshot("node", []*targetgroup.Group{group("0", map[model.LabelName]model.LabelValue{"env": "prod"}, "10.0.0.1:9100", "10.0.0.2:9100")})
	node.Changed = now.Add(-90 * time.Second)
	node.File = output.FileState{Path: "/var/lib/sdhub/node.json", Gen: node.Gen, Targets: node.Targets, Written: now.Add(-80 * time.Second)}
	web := outputtest.NewSnapshot("web", []*targetgroup.Group{group("web", map[model.LabelName]model.LabelValue{"__meta_consul_service": "web"}, "10.0.1.1:80")})
	web.Changed = now.Add(-90 * time.Second)
	web.Waiting = true // consul/2 has yet to deliver: the job serves its last complete set
	web.File = output.FileState{Path: "/var/lib/sdhub/web.json", Gen: web.Gen - 1, Targets: 3, Written: now.Add(-2 * time.Hour),
		Err: errors.New("open /var/lib/sdhub/.web.json.tmp-1: no space left on device"), ErrTime: now.Add(-30 * time.Second)}
	api := &output.Snapshot{Job: "api <beta>", Waiting: true, FailedConfigs: 1, File: output.FileState{Path: "/var/lib/sdhub/api%20%3Cbeta%3E.json"}}
	outputs := &fakeOutputs{jobs: map[string]*output.Snapshot{"node": node, "web": web, "api <beta>": api}, applied: true}
	failing := manager.Health{LastError: "Get \"http://10.0.0.9:8500/v1/catalog/services\": dial tcp 10.0.0.9:8500: connect: connection refused",
		LastErrorTime: now.Add(-10 * time.Second), Failures: 12, Failing: true, Since: now.Add(-5 * time.Minute), LastSync: now.Add(-6 * time.Minute)}
	recovered := manager.Health{LastError: "Unexpected response code: 429", LastErrorTime: now.Add(-27 * time.Second), Failures: 1,
		Since: now.Add(-20 * time.Second), LastSync: now.Add(-time.Second)}
	healthy := manager.Health{Since: now.Add(-3 * time.Hour), LastSync: now.Add(-3 * time.Hour)}
	nodeRules := rules(t, `
- source_labels: [__address__]
  regex: "10\\.0\\.0\\.2:.*"
  action: drop`)
	return Options{
		Gatherer:        prometheus.NewRegistry(),
		EnableLifecycle: true,
		Outputs:         outputs,
		Now:             func() time.Time { return now },
		Config:          func() *config.Config { return cfg },
		LastReload: func() ReloadStatus {
			return ReloadStatus{Time: now.Add(-2 * time.Minute), Loaded: now.Add(-3 * time.Hour),
				Err: errors.New(`/etc/sdhub/sdhub.yml:12: field scrape_intervall not found in type config.ScrapeConfig`)}
		},
		Relabel: func(job string) []*relabel.Config {
			if job == "node" {
				return nodeRules
			}
			return nil
		},
		Version: &Version{Version: "0.4.0", Revision: "4f2c9e1", Branch: "main", BuildUser: "ci@builder", BuildDate: "20261120-10:00:00", GoVersion: "go1.26.8"},
		Started: now.Add(-3*time.Hour - 5*time.Minute),
		Jobs: func() map[string]manager.JobStatus {
			return map[string]manager.JobStatus{
				"node":       {Job: "node", Healthy: true, Delivered: true},
				"web":        {Job: "web"},
				"api <beta>": {Job: "api <beta>", FailedConfigs: 1, ConfigErrors: []string{`consul_sd_configs: open "/etc/sdhub/ca.pem": permission denied`}},
			}
		},
		Providers: func() []manager.ProviderStatus {
			return []manager.ProviderStatus{
				{Name: "static/0", Mechanism: "static", Jobs: []string{"node"}, Started: true, Delivered: true, Health: healthy},
				{Name: "consul/1", Mechanism: "consul", Jobs: []string{"api <beta>", "web"}, Started: true, Delivered: true, Health: recovered},
				{Name: "consul/2", Mechanism: "consul", Jobs: []string{"web"}, Started: true, Health: failing},
			}
		},
	}
}

// fakeOutputs is a fixed state of the output stage.
type fakeOutputs struct {
	jobs    map[string]*output.Snapshot
	applied bool
}

func (f *fakeOutputs) Snapshots() (map[string]*output.Snapshot, bool) { return f.jobs, f.applied }

// golden compares got with testdata/name, rewritten with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the rendered page (go test -update rewrites it); got:\n%s", path, got)
	}
}

func TestStatusPage(t *testing.T) {
	h := NewHandler(knownState(t))
	for _, c := range []struct {
		path, golden string
		code         int
		contains     []string
	}{
		{"/", "status.golden.html", http.StatusOK, []string{
			`<a href="./job/api%20%3Cbeta%3E">api &lt;beta&gt;</a>`,
			`<strong>3 problems:</strong>`,
			`job <a href="./job/web">web</a>: consul/2 failing; its file is not up to date: the last write failed`,
			`<span class="err">The last reload failed <span title="2026-11-22T07:58:00Z">2m0s ago</span></span>: /etc/sdhub/sdhub.yml:12: field scrape_intervall not found in type config.ScrapeConfig<br>The configuration loaded 3h0m ago keeps running.`,
			`<code>consul/2</code>:
<span class="err">failing for <span title="since 2026-11-22T07:55:00Z">5m0s</span></span>, 12 errors so far, the last 10s ago: <span class="err">Get &#34;http://10.0.0.9:8500/v1/catalog/services&#34;: dial tcp 10.0.0.9:8500: connect: connection refused</span>; last in sync 6m0s ago; no full set delivered yet`,
			`<span class="ok">healthy for <span title="since 2026-11-22T07:59:40Z">20s</span></span>, last in sync 1s ago<br><small>recovered; the last of 1 error, 27s ago: Unexpected response code: 429</small>`,
			`<span class="ok">healthy for <span title="since 2026-11-22T05:00:00Z">3h0m</span></span>`,
			`SD config failed to start: consul_sd_configs: open &#34;/etc/sdhub/ca.pem&#34;: permission denied`,
			`<span class="err">not up to date: the last write failed 30s ago</span>: open /var/lib/sdhub/.web.json.tmp-1: no space left on device<br>
on disk: 3 targets, written 2h0m ago<br>
pending: 1 target, changed 1m30s ago`,
			`<span class="ok">up to date</span>: 2 targets, <span title="2026-11-22T07:58:40Z">written 1m20s ago</span>`,
			`<td class="num">1 kept / 1 dropped</td>`,
			`1 target<br><small class="warn">its last complete set: a provider has yet to deliver</small>`,
			`sdhub 0.4.0 <small>(revision 4f2c9e1, branch main, built 20261120-10:00:00 by ci@builder, go1.26.8)</small>`,
			`<tr><th>Uptime</th><td>3h5m <small>(started 2026-11-22T04:55:00Z)</small></td></tr>`,
			"Readiness means serving",
			"token: &lt;secret&gt;", "password: &lt;secret&gt;", "client_secret: &lt;secret&gt;",
			"kubernetes_sd_configs left to Prometheus",
		}},
		{"/job/node", "job-node.golden.html", http.StatusOK, []string{
			"<code>10.0.0.1:9100</code>", `<code>env="prod"</code>`, `href="../api/v1/sd/node"`, `<a href="../">Status</a>`,
			`<small>scraped at <code>http://10.0.0.1:9100/metrics</code></small>`, `<span class="warn">dropped</span>`,
			`<code>instance="10.0.0.1:9100"</code><br><code>instance_label="x10.0.0.1:9100"</code><br><code>job="node"</code>`,
		}},
		{"/job/api%20%3Cbeta%3E", "job-waiting.golden.html", http.StatusOK, []string{"waiting for the first full set", "SD config failed to start"}},
		{"/job/nope", "job-unknown.golden.html", http.StatusNotFound, []string{"sdhub serves no job named “nope”"}},
	} {
		t.Run(c.golden, func(t *testing.T) {
			code, ct, body := do(t, h, http.MethodGet, c.path)
			if code != c.code || ct != "text/html; charset=utf-8" {
				t.Fatalf("GET %s = %d %q, want %d text/html", c.path, code, ct, c.code)
			}
			for _, s := range c.contains {
				if !strings.Contains(body, s) {
					t.Errorf("GET %s lacks %q", c.path, s)
				}
			}
			for _, s := range secrets {
				if strings.Contains(body, s) {
					t.Errorf("GET %s shows the secret %q", c.path, s)
				}
			}
			for _, s := range []string{"<script", "src=", "<link", "url(", "@import"} {
				if strings.Contains(body, s) {
					t.Errorf("GET %s has a script or an external asset: %q", c.path, s)
				}
			}
			golden(t, c.golden, body)
		})
	}
}

// TestRedactByKey checks the second layer: secret-looking keys are redacted
// even when their type is a plain string.
func TestRedactByKey(t *testing.T) {
	var n yaml.Node
	if err := n.Encode(map[string]any{
		"password": "p1", "auth_token": "p2", "credentials": "p3", "client_secret": "p4", "api_key": "p5",
		"password_file": "/etc/pass", "server": "consul:8500", "key_file": "/etc/key.pem",
		"headers": map[string]any{"secrets": []string{"p6"}}, "empty_token": "",
	}); err != nil {
		t.Fatal(err)
	}
	redactNode(&n, false)
	out, err := yaml.Marshal(&n)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"p1", "p2", "p3", "p4", "p5", "p6"} {
		if strings.Contains(string(out), s) {
			t.Errorf("%q not redacted:\n%s", s, out)
		}
	}
	for _, s := range []string{"/etc/pass", "consul:8500", "/etc/key.pem", `empty_token: ""`} {
		if !strings.Contains(string(out), s) {
			t.Errorf("%q redacted, it is not a secret:\n%s", s, out)
		}
	}
}

// The page says all is well only when it is: ready, the last load of the
// configuration good, every job healthy. A failed reload alone is enough
// to say otherwise.
func TestStatusPageAllWell(t *testing.T) {
	now := time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)
	node := outputtest.NewSnapshot("node", []*targetgroup.Group{group("0", nil, "10.0.0.1:9100")})
	node.File = output.FileState{Path: "/var/lib/sdhub/node.json", Gen: node.Gen, Targets: 1, Written: now}
	reload := ReloadStatus{Time: now.Add(-time.Minute), Loaded: now.Add(-time.Minute)}
	o := Options{
		Gatherer:   prometheus.NewRegistry(),
		Now:        func() time.Time { return now },
		Outputs:    &fakeOutputs{applied: true, jobs: map[string]*output.Snapshot{"node": node}},
		LastReload: func() ReloadStatus { return reload },
		Jobs: func() map[string]manager.JobStatus {
			return map[string]manager.JobStatus{"node": {Job: "node", Healthy: true, Delivered: true}}
		},
		Providers: func() []manager.ProviderStatus {
			return []manager.ProviderStatus{{Name: "static/0", Mechanism: "static", Jobs: []string{"node"}, Started: true, Delivered: true,
				Health: manager.Health{Since: now.Add(-time.Minute), LastSync: now}}}
		},
	}
	_, _, body := do(t, NewHandler(o), http.MethodGet, "/")
	if !strings.Contains(body, `<span class="ok">All well</span>`) || strings.Contains(body, "problems:") || !strings.Contains(body, "The last load succeeded") {
		t.Errorf("a healthy hub's page does not say all is well:\n%s", body)
	}
	reload = ReloadStatus{Time: now.Add(-time.Second), Loaded: now.Add(-time.Minute), Err: errors.New("sdhub.yml:3: bad")}
	_, _, body = do(t, NewHandler(o), http.MethodGet, "/")
	if strings.Contains(body, "All well") || !strings.Contains(body, "<strong>1 problem:</strong>") ||
		!strings.Contains(body, "the last reload of the configuration failed 1s ago: sdhub.yml:3: bad; the configuration loaded 1m0s ago keeps running") {
		t.Errorf("after a failed reload the page does not say so first:\n%s", body)
	}
}
