package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"html"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
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

// browserConfig is a hub for the browser test: a job whose targets have
// long label lists and values, a job with a long name (no place to break
// a line) whose Consul is not there, and a static job.
const browserConfig = `scrape_configs:
  - job_name: long
    file_sd_configs:
      - files: ["in/long.json"]
  - job_name: ` + longJob + `
    consul_sd_configs:
      - server: 127.0.0.1:1
        refresh_interval: 1s
        services: [node-exporter-with-a-rather-long-service-name, blackbox-exporter-probing-the-public-endpoints]
  - job_name: static
    static_configs:
      - targets: ["127.0.0.1:9100"]
        labels: {env: prod}
`

const longJob = "the_node_exporters_of_every_datacenter_we_run_in_frankfurt_berlin_amsterdam_paris_madrid_lisbon_and_rome_and_their_backups"

// longTargets is a file_sd file of 30 targets, each with 18 labels, one
// value 600 characters long without a space and one a long URL.
func longTargets() string {
	var entries []string
	for i := range 30 {
		labels := []string{
			fmt.Sprintf(`"team": %q`, []string{"ops", "web", "data"}[i%3]),
			fmt.Sprintf(`"__meta_blob": %q`, strings.Repeat("x0123456789", 55)),
			fmt.Sprintf(`"__meta_url": "https://inventory.example.com/api/v2/hosts/%d/details?include=interfaces,disks,services&format=json"`, i),
		}
		for j := range 15 {
			labels = append(labels, fmt.Sprintf(`"__meta_consul_service_metadata_key_%02d": "value-%d-%d"`, j, i, j))
		}
		entries = append(entries, fmt.Sprintf(`{"targets": ["10.20.%d.%d:9100"], "labels": {%s}}`, i/10, i, strings.Join(labels, ", ")))
	}
	return "[" + strings.Join(entries, ",\n") + "]\n"
}

// layoutProbe is a page that loads another (?page=, same origin) in a
// 1,400 px wide frame and reports its layout in <pre id="result">: its DOM,
// the document's width against the frame's, and every element that is
// wider than its box or reaches past the right edge. Chromium's --dump-dom
// prints it once the frame has loaded (the frame holds up the page's load
// event).
const layoutProbe = `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>layout probe</title></head>
<body style="margin:0">
<iframe id="f" style="width:1400px;height:1000px;border:0;display:block"></iframe>
<pre id="result">pending</pre>
<script>
var f = document.getElementById("f");
f.addEventListener("load", function () {
  var w = f.contentWindow, d = f.contentDocument, root = d.documentElement;
  var out = {url: d.URL, html: root.outerHTML, scrollWidth: root.scrollWidth, clientWidth: root.clientWidth, text: d.body.innerText.length, problems: []};
  d.querySelectorAll("body *").forEach(function (el) {
    var r = el.getBoundingClientRect(), ox = w.getComputedStyle(el).overflowX;
    var name = el.tagName.toLowerCase() + (el.className ? "." + el.className : "");
    if (ox !== "visible" && el.scrollWidth > el.clientWidth + 1) {
      out.problems.push(name + " scrolls: " + el.scrollWidth + " > " + el.clientWidth);
    }
    if (r.width > 0 && r.right > root.clientWidth + 1) {
      out.problems.push(name + " ends at " + Math.round(r.right) + " past " + root.clientWidth + ": " + el.textContent.slice(0, 60));
    }
  });
  document.getElementById("result").textContent = JSON.stringify(out);
});
f.src = new URLSearchParams(location.search).get("page");
</script>
</body></html>
`

// layout is what layoutProbe reports.
type layout struct {
	URL, HTML                string
	ScrollWidth, ClientWidth int
	Text                     int
	Problems                 []string
}

var resultRE = regexp.MustCompile(`(?s)<pre id="result">(.*?)</pre>`)

// probeLayout lays page out at 1,400 px in Chromium through layoutProbe
// at base.
func probeLayout(t *testing.T, base, page string) layout {
	t.Helper()
	dom := chromium(t, "--window-size=1400,1000", "--virtual-time-budget=10000", "--dump-dom", base+"/probe?page="+url.QueryEscape(page))
	m := resultRE.FindSubmatch(dom)
	if m == nil {
		t.Fatalf("the probe of %s reported nothing:\n%s", page, dom)
	}
	var l layout
	if err := json.Unmarshal([]byte(html.UnescapeString(string(m[1]))), &l); err != nil {
		t.Fatalf("the probe of %s reported %q: %v", page, m[1], err)
	}
	return l
}

// screenshot takes a 1,400 px wide screenshot of page and checks it: the
// size asked for, a rendered page (dark text on a light background), and
// the page's right margin blank: nothing runs into the window's edge.
func screenshot(t *testing.T, page, name string) {
	t.Helper()
	dir := os.Getenv("SDHUB_SCREENSHOT_DIR") // to look at them; a temporary directory otherwise
	if dir == "" {
		dir = t.TempDir()
	}
	shot := filepath.Join(dir, name)
	chromium(t, "--window-size=1400,1000", "--hide-scrollbars", "--virtual-time-budget=10000", "--screenshot="+shot, page)
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	b := img.Bounds()
	if b.Dx() != 1400 || b.Dy() != 1000 {
		t.Errorf("%s is %dx%d, want 1400x1000", name, b.Dx(), b.Dy())
	}
	dark := func(x, y int) bool {
		r, g, bl, _ := img.At(x, y).RGBA()
		return (r+g+bl)/3 < 0xc000
	}
	darkCount, total := 0, 0
	for y := b.Min.Y; y < b.Max.Y; y += 2 {
		for x := b.Min.X; x < b.Max.X; x += 2 {
			if dark(x, y) {
				darkCount++
			}
			total++
		}
	}
	if frac := float64(darkCount) / float64(total); frac < 0.002 || frac > 0.5 {
		t.Errorf("%s has %.4f dark pixels: not a rendered page", name, frac)
	}
	// The body's margin is 1.5em (24 px): the last 16 columns stay blank
	// unless something runs past the page's width.
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Max.X - 16; x < b.Max.X; x++ {
			if dark(x, y) {
				t.Errorf("%s: something runs into the right edge at (%d, %d)", name, x, y)
				return
			}
		}
	}
	t.Logf("%s: %.2f%% dark pixels", shot, 100*float64(darkCount)/float64(total))
}

// TestStatusPageInBrowser renders the status page and a job's page in a
// real headless browser at 1,400 px, behind a reverse proxy that serves
// sdhub's /sdhub/ (--web.route-prefix) at /behind/ (--web.external-url):
// a job with long label lists and values whose file cannot be written, a
// job failing with a long name and a long error, a failed reload and the
// kept/dropped counts of relabelling. Nothing is wider than the window,
// scrolls in a box or runs into its edge; the relative links hold behind
// the proxy; the pages have no script. (Chromium's headless --dump-dom and
// --screenshot need scripting on, so it stays on; the pages have none.)
func TestStatusPageInBrowser(t *testing.T) {
	chromiumBin(t)
	cfgFile, outDir, inDir := hubDir(t, browserConfig)
	writeFile(t, filepath.Join(inDir, "long.json"), longTargets())
	// A directory where job long's file goes: its writes fail.
	if err := os.MkdirAll(filepath.Join(outDir, "long.json"), 0o755); err != nil {
		t.Fatal(err)
	}
	proxy := httptest.NewUnstartedServer(nil)
	base := "http://" + proxy.Listener.Addr().String()
	t.Setenv(relabelEnv, "- source_labels: [team]\n  regex: ops\n  action: drop\n")
	// One file per job: the page's account of a file that cannot be
	// written (long.json is a directory).
	p := startSdhub(t, "--config.file="+cfgFile, "--output.dir="+outDir, "--web.enable-lifecycle",
		"--web.external-url="+base+"/behind/", "--web.route-prefix=/sdhub", "--output.parts=1")
	sdhub, err := url.Parse("http://" + p.addr)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/behind/", &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(sdhub)
		r.Out.URL.Path = "/sdhub" + strings.TrimPrefix(r.In.URL.Path, "/behind")
		r.Out.URL.RawPath = "/sdhub" + strings.TrimPrefix(r.In.URL.EscapedPath(), "/behind")
	}})
	mux.HandleFunc("/behind", func(w http.ResponseWriter, r *http.Request) { // the prefix without its slash
		resp, err := http.Get(sdhub.String() + "/sdhub")
		if err == nil {
			resp.Body.Close()
			w.Header().Set("Location", resp.Request.URL.Path) // where sdhub's redirect led
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("/probe", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, layoutProbe) })
	proxy.Config.Handler = mux
	proxy.Start()
	t.Cleanup(proxy.Close)

	eventually(t, "sdhub ready", func() bool { code, _ := p.get(t, "/sdhub/-/ready"); return code == 200 })
	eventually(t, "the failing consul job on the status page", func() bool {
		_, page := p.get(t, "/sdhub/")
		return strings.Contains(page, `<span class="err">failing for`) && strings.Contains(page, "1 kept / 0 dropped")
	})
	writeFile(t, cfgFile, "scrape_configs:\n  - job_name: x\n    bogus: 1\n")
	if code, _ := httpDo(t, http.MethodPost, base+"/behind/-/reload"); code != http.StatusInternalServerError {
		t.Fatalf("POST -/reload of a bad config = %d, want 500", code)
	}

	for _, c := range []struct {
		page, name string
		want       []string
	}{
		{"/behind/", "status.png", []string{
			`<a href="./job/long">long</a>`, `<a href="./job/` + longJob + `">` + longJob + `</a>`,
			"The last reload failed", `unknown field "bogus"`, "20 kept / 10 dropped", `<span class="err">failing for`,
			"not up to date: the last write failed", "on disk: unknown (not written by this run of sdhub)",
			"Readiness means serving", "<h2>Running configuration</h2>",
		}},
		{"/behind/job/long", "job-long.png", []string{
			"<code>10.20.0.1:9100</code>", `<details><summary>13 more labels</summary>`, `<span class="warn">dropped</span>`,
			`scraped at <code>http://10.20.0.1:9100/metrics</code>`, `<a href="` + base + `/behind/api/v1/sd/long">`, `<a href="../">Status</a>`,
			"not up to date: the last write failed",
		}},
		{"/behind/job/long?q=team%3Dweb&show=kept", "job-long-filtered.png", []string{"10 of 30 targets match", `<option selected="">kept</option>`}},
		{"/behind/job/" + longJob, "job-failing.png", []string{`<span class="err">failing for`, "connection refused"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := probeLayout(t, base, c.page)
			if l.URL != base+c.page || l.Text < 200 {
				t.Fatalf("the probe laid out %s with %d characters of text, want %s", l.URL, l.Text, base+c.page)
			}
			for _, s := range c.want {
				if !strings.Contains(l.HTML, s) {
					t.Errorf("the browser's DOM of %s lacks %q:\n%s", c.page, s, l.HTML)
				}
			}
			if strings.Contains(l.HTML, "<script") {
				t.Errorf("%s has a script", c.page)
			}
			if l.ScrollWidth > l.ClientWidth || l.ClientWidth < 1350 || len(l.Problems) > 0 {
				t.Errorf("%s at 1,400 px: %d px wide in a %d px frame; cut off or scrolling:\n%s",
					c.page, l.ScrollWidth, l.ClientWidth, strings.Join(l.Problems, "\n"))
			}
			screenshot(t, base+c.page, c.name)
		})
	}

	// The relative links, resolved as the browser does, lead to the pages
	// behind the proxy; the prefix without its slash leads home.
	for _, link := range []string{"./job/long", "./metrics", "./-/ready", "./api/v1/sd/static", "./job/" + longJob} {
		u, err := url.Parse(base + "/behind/")
		if err != nil {
			t.Fatal(err)
		}
		ref, err := url.Parse(link)
		if err != nil {
			t.Fatal(err)
		}
		if code, _ := httpDo(t, http.MethodGet, u.ResolveReference(ref).String()); code != http.StatusOK {
			t.Errorf("link %s from /behind/ = %d, want 200", link, code)
		}
	}
	resp, err := http.Get(base + "/behind")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); loc != "/behind/" {
		t.Errorf("sdhub's prefix without a slash led to %q, want /behind/", loc)
	}
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
var fileErrorRE = regexp.MustCompile(`<code>file/[0-9]+</code>:\n<span class="err">failing for <span title="since [^"]*">[^<]*</span></span>, [0-9]+ errors? so far, the last [^:]*: <span class="err">read &#34;[^&]*a.json&#34;: `)

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
		return regexp.MustCompile(`<code>(consul|dockerswarm)/[0-9]+</code>:\n<span class="err">failing`).MatchString(page)
	})
	for _, s := range []string{"token: &lt;secret&gt;", "password: &lt;secret&gt;", "client_secret: &lt;secret&gt;",
		"credentials: &lt;secret&gt;", "proxy_url: http://user:xxxxx@127.0.0.1:5", "no full set delivered yet"} {
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
