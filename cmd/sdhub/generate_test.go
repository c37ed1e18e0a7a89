package main

import (
	"bytes"
	"flag"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/sdhub/sdhub/config"
	"github.com/sdhub/sdhub/output"
	"github.com/sdhub/sdhub/shard"
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

// generateVariants are the ways TestGeneratePrometheusConfig runs generate
// on generateInput, with their golden files.
var generateVariants = []struct {
	name   string
	args   []string
	golden string
}{
	{"file_sd", nil, "generate/file_sd.golden.yml"},
	{"one_file", []string{"--output.parts=1"}, "generate/one_file.golden.yml"},
	{"http_sd", []string{"--http-sd-url=https://sdhub.example:9099/"}, "generate/http_sd.golden.yml"},
	{"include_static", []string{"--include-static-jobs"}, "generate/include_static.golden.yml"},
	{"fleet", []string{"--http-sd-url=https://sdhub.example:9099/", "--shards=4", "--shard=1", "--replicas=2", "--strategy=bounded-load", "--weight-label=__meta_consul_service_metadata_series"}, "generate/fleet.golden.yml"},
}

func TestGeneratePrometheusConfig(t *testing.T) {
	input, err := os.ReadFile(generateInput)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range generateVariants {
		t.Run(c.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := append([]string{"generate", "prometheus-config", "--config.file=" + generateInput, "--output.dir=/var/lib/sdhub"}, c.args...)
			if code := runMain(args, &stdout, &stderr); code != exitOK {
				t.Fatalf("exit %d: %s", code, stderr.String())
			}
			wantWarn := `sdhub generate: warning: job "extra" comes from a scrape_config_files file, not testdata/generate/prometheus.yml: its service discovery is not rewritten` + "\n"
			if stderr.String() != wantWarn {
				t.Errorf("stderr = %q, want %q", stderr.String(), wantWarn)
			}
			out := stdout.String()
			for _, gone := range []string{"in/*.json", "# The files the CMDB writes.", "127.0.0.1:8080", "consul-acl-token", "# tags: [metrics]", "dockerswarm_sd_configs:", "in/mixed.json", "in/last.json",
				"dns_sd_configs:", "http://inventory.example/targets", "ec2_sd_configs:", "aws-s3cret-key"} {
				if strings.Contains(out, gone) {
					t.Errorf("the output still has %q", gone)
				}
			}
			goldenFile(t, c.golden, stdout.Bytes())
			httpURL, query := "", ""
			switch c.name {
			case "http_sd":
				httpURL = "https://sdhub.example:9099"
			case "fleet":
				httpURL = "https://sdhub.example:9099"
				query = "?replicas=2&shard=1&shards=4&strategy=bounded-load&weight_label=__meta_consul_service_metadata_series"
			}
			cfg, err := config.LoadFile(generateInput)
			if err != nil {
				t.Fatal(err)
			}
			parts := map[string]int{}
			if !slices.Contains(c.args, "--output.parts=1") {
				parts = output.Layout{Parts: 16, MaxEntries: 96}.Plan(cfg.Splittable())
			}
			// A job filtered at the hub names its rules' digest.
			jobQuery := func(job string) string {
				q, _ := url.ParseQuery(strings.TrimPrefix(query, "?"))
				if p := output.PlanFilter(job, jobScrape(cfg, job), jobRelabel(cfg, job)); p.Digest != "" {
					q.Set("rules", p.Digest)
				}
				if len(q) == 0 {
					return ""
				}
				return "?" + q.Encode()
			}
			checkRewrite(t, input, stdout.Bytes(), slices.Contains(c.args, "--include-static-jobs"), httpURL, jobQuery, parts)
		})
	}
}

// checkRewrite compares the data of in and out (the YAML decoded, whatever
// its formatting): out must be in with, in each job generate rewrites,
// the blocks sdhub runs replaced by one reading sdhub and the restore rules
// first in relabel_configs; every other key and section equal. A job of
// several parts (parts) reads each through an entry of its own. Formatting
// itself is compared by the golden files.
func checkRewrite(t *testing.T, in, out []byte, includeStatic bool, httpURL string, query func(job string) string, parts map[string]int) {
	t.Helper()
	var want, got map[string]any
	if err := yaml.Unmarshal(in, &want); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(out, &got); err != nil {
		t.Fatalf("the output is not YAML: %v", err)
	}
	sdKeys := []string{"static_configs"}
	for _, m := range config.Mechanisms {
		sdKeys = append(sdKeys, m.Key())
	}
	for _, j := range want["scrape_configs"].([]any) {
		job := j.(map[string]any)
		var replaced []string
		for _, k := range sdKeys {
			if _, ok := job[k]; ok {
				replaced = append(replaced, k)
			}
		}
		if len(replaced) == 0 || (!includeStatic && len(replaced) == 1 && replaced[0] == "static_configs") {
			continue
		}
		for _, k := range replaced {
			delete(job, k)
		}
		name := job["job_name"].(string)
		endpoint := ""
		if httpURL != "" {
			// sdhub's endpoint after the job's own.
			endpoint = httpURL + "/api/v1/sd/" + url.PathEscape(name) + query(name)
			own, _ := job["http_sd_configs"].([]any)
			job["http_sd_configs"] = append(own, map[string]any{"url": endpoint})
		} else if n := parts[name]; n > 1 {
			var entries []any
			for i := range n {
				entries = append(entries, map[string]any{"files": []any{output.PartPath("/var/lib/sdhub", name, i)}, "refresh_interval": partsRefresh})
			}
			job["file_sd_configs"] = entries
		} else {
			job["file_sd_configs"] = []any{map[string]any{"files": []any{output.Path("/var/lib/sdhub", name)}}}
		}
		var rules []any
		for _, r := range restoreRules(endpoint) {
			var v any
			if err := r.Decode(&v); err != nil {
				t.Fatal(err)
			}
			rules = append(rules, v)
		}
		own, _ := job["relabel_configs"].([]any)
		job["relabel_configs"] = append(rules, own...)
	}
	if !reflect.DeepEqual(got, want) {
		g, _ := yaml.Marshal(got)
		w, _ := yaml.Marshal(want)
		t.Errorf("the output's data differs from the input's with the expected rewrite:\n got: %s\nwant: %s", g, w)
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
		_, _, err := generatePrometheusConfig(data, cfg, generateOptions{outDir: "sd", httpSDURL: url})
		if err == nil || err.Error() != want {
			t.Errorf("--http-sd-url=%s: error %v, want %q", url, err, want)
		}
	}
	for _, c := range []struct {
		opts generateOptions
		want string
	}{
		{generateOptions{shard: output.ShardSpec{Shards: 4}}, "--shards, --shard, --replicas, --strategy and --weight-label split jobs through http_sd: they need --http-sd-url"},
		{generateOptions{strategy: "bounded-load"}, "--shards, --shard, --replicas, --strategy and --weight-label split jobs through http_sd: they need --http-sd-url"},
		{generateOptions{httpSDURL: "http://sdhub:9099", shard: output.ShardSpec{Shards: 4, Shard: 4}}, "--shard and --shards: invalid shard 4 (must be from 0 to shards-1 = 3)"},
		{generateOptions{httpSDURL: "http://sdhub:9099", shard: output.ShardSpec{Shards: 2, Replicas: 3}}, "--replicas: " + shard.ValidateReplicas(3, 2).Error()},
		{generateOptions{httpSDURL: "http://sdhub:9099", shard: output.ShardSpec{Shards: 2, WeightLabel: "w"}}, "--weight-label needs --strategy=bounded-load"},
		{generateOptions{httpSDURL: "http://sdhub:9099", strategy: "least-weighted", shard: output.ShardSpec{Shards: 2}}, "--strategy: " + func() string { _, err := shard.ParseStrategy("least-weighted"); return err.Error() }()},
	} {
		_, _, err := generatePrometheusConfig(data, cfg, c.opts)
		if err == nil || err.Error() != c.want {
			t.Errorf("%+v: error %v, want %q", c.opts, err, c.want)
		}
	}
	var stdout, stderr bytes.Buffer
	bad := filepath.Join(t.TempDir(), "bad.yml")
	writeFile(t, bad, "scrape_configs:\n  - job_name: a\n    static_configs: [{targets: [a:1]}]\n    file_sd_configs: [{files: []}]\n")
	if code := runMain([]string{"generate", "prometheus-config", "--config.file=" + bad}, &stdout, &stderr); code != exitBadConfig || stdout.Len() != 0 || !strings.Contains(stderr.String(), bad+":") {
		t.Errorf("an invalid config: exit %d, stdout %q, stderr %q; want exit 2 with the file's error", code, stdout.String(), stderr.String())
	}
}

// TestGenerateLoadsInPrometheus checks every variant of the generated
// config with the real promtool.
func TestGenerateLoadsInPrometheus(t *testing.T) {
	promtool := filepath.Join(filepath.Dir(prometheusBin(t)), "promtool")
	dir := t.TempDir()
	// Debian's Prometheus 2.42 predates scrape_config_files (2.43).
	input, err := os.ReadFile(generateInput)
	if err != nil {
		t.Fatal(err)
	}
	input = bytes.Replace(input, []byte("scrape_config_files: [\"scrape/*.yml\"]\n"), nil, 1)
	writeFile(t, filepath.Join(dir, "sdhub.yml"), string(input))
	cfg, err := config.LoadFile(filepath.Join(dir, "sdhub.yml"))
	if err != nil {
		t.Fatal(err)
	}
	// The files the config names, so promtool checks them as well.
	for _, d := range []string{"rules", "sd"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(dir, "rules/a.yml"), "groups: []\n")
	for _, sc := range cfg.ScrapeConfigs {
		writeFile(t, output.Path(filepath.Join(dir, "sd"), sc.JobName), `[{"targets": ["127.0.0.1:1"], "labels": {}}]`)
		for i := range output.MaxParts {
			p := output.PartPath(filepath.Join(dir, "sd"), sc.JobName, i)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			writeFile(t, p, `[{"targets": ["127.0.0.1:1"], "labels": {}}]`)
		}
	}
	for _, c := range generateVariants {
		var stdout, stderr bytes.Buffer
		args := append([]string{"generate", "prometheus-config", "--config.file=" + filepath.Join(dir, "sdhub.yml"), "--output.dir=sd"}, c.args...)
		if code := runMain(args, &stdout, &stderr); code != exitOK {
			t.Fatalf("%s: exit %d: %s", c.name, code, stderr.String())
		}
		out := filepath.Join(dir, "prometheus.yml")
		writeFile(t, out, stdout.String())
		res, err := exec.Command(promtool, "check", "config", out).CombinedOutput()
		if err != nil || strings.Contains(string(res), "WARNING") {
			t.Errorf("promtool check config (%s): %v\n%s\n%s", c.name, err, res, stdout.String())
		}
	}
}

// TestGenerateKeepsFormatting rewrites small configs whose blocks end in
// ways a line-based edit can get wrong, and compares the whole output.
func TestGenerateKeepsFormatting(t *testing.T) {
	const rules = `    relabel_configs:
      # sdhub: __meta_filepath and __meta_url as native SD sets them
      - {source_labels: [__meta_sdhub_filepath], regex: (.*), target_label: __meta_filepath, replacement: $1}
      - {source_labels: [__meta_sdhub_url], regex: (.+), target_label: __meta_url, replacement: $1}
      - {regex: __meta_sdhub_(filepath|url), action: labeldrop}
`
	for _, c := range []struct{ name, in, want string }{
		{
			name: "last block without a trailing newline",
			in:   "scrape_configs:\n  - job_name: a\n    file_sd_configs:\n    - files: [x.json]",
			want: "scrape_configs:\n  - job_name: a\n    file_sd_configs: # sdhub: replaces file_sd_configs\n      - files: [sd/a.json]\n" + rules,
		},
		{
			name: "block scalar, blank line and commented-out key inside the block",
			in: `scrape_configs:
  - job_name: a
    consul_sd_configs:
      - server: localhost:8500
        filter: |
          Service == "a"

          and true
        # services: [b]
    # The comment of scrape_interval.
    scrape_interval: 1m
`,
			want: `scrape_configs:
  - job_name: a
    file_sd_configs: # sdhub: replaces consul_sd_configs
      - files: [sd/a.json]
` + rules + `    # The comment of scrape_interval.
    scrape_interval: 1m
`,
		},
		{
			name: "flow sequences over lines, closed at the key's indentation",
			in: `scrape_configs:
  - job_name: a
    static_configs: [
      {targets: ["h:1"]},
    ]
    file_sd_configs: [{files: [
    b.json]}]
    metrics_path: /m   # kept

  - job_name: b
`,
			want: `scrape_configs:
  - job_name: a
    file_sd_configs: # sdhub: replaces static_configs, file_sd_configs
      - files: [sd/a.json]
` + rules + `    metrics_path: /m   # kept

  - job_name: b
`,
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "prometheus.yml")
			if err := os.WriteFile(file, []byte(c.in), 0o644); err != nil {
				t.Fatal(err)
			}
			cfg, err := config.LoadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			got, _, err := generatePrometheusConfig([]byte(c.in), cfg, generateOptions{outDir: "sd"})
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != c.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, c.want)
			}
		})
	}
}

// TestExamplePrometheusIsGenerated checks that the consumer configs in
// examples/ are what generate makes of the sdhub configs there, but for the
// comment at the top of each; -update rewrites them below their comment.
func TestExamplePrometheusIsGenerated(t *testing.T) {
	for _, c := range []struct{ example, from, outDir string }{
		{"prometheus.yml", "sdhub.yml", "/etc/prometheus/sd"},
		{"prometheus-compose.yml", "consul.yml", "/sd"},
	} {
		t.Run(c.example, func(t *testing.T) {
			example := filepath.Join("..", "..", "examples", c.example)
			var stdout, stderr bytes.Buffer
			args := []string{"generate", "prometheus-config", "--config.file=" + filepath.Join("..", "..", "examples", c.from), "--output.dir=" + c.outDir}
			if code := runMain(args, &stdout, &stderr); code != exitOK {
				t.Fatalf("exit %d: %s", code, stderr.String())
			}
			data, err := os.ReadFile(example)
			if err != nil {
				t.Fatal(err)
			}
			header, body := splitHeader(string(data))
			_, want := splitHeader(stdout.String())
			if *update {
				if err := os.WriteFile(example, []byte(header+want), 0o644); err != nil {
					t.Fatal(err)
				}
				body = want
			}
			if body != want {
				t.Errorf("%s is not generate's output for examples/%s (go test -update rewrites it); generate gives:\n%s", example, c.from, want)
			}
		})
	}
}

// splitHeader splits the comment lines at the top of a YAML file from the
// rest.
func splitHeader(s string) (header, body string) {
	rest := s
	for strings.HasPrefix(rest, "#") {
		_, after, _ := strings.Cut(rest, "\n")
		rest = after
	}
	return s[:len(s)-len(rest)], rest
}
