package main

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sdhub/sdhub/config"
	"github.com/sdhub/sdhub/output"
)

// checkCases are configs Prometheus rejects, with the FAILED line sdhub's
// check config prints for each: Prometheus's error text at its file and
// line. The first five are issue 11's.
var checkCases = []struct {
	name, config, want string
}{
	{"relabel regex", `scrape_configs:
  - job_name: web
    static_configs: [{targets: ["127.0.0.1:9090"]}]
    relabel_configs:
      - source_labels: [__meta_consul_tags]
        regex: ".*,(metrics,.*"
        action: keep
`, ":6: error parsing regexp: missing closing ): `^(?s:.*,(metrics,.*)$`"},
	{"relabel action", `scrape_configs:
  - job_name: web
    static_configs: [{targets: ["127.0.0.1:9090"]}]
    relabel_configs:
      - source_labels: [__meta_consul_tags]
        action: keeep
`, `:6: unknown relabel action "keeep"`},
	{"relabel key", `scrape_configs:
  - job_name: web
    static_configs: [{targets: ["127.0.0.1:9090"]}]
    relabel_configs:
      - source_label: [__meta_consul_tags]
        action: keep
`, `:5: field source_label not found in type relabel.plain`},
	{"duration", `scrape_configs:
  - job_name: web
    scrape_interval: 15 seconds
    static_configs: [{targets: ["127.0.0.1:9090"]}]
`, `:3: unknown unit " seconds" in duration "15 seconds"`},
	{"global key", `global:
  scrape_interva: 15s
scrape_configs:
  - job_name: web
    static_configs: [{targets: ["127.0.0.1:9090"]}]
`, `:2: field scrape_interva not found in type config.plain`},
	{"dns_sd_configs", `scrape_configs:
  - job_name: dns
    dns_sd_configs:
      - names: [_prometheus._tcp.example.org]
        type: SRVV
`, `:5: invalid DNS-SD records type SRVV`},
	{"ec2_sd_configs", `scrape_configs:
  - job_name: ec2
    ec2_sd_configs:
      - region: eu-west-1
        port: nine
`, ":5: cannot unmarshal !!str `nine` into int"},
}

// TestCheckConfigLikePromtool: sdhub check config rejects what Prometheus
// rejects, with Prometheus's error text at the file and line; where Debian's
// promtool is installed, it rejects the same files.
func TestCheckConfigLikePromtool(t *testing.T) {
	dir := t.TempDir()
	promtool := ""
	if p, err := exec.LookPath("promtool"); err == nil {
		promtool = p
	}
	for _, c := range checkCases {
		t.Run(c.name, func(t *testing.T) {
			f := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_")+".yml")
			writeFile(t, f, c.config)
			var stdout, stderr bytes.Buffer
			if code := runMain([]string{"check", "config", f}, &stdout, &stderr); code != exitError {
				t.Fatalf("exit %d, want %d; stdout:\n%s", code, exitError, stdout.String())
			}
			if want := "  FAILED: " + f + c.want + "\n"; stderr.String() != want {
				t.Errorf("stderr:\n%s\nwant:\n%s", stderr.String(), want)
			}
			if promtool == "" {
				return
			}
			out, err := exec.Command(promtool, "check", "config", "--syntax-only", f).CombinedOutput()
			if err == nil {
				t.Errorf("promtool accepts what sdhub rejects:\n%s", out)
			}
		})
	}
}

// TestCheckConfigServesEveryMechanism: a valid config with mechanisms
// Prometheus runs and sdhub once left to it: SUCCESS, every job served, no
// warning.
func TestCheckConfigServesEveryMechanism(t *testing.T) {
	f := filepath.Join(t.TempDir(), "prometheus.yml")
	writeFile(t, f, `scrape_configs:
  - job_name: kubernetes/pods
    kubernetes_sd_configs: [{role: pod, api_server: "https://kube.example:6443"}]
  - job_name: dns
    dns_sd_configs: [{names: [_prometheus._tcp.example.org]}]
  - job_name: consul
    consul_sd_configs: [{server: "consul:8500", max_connections: 8}]
`)
	var stdout, stderr bytes.Buffer
	if code := runMain([]string{"check", "config", f}, &stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	want := "Checking " + f + "\n SUCCESS: " + f + " is valid sdhub config file syntax; 3 jobs served: kubernetes/pods, dns, consul\n" +
		"  output layout: kubernetes/pods 16 parts, dns 16 parts, consul 16 parts\n" +
		"  hub filter: off for kubernetes/pods, dns, consul: no relabel rule that drops targets (keep, drop, keepequal, dropequal)\n"
	if stdout.String() != want || stderr.Len() != 0 {
		t.Errorf("stdout:\n%s\nstderr:\n%s\nwant stdout:\n%s", stdout.String(), stderr.String(), want)
	}
}

// check config shows each job's output layout for the layout flags run
// takes, and refuses bad ones.
func TestCheckConfigLayout(t *testing.T) {
	f := filepath.Join(t.TempDir(), "prometheus.yml")
	writeFile(t, f, `scrape_configs:
  - job_name: node
    static_configs: [{targets: ["127.0.0.1:9100"]}]
  - job_name: dns
    dns_sd_configs: [{names: [_prometheus._tcp.example.org]}]
  - job_name: consul
    consul_sd_configs: [{server: "consul:8500"}]
`)
	for _, c := range []struct {
		args        []string
		code        int
		out, errOut string
	}{
		{[]string{"--output.parts.max-entries=7"}, exitOK, "  output layout: node one file, dns 3 parts, consul 3 parts\n", ""},
		{[]string{"--output.job-parts=dns=1", "--output.parts=4"}, exitOK, "  output layout: node one file, dns one file, consul 4 parts\n", ""},
		{[]string{"--output.parts=65"}, exitError, "", "  FAILED: invalid --output.parts 65 (from 1 to 64)\n"},
		{[]string{"--output.job-parts=dns"}, exitError, "", "  FAILED: invalid --output.job-parts \"dns\" (want <job>=<parts>, parts from 1 to 64)\n"},
	} {
		var stdout, stderr bytes.Buffer
		code := runMain(append([]string{"check", "config", f}, c.args...), &stdout, &stderr)
		if code != c.code || !strings.Contains(stdout.String(), c.out) || stderr.String() != c.errOut {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit %d, stdout with %q, stderr %q", c.args, code, stdout.String(), stderr.String(), c.code, c.out, c.errOut)
		}
	}
}

// check config says which jobs are filtered at the hub with the filter
// flags run takes, and why the others are not.
func TestCheckConfigHubFilter(t *testing.T) {
	f := filepath.Join(t.TempDir(), "prometheus.yml")
	writeFile(t, f, `scrape_configs:
  - job_name: web
    consul_sd_configs: [{server: "consul:8500"}]
    relabel_configs:
      - {source_labels: [__meta_consul_tags], regex: ".*,web,.*", action: keep}
  - job_name: native
    consul_sd_configs: [{server: "consul:8500"}]
    relabel_configs:
      - {source_labels: [__scrape_native_histograms__], regex: "true", action: drop}
  - job_name: all
    consul_sd_configs: [{server: "consul:8500"}]
`)
	cfg, err := config.LoadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	digest := output.FilterDigest("web", jobScrape(cfg, "web"), jobRelabel(cfg, "web"))
	nothing := "all: no relabel rule that drops targets (keep, drop, keepequal, dropequal)"
	version := "native: relabel_configs[0] reads __scrape_native_histograms__, which Prometheus sets or not by its version"
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "  hub filter: on for web (rules " + digest + "); off for " + version + "; off for " + nothing + "\n"},
		{[]string{"--output.hub-filter.skip-job=web"}, "  hub filter: off for web: the job is skipped (--output.hub-filter.skip-job); off for " + version + "; off for " + nothing + "\n"},
		{[]string{"--no-output.hub-filter"}, "  hub filter: off for web, native, all: filtering at the hub is off (--no-output.hub-filter)\n"},
	} {
		var stdout, stderr bytes.Buffer
		code := runMain(append([]string{"check", "config", f}, c.args...), &stdout, &stderr)
		if code != exitOK || !strings.HasSuffix(stdout.String(), c.want) || stderr.Len() != 0 {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 0, stdout ending %q", c.args, code, stdout.String(), stderr.String(), c.want)
		}
	}
}

// TestPrometheusInvalidRefusedEverywhere: a file Prometheus rejects is
// refused by the server at start (exit 2) and by generate, with the same
// error as check config's.
func TestPrometheusInvalidRefusedEverywhere(t *testing.T) {
	c := checkCases[0]
	f := filepath.Join(t.TempDir(), "prometheus.yml")
	writeFile(t, f, c.config)
	want := f + c.want

	var stdout, stderr bytes.Buffer
	if code := runMain([]string{"generate", "prometheus-config", "--config.file=" + f}, &stdout, &stderr); code != exitBadConfig || stdout.Len() != 0 {
		t.Errorf("generate: exit %d, stdout %q; want exit %d and nothing", code, stdout.String(), exitBadConfig)
	}
	if !strings.Contains(stderr.String(), want) {
		t.Errorf("generate's stderr %q lacks %q", stderr.String(), want)
	}

	stdout.Reset()
	stderr.Reset()
	out := filepath.Join(t.TempDir(), "out")
	if code := runMain([]string{"--config.file=" + f, "--output.dir=" + out, "--web.listen-address=127.0.0.1:0"}, &stdout, &stderr); code != exitBadConfig {
		t.Errorf("the server: exit %d, want %d", code, exitBadConfig)
	}
	if !strings.Contains(strings.ReplaceAll(stderr.String(), `\"`, `"`), want) {
		t.Errorf("the server's log lacks %q:\n%s", want, stderr.String())
	}
}
