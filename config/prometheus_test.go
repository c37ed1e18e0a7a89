package config

import (
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"

	"github.com/sdhub/sdhub/discovery/consul"
	"github.com/sdhub/sdhub/discovery/promsd"
	"github.com/sdhub/sdhub/output"
)

// TestJobNamesPrometheusAccepts loads job names Prometheus accepts and
// sdhub once refused: each is served and has an output file of its own,
// inside the output directory.
func TestJobNamesPrometheusAccepts(t *testing.T) {
	cfg, jobs := loadJobs(t, "testdata/job_names.good.yml")
	want := []string{"kubernetes/pods", "serviceMonitor/monitoring/node-exporter/0", ".hidden", ".sdhub-manifest",
		"../../etc/cron.d/x", "a\tb", "Web", "web"}
	if !slices.Equal(jobs, want) {
		t.Fatalf("jobs = %q, want %q", jobs, want)
	}
	wantWarnings := []string{`jobs "Web" (testdata/job_names.good.yml:16) and "web" (testdata/job_names.good.yml:18) differ only in case: ` +
		`their output files are one file on a file system that ignores case, where sdhub refuses to start`}
	if !slices.Equal(cfg.Warnings, wantWarnings) {
		t.Fatalf("warnings = %q, want %q", cfg.Warnings, wantWarnings)
	}
	dir := t.TempDir()
	files := map[string]string{}
	for _, job := range jobs {
		p := output.Path(dir, job)
		if filepath.Dir(p) != dir || strings.HasPrefix(filepath.Base(p), ".") {
			t.Errorf("job %q: output file %s is not a plain file of %s", job, p, dir)
		}
		if prev, ok := files[p]; ok {
			t.Errorf("jobs %q and %q share the output file %s", prev, job, p)
		}
		files[p] = job
	}
	if err := cfg.CheckOutputDir(dir); err != nil {
		t.Errorf("CheckOutputDir on a file system that tells case apart: %v", err)
	}
}

// TestCheckOutputDirIgnoringCase: where the output directory's file system
// ignores case, two jobs whose names differ only in case are refused.
func TestCheckOutputDirIgnoringCase(t *testing.T) {
	dir := t.TempDir()
	ignores, err := ignoresCase(dir)
	if err != nil || ignores {
		t.Fatalf("ignoresCase(%s) = %v, %v; want false on this file system", dir, ignores, err)
	}
	cfg, err := LoadFile("testdata/job_names.good.yml")
	if err != nil {
		t.Fatal(err)
	}
	orig := ignoresCase
	t.Cleanup(func() { ignoresCase = orig })
	ignoresCase = func(string) (bool, error) { return true, nil }
	want := `jobs "Web" and "web" would write one output file in ` + dir +
		`, whose file system ignores case: rename one of them or use another output directory`
	if err := cfg.CheckOutputDir(dir); err == nil || err.Error() != want {
		t.Fatalf("CheckOutputDir = %v, want %q", err, want)
	}
}

// TestRelabelConfigs: a job's relabel_configs as Prometheus parsed them,
// ready for Prometheus's relabel package.
func TestRelabelConfigs(t *testing.T) {
	cfg, err := LoadFile("testdata/prometheus.good.yml")
	if err != nil {
		t.Fatal(err)
	}
	var mixed *ScrapeConfig
	for _, sc := range cfg.ScrapeConfigs {
		if sc.JobName == "mixed" {
			mixed = sc
		}
	}
	rcs := mixed.RelabelConfigs()
	if len(rcs) != 1 || rcs[0].TargetLabel != "node" || rcs[0].Action != relabel.Replace {
		t.Fatalf("relabel configs = %+v", rcs)
	}
	lb := labels.NewBuilder(labels.FromStrings("__address__", "10.0.0.1:9100", "__meta_kubernetes_node_name", "worker-12"))
	if keep := relabel.ProcessBuilder(lb, rcs...); !keep || lb.Get("node") != "worker" {
		t.Fatalf("relabelled to %s (kept %v), want node=worker", lb.Labels(), keep)
	}
	if mixed.Prometheus.ScrapeInterval != model.Duration(15e9) {
		t.Errorf("scrape_interval = %s, want the global section's 15s", mixed.Prometheus.ScrapeInterval)
	}
}

// TestExtensionsLoad: sdhub's own keys load, in block and flow style,
// though Prometheus's loader would reject them.
func TestExtensionsLoad(t *testing.T) {
	cfg, err := Load([]byte(`scrape_configs:
  - job_name: consul
    consul_sd_configs:
      - server: consul:8500
        max_connections: 8
      - {server: consul2:8500, max_connections: 6}
      - max_connections: 5
  - job_name: legacy
    scrape_classic_histograms: true
    static_configs: [{targets: ["127.0.0.1:9090"]}]
`), "sdhub.yml")
	if err != nil {
		t.Fatal(err)
	}
	cs := cfg.Jobs()["consul"]
	if len(cs) != 3 {
		t.Fatalf("consul has %d configs, want 3", len(cs))
	}
	for i, want := range []int{8, 6, 5} {
		if got := cs[i].(*consul.SDConfig).MaxConnections; got != want {
			t.Errorf("config %d: max_connections %d, want %d", i, got, want)
		}
	}
}

// TestLeftOutMechanism: a build that leaves a mechanism out (build tags)
// loads its blocks, leaves them to Prometheus with a warning, and validates
// the rest of the file.
func TestLeftOutMechanism(t *testing.T) {
	orig := prometheusMechanisms
	t.Cleanup(func() { prometheusMechanisms = orig })
	prometheusMechanisms = append(slices.Clip(orig), "nonesuch")

	cfg, err := Load([]byte(`scrape_configs:
  - job_name: only
    nonesuch_sd_configs: [{anything: 1}]
  - job_name: mixed
    nonesuch_sd_configs: [{anything: 1}]
    static_configs: [{targets: ["127.0.0.1:9090"]}]
alerting:
  alertmanagers:
    - nonesuch_sd_configs: [{anything: 1}]
`), "sdhub.yml")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`job "only": nonesuch_sd_configs left to Prometheus (this build of sdhub leaves it out)`,
		`job "mixed": nonesuch_sd_configs left to Prometheus (this build of sdhub leaves it out)`,
	}
	if !slices.Equal(cfg.Warnings, want) {
		t.Fatalf("warnings = %q, want %q", cfg.Warnings, want)
	}
	if len(cfg.ScrapeConfigs) != 1 || cfg.ScrapeConfigs[0].JobName != "mixed" || !slices.Equal(cfg.ScrapeConfigs[0].Unsupported, []string{"nonesuch_sd_configs"}) {
		t.Fatalf("served %+v, want mixed with nonesuch_sd_configs unsupported", cfg.ScrapeConfigs)
	}
	_, err = Load([]byte(`scrape_configs:
  - job_name: mixed
    nonesuch_sd_configs: [{anything: 1}]
    static_configs: [{targets: ["127.0.0.1:9090"]}]
    scrape_interval: 15 seconds
`), "sdhub.yml")
	if want := `sdhub.yml:5: unknown unit " seconds" in duration "15 seconds"`; err == nil || err.Error() != want {
		t.Fatalf("error = %v, want %q", err, want)
	}
}

// TestEveryPrometheusMechanismServed: this (default) build serves every
// mechanism Prometheus knows, each once, the native ones with sdhub's own
// implementation and the rest with Prometheus's.
func TestEveryPrometheusMechanismServed(t *testing.T) {
	if left := leftOutKeys(); len(left) != 0 {
		t.Fatalf("the default build leaves out %q", left)
	}
	seen := map[string]bool{}
	for i, m := range Mechanisms {
		if seen[m.Name] {
			t.Errorf("mechanism %s listed twice", m.Name)
		}
		seen[m.Name] = true
		_, adapted := m.NewConfig().(*promsd.SDConfig)
		if native := i < len(Native); adapted == native {
			t.Errorf("mechanism %s: native %v, run by Prometheus's code %v", m.Name, native, adapted)
		}
		if m.NewMetrics == nil && !isNative(m.Name) {
			t.Errorf("mechanism %s has no metrics", m.Name)
		}
	}
	for name := range promsd.Registered() {
		if !seen[name] {
			t.Errorf("%s_sd_configs is in Prometheus's registry but not served", name)
		}
	}
}

// TestNativeKeysArePrometheus: the native mechanisms accept Prometheus's
// keys for their blocks, plus sdhub's extensions, no other.
func TestNativeKeysArePrometheus(t *testing.T) {
	reg := promsd.Registered()
	for _, m := range Native {
		ours := yamlKeys(reflect.TypeOf(m.NewConfig()))
		theirs := append(yamlKeys(reg[m.Name]), extensions[m.Key()]...)
		slices.Sort(theirs)
		if !slices.Equal(ours, theirs) {
			t.Errorf("%s: sdhub's keys %q, Prometheus's plus extensions %q", m.Key(), ours, theirs)
		}
	}
}

// yamlKeys are the keys a struct type decodes, inlined structs included.
func yamlKeys(t reflect.Type) []string {
	t = deref(t)
	var keys []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		switch {
		case name == "-" || !f.IsExported():
		case strings.Contains(opts, "inline"):
			keys = append(keys, yamlKeys(f.Type)...)
		case name == "":
			keys = append(keys, strings.ToLower(f.Name))
		default:
			keys = append(keys, name)
		}
	}
	slices.Sort(keys)
	return keys
}
