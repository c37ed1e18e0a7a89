package main

import (
	"bytes"
	"context"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/sdhub/sdhub/internal/testenv"
)

// chromiumBin finds Debian's chromium: SDHUB_CHROMIUM_BIN, else PATH.
func chromiumBin(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("SDHUB_CHROMIUM_BIN"); p != "" {
		return p
	}
	p, err := exec.LookPath("chromium")
	testenv.Require(t, "chromium", err == nil, "not on PATH and SDHUB_CHROMIUM_BIN unset (scripts/deps/chromium.sh installs it)")
	return p
}

// chromium runs a headless Chromium with a fresh profile on args, as root
// in a container needs it, and returns its stdout.
func chromium(t *testing.T, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitTimeout)
	defer cancel()
	base := []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + t.TempDir(),
	}
	cmd := exec.CommandContext(ctx, chromiumBin(t), append(base, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes()
}

// TestStatusPageInBrowser renders the status page and a job's page in a
// real headless browser: the DOM holds the jobs and targets and no script,
// and the screenshot is a page, not a blank. (Chromium's headless
// --dump-dom and --screenshot need scripting on, so it stays on; the pages
// have no script to run.)
func TestStatusPageInBrowser(t *testing.T) {
	chromiumBin(t)
	cfgFile, outDir, _ := hubDir(t, configV1)
	p := startSdhub(t, "--config.file="+cfgFile, "--output.dir="+outDir)
	eventually(t, "sdhub ready", func() bool { code, _ := p.get(t, "/-/ready"); return code == 200 })

	dom := string(chromium(t, "--dump-dom", "http://"+p.addr+"/"))
	for _, s := range []string{`<a href="/job/static">static</a>`, `<a href="/job/files">files</a>`, "<h2>Running configuration</h2>", "job_name: files", "Ready"} {
		if !strings.Contains(dom, s) {
			t.Errorf("the browser's DOM of / lacks %q:\n%s", s, dom)
		}
	}
	if strings.Contains(dom, "<script") {
		t.Errorf("the status page has a script")
	}
	dom = string(chromium(t, "--dump-dom", "http://"+p.addr+"/job/files"))
	for _, s := range []string{"<code>127.0.0.1:8080</code>", "<code>127.0.0.1:8081</code>", `app="web"`} {
		if !strings.Contains(dom, s) {
			t.Errorf("the browser's DOM of /job/files lacks %q:\n%s", s, dom)
		}
	}

	shot := filepath.Join(t.TempDir(), "status.png")
	chromium(t, "--window-size=1280,900", "--screenshot="+shot, "http://"+p.addr+"/")
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if b := img.Bounds(); b.Dx() != 1280 || b.Dy() != 900 {
		t.Errorf("screenshot is %dx%d, want 1280x900", b.Dx(), b.Dy())
	}
	// A rendered page has text (dark pixels) on a light background.
	dark, total := 0, 0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y += 2 {
		for x := b.Min.X; x < b.Max.X; x += 2 {
			r, g, bl, _ := img.At(x, y).RGBA()
			if (r+g+bl)/3 < 0x6000 {
				dark++
			}
			total++
		}
	}
	if frac := float64(dark) / float64(total); frac < 0.002 || frac > 0.5 {
		t.Errorf("screenshot has %.4f dark pixels: not a rendered page", frac)
	}
	t.Logf("screenshot %s: %.2f%% dark pixels", shot, 100*float64(dark)/float64(total))
}

// TestStatusPageShowsErrors breaks a file discoverer's input: the status
// page shows the error it logged, under its job and provider, while the
// job keeps its targets.
func TestStatusPageShowsErrors(t *testing.T) {
	cfgFile, outDir, inDir := hubDir(t, configV1)
	p := startSdhub(t, "--config.file="+cfgFile, "--output.dir="+outDir)
	eventually(t, "sdhub ready", func() bool { code, _ := p.get(t, "/-/ready"); return code == 200 })
	writeFile(t, filepath.Join(inDir, "a.json"), `[{"targets": ["127.0.0.1:8080"]`)
	var page string
	eventually(t, "the file discoverer's error on the status page", func() bool {
		_, page = p.get(t, "/")
		return fileErrorRE.MatchString(page)
	})
	_, job := p.get(t, "/job/files")
	if !strings.Contains(job, "<code>127.0.0.1:8081</code>") || !fileErrorRE.MatchString(job) {
		t.Errorf("/job/files lacks its target or the error:\n%s", job)
	}
}

// fileErrorRE is the file discoverer's error as the status page lists it,
// under the provider's name.
var fileErrorRE = regexp.MustCompile(`<code>file/[0-9]+</code> failing \([^)]*\): read &#34;[^&]*a.json&#34;: `)

// TestStatusPageRedactsSecrets runs sdhub on Consul and Docker SD configs
// full of secrets, with nothing listening where they point: the status
// page shows the configs and the discoverers' errors without a secret, and
// the http_sd endpoint answers 503 while the jobs wait for a first set.
func TestStatusPageRedactsSecrets(t *testing.T) {
	secrets := []string{"consul-acl-t0ken", "consul-basic-pa55", "swarm-bearer-cred", "oauth-client-s3cret", "proxy-pa55"}
	cfgFile, outDir, _ := hubDir(t, `scrape_configs:
  - job_name: consul
    consul_sd_configs:
      - server: 127.0.0.1:1
        token: consul-acl-t0ken
        basic_auth: {username: prom, password: consul-basic-pa55}
        refresh_interval: 1s
      - server: 127.0.0.1:2
        oauth2: {client_id: sdhub, client_secret: oauth-client-s3cret, token_url: "http://127.0.0.1:3/token"}
  - job_name: swarm
    dockerswarm_sd_configs:
      - host: http://127.0.0.1:4
        role: tasks
        authorization: {credentials: swarm-bearer-cred}
        proxy_url: http://user:proxy-pa55@127.0.0.1:5
`)
	p := startSdhub(t, "--config.file="+cfgFile, "--output.dir="+outDir)
	var page string
	eventually(t, "a discoverer's error on the status page", func() bool {
		_, page = p.get(t, "/")
		return regexp.MustCompile(`<code>(consul|dockerswarm)/[0-9]+</code> failing`).MatchString(page)
	})
	for _, s := range []string{"token: &lt;secret&gt;", "password: &lt;secret&gt;", "client_secret: &lt;secret&gt;",
		"credentials: &lt;secret&gt;", "proxy_url: http://user:xxxxx@127.0.0.1:5", "waiting for its first full set"} {
		if !strings.Contains(page, s) {
			t.Errorf("the status page lacks %q", s)
		}
	}
	pages := page
	for _, path := range []string{"/job/consul", "/job/swarm", "/metrics"} {
		_, body := p.get(t, path)
		pages += body
	}
	for _, s := range secrets {
		if strings.Contains(pages, s) {
			t.Errorf("a page shows the secret %q", s)
		}
	}
	for _, job := range []string{"consul", "swarm"} {
		if code, body := p.get(t, "/api/v1/sd/"+job); code != 503 || !strings.Contains(body, `"errorType":"unavailable"`) {
			t.Errorf("GET /api/v1/sd/%s while waiting = %d %s, want 503", job, code, body)
		}
	}
	if code, _ := p.get(t, "/api/v1/sd/nope"); code != 404 {
		t.Errorf("GET /api/v1/sd/nope = %d, want 404", code)
	}
}
