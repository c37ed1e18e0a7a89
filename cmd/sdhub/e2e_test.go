package main

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

const configV1 = `global:
  scrape_interval: 15s
scrape_configs:
  - job_name: static
    static_configs:
      - targets: ["127.0.0.1:9100"]
        labels: {env: prod}
  - job_name: files
    file_sd_configs:
      - files: ["in/*.json"]
`

// configV2 removes job static, adds job extra, keeps files unchanged.
const configV2 = `scrape_configs:
  - job_name: files
    file_sd_configs:
      - files: ["in/*.json"]
  - job_name: extra
    static_configs:
      - targets: ["127.0.0.2:9100"]
`

const inputV1 = `[{"targets": ["127.0.0.1:8080", "127.0.0.1:8081"], "labels": {"app": "web"}}]`

// hubDir makes a config dir with config and one file_sd input.
func hubDir(t *testing.T, config string) (cfgFile, outDir, inDir string) {
	t.Helper()
	dir := t.TempDir()
	inDir = filepath.Join(dir, "in")
	outDir = filepath.Join(dir, "out")
	if err := os.Mkdir(inDir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(inDir, "a.json"), inputV1)
	cfgFile = filepath.Join(dir, "sdhub.yml")
	writeFile(t, cfgFile, config)
	return cfgFile, outDir, inDir
}

func TestServeAndReload(t *testing.T) {
	cfgFile, outDir, inDir := hubDir(t, configV1)
	p := startSdhub(t, "--config.file="+cfgFile, "--output.dir="+outDir, "--web.enable-lifecycle")
	staticOut := filepath.Join(outDir, "static.json")
	filesOut := filepath.Join(outDir, "files.json")
	inPath := filepath.Join(inDir, "a.json")

	eventually(t, "static.json", outputIs(t, staticOut, "127.0.0.1:9100 env=prod"))
	eventually(t, "files.json", outputIs(t, filesOut,
		"127.0.0.1:8080 __meta_sdhub_filepath="+inPath+",app=web",
		"127.0.0.1:8081 __meta_sdhub_filepath="+inPath+",app=web"))
	eventually(t, "/-/ready", func() bool { code, _ := p.get(t, "/-/ready"); return code == http.StatusOK })
	if code, _ := p.get(t, "/-/healthy"); code != http.StatusOK {
		t.Errorf("/-/healthy = %d", code)
	}

	// A change of a file_sd input reaches the output.
	writeFile(t, inPath, `[{"targets": ["127.0.0.1:8082"], "labels": {"app": "api"}}]`)
	eventually(t, "files.json after the input changed", outputIs(t, filesOut, "127.0.0.1:8082 __meta_sdhub_filepath="+inPath+",app=api"))

	// A file sdhub did not write is never touched.
	foreign := filepath.Join(outDir, "foreign.json")
	writeFile(t, foreign, "[]\n")

	// SIGHUP: job static goes (its file with it), job extra comes.
	writeFile(t, cfgFile, configV2)
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually(t, "extra.json", outputIs(t, filepath.Join(outDir, "extra.json"), "127.0.0.2:9100 "))
	eventually(t, "static.json removed", func() bool { _, ok := readOutput(t, staticOut); return !ok })
	if data, err := os.ReadFile(foreign); err != nil || string(data) != "[]\n" {
		t.Fatalf("foreign file changed: %q, %v", data, err)
	}
	if got := p.metric(t, "sdhub_config_last_reload_successful"); got != "1" {
		t.Errorf("sdhub_config_last_reload_successful = %q, want 1", got)
	}
	// The status page shows the running config, the reloaded one.
	if _, page := p.get(t, "/"); !strings.Contains(page, "job_name: extra") || strings.Contains(page, "job_name: static") {
		t.Errorf("status page does not show the reloaded config:\n%s", page)
	}

	// A bad config over /-/reload: 500 with the error and its line, nothing lost.
	before, _ := os.ReadFile(filesOut)
	writeFile(t, cfgFile, configV2+"  - job_name: files\n    static_configs: [{targets: [\"x:1\"]}]\n")
	code, body := httpDo(t, http.MethodPost, "http://"+p.addr+"/-/reload")
	if code != http.StatusInternalServerError || !strings.Contains(body, cfgFile+":8: found multiple scrape configs with job name \"files\"") {
		t.Fatalf("bad reload answered %d %q", code, body)
	}
	if got := p.metric(t, "sdhub_config_last_reload_successful"); got != "0" {
		t.Errorf("sdhub_config_last_reload_successful = %q after a failed reload, want 0", got)
	}
	after, _ := os.ReadFile(filesOut)
	if !bytes.Equal(before, after) {
		t.Fatalf("files.json changed by a failed reload:\n%s\n%s", before, after)
	}
	// The status page says so, first thing, and is not all green.
	_, page := p.get(t, "/")
	want := regexp.MustCompile(`the last reload of the configuration failed (just now|[0-9]+s ago): ` +
		regexp.QuoteMeta(cfgFile+":8: found multiple scrape configs with job name &#34;files&#34;"))
	if !want.MatchString(page) || strings.Contains(page, "All well") || !strings.Contains(page, "The last reload failed") {
		t.Errorf("the status page after a failed reload lacks %s:\n%s", want, page)
	}
	// The running config still works: an input change still propagates.
	writeFile(t, inPath, inputV1)
	eventually(t, "files.json after a failed reload", outputIs(t, filesOut,
		"127.0.0.1:8080 __meta_sdhub_filepath="+inPath+",app=web",
		"127.0.0.1:8081 __meta_sdhub_filepath="+inPath+",app=web"))

	// A good config over /-/reload.
	writeFile(t, cfgFile, configV1)
	if code, body := httpDo(t, http.MethodPost, "http://"+p.addr+"/-/reload"); code != http.StatusOK {
		t.Fatalf("reload answered %d %q", code, body)
	}
	eventually(t, "static.json back", outputIs(t, staticOut, "127.0.0.1:9100 env=prod"))
	eventually(t, "extra.json removed", func() bool { _, ok := readOutput(t, filepath.Join(outDir, "extra.json")); return !ok })
	if _, page := p.get(t, "/"); strings.Contains(page, "reload failed") || !strings.Contains(page, "The last load succeeded") {
		t.Errorf("the status page after a good reload still shows the failure:\n%s", page)
	}

	if code := p.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0", code)
	}
}

func TestReloadEndpointNeedsLifecycle(t *testing.T) {
	cfgFile, outDir, _ := hubDir(t, configV1)
	p := startSdhub(t, "--config.file="+cfgFile, "--output.dir="+outDir)
	if code, _ := httpDo(t, http.MethodPost, "http://"+p.addr+"/-/reload"); code != http.StatusForbidden {
		t.Fatalf("/-/reload without --web.enable-lifecycle answered %d, want 403", code)
	}
}

func TestAutoReload(t *testing.T) {
	cfgFile, outDir, _ := hubDir(t, configV1)
	p := startSdhub(t, "--config.file="+cfgFile, "--output.dir="+outDir, "--config.auto-reload")
	eventually(t, "static.json", outputIs(t, filepath.Join(outDir, "static.json"), "127.0.0.1:9100 env=prod"))
	writeFile(t, cfgFile, configV2)
	eventually(t, "extra.json after the config file changed", outputIs(t, filepath.Join(outDir, "extra.json"), "127.0.0.2:9100 "))
	eventually(t, "static.json removed", func() bool { _, ok := readOutput(t, filepath.Join(outDir, "static.json")); return !ok })
	if !strings.Contains(p.log(), "Config file changed, reloading") {
		t.Errorf("no reload logged")
	}
}

func TestBadConfigAtStart(t *testing.T) {
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "bad.yml")
	writeFile(t, cfgFile, "scrape_configs:\n  - job_name: x\n    static_configs: [{targets: [a:1]}]\n    bogus: 1\n")
	var stdout, stderr bytes.Buffer
	code := runMain([]string{"--config.file=" + cfgFile, "--output.dir=" + filepath.Join(dir, "out"), "--web.listen-address=127.0.0.1:0"}, &stdout, &stderr)
	if code != exitBadConfig {
		t.Fatalf("exit code %d, want %d", code, exitBadConfig)
	}
	if want := cfgFile + `:4: unknown field \"bogus\" in scrape config`; !strings.Contains(stderr.String(), want) {
		t.Fatalf("log lacks %q:\n%s", want, stderr.String())
	}
}

func TestHelpExits(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := runMain([]string{"--help"}, &stdout, &stderr); code != 0 {
		t.Fatalf("--help: exit %d", code)
	}
	if !strings.Contains(stdout.String(), "sdhub run --help") || stderr.Len() != 0 {
		t.Fatalf("--help printed:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	}
}

func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yml")
	bad := filepath.Join(dir, "bad.yml")
	writeFile(t, good, configV1)
	writeFile(t, bad, "scrape_configs:\n  - job_name: x\n    file_sd_configs:\n      -\n")

	var stdout, stderr bytes.Buffer
	if code := runMain([]string{"check", "config", good}, &stdout, &stderr); code != 0 {
		t.Fatalf("check config good: exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	wantOut := "Checking " + good + "\n SUCCESS: " + good + " is valid sdhub config file syntax; 2 jobs served: static, files\n" +
		"  output layout: static one file, files 16 parts\n" +
		"  hub filter: off for static, files: no relabel rule that drops targets (keep, drop, keepequal, dropequal)\n"
	if stdout.String() != wantOut {
		t.Errorf("stdout:\n%s\nwant:\n%s", stdout.String(), wantOut)
	}
	if stderr.String() != "" {
		t.Errorf("stderr:\n%s\nwant nothing", stderr.String())
	}

	stdout.Reset()
	stderr.Reset()
	if code := runMain([]string{"check", "config", good, bad}, &stdout, &stderr); code != 1 {
		t.Fatalf("check config good bad: exit %d, want 1", code)
	}
	if want := "  FAILED: " + bad + ":4: empty or null section in file_sd_configs\n"; !strings.Contains(stderr.String(), want) {
		t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
	}
	if !strings.Contains(stdout.String(), "Checking "+bad+"\n") {
		t.Errorf("stdout lacks the bad file:\n%s", stdout.String())
	}
}

// oldOutput is the file a previous run left for a job.
const oldOutput = "[{\"targets\":[\"127.0.0.9:9\"],\"labels\":{}}]\n"

// hubWithOldOutput starts sdhub on config, an output dir holding oldOutput
// as job's file, and waits for job ok (which config must hold, with the
// target 127.0.0.1:1) to be written. It returns sdhub and job's file.
func hubWithOldOutput(t *testing.T, config, job string) (*sdhubProc, string) {
	t.Helper()
	dir := t.TempDir()
	outDir := filepath.Join(dir, "out")
	if err := os.Mkdir(outDir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "sdhub.yml")
	writeFile(t, cfgFile, config)
	path := filepath.Join(outDir, job+".json")
	writeFile(t, path, oldOutput)
	p := startSdhub(t, "--config.file="+cfgFile, "--output.dir="+outDir)
	eventually(t, "ok.json", outputIs(t, filepath.Join(outDir, "ok.json"), "127.0.0.1:1 "))
	return p, path
}

// untouched fails the test unless path still holds oldOutput.
func untouched(t *testing.T, path string) {
	t.Helper()
	if data, err := os.ReadFile(path); err != nil || string(data) != oldOutput {
		t.Fatalf("%s = %q, %v; want it untouched", filepath.Base(path), data, err)
	}
}

// TestRestartKeepsOutputs starts sdhub on an output dir holding the file of
// a job whose source does not answer (Consul on a closed port): the file
// stays byte for byte, the other job is written; sdhub is ready (it serves),
// the waiting job's http_sd answers 503 and the job is not healthy.
func TestRestartKeepsOutputs(t *testing.T) {
	p, waiting := hubWithOldOutput(t, `scrape_configs:
  - job_name: ok
    static_configs: [{targets: ["127.0.0.1:1"]}]
  - job_name: waiting
    consul_sd_configs: [{server: "`+freePort(t)+`"}]
    static_configs: [{targets: ["127.0.0.1:2"]}]
`, "waiting")
	// The writer has applied an update holding both jobs by now; wait for a
	// failed Consul request too, so the consul provider has had its chance.
	eventually(t, "a failed consul request", func() bool {
		v := p.metric(t, `prometheus_sd_consul_rpc_failures_total`)
		return v != "" && v != "0"
	})
	checkOneJobWaits(t, p, "waiting")
	untouched(t, waiting)
}

// TestFailedConfigKeepsOutput: a job whose SD config cannot start (its CA
// file is missing) keeps the file it had, is not healthy and is not served
// over http_sd, and the status page says why; the other jobs are written
// and served.
func TestFailedConfigKeepsOutput(t *testing.T) {
	p, broken := hubWithOldOutput(t, `scrape_configs:
  - job_name: ok
    static_configs: [{targets: ["127.0.0.1:1"]}]
  - job_name: broken
    consul_sd_configs:
      - server: "`+freePort(t)+`"
        tls_config: {ca_file: missing-ca.pem}
    static_configs: [{targets: ["127.0.0.1:2"]}]
`, "broken")
	if v := p.metric(t, `prometheus_sd_failed_configs{name="scrape"}`); v != "1" {
		t.Errorf("prometheus_sd_failed_configs = %q, want 1", v)
	}
	checkOneJobWaits(t, p, "broken")
	if _, page := p.get(t, "/job/broken"); !strings.Contains(page, "missing-ca.pem") {
		t.Errorf("/job/broken does not say why the config failed:\n%s", page)
	}
	untouched(t, broken)
}

// checkOneJobWaits checks readiness is per job: sdhub is ready, job ok is
// served and healthy, job waiting answers 503 on http_sd and is unhealthy.
func checkOneJobWaits(t *testing.T, p *sdhubProc, waiting string) {
	t.Helper()
	if code, _ := p.get(t, "/-/ready"); code != http.StatusOK {
		t.Errorf("/-/ready = %d, want 200: sdhub serves every job by its own state", code)
	}
	eventually(t, "job ok served", func() bool { code, _ := p.get(t, "/api/v1/sd/ok"); return code == http.StatusOK })
	if code, _ := p.get(t, "/api/v1/sd/"+waiting); code != http.StatusServiceUnavailable {
		t.Errorf("/api/v1/sd/%s = %d, want 503", waiting, code)
	}
	eventually(t, "job ok healthy", func() bool { return p.metric(t, `sdhub_job_healthy{job="ok"}`) == "1" })
	if v := p.metric(t, `sdhub_job_healthy{job="`+waiting+`"}`); v != "0" {
		t.Errorf("sdhub_job_healthy{job=%q} = %q, want 0", waiting, v)
	}
}

// TestVersion: --version prints the version as Prometheus does and exits 0;
// /metrics has sdhub_build_info.
func TestVersion(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := runMain([]string{"--version"}, &stdout, &stderr); code != exitOK {
		t.Fatalf("--version exited %d: %s", code, stderr.String())
	}
	if out := stdout.String() + stderr.String(); !strings.HasPrefix(out, "sdhub, version ") || !strings.Contains(out, "go version:") {
		t.Fatalf("--version printed %q", out)
	}
	cfgFile, outDir, _ := hubDir(t, "scrape_configs:\n  - job_name: node\n    static_configs: [{targets: [\"127.0.0.1:9100\"]}]\n")
	p := startSdhub(t, "--config.file="+cfgFile, "--output.dir="+outDir)
	_, body := p.get(t, "/metrics")
	if !strings.Contains(body, "\nsdhub_build_info{") {
		t.Fatalf("/metrics has no sdhub_build_info")
	}
}
