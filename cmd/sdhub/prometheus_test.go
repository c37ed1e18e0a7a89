package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sdhub/sdhub/internal/testenv"
)

// prometheusBin finds Debian's prometheus: SDHUB_PROMETHEUS_BIN, else PATH.
func prometheusBin(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("SDHUB_PROMETHEUS_BIN"); p != "" {
		return p
	}
	p, err := exec.LookPath("prometheus")
	testenv.Require(t, "prometheus", err == nil, "not on PATH and SDHUB_PROMETHEUS_BIN unset (scripts/deps/prometheus.sh installs it)")
	return p
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startPrometheus runs a real Prometheus on config and returns its address.
func startPrometheus(t *testing.T, config string) string {
	t.Helper()
	bin := prometheusBin(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	writeFile(t, cfg, config)
	addr := freePort(t)
	cmd := exec.Command(bin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	logf, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(waitTimeout):
			_ = cmd.Process.Kill()
			<-done
		}
		logf.Close()
		if t.Failed() {
			data, _ := os.ReadFile(logf.Name())
			t.Logf("prometheus log:\n%s", data)
		}
	})
	eventually(t, "prometheus ready", func() bool {
		select {
		case <-done:
			t.Fatalf("prometheus exited")
		default:
		}
		resp, err := httpGet("http://" + addr + "/-/ready")
		return err == nil && resp == 200
	})
	return addr
}

func httpGet(url string) (int, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// promTarget is one target of Prometheus's /api/v1/targets.
type promTarget struct {
	DiscoveredLabels map[string]string `json:"discoveredLabels"`
	Labels           map[string]string `json:"labels"`
	ScrapePool       string            `json:"scrapePool"`
}

func promTargets(t *testing.T, addr string) (active, dropped []promTarget) {
	t.Helper()
	_, body := httpDo(t, "GET", "http://"+addr+"/api/v1/targets?state=any")
	var r struct {
		Data struct {
			Active  []promTarget `json:"activeTargets"`
			Dropped []promTarget `json:"droppedTargets"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("bad /api/v1/targets answer: %v\n%s", err, body)
	}
	return r.Data.Active, r.Data.Dropped
}

// describe renders targets as "pool address k=v,..." lines, sorted, from
// the label set that keys selects.
func describe(ts []promTarget, labels func(promTarget) map[string]string, skip ...string) []string {
	var out []string
	for _, tg := range ts {
		ls := labels(tg)
		var kv []string
		for k, v := range ls {
			if k == "__address__" || slices.Contains(skip, k) {
				continue
			}
			kv = append(kv, k+"="+v)
		}
		slices.Sort(kv)
		pool := tg.ScrapePool
		if pool == "" {
			pool = ls["job"] // Prometheus 2.42 names no pool for dropped targets
		}
		out = append(out, fmt.Sprintf("%s %s %s", pool, ls["__address__"], strings.Join(kv, ",")))
	}
	slices.Sort(out)
	return out
}

// TestPrometheusReadsOutputs runs sdhub and a real Prometheus reading its
// outputs through file_sd_configs: Prometheus shows the targets with the
// labels sdhub discovered, follows a change, and its relabel_configs see
// the discovered labels.
func TestPrometheusReadsOutputs(t *testing.T) {
	cfgFile, outDir, inDir := hubDir(t, `scrape_configs:
  - job_name: web
    file_sd_configs:
      - files: ["in/*.json"]
  - job_name: node
    static_configs:
      - targets: ["127.0.0.1:9100", "127.0.0.2:9100"]
        labels: {env: prod}
      - targets: ["127.0.0.3:9100"]
        labels: {env: dev}
`)
	inPath := filepath.Join(inDir, "a.json")
	startSdhub(t, "--config.file="+cfgFile, "--output.dir="+outDir)
	eventually(t, "node.json", func() bool { _, ok := readOutput(t, filepath.Join(outDir, "node.json")); return ok })

	addr := startPrometheus(t, fmt.Sprintf(`global:
  scrape_interval: 1m
scrape_configs:
  - job_name: web
    file_sd_configs: [{files: [%q]}]
    relabel_configs:
      - source_labels: [app]
        regex: api
        action: drop
  - job_name: node
    file_sd_configs: [{files: [%q]}]
    relabel_configs:
      - source_labels: [env]
        target_label: environment
`, filepath.Join(outDir, "web.json"), filepath.Join(outDir, "node.json")))

	discovered := func(tg promTarget) map[string]string { return tg.DiscoveredLabels }
	skip := []string{"__scrape_interval__", "__scrape_timeout__", "__metrics_path__", "__scheme__"}
	webOut := filepath.Join(outDir, "web.json")
	nodeOut := filepath.Join(outDir, "node.json")
	want := []string{
		"node 127.0.0.1:9100 __meta_filepath=" + nodeOut + ",env=prod,job=node",
		"node 127.0.0.2:9100 __meta_filepath=" + nodeOut + ",env=prod,job=node",
		"node 127.0.0.3:9100 __meta_filepath=" + nodeOut + ",env=dev,job=node",
		"web 127.0.0.1:8080 __meta_filepath=" + webOut + ",__meta_sdhub_filepath=" + inPath + ",app=web,job=web",
		"web 127.0.0.1:8081 __meta_filepath=" + webOut + ",__meta_sdhub_filepath=" + inPath + ",app=web,job=web",
	}
	var got []string
	eventually(t, "prometheus to show sdhub's targets", func() bool {
		active, _ := promTargets(t, addr)
		got = describe(active, discovered, skip...)
		return slices.Equal(got, want)
	})
	// The consumer's relabel_configs ran on the discovered labels.
	active, _ := promTargets(t, addr)
	for _, tg := range active {
		if tg.ScrapePool == "node" && tg.Labels["environment"] != tg.DiscoveredLabels["env"] {
			t.Errorf("relabelled target %v lacks environment=%s", tg.Labels, tg.DiscoveredLabels["env"])
		}
	}

	// A change in the source reaches Prometheus through sdhub; the target
	// the consumer's relabelling drops shows as dropped.
	writeFile(t, inPath, `[{"targets": ["127.0.0.1:8083"], "labels": {"app": "web"}}, {"targets": ["127.0.0.1:8084"], "labels": {"app": "api"}}]`)
	var a, d []string
	defer func() {
		if t.Failed() {
			t.Logf("last active targets: %q\nlast dropped targets: %q", a, d)
		}
	}()
	eventually(t, "prometheus to follow the change", func() bool {
		active, dropped := promTargets(t, addr)
		a = describe(active, discovered, skip...)
		d = describe(dropped, discovered, skip...)
		return slices.Contains(a, "web 127.0.0.1:8083 __meta_filepath="+webOut+",__meta_sdhub_filepath="+inPath+",app=web,job=web") &&
			!slices.ContainsFunc(a, func(s string) bool { return strings.HasPrefix(s, "web 127.0.0.1:8080 ") }) &&
			slices.Contains(d, "web 127.0.0.1:8084 __meta_filepath="+webOut+",__meta_sdhub_filepath="+inPath+",app=api,job=web")
	})
}

// TestExamplesWorkWithPrometheus checks the consumer configs in examples/
// with promtool, and runs sdhub on examples/sdhub.yml.
func TestExamplesWorkWithPrometheus(t *testing.T) {
	promtool := filepath.Join(filepath.Dir(prometheusBin(t)), "promtool")
	for _, f := range []string{"prometheus.yml", "prometheus-compose.yml"} {
		out, err := exec.Command(promtool, "check", "config", "--syntax-only", filepath.Join("..", "..", "examples", f)).CombinedOutput()
		if err != nil {
			t.Errorf("promtool check config %s: %v\n%s", f, err, out)
		}
	}
	out := filepath.Join(t.TempDir(), "out")
	startSdhub(t, "--config.file="+filepath.Join("..", "..", "examples", "sdhub.yml"), "--output.dir="+out)
	for _, job := range []string{"node", "web", "mixed"} {
		eventually(t, job+".json from the example", func() bool {
			e, ok := readOutput(t, filepath.Join(out, job+".json"))
			return ok && len(e) > 0
		})
	}
}
