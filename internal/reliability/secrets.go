package reliability

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"time"
)

// secretValues are planted in the config; none may ever be shown.
var secretValues = []string{
	"SECRET-consul-token-1",
	"SECRET-consul-password-2",
	"SECRET-basic-auth-3",
	"SECRET-bearer-4",
	"SECRET-oauth2-client-5",
	"SECRET-swarm-basic-6",
	"SECRET-url-password-7",
}

// SecretsOptions configure the secrets scenario.
type SecretsOptions struct {
	Bin string
	Dir string
}

// Secrets runs sdhub at debug level on a config with a secret in every
// place consul_sd_configs and dockerswarm_sd_configs take one, against
// endpoints that refuse connections so that every discoverer logs errors,
// then reloads a config that fails validation next to its secrets, and
// greps the log, every error, /metrics, the status page and the job pages
// for the secrets.
func Secrets(ctx context.Context, o SecretsOptions) (r Result) {
	r = Result{Scenario: "secrets never shown"}
	defer r.timed(time.Now())

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if r.failOn(err) {
		return r
	}
	closed := l.Addr().String() // nothing listens there once closed
	l.Close()
	cfgText := fmt.Sprintf(`scrape_configs:
  - job_name: consul-token
    consul_sd_configs:
      - server: %[1]s
        token: %[2]s
  - job_name: consul-password
    consul_sd_configs:
      - server: %[1]s
        username: u
        password: %[3]s
  - job_name: consul-basic
    consul_sd_configs:
      - server: %[1]s
        basic_auth: {username: u, password: %[4]s}
  - job_name: swarm-bearer
    dockerswarm_sd_configs:
      - host: http://%[1]s
        role: tasks
        authorization: {credentials: %[5]s}
  - job_name: swarm-oauth2
    dockerswarm_sd_configs:
      - host: http://%[1]s
        role: nodes
        oauth2: {client_id: id, client_secret: %[6]s, token_url: "http://%[1]s/token"}
  - job_name: swarm-basic
    dockerswarm_sd_configs:
      - host: http://%[1]s
        role: services
        basic_auth: {username: u, password: %[7]s}
`, closed, secretValues[0], secretValues[1], secretValues[2], secretValues[3], secretValues[4], secretValues[5])
	ps := newPaths(o.Dir)
	cfg := ps.cfg
	if r.failOn(ps.writeConfig(cfgText)) {
		return r
	}
	p, err := ps.start(o.Bin, "--web.enable-lifecycle") // Start sets --log.level=debug
	if r.failOn(err) {
		return r
	}
	defer func() { _ = p.Stop() }()

	// Every discoverer fails at least once (connection refused).
	for _, m := range []string{"prometheus_sd_consul_rpc_failures_total", "prometheus_sd_refresh_failures_total"} {
		if err := Eventually(m+" > 0", func() bool { v, err := p.MetricSum(m); return err == nil && v > 0 }); err != nil {
			r.Fail("%v", err)
		}
	}

	shown := map[string]string{} // where → what it showed
	get := func(path string) {
		_, body, err := p.Do(http.MethodGet, path)
		if err != nil {
			r.Fail("GET %s: %v", path, err)
		}
		shown["GET "+path] = body
	}
	get("/metrics")
	get("/")
	for _, job := range []string{"consul-token", "consul-password", "consul-basic", "swarm-bearer", "swarm-oauth2", "swarm-basic"} {
		get("/job/" + url.PathEscape(job))
		get("/api/v1/sd/" + url.PathEscape(job))
	}
	// The commands that print the config or discover with it.
	for _, args := range [][]string{{"generate", "prometheus-config", "--config.file=" + cfg}, {"discover", "--config.file=" + cfg, "--job=swarm-oauth2", "--timeout=2s"}, {"check", "config", cfg}} {
		c := exec.CommandContext(ctx, o.Bin, args...)
		outb, _ := c.CombinedOutput()
		shown["sdhub "+args[0]] = string(outb)
	}
	if !strings.Contains(shown["sdhub discover"], "timed out") {
		r.Fail("sdhub discover printed no error: %q", tail(shown["sdhub discover"], 500))
	}
	// Reloads that fail validation next to the secrets: their errors go
	// to the HTTP answer and the log.
	bad := []string{
		strings.Replace(cfgText, "        token: "+secretValues[0], "        token: "+secretValues[0]+"\n        authorization: {credentials: "+secretValues[3]+"}", 1),
		strings.Replace(cfgText, "      - host: http://"+closed+"\n        role: services", "      - host: http://u:"+secretValues[6]+"@"+closed+"\n        role: services", 1),
	}
	for i, b := range bad {
		if err := WriteFileAtomic(cfg, []byte(b)); err != nil {
			r.Fail("%v", err)
			return r
		}
		code, body, err := p.Do(http.MethodPost, "/-/reload")
		if err != nil || code != http.StatusInternalServerError {
			r.Fail("POST /-/reload of bad config %d = %d (%v), want 500", i, code, err)
		}
		if !strings.Contains(body, "failed to reload config") {
			r.Fail("POST /-/reload of bad config %d gave no error text: %q", i, body)
		}
		shown[fmt.Sprintf("POST /-/reload (bad config %d)", i)] = body
		for _, args := range [][]string{{"check", "config", cfg}, {"discover", "--config.file=" + cfg, "--job=consul-basic", "--timeout=2s"}} {
			c := exec.CommandContext(ctx, o.Bin, args...)
			outb, _ := c.CombinedOutput()
			shown[fmt.Sprintf("sdhub %s (bad config %d)", args[0], i)] = string(outb)
		}
	}
	get("/") // the status page after a failed reload
	if err := p.Stop(); err != nil {
		r.Fail("%v", err)
	}
	shown["log (debug)"] = p.Log()

	places, leaks := 0, 0
	for where, text := range shown {
		places++
		r.Runs++
		for _, s := range secretValues {
			if strings.Contains(text, s) {
				leaks++
				i := strings.Index(text, s)
				r.Fail("%s shows %s: …%s…", where, s, text[max(0, i-200):min(len(text), i+len(s)+50)])
			}
		}
	}
	r.Fig("secrets %d", len(secretValues))
	r.Fig("places grepped %d (log %d lines at debug)", places, strings.Count(shown["log (debug)"], "\n"))
	r.Fig("leaks %d", leaks)
	return r
}
