package reliability

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	dockerclient "github.com/docker/docker/client"
)

// SwarmOptions configure the Docker engine outage scenario.
type SwarmOptions struct {
	Bin string
	Dir string
	// Network and Address are the engine's ("unix", "/var/run/docker.sock");
	// EngineAddress gives them.
	Network, Address string
}

// EngineAddress is the engine the docker CLI uses: $DOCKER_HOST, else the
// platform default, as a network and address to dial.
func EngineAddress() (network, address string, err error) {
	host := os.Getenv("DOCKER_HOST")
	if host == "" {
		host = dockerclient.DefaultDockerHost
	}
	u, err := url.Parse(host)
	if err != nil {
		return "", "", err
	}
	switch u.Scheme {
	case "unix":
		return "unix", u.Path, nil
	case "tcp":
		return "tcp", u.Host, nil
	}
	return "", "", fmt.Errorf("docker host %q: scheme %q not supported (one of: unix, tcp)", host, u.Scheme)
}

// SwarmAvailable reports whether the docker CLI and a swarm manager engine
// are there, and why not.
func SwarmAvailable(ctx context.Context) (bool, string) {
	if _, err := exec.LookPath("docker"); err != nil {
		return false, "docker CLI not in PATH; run scripts/deps/docker.sh"
	}
	out, err := exec.CommandContext(ctx, "docker", "info", "--format", "{{.Swarm.ControlAvailable}}").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "true" {
		return false, fmt.Sprintf("no swarm manager engine (%v: %s); run scripts/deps/docker.sh", err, bytes.TrimSpace(out))
	}
	return true, ""
}

// SwarmOutage runs sdhub's dockerswarm discovery (role services) through a
// proxy to the real engine, and cuts the proxy: every connection, the
// events stream included, dies and new ones are refused, as in an engine
// restart, without disturbing anyone else using the shared engine. While
// cut the job's file keeps every target and the failure shows in
// /metrics and on the status page; once restored a new service reaches the
// file. Then sdhub restarted while the engine is cut leaves the file byte
// for byte and is not ready until the engine answers.
//
// The services have zero replicas of an image that does not exist
// (--no-resolve-image): they have endpoints, hence targets, and run
// nothing.
func SwarmOutage(ctx context.Context, o SwarmOptions) (r Result) {
	r = Result{Scenario: "docker engine outage"}
	defer r.timed(time.Now())

	b := make([]byte, 4)
	_, _ = rand.Read(b)
	tag := "sdhub-rel-" + hex.EncodeToString(b)
	var created []string
	docker := func(args ...string) (string, error) {
		out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("docker %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out)), nil
	}
	create := func(i int) error {
		name := fmt.Sprintf("%s-%d", tag, i)
		_, err := docker("service", "create", "--detach", "--name", name, "--replicas", "0", "--no-resolve-image",
			"--label", "sdhub.reliability="+tag, "--publish", "target=80", "sdhub-reliability-none:0")
		if err == nil {
			created = append(created, name)
		}
		return err
	}
	defer func() {
		if len(created) > 0 {
			_, _ = exec.Command("docker", append([]string{"service", "rm"}, created...)...).CombinedOutput()
		}
	}()
	for i := 0; i < 3; i++ {
		if r.failOn(create(i)) {
			return r
		}
	}
	px, err := NewProxy(o.Network, o.Address)
	if r.failOn(err) {
		return r
	}
	defer px.Cut()

	ps := newPaths(o.Dir)
	if r.failOn(ps.writeConfig(fmt.Sprintf(`scrape_configs:
  - job_name: swarm
    dockerswarm_sd_configs:
      - host: tcp://%s
        role: services
        refresh_interval: 5s
        filters: [{name: label, values: [sdhub.reliability=%s]}]
`, px.Addr, tag))) {
		return r
	}
	path := filepath.Join(ps.out, "swarm.json")
	services := func() int {
		data, err := os.ReadFile(path)
		if err != nil {
			return -1
		}
		es, err := ParseFileSD(data)
		if err != nil {
			return -2
		}
		seen := map[string]bool{}
		for _, e := range es {
			seen[e.Labels["__meta_dockerswarm_service_name"]] = true
		}
		return len(seen)
	}
	p, err := ps.start(o.Bin, fastFlush)
	if r.failOn(err) {
		return r
	}
	stopP := sync.OnceValue(p.Stop)
	defer func() { _ = stopP() }()
	if err := Eventually("3 services in swarm.json", func() bool { return services() == 3 && jobHealthy(p, "swarm") }); err != nil {
		r.Fail("%v (%d)", err, services())
		return r
	}

	// Mid-run.
	r.Runs++
	old, _ := os.ReadFile(path)
	failures := func(p *Proc) float64 { v, _ := p.MetricSum("prometheus_sd_refresh_failures_total"); return v }
	before := failures(p)
	// Every version of the file while the engine is cut: there must be none.
	w, err := WatchDir(ps.out)
	if r.failOn(err) {
		return r
	}
	defer w.Close()
	px.Cut()
	if err := Eventually("refresh failures counted", func() bool { return failures(p) > before }); err != nil {
		r.Fail("%v", err)
	}
	if _, page, _ := p.Do(http.MethodGet, "/"); !strings.Contains(page, "dockerswarm/0</code>:\n<span class=\"err\">failing for") {
		r.Fail("the status page does not show the engine failure")
	}
	if now, _ := os.ReadFile(path); !bytes.Equal(now, old) {
		r.Fail("swarm.json changed while the engine was cut")
	}
	for drained := false; !drained; {
		select {
		case ev := <-w.Events:
			if ev.Name == path {
				r.Fail("swarm.json was written while the engine was cut (%s)", ev.Op)
			}
		default:
			drained = true
		}
	}
	_ = w.Close()
	if r.failOn(px.Restore()) {
		return r
	}
	back := time.Now()
	if r.failOn(create(3)) {
		return r
	}
	if err := Eventually("the new service in swarm.json", func() bool { return services() == 4 }); err != nil {
		r.Fail("%v", err)
	}
	r.Fig("mid-run: file intact while cut, failure on /metrics and the status page, new service in the file %.1f s after the engine came back", time.Since(back).Seconds())

	// At start.
	r.Runs++
	if err := stopP(); err != nil {
		r.Fail("%v", err)
	}
	old, _ = os.ReadFile(path)
	px.Cut()
	p2, err := ps.start(o.Bin, fastFlush)
	if r.failOn(err) {
		return r
	}
	defer func() { _ = p2.Stop() }()
	if err := Eventually("refresh failures after the restart", func() bool { return failures(p2) >= 1 }); err != nil {
		r.Fail("%v", err)
	}
	if now, _ := os.ReadFile(path); !bytes.Equal(now, old) {
		r.Fail("swarm.json changed while the engine was unreachable at start")
	}
	if jobHealthy(p2, "swarm") || jobServed(p2, "swarm") {
		r.Fail("job swarm is healthy or served over http_sd while the engine is unreachable")
	}
	if r.failOn(px.Restore()) {
		return r
	}
	if err := Eventually("job swarm healthy once the engine answers", func() bool { return jobHealthy(p2, "swarm") && jobServed(p2, "swarm") }); err != nil {
		r.Fail("%v", err)
	}
	if now, _ := os.ReadFile(path); !bytes.Equal(now, old) {
		r.Fail("swarm.json differs after the engine came back unchanged")
	}
	r.Fig("at start: file untouched while cut, job unhealthy and not served, then healthy with the same file")
	return r
}
