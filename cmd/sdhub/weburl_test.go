package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every endpoint is served under --web.route-prefix, which defaults to the
// path of --web.external-url, as Prometheus serves its own. sdhub says
// where it listens once.
func TestRoutePrefix(t *testing.T) {
	for _, c := range []struct {
		name   string
		args   []string
		prefix string
	}{
		{"route prefix", []string{"--web.route-prefix=/sdhub/"}, "/sdhub"},
		{"external URL's path", []string{"--web.external-url=https://sd.example/hub/"}, "/hub"},
		{"route prefix over the external URL's path", []string{"--web.external-url=https://sd.example/hub", "--web.route-prefix=/"}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfgFile, outDir, _ := hubDir(t, configV1)
			p := startSdhub(t, append([]string{"--config.file=" + cfgFile, "--output.dir=" + outDir, "--web.enable-lifecycle"}, c.args...)...)
			eventually(t, "ready under the prefix", func() bool { code, _ := p.get(t, c.prefix+"/-/ready"); return code == http.StatusOK })
			if n := strings.Count(p.log(), "Listening"); n != 1 {
				t.Errorf("%q logged %d times, want once:\n%s", "Listening", n, p.log())
			}
			for _, path := range []string{"/", "/metrics", "/-/healthy", "/api/v1/sd/static", "/debug/pprof/", "/job/files"} {
				if code, _ := p.get(t, c.prefix+path); code != http.StatusOK {
					t.Errorf("GET %s = %d, want 200", c.prefix+path, code)
				}
			}
			if code, _ := httpDo(t, http.MethodPost, "http://"+p.addr+c.prefix+"/-/reload"); code != http.StatusOK {
				t.Errorf("POST %s/-/reload = %d, want 200", c.prefix, code)
			}
			if c.prefix == "" {
				return
			}
			for _, path := range []string{"/metrics", "/-/ready", "/api/v1/sd/static"} {
				if code, _ := p.get(t, path); code != http.StatusNotFound {
					t.Errorf("GET %s outside the prefix = %d, want 404", path, code)
				}
			}
			if _, page := p.get(t, c.prefix+"/"); !strings.Contains(page, `<a href="./job/files">files</a>`) {
				t.Errorf("the status page lacks a relative link to job files:\n%s", page)
			}
		})
	}
}

func TestExternalURL(t *testing.T) {
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tlsCfg := filepath.Join(dir, "web.yml")
	writeFile(t, tlsCfg, "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n")
	plainCfg := filepath.Join(dir, "plain.yml")
	writeFile(t, plainCfg, "basic_auth_users: {}\n")
	for _, c := range []struct {
		raw, listen, webConfig, want, err string
	}{
		{"", "127.0.0.1:9099", "", "http://" + host + ":9099", ""},
		{"", "[::]:9099", tlsCfg, "https://" + host + ":9099", ""},
		{"", ":9099", plainCfg, "http://" + host + ":9099", ""},
		{"https://sd.example/hub/", ":9099", "", "https://sd.example/hub", ""},
		{"https://sd.example/a//", ":9099", "", "https://sd.example/a", ""},
		{"http://sd.example", ":9099", "", "http://sd.example", ""},
		{`"http://sd.example"`, ":9099", "", "", "URL must not begin or end with quotes"},
		{"http://sd.example:x/", ":9099", "", "", `parse "http://sd.example:x/": invalid port ":x" after host`},
	} {
		u, err := externalURL(c.raw, c.listen, c.webConfig)
		switch {
		case c.err != "" && (err == nil || err.Error() != c.err):
			t.Errorf("externalURL(%q) = %v, %v; want the error %q", c.raw, u, err, c.err)
		case c.err == "" && (err != nil || u.String() != c.want):
			t.Errorf("externalURL(%q, %q, %q) = %v, %v; want %s", c.raw, c.listen, c.webConfig, u, err, c.want)
		}
	}
}
