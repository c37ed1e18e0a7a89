// Package monitoring holds no code: alerts.yml, alerts_test.yml and
// dashboard.json, and the tests that check them with promtool, Prometheus's
// PromQL parser and a running sdhub.
package monitoring

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	"go.uber.org/goleak"
	"gopkg.in/yaml.v3"

	"github.com/sdhub/sdhub/internal/poll"
	"github.com/sdhub/sdhub/internal/sdhubtest"
	"github.com/sdhub/sdhub/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// metrics are the series the rules and the dashboard may read, with the
// labels they carry on sdhub's /metrics (Prometheus adds job and instance;
// job is then sdhub's own label where there is one, with honor_labels).
var metrics = map[string][]string{
	"up":                                    nil,
	"process_start_time_seconds":            nil,
	"sdhub_build_info":                      {"branch", "goarch", "goos", "goversion", "revision", "tags", "version"},
	"sdhub_config_last_reload_successful":   nil,
	"prometheus_sd_discovered_targets":      {"config", "name"},
	"sdhub_job_healthy":                     {"job"},
	"sdhub_job_last_sync_timestamp_seconds": {"job"},
	"sdhub_sd_failures_total":               {"job", "mechanism", "provider"},
	"sdhub_output_writes_total":             {"job"},
	"sdhub_output_write_failures_total":     {"job"},
	"sdhub_output_repairs_total":            {"job"},
	"sdhub_output_dropped_targets":          {"job"},
	"sdhub_output_targets":                  {"job"},
	"sdhub_http_sd_requests_total":          {"job", "view"},
}

// pending are metrics the rules read that sdhub does not export yet:
// TestMetricsExist checks every other one.
var pending []string

func promtool(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("SDHUB_PROMETHEUS_BIN"); p != "" {
		return filepath.Join(filepath.Dir(p), "promtool")
	}
	p, err := exec.LookPath("promtool")
	testenv.Require(t, "promtool", err == nil, "not on PATH and SDHUB_PROMETHEUS_BIN unset (scripts/deps/prometheus.sh installs it)")
	return p
}

func TestPromtoolCheckRules(t *testing.T) {
	out, err := exec.Command(promtool(t), "check", "rules", "alerts.yml").CombinedOutput()
	if err != nil || strings.Contains(string(out), "WARNING") {
		t.Fatalf("promtool check rules alerts.yml: %v\n%s", err, out)
	}
}

func TestPromtoolTestRules(t *testing.T) {
	out, err := exec.Command(promtool(t), "test", "rules", "alerts_test.yml").CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules alerts_test.yml: %v\n%s", err, out)
	}
}

type ruleFile struct {
	Groups []struct {
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func readYAML(t *testing.T, file string, v any) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

// TestEveryAlertIsTested checks that alerts_test.yml makes every alert of
// alerts.yml fire at least once, and that each alert has a severity, a
// summary and a description.
func TestEveryAlertIsTested(t *testing.T) {
	var rules ruleFile
	readYAML(t, "alerts.yml", &rules)
	var tests struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string `yaml:"alertname"`
				ExpAlerts []any  `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	readYAML(t, "alerts_test.yml", &tests)
	fired := map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			fired[a.Alertname] = fired[a.Alertname] || len(a.ExpAlerts) > 0
		}
	}
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			n++
			if !fired[r.Alert] {
				t.Errorf("alert %s never fires in alerts_test.yml", r.Alert)
			}
			if !slices.Contains([]string{"critical", "warning", "info"}, r.Labels["severity"]) {
				t.Errorf("alert %s: severity %q, want critical, warning or info", r.Alert, r.Labels["severity"])
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("alert %s lacks a summary or a description", r.Alert)
			}
		}
	}
	if n < 8 {
		t.Errorf("alerts.yml has %d alerts, want at least 8", n)
	}
}

// selectors parses expr and returns the metric names it selects with the
// labels each matcher and grouping names.
func selectors(t *testing.T, expr string) map[string][]string {
	t.Helper()
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		t.Errorf("%q does not parse: %v", expr, err)
		return nil
	}
	out := map[string][]string{}
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			var ls []string
			for _, m := range vs.LabelMatchers {
				if m.Name != model.MetricNameLabel {
					ls = append(ls, m.Name)
				}
			}
			out[vs.Name] = append(out[vs.Name], ls...)
		}
		return nil
	})
	return out
}

// checkSelectors fails the test when expr reads a metric outside metrics, or
// matches a label the metric does not have.
func checkSelectors(t *testing.T, where, expr string) {
	t.Helper()
	for name, labels := range selectors(t, expr) {
		own, ok := metrics[name]
		if !ok {
			t.Errorf("%s reads %q, not a metric sdhub exports (%s)", where, name, strings.Join(slices.Sorted(maps.Keys(metrics)), ", "))
			continue
		}
		for _, l := range labels {
			if l != "instance" && l != "job" && !slices.Contains(own, l) {
				t.Errorf("%s matches label %q of %s, which has %v", where, l, name, own)
			}
		}
	}
}

func TestRulesReadSdhubMetrics(t *testing.T) {
	var rules ruleFile
	readYAML(t, "alerts.yml", &rules)
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			checkSelectors(t, "alert "+r.Alert, r.Expr)
		}
	}
}

// grafanaVar matches the variables of a Grafana query: $name, ${name}, and
// the built-in $__rate_interval and the like.
var grafanaVar = regexp.MustCompile(`\$\{?(\w+)\}?`)

type panel struct {
	ID          int    `json:"id"`
	Type        string `json:"type"`
	Title       string `json:"title"`
	Description string `json:"description"`
	Datasource  *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	GridPos *struct{ H, W, X, Y int } `json:"gridPos"`
	Targets []struct {
		Expr       string `json:"expr"`
		RefID      string `json:"refId"`
		Datasource *struct {
			UID string `json:"uid"`
		} `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

// TestDashboard checks dashboard.json as Grafana reads it: a datasource
// variable every panel and query uses, unique panel ids, a place on the
// 24-column grid, and queries that parse as PromQL and read sdhub's metrics.
func TestDashboard(t *testing.T) {
	data, err := os.ReadFile("dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID           string  `json:"uid"`
		Title         string  `json:"title"`
		SchemaVersion int     `json:"schemaVersion"`
		Panels        []panel `json:"panels"`
		Templating    struct {
			List []struct {
				Name       string `json:"name"`
				Type       string `json:"type"`
				Query      any    `json:"query"`
				Datasource *struct {
					UID string `json:"uid"`
				} `json:"datasource"`
			} `json:"list"`
		} `json:"templating"`
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("dashboard.json: %v", err)
	}
	if d.UID == "" || d.Title == "" || d.SchemaVersion < 36 {
		t.Errorf("uid %q, title %q, schemaVersion %d: want a uid, a title and schemaVersion 36 or more", d.UID, d.Title, d.SchemaVersion)
	}
	vars := map[string]bool{"__rate_interval": true, "__interval": true, "__range": true}
	hasDatasource := false
	for _, v := range d.Templating.List {
		vars[v.Name] = true
		switch v.Type {
		case "datasource":
			hasDatasource = hasDatasource || (v.Name == "datasource" && v.Query == "prometheus")
		case "query":
			if v.Datasource == nil || v.Datasource.UID != "${datasource}" {
				t.Errorf("variable %s does not query ${datasource}", v.Name)
			}
			q, _ := v.Query.(string)
			m := regexp.MustCompile(`^label_values\((.+), (\w+)\)$`).FindStringSubmatch(q)
			if m == nil {
				t.Errorf("variable %s: query %q is not label_values(selector, label)", v.Name, q)
				continue
			}
			checkSelectors(t, "variable "+v.Name, substitute(m[1]))
		}
	}
	if !hasDatasource {
		t.Fatal(`no variable "datasource" of type datasource for Prometheus`)
	}

	ids := map[int]string{}
	queries := 0
	var walk func(ps []panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			where := fmt.Sprintf("panel %d %q", p.ID, p.Title)
			if prev, ok := ids[p.ID]; ok || p.ID == 0 {
				t.Errorf("%s: id taken by %q (or 0)", where, prev)
			}
			ids[p.ID] = p.Title
			if p.GridPos == nil || p.GridPos.W < 1 || p.GridPos.H < 1 || p.GridPos.X+p.GridPos.W > 24 {
				t.Errorf("%s: bad gridPos %+v", where, p.GridPos)
			}
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if p.Datasource == nil || p.Datasource.UID != "${datasource}" || p.Datasource.Type != "prometheus" {
				t.Errorf("%s: datasource %+v, want prometheus ${datasource}", where, p.Datasource)
			}
			if p.Description == "" || len(p.Targets) == 0 {
				t.Errorf("%s: no description or no query", where)
			}
			for _, q := range p.Targets {
				queries++
				if q.Datasource == nil || q.Datasource.UID != "${datasource}" || q.RefID == "" {
					t.Errorf("%s: query %q without ${datasource} or refId", where, q.Expr)
				}
				for _, m := range grafanaVar.FindAllStringSubmatch(q.Expr, -1) {
					if !vars[m[1]] {
						t.Errorf("%s: query %q uses $%s, which is no variable", where, q.Expr, m[1])
					}
				}
				checkSelectors(t, where, substitute(q.Expr))
			}
		}
	}
	walk(d.Panels)
	if queries < 10 {
		t.Errorf("%d queries, want at least 10", queries)
	}
}

// substitute replaces Grafana's variables in a query by values PromQL
// parses: a duration for the intervals, a regex for the others.
func substitute(q string) string {
	return grafanaVar.ReplaceAllStringFunc(q, func(v string) string {
		if strings.Contains(v, "interval") || strings.Contains(v, "range") {
			return "5m"
		}
		return ".*"
	})
}

// TestMetricsExist runs sdhub and checks that its /metrics has every metric
// the rules and the dashboard read (but those in pending and those
// Prometheus makes), with the labels they expect.
func TestMetricsExist(t *testing.T) {
	dir := t.TempDir()
	bin, err := sdhubtest.Build(context.Background(), "", dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "sdhub.yml")
	if err := os.WriteFile(cfg, []byte("scrape_configs:\n  - job_name: node\n    static_configs: [{targets: [\"127.0.0.1:9100\"]}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--config.file="+cfg, "--output.dir="+filepath.Join(dir, "out"), "--web.listen-address=127.0.0.1:0")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	addr := ""
	sc := bufio.NewScanner(stderr)
	for addr == "" && sc.Scan() {
		addr, _ = sdhubtest.ListenAddress(sc.Text())
	}
	if addr == "" {
		t.Fatal("sdhub exited before it listened")
	}
	go func() {
		for sc.Scan() { // drain the log
		}
	}()
	client := &http.Client{Timeout: 5 * time.Second}
	var families map[string][]string // name → label names
	poll.Fatal(t, 30*time.Second, 50*time.Millisecond, "sdhub ready", func() bool {
		resp, err := client.Get("http://" + addr + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	// An http_sd request, for the series of sdhub_http_sd_requests_total.
	sd, err := client.Get("http://" + addr + "/api/v1/sd/node")
	if err != nil {
		t.Fatal(err)
	}
	sd.Body.Close()
	resp, err := client.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	tp := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := tp.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	families = map[string][]string{}
	for name, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if !slices.Contains(families[name], l.GetName()) {
					families[name] = append(families[name], l.GetName())
				}
			}
		}
		if _, ok := families[name]; !ok {
			families[name] = nil
		}
	}
	for name, labels := range metrics {
		if name == "up" {
			continue // made by Prometheus
		}
		got, ok := families[name]
		if slices.Contains(pending, name) {
			t.Logf("%s: pending (exported: %v)", name, ok)
			continue
		}
		if !ok {
			t.Errorf("sdhub does not export %s", name)
			continue
		}
		slices.Sort(got)
		if want := slices.Sorted(slices.Values(labels)); !slices.Equal(got, want) {
			t.Errorf("%s has labels %v, want %v", name, got, want)
		}
	}
}
