package main

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sdhub/sdhub/config"
	"github.com/sdhub/sdhub/output"
)

// hubFilterJobs are relabel chains of every kind issue 19 names, each a job
// reading the same file_sd input; the last must be refused.
var hubFilterJobs = []struct {
	name, rules string
	refused     bool
}{
	{"tags", `
      - {source_labels: [__meta_consul_tags], regex: ".*,metrics,.*", action: keep}
      - {source_labels: [__meta_consul_tags], regex: ".*,canary,.*", action: drop}`, false},
	{"equal", `
      - {source_labels: [__meta_consul_service_port], target_label: __meta_consul_service_metadata_port, action: keepequal}
      - {source_labels: [__meta_consul_node], target_label: __meta_consul_service_metadata_skip_node, action: dropequal}`, false},
	{"hashmod", `
      - {source_labels: [__address__], modulus: 3, target_label: __tmp_hash, action: hashmod}
      - {source_labels: [__tmp_hash], regex: "1", action: keep}`, false},
	{"labelmap", `
      - {regex: __meta_consul_service_metadata_(.+), action: labelmap}
      - {source_labels: [team], regex: "a", action: keep}`, false},
	{"replace", `
      - {source_labels: [__meta_consul_service], regex: "(web|api)-.*", target_label: __tmp_kind, replacement: "$1"}
      - {source_labels: [__tmp_kind], regex: "web", action: drop}`, false},
	{"filepath", `
      - {source_labels: [__meta_filepath], regex: ".*/b\\.json", action: drop}`, false},
	{"address", `
      - {source_labels: [__address__], regex: "127\\.0\\.0\\.1:(.*)", target_label: __address__, replacement: "localhost:$1"}
      - {source_labels: [__address__], regex: "localhost:2[0-4]", action: keep}`, false},
	// Prometheus 2 sets no __scrape_native_histograms__ and Prometheus 3
	// sets "false": sdhub cannot know which keeps the targets.
	{"refused", `
      - {source_labels: [__scrape_native_histograms__, __meta_consul_service], regex: ";web-.*", action: keep}`, true},
}

// hubFilterInput writes file_sd input of consul-shaped targets into dir,
// in two files, and returns how many targets it holds.
func hubFilterInput(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	for f, count := range map[string]int{"a.json": 24, "b.json": 12} {
		var groups []string
		for i := range count {
			port := 20 + n
			svc := []string{"web-1", "api-1", "db-1"}[i%3]
			tags := []string{",metrics,", ",metrics,canary,", ",db,"}[i%4%3]
			team := []string{"a", "b"}[i%2]
			node := fmt.Sprintf("node-%d", i%5)
			metaPort := fmt.Sprint(port)
			if i%4 == 0 {
				metaPort = "1"
			}
			groups = append(groups, fmt.Sprintf(`{"targets": ["127.0.0.1:%d"], "labels": {"__meta_consul_service": %q, "__meta_consul_tags": %q,
  "__meta_consul_node": %q, "__meta_consul_service_port": "%d", "__meta_consul_service_metadata_port": %q,
  "__meta_consul_service_metadata_team": %q, "__meta_consul_service_metadata_skip_node": "node-3"}}`, port, svc, tags, node, port, metaPort, team))
			n++
		}
		writeFile(t, filepath.Join(dir, f), "["+strings.Join(groups, ",\n")+"]\n")
	}
	return n
}

// TestHubFilterMatchesNativePrometheus runs one config natively and through
// sdhub's http_sd with the config `generate prometheus-config` makes, in
// real Prometheus servers reading the same files. For every chain the
// active targets are the same, label for label; through sdhub, the targets
// the rules drop are dropped at the hub (the consumer does not even list
// them as dropped), except in the job whose filtering is refused, which
// is served whole and relabelled by the consumer.
func TestHubFilterMatchesNativePrometheus(t *testing.T) {
	cfgFile, outDir, inDir := hubDir(t, "")
	total := hubFilterInput(t, inDir)
	var cfg strings.Builder
	cfg.WriteString("global:\n  scrape_interval: 1h\nscrape_configs:\n")
	for _, j := range hubFilterJobs {
		fmt.Fprintf(&cfg, "  - job_name: %s\n    file_sd_configs:\n      - files: [%q]\n    relabel_configs:%s\n", j.name, filepath.Join(inDir, "*.json"), j.rules)
	}
	config := cfg.String()
	writeFile(t, cfgFile, config)

	p := startSdhub(t, "--config.file="+cfgFile, "--output.dir="+outDir)
	for _, j := range hubFilterJobs {
		eventually(t, "job "+j.name+" served", func() bool {
			code, _ := p.get(t, "/api/v1/sd/"+j.name)
			return code == http.StatusOK
		})
	}
	var stdout, stderr bytes.Buffer
	if code := runMain([]string{"generate", "prometheus-config", "--config.file=" + cfgFile, "--output.dir=" + outDir,
		"--http-sd-url=http://" + p.addr}, &stdout, &stderr); code != exitOK {
		t.Fatalf("generate: exit %d: %s", code, stderr.String())
	}
	generated := stdout.String()
	for _, j := range hubFilterJobs {
		url := "http://" + p.addr + "/api/v1/sd/" + j.name
		if filtered := strings.Contains(generated, url+"?rules="); filtered == j.refused {
			t.Errorf("job %s: filtered %v in the generated config, want %v:\n%s", j.name, filtered, !j.refused, generated)
		}
	}
	native, viaHub := startPrometheus(t, config), startPrometheus(t, generated)

	type view struct {
		active               []string
		dropped, activeByJob map[string]int
	}
	look := func(addr string) view {
		active, dropped := promTargets(t, addr)
		v := view{active: describe(active, func(tg promTarget) map[string]string { return tg.Labels }),
			dropped: map[string]int{}, activeByJob: map[string]int{}}
		for _, tg := range active {
			v.activeByJob[tg.ScrapePool]++
		}
		for _, tg := range dropped {
			v.dropped[tg.DiscoveredLabels["job"]]++
		}
		return v
	}
	var n, h view
	defer func() {
		if t.Failed() {
			t.Logf("native: %v active by job, %v dropped by job\n%s", n.activeByJob, n.dropped, strings.Join(n.active, "\n"))
			t.Logf("through sdhub: %v active by job, %v dropped by job\n%s", h.activeByJob, h.dropped, strings.Join(h.active, "\n"))
		}
	}()
	// Prometheus 2.42 does not always name the job of a dropped target: a
	// job's dropped targets are its targets that are not active.
	sum := func(m map[string]int) (n int) {
		for _, v := range m {
			n += v
		}
		return n
	}
	eventually(t, "both Prometheus servers to list every job's targets", func() bool {
		n, h = look(native), look(viaHub)
		if sum(n.activeByJob)+sum(n.dropped) != total*len(hubFilterJobs) {
			return false
		}
		for _, j := range hubFilterJobs {
			if h.activeByJob[j.name] != n.activeByJob[j.name] {
				return false
			}
		}
		return slices.Equal(n.active, h.active)
	})
	wantDropped := 0
	for _, j := range hubFilterJobs {
		dropped := total - n.activeByJob[j.name]
		if dropped == 0 || n.activeByJob[j.name] == 0 {
			t.Errorf("job %s: natively %d active of %d: the chain must keep some targets and drop others", j.name, n.activeByJob[j.name], total)
		}
		if j.refused {
			wantDropped += dropped // the consumer relabels the whole job
		}
	}
	if got := sum(h.dropped); got != wantDropped || (wantDropped > 0 && h.dropped["refused"] != wantDropped) {
		t.Errorf("the consumer of sdhub lists %v dropped targets, want %d, all of job refused: the others are dropped at the hub", h.dropped, wantDropped)
	}
}

// check consumer-config passes the config generate writes, and fails one
// whose rules were edited without regenerating it, naming the job.
func TestCheckConsumerConfig(t *testing.T) {
	dir := t.TempDir()
	hub := filepath.Join(dir, "sdhub.yml")
	writeFile(t, hub, `global:
  scrape_interval: 30s
scrape_configs:
  - job_name: web
    consul_sd_configs: [{server: "consul:8500"}]
    relabel_configs:
      - {source_labels: [__meta_consul_tags], regex: ".*,metrics,.*", action: keep}
  - job_name: all
    consul_sd_configs: [{server: "consul:8500"}]
`)
	var stdout, stderr bytes.Buffer
	if code := runMain([]string{"generate", "prometheus-config", "--config.file=" + hub, "--http-sd-url=http://sdhub:9099"}, &stdout, &stderr); code != exitOK {
		t.Fatalf("generate: exit %d: %s", code, stderr.String())
	}
	consumer := filepath.Join(dir, "consumer.yml")
	generated := stdout.String()
	check := func(wantCode int, wantOut, wantErr string) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		code := runMain([]string{"check", "consumer-config", consumer}, &stdout, &stderr)
		if code != wantCode || !strings.Contains(stdout.String(), wantOut) || !strings.Contains(stderr.String(), wantErr) {
			t.Errorf("exit %d, stdout %q, stderr %q; want exit %d, stdout with %q, stderr with %q", code, stdout.String(), stderr.String(), wantCode, wantOut, wantErr)
		}
	}
	writeFile(t, consumer, generated)
	check(exitOK, " SUCCESS: 1 job read sdhub's kept targets with the rules they name: web\n", "")

	for name, edit := range map[string][2]string{
		"a rule":           {`.*,metrics,.*`, `.*,metrics2,.*`},
		"a scrape setting": {"scrape_interval: 30s", "scrape_interval: 15s"},
	} {
		if !strings.Contains(generated, edit[0]) {
			t.Fatalf("the generated config has no %q:\n%s", edit[0], generated)
		}
		writeFile(t, consumer, strings.Replace(generated, edit[0], edit[1], 1))
		t.Run(name, func(t *testing.T) {
			check(exitError, "", `  FAILED: job "web" reads http://sdhub:9099/api/v1/sd/web?rules=`)
		})
	}
}

// docs/filtering.md shows the digest generate writes for the compose
// example's job: it must be the one the code computes.
func TestFilteringDocDigest(t *testing.T) {
	cfg, err := config.LoadFile("../../examples/consul.yml")
	if err != nil {
		t.Fatal(err)
	}
	p := output.PlanFilter("consul-services", jobScrape(cfg, "consul-services"), jobRelabel(cfg, "consul-services"))
	doc, err := os.ReadFile("../../docs/filtering.md")
	if err != nil {
		t.Fatal(err)
	}
	if want := "/api/v1/sd/consul-services?rules=" + p.Digest + "`"; p.Digest == "" || !strings.Contains(string(doc), want) {
		t.Errorf("docs/filtering.md does not show %q (plan %+v)", want, p)
	}
}

// A reload that changes a job's rules changes its digest at once: a
// consumer still naming the old one is served every target, and counted.
func TestHubFilterReload(t *testing.T) {
	cfgFile, outDir, inDir := hubDir(t, "")
	total := hubFilterInput(t, inDir)
	config := func(regex string) string {
		return fmt.Sprintf("scrape_configs:\n  - job_name: tags\n    file_sd_configs:\n      - files: [%q]\n    relabel_configs:\n"+
			"      - {source_labels: [__meta_consul_tags], regex: %q, action: keep}\n", filepath.Join(inDir, "*.json"), regex)
	}
	writeFile(t, cfgFile, config(".*,metrics,.*"))
	p := startSdhub(t, "--config.file="+cfgFile, "--output.dir="+outDir, "--web.enable-lifecycle")
	digest := func() string {
		t.Helper()
		var stdout, stderr bytes.Buffer
		if code := runMain([]string{"check", "config", cfgFile}, &stdout, &stderr); code != exitOK {
			t.Fatalf("check config: %d %s", code, stderr.String())
		}
		_, after, ok := strings.Cut(stdout.String(), "on for tags (rules ")
		if !ok {
			t.Fatalf("check config does not filter job tags:\n%s", stdout.String())
		}
		return after[:16]
	}
	count := func(query string) int {
		t.Helper()
		code, body := p.get(t, "/api/v1/sd/tags"+query)
		if code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", query, code, body)
		}
		return strings.Count(body, `"127.0.0.1:`)
	}
	old := digest()
	eventually(t, "job tags served", func() bool { code, _ := p.get(t, "/api/v1/sd/tags"); return code == http.StatusOK })
	metrics := count("?rules=" + old)
	if metrics == 0 || metrics == total || count("") != total {
		t.Fatalf("with the digest %d targets, without %d; want some and all %d", metrics, count(""), total)
	}

	writeFile(t, cfgFile, config(".*,db,.*"))
	if code, body := httpDo(t, http.MethodPost, "http://"+p.addr+"/-/reload"); code != http.StatusOK {
		t.Fatalf("reload: %d %s", code, body)
	}
	now := digest()
	if now == old {
		t.Fatal("the digest did not change with the rules")
	}
	if got := count("?rules=" + old); got != total {
		t.Errorf("the old digest after the reload: %d targets, want every one of %d", got, total)
	}
	if got := count("?rules=" + now); got == 0 || got == total || got == metrics {
		t.Errorf("the new digest: %d targets, want those tagged db", got)
	}
	if _, body := p.get(t, "/metrics"); !strings.Contains(body, `sdhub_http_sd_requests_total{job="tags",view="mismatch"} 1`) {
		t.Errorf("the request with the old digest is not counted as a mismatch")
	}
}
