package main

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sdhub/sdhub/config"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// goldenFile compares got with testdata/path, rewritten with -update.
func goldenFile(t *testing.T, path string, got []byte) {
	t.Helper()
	path = filepath.Join("testdata", path)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -update creates it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s (go test -update rewrites it); got:\n%s", path, got)
	}
}

const generateInput = "testdata/generate/prometheus.yml"

func TestGeneratePrometheusConfig(t *testing.T) {
	for _, c := range []struct {
		name, url, golden string
	}{
		{"file_sd", "", "generate/file_sd.golden.yml"},
		{"http_sd", "https://sdhub.example:9099/", "generate/http_sd.golden.yml"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := []string{"generate", "prometheus-config", "--config.file=" + generateInput, "--output.dir=/var/lib/sdhub"}
			if c.url != "" {
				args = append(args, "--http-sd-url="+c.url)
			}
			if code := runMain(args, &stdout, &stderr); code != exitOK {
				t.Fatalf("exit %d: %s", code, stderr.String())
			}
			wantWarn := `sdhub generate: warning: job "extra" comes from a scrape_config_files file, not testdata/generate/prometheus.yml: its service discovery is not rewritten` + "\n"
			if stderr.String() != wantWarn {
				t.Errorf("stderr = %q, want %q", stderr.String(), wantWarn)
			}
			out := stdout.String()
			for _, keep := range []string{
				"# The prometheus.yml sdhub reads", "# every 15 s", "external_labels", "rule_files", "alertmanager:9093",
				"scrape_config_files", "# The node exporters: static, relabelled.", "target_label: environment",
				"metrics_path: /internal/metrics", "password: scrape-pa55",
				"honor_labels: true", `regex: ".*,metrics,.*"`,
			} {
				if !strings.Contains(out, keep) {
					t.Errorf("the output lost %q", keep)
				}
			}
			for _, gone := range []string{"static_configs: [{targets: [\"127.0.0.1:9200\"]}]", "in/*.json", "127.0.0.1:9100", "consul_sd_configs:", "consul-acl-token",
				"dockerswarm_sd_configs:", "dns_sd_configs:", "http://inventory.example/targets", "ec2_sd_configs:", "aws-s3cret-key"} {
				if strings.Contains(out, gone) {
					t.Errorf("the output still has %q", gone)
				}
			}
			goldenFile(t, c.golden, stdout.Bytes())
		})
	}
}

func TestGenerateErrors(t *testing.T) {
	cfg, err := config.LoadFile(generateInput)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(generateInput)
	if err != nil {
		t.Fatal(err)
	}
	for url, want := range map[string]string{
		"sdhub:9099":              `invalid --http-sd-url "sdhub:9099" (want an http or https URL with a host, e.g. http://sdhub:9099)`,
		"ftp://sdhub":             `invalid --http-sd-url "ftp://sdhub" (want an http or https URL with a host, e.g. http://sdhub:9099)`,
		"http://sdhub:9099/?a=b":  `invalid --http-sd-url "http://sdhub:9099/?a=b" (want a base URL without query or fragment)`,
		"http://sdhub:9099/#frag": `invalid --http-sd-url "http://sdhub:9099/#frag" (want a base URL without query or fragment)`,
	} {
		_, _, err := generatePrometheusConfig(data, cfg, "sd", url)
		if err == nil || err.Error() != want {
			t.Errorf("--http-sd-url=%s: error %v, want %q", url, err, want)
		}
	}
	var stdout, stderr bytes.Buffer
	bad := filepath.Join(t.TempDir(), "bad.yml")
	writeFile(t, bad, "scrape_configs:\n  - job_name: a\n    static_configs: [{targets: [a:1]}]\n    file_sd_configs: [{files: []}]\n")
	if code := runMain([]string{"generate", "prometheus-config", "--config.file=" + bad}, &stdout, &stderr); code != exitBadConfig || stdout.Len() != 0 || !strings.Contains(stderr.String(), bad+":") {
		t.Errorf("an invalid config: exit %d, stdout %q, stderr %q; want exit 2 with the file's error", code, stdout.String(), stderr.String())
	}
}

// TestGenerateLoadsInPrometheus checks the generated configs with the real
// promtool: both variants load in Prometheus.
func TestGenerateLoadsInPrometheus(t *testing.T) {
	promtool := filepath.Join(filepath.Dir(prometheusBin(t)), "promtool")
	dir := t.TempDir()
	// The files the config names, so promtool checks them as well.
	for _, f := range []string{"rules/a.yml", "sd/node.json", "sd/web.json", "sd/mixed%20job.json", "sd/services.json", "sd/dns.json", "sd/ec2.json"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, f)), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(dir, "rules/a.yml"), "groups: []\n")
	for _, job := range []string{"node", "web", "mixed%20job", "services", "dns", "ec2"} {
		writeFile(t, filepath.Join(dir, "sd", job+".json"), `[{"targets": ["127.0.0.1:1"], "labels": {}}]`)
	}
	// Debian's Prometheus 2.42 predates scrape_config_files (2.43).
	input, err := os.ReadFile(generateInput)
	if err != nil {
		t.Fatal(err)
	}
	input = bytes.Replace(input, []byte("scrape_config_files: [\"scrape/*.yml\"]\n"), nil, 1)
	writeFile(t, filepath.Join(dir, "sdhub.yml"), string(input))
	for _, url := range []string{"", "http://127.0.0.1:9099"} {
		var stdout, stderr bytes.Buffer
		args := []string{"generate", "prometheus-config", "--config.file=" + filepath.Join(dir, "sdhub.yml"), "--output.dir=sd"}
		if url != "" {
			args = append(args, "--http-sd-url="+url)
		}
		if code := runMain(args, &stdout, &stderr); code != exitOK {
			t.Fatalf("exit %d: %s", code, stderr.String())
		}
		out := filepath.Join(dir, "prometheus.yml")
		writeFile(t, out, stdout.String())
		res, err := exec.Command(promtool, "check", "config", out).CombinedOutput()
		if err != nil || strings.Contains(string(res), "WARNING") {
			t.Errorf("promtool check config (http-sd-url %q): %v\n%s\n%s", url, err, res, stdout.String())
		}
	}
}
