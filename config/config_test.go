package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/kubernetes"

	"github.com/sdhub/sdhub/discovery"
	"github.com/sdhub/sdhub/discovery/file"
	"github.com/sdhub/sdhub/discovery/promsd"
	"github.com/sdhub/sdhub/discovery/static"
)

// loadJobs loads path and returns the config and its job names in order.
func loadJobs(t *testing.T, path string) (*Config, []string) {
	t.Helper()
	cfg, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var jobs []string
	for _, sc := range cfg.ScrapeConfigs {
		jobs = append(jobs, sc.JobName)
	}
	return cfg, jobs
}

func TestLoadPrometheusYML(t *testing.T) {
	cfg, jobs := loadJobs(t, "testdata/prometheus.good.yml")
	if want := []string{"node", "files", "kube", "mixed"}; !slices.Equal(jobs, want) {
		t.Fatalf("jobs = %q, want %q", jobs, want)
	}
	wantWarnings := []string{
		`job "empty": no service discovery configs, skipped`,
	}
	if !slices.Equal(cfg.Warnings, wantWarnings) {
		t.Fatalf("warnings = %q, want %q", cfg.Warnings, wantWarnings)
	}

	// kubernetes_sd_configs: Prometheus's own config values, relative
	// paths resolved once against the config's directory, before the
	// static config.
	kube := cfg.Jobs()["kube"]
	if len(kube) != 1 {
		t.Fatalf("kube has %d configs, want 1", len(kube))
	}
	k := kube[0].(*promsd.SDConfig).Config.(*kubernetes.SDConfig)
	if k.Role != kubernetes.RolePod || k.KubeConfig != filepath.Join("testdata", "kube", "config") {
		t.Errorf("kube config: role %q, kubeconfig_file %q", k.Role, k.KubeConfig)
	}
	mixed := cfg.Jobs()["mixed"]
	if len(mixed) != 2 || mixed[0].Name() != "kubernetes" || mixed[1].Name() != "static" {
		t.Fatalf("mixed configs = %v, want kubernetes then static", mixed)
	}
	m := mixed[0].(*promsd.SDConfig).Config.(*kubernetes.SDConfig)
	if got, want := m.HTTPClientConfig.TLSConfig.CAFile, filepath.Join("testdata", "kube", "ca.pem"); got != want {
		t.Errorf("mixed ca_file = %q, want %q", got, want)
	}

	node := cfg.Jobs()["node"]
	wantNode := discovery.Configs{static.SDConfig{
		{Source: "0", Targets: []model.LabelSet{{"__address__": "127.0.0.1:9100"}, {"__address__": "127.0.0.2:9100"}}, Labels: model.LabelSet{"env": "prod"}},
		{Source: "1", Targets: []model.LabelSet{{"__address__": "127.0.0.3:9100"}}, Labels: model.LabelSet{}},
	}}
	if !equalConfigs(node, wantNode) {
		t.Fatalf("node configs = %#v, want %#v", node, wantNode)
	}

	files := cfg.Jobs()["files"]
	if len(files) != 2 {
		t.Fatalf("files has %d configs, want 2", len(files))
	}
	f0 := files[0].(*file.SDConfig)
	if want := filepath.Join("testdata", "targets", "*.json"); f0.Files[0] != want {
		t.Errorf("relative pattern resolved to %q, want %q (against the config's directory)", f0.Files[0], want)
	}
	if got := time_(f0.RefreshInterval); got != "1m" {
		t.Errorf("refresh_interval = %s, want 1m", got)
	}
	f1 := files[1].(*file.SDConfig)
	if f1.Files[0] != "/etc/prometheus/targets/*.yml" {
		t.Errorf("absolute pattern changed to %q", f1.Files[0])
	}
	if got := time_(f1.RefreshInterval); got != "5m" {
		t.Errorf("default refresh_interval = %s, want 5m", got)
	}
}

func time_(d model.Duration) string { return d.String() }

func equalConfigs(a, b discovery.Configs) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		sa, oka := a[i].(static.SDConfig)
		sb, okb := b[i].(static.SDConfig)
		if oka != okb {
			return false
		}
		if !oka {
			if !reflect.DeepEqual(a[i], b[i]) {
				return false
			}
			continue
		}
		if len(sa) != len(sb) {
			return false
		}
		for j := range sa {
			ga, gb := sa[j], sb[j]
			if ga.Source != gb.Source || !reflect.DeepEqual(ga.Targets, gb.Targets) || len(ga.Labels) != len(gb.Labels) {
				return false
			}
			for k, v := range ga.Labels {
				if gb.Labels[k] != v {
					return false
				}
			}
		}
	}
	return true
}

// TestMechanismsFromPrometheusYML loads consul and dockerswarm blocks as
// they stand in a prometheus.yml, with relative paths resolved.
func TestMechanismsFromPrometheusYML(t *testing.T) {
	cfg, err := LoadFile("testdata/mechanisms.good.yml")
	if err != nil {
		t.Fatal(err)
	}
	jobs := cfg.Jobs()
	for job, name := range map[string]string{"consul": "consul", "swarm-tasks": "dockerswarm", "swarm-nodes": "dockerswarm"} {
		if len(jobs[job]) != 1 || jobs[job][0].Name() != name {
			t.Errorf("job %s: configs %v, want one %s config", job, jobs[job], name)
		}
	}
	if len(cfg.Warnings) != 0 {
		t.Errorf("warnings: %q", cfg.Warnings)
	}
}

func TestScrapeConfigFiles(t *testing.T) {
	cfg, err := LoadFile("testdata/scrape_config_files.good.yml")
	if err != nil {
		t.Fatal(err)
	}
	jobs := cfg.Jobs()
	if len(jobs) != 2 || jobs["main"] == nil || jobs["from-a"] == nil {
		t.Fatalf("jobs = %v, want main and from-a", jobs)
	}
	got := jobs["from-a"][0].(*file.SDConfig).Files[0]
	if want := filepath.Join("testdata", "scrape", "a", "*.json"); got != want {
		t.Errorf("pattern of a scrape config file resolved to %q, want %q (against that file's directory)", got, want)
	}
}

func TestEmptyConfig(t *testing.T) {
	cfg, err := LoadFile("testdata/empty.good.yml")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.ScrapeConfigs) != 0 {
		t.Fatalf("got %d jobs from an empty file", len(cfg.ScrapeConfigs))
	}
}

// TestBadConfigs checks the exact error of every testdata/*.bad.yml: file,
// line and message.
func TestBadConfigs(t *testing.T) {
	want := map[string]string{
		"unknown_top":        `testdata/unknown_top.bad.yml:3: unknown field "scrape_cofigs" in the top level`,
		"unknown_scrape_key": `testdata/unknown_scrape_key.bad.yml:3: unknown field "scrape_intervl" in scrape config`,
		"duplicate_job":      `testdata/duplicate_job.bad.yml:5: found multiple scrape configs with job name "x" (first at testdata/duplicate_job.bad.yml:2)`,
		"job_empty":          `testdata/job_empty.bad.yml:2: job_name is empty`,
		"null_static":        `testdata/null_static.bad.yml:5: empty or null section in static_configs`,
		"null_file_sd":       `testdata/null_file_sd.bad.yml:4: empty or null section in file_sd_configs`,
		"null_scrape":        `testdata/null_scrape.bad.yml:2: empty or null scrape config section`,
		"static_url":         `testdata/static_url.bad.yml:4: "http://127.0.0.1:9090/metrics" is not a valid hostname`,
		"static_unknown_key": `testdata/static_unknown_key.bad.yml:4: field target not found in static_configs`,
		"syntax":             `testdata/syntax.bad.yml:4: mapping values are not allowed in this context`,
		"not_mapping":        `testdata/not_mapping.bad.yml:1: the top level must be a mapping`,
		"swarm_role":         `testdata/swarm_role.bad.yml:5: invalid role "taks" for dockerswarm_sd_configs (one of: services, tasks, nodes)`,
		"consul_unknown":     `testdata/consul_unknown.bad.yml:5: field servr not found in consul_sd_configs`,
		"consul_duration":    `testdata/consul_duration.bad.yml:4: not a valid duration string: "5"`,

		// Prometheus's loader: its text, at the line of the value it rejects.
		"relabel_regex":        "testdata/relabel_regex.bad.yml:7: error parsing regexp: missing closing ): `^(?s:.*,(metrics,.*)$`",
		"relabel_action":       `testdata/relabel_action.bad.yml:8: unknown relabel action "keeep"`,
		"relabel_source_label": `testdata/relabel_source_label.bad.yml:6: field source_label not found in type relabel.plain`,
		"scrape_interval":      `testdata/scrape_interval.bad.yml:2: unknown unit " seconds" in duration "15 seconds"`,
		"global_unknown":       `testdata/global_unknown.bad.yml:3: field scrape_interva not found in type config.plain`,
		"scrape_timeout":       `testdata/scrape_timeout.bad.yml:7: scrape timeout greater than scrape interval for scrape config with job name "slow"`,
		"misindented":          `testdata/misindented.bad.yml:5: field relabel_configs not found in static_configs`,
		"dns_type":             `testdata/dns_type.bad.yml:6: invalid DNS-SD records type SRVV`,
		"http_url":             `testdata/http_url.bad.yml:4: URL scheme must be 'http' or 'https'`,
		"kubernetes_role":      `testdata/kubernetes_role.bad.yml:6: unknown Kubernetes SD role "pods"`,
		"remote_write":         `testdata/remote_write.bad.yml:5: unknown relabel action "dropp"`,
		"alerting":             "testdata/alerting.bad.yml:4: error parsing regexp: invalid character class range: `a-)`",
		"extension_then_error": `testdata/extension_then_error.bad.yml:12: field target_lable not found in type relabel.plain`,
		"extension_then_regex": "testdata/extension_then_regex.bad.yml:10: error parsing regexp: missing closing ): `^(?s:(()$`",
		"scrape_file":          `testdata/scrape_bad/bad.yml:6: unknown relabel action "keeep"`,
	}
	files, err := filepath.Glob("testdata/*.bad.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".bad.yml")
		t.Run(name, func(t *testing.T) {
			exp, ok := want[name]
			if !ok {
				t.Fatalf("no expected error for %s", f)
			}
			delete(want, name)
			_, err := LoadFile(f)
			if err == nil {
				t.Fatalf("%s loaded, want error %q", f, exp)
			}
			if err.Error() != exp {
				t.Fatalf("error:\n got: %s\nwant: %s", err, exp)
			}
		})
	}
	for name := range want {
		t.Errorf("expected error for %s but there is no testdata/%s.bad.yml", name, name)
	}
}

// TestLoadKeepsSharedConfigsEqual checks that identical SD blocks in two
// jobs decode to deeply equal configs: the manager shares one provider.
func TestLoadKeepsSharedConfigsEqual(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "p.yml")
	data := `scrape_configs:
  - job_name: a
    file_sd_configs: [{files: ["x/*.json"]}]
  - job_name: b
    file_sd_configs: [{files: ["x/*.json"]}]
`
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	j := cfg.Jobs()
	if !reflect.DeepEqual(j["a"][0], j["b"][0]) {
		t.Fatalf("configs differ: %#v vs %#v", j["a"][0], j["b"][0])
	}
}

func TestStaticGroupsKeepSources(t *testing.T) {
	cfg, err := Load([]byte(`scrape_configs:
  - job_name: s
    static_configs:
      - targets: [a:1]
      - targets: [b:1]
        labels: {x: y}
`), "mem.yml")
	if err != nil {
		t.Fatal(err)
	}
	sc := cfg.Jobs()["s"][0].(static.SDConfig)
	srcs := []string{}
	for _, g := range sc {
		srcs = append(srcs, g.Source)
	}
	if !slices.Equal(srcs, []string{"0", "1"}) {
		t.Fatalf("sources = %q", srcs)
	}
}

// TestEveryScrapeKey loads a job that sets every scrape config key
// Prometheus accepts, 2.x's renamed ones included.
func TestEveryScrapeKey(t *testing.T) {
	cfg, err := LoadFile("testdata/every_scrape_key.good.yml")
	if err != nil {
		t.Fatal(err)
	}
	if jobs := cfg.Jobs(); len(jobs) != 1 || len(jobs["every-key"]) != 1 {
		t.Fatalf("jobs = %v, want every-key with its static config", jobs)
	}
	if len(cfg.Warnings) != 0 {
		t.Errorf("warnings: %q", cfg.Warnings)
	}
}

// TestConsulConnectionWarning: thirteen consul jobs on one agent at the
// default max_connections (16) may hold 208 connections: the loader warns.
func TestConsulConnectionWarning(t *testing.T) {
	var b strings.Builder
	b.WriteString("scrape_configs:\n")
	for i := range 13 {
		fmt.Fprintf(&b, "  - job_name: svc-%d\n    consul_sd_configs:\n      - server: consul:8500\n        services: [svc-%d]\n", i, i)
	}
	cfg, err := Load([]byte(b.String()), "sdhub.yml")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Warnings) != 1 || !strings.Contains(cfg.Warnings[0], "consul_sd_configs for consul:8500 may open up to 208 connections") {
		t.Fatalf("warnings = %q, want one about 208 connections to consul:8500", cfg.Warnings)
	}
}

// TestConsumerLabelWarning: a relabel rule that reads __meta_filepath or
// __meta_url, by source_labels or by a labelmap, labeldrop or labelkeep
// regex, means something else in a consumer without sdhub's restoring
// rules; the loader names each such rule once, and no other.
func TestConsumerLabelWarning(t *testing.T) {
	cfg, err := Load([]byte(`scrape_configs:
  - job_name: files
    file_sd_configs: [{files: [in/*.json]}]
    relabel_configs:
      - source_labels: [__meta_filepath]
        regex: '.*/(.*)\.json'
        target_label: source_file
      - source_labels: [__meta_consul_service]
        target_label: service
      - action: labelmap
        regex: __meta_(.+)
      - action: labelmap
        regex: __meta_consul_(.+)
      - action: labeldrop
        regex: __meta_url
`), "sdhub.yml")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`job "files" (sdhub.yml:2): relabel_configs[0] (action replace) reads __meta_filepath, `,
		`job "files" (sdhub.yml:2): relabel_configs[2] (action labelmap) reads __meta_filepath and __meta_url, `,
		`job "files" (sdhub.yml:2): relabel_configs[4] (action labeldrop) reads __meta_url, `,
	}
	if len(cfg.Warnings) != len(want) {
		t.Fatalf("warnings = %q, want %d starting %q", cfg.Warnings, len(want), want)
	}
	for i, w := range want {
		if !strings.HasPrefix(cfg.Warnings[i], w) || !strings.Contains(cfg.Warnings[i], "sdhub generate prometheus-config") {
			t.Errorf("warning %d = %q, want it to start %q and name sdhub generate prometheus-config", i, cfg.Warnings[i], w)
		}
	}
}
