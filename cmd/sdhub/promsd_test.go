package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	promdiscovery "github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	yamlv2 "go.yaml.in/yaml/v2"

	"github.com/sdhub/sdhub/discovery/promsd"
	"github.com/sdhub/sdhub/internal/swarmtest"
	"github.com/sdhub/sdhub/internal/testenv"
	"github.com/sdhub/sdhub/output"
)

// These end-to-end tests run mechanisms sdhub runs with Prometheus's code
// against real sources, and compare sdhub's output file, label for label,
// with what Prometheus's own discoverer finds in the same source.

// reference runs Prometheus's own discoverer for one `<name>_sd_configs`
// block, as a Prometheus server would, in a child process (this test binary
// running TestReferenceDiscoverer): Prometheus's discoverers do not close
// their HTTP clients, whose idle connections would outlive the test.
type reference struct {
	mu      sync.Mutex
	current []string
}

const (
	refMechEnv  = "SDHUB_TEST_REFERENCE_MECHANISM"
	refBlockEnv = "SDHUB_TEST_REFERENCE_BLOCK"
	refPrefix   = "reference targets: "
)

func newReference(t *testing.T, name, block string) *reference {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestReferenceDiscoverer$")
	cmd.Env = append(os.Environ(), refMechEnv+"="+name, refBlockEnv+"="+block)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &reference{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 16<<20)
		for sc.Scan() {
			line, ok := strings.CutPrefix(sc.Text(), refPrefix)
			if !ok {
				continue
			}
			var targets []string
			if err := json.Unmarshal([]byte(line), &targets); err == nil {
				r.mu.Lock()
				r.current = targets
				r.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("reference discoverer's stderr:\n%s", stderr.String())
		}
	})
	return r
}

// targets are the reference's targets, one line of labels each, sorted.
func (r *reference) targets() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.current
}

// TestReferenceDiscoverer is the child process of newReference: it runs
// Prometheus's discoverer for $SDHUB_TEST_REFERENCE_MECHANISM and prints
// its targets after every update, until it is killed.
func TestReferenceDiscoverer(t *testing.T) {
	name := os.Getenv(refMechEnv)
	if name == "" {
		t.Skip("the child process of the *MatchesPrometheus tests")
	}
	typ, ok := promsd.Registered()[name]
	if !ok {
		t.Fatalf("%s_sd_configs is not registered", name)
	}
	v := reflect.New(typ.Elem())
	if err := yamlv2.UnmarshalStrict([]byte(os.Getenv(refBlockEnv)), v.Interface()); err != nil {
		t.Fatal(err)
	}
	cfg := v.Interface().(promdiscovery.Config)
	d, err := cfg.NewDiscoverer(promdiscovery.DiscovererOptions{
		Metrics: cfg.NewDiscovererMetrics(prometheus.NewRegistry(), promdiscovery.NewRefreshMetrics(prometheus.NewRegistry())),
		SetName: "reference",
	})
	if err != nil {
		t.Fatal(err)
	}
	up := make(chan []*targetgroup.Group)
	go d.Run(context.Background(), up)
	groups := map[string]*targetgroup.Group{}
	for tgs := range up {
		for _, tg := range tgs {
			groups[tg.Source] = tg
		}
		var out []string
		for _, tg := range groups {
			for _, tl := range tg.Targets {
				ls := tg.Labels.Clone()
				if ls == nil {
					ls = model.LabelSet{}
				}
				merge(ls, tl)
				out = append(out, ls.String())
			}
		}
		sort.Strings(out)
		line, err := json.Marshal(out)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Println(refPrefix + string(line))
	}
}

func merge(dst, src model.LabelSet) {
	for k, v := range src {
		dst[k] = v
	}
}

// outputTargets are the targets of a job's output file, in the form of
// reference.targets.
func outputTargets(t *testing.T, path string) []string {
	entries, _ := readOutput(t, path)
	// The rules `generate prometheus-config` puts first in the consuming
	// job give these two labels back their native names.
	native := map[string]string{output.FilepathLabel: "__meta_filepath", output.URLLabel: "__meta_url"}
	var out []string
	for _, e := range entries {
		for _, target := range e.Targets {
			ls := model.LabelSet{model.AddressLabel: model.LabelValue(target)}
			for k, v := range e.Labels {
				if n, ok := native[k]; ok {
					k = n
				}
				ls[model.LabelName(k)] = model.LabelValue(v)
			}
			out = append(out, ls.String())
		}
	}
	sort.Strings(out)
	return out
}

// agree waits until the job's output file and the reference hold the same
// targets, n of them.
func agree(t *testing.T, path string, ref *reference, n int) {
	t.Helper()
	var got, want []string
	deadline := time.Now().Add(waitTimeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		got, want = outputTargets(t, path), ref.targets()
		if len(got) == n && slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s and Prometheus's discoverer disagree (want %d targets):\n sdhub:      %q\n Prometheus: %q", filepath.Base(path), n, got, want)
		}
		<-tick.C
	}
}

// zone is the DNS data of the test server: names to records.
type zone struct {
	mu  sync.Mutex
	srv map[string][]*dns.SRV
	a   map[string][]net.IP
}

func (z *zone) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	z.mu.Lock()
	defer z.mu.Unlock()
	hdr := func(t uint16) dns.RR_Header {
		return dns.RR_Header{Name: q.Name, Rrtype: t, Class: dns.ClassINET, Ttl: 1}
	}
	_, hasSRV := z.srv[name]
	_, hasA := z.a[name]
	switch {
	case q.Qtype == dns.TypeSRV && hasSRV:
		for _, r := range z.srv[name] {
			rr := *r
			rr.Hdr = hdr(dns.TypeSRV)
			m.Answer = append(m.Answer, &rr)
		}
	case q.Qtype == dns.TypeA && hasA:
		for _, ip := range z.a[name] {
			if ip.To4() != nil {
				m.Answer = append(m.Answer, &dns.A{Hdr: hdr(dns.TypeA), A: ip})
			}
		}
	case q.Qtype == dns.TypeAAAA && hasA:
		for _, ip := range z.a[name] {
			if ip.To4() == nil {
				m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr(dns.TypeAAAA), AAAA: ip})
			}
		}
	case !hasSRV && !hasA:
		m.Rcode = dns.RcodeNameError
	}
	_ = w.WriteMsg(m)
}

// dnsChildEnv marks the test binary run in a mount namespace of its own,
// where /etc/resolv.conf names the test's DNS server.
const dnsChildEnv = "SDHUB_TEST_DNS_CHILD"

// TestDNSMatchesPrometheus runs dns_sd_configs (SRV, A and AAAA) against
// a real DNS server on loopback (miekg/dns, the library Prometheus's DNS SD
// uses), through sdhub, and compares its output files label for label with
// Prometheus's own DNS discoverer, before and after the records change.
// Prometheus's DNS SD reads its servers from /etc/resolv.conf, so the test
// runs itself again in a mount namespace where that file names the test
// server (root only).
func TestDNSMatchesPrometheus(t *testing.T) {
	if os.Getenv(dnsChildEnv) == "" {
		testenv.Require(t, "a mount namespace for /etc/resolv.conf", os.Geteuid() == 0, "not root")
		cmd := exec.Command(os.Args[0], "-test.run=^TestDNSMatchesPrometheus$", "-test.v", "-test.timeout=5m")
		cmd.Env = append(os.Environ(), dnsChildEnv+"=1")
		cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("the test in its own mount namespace: %v\n%s", err, out)
		}
		t.Logf("%s", out)
		return
	}

	// 127.x.y.z:53, random, so parallel runs on one host do not collide.
	addr := fmt.Sprintf("127.%d.%d.%d", 1+time.Now().UnixNano()%250, os.Getpid()%250, 2+time.Now().UnixNano()/7%250)
	z := &zone{
		srv: map[string][]*dns.SRV{"_prometheus._tcp.sdhub.test.": {
			{Priority: 10, Weight: 5, Port: 9100, Target: "a.sdhub.test."},
			{Priority: 10, Weight: 5, Port: 9101, Target: "b.sdhub.test."},
		}},
		a: map[string][]net.IP{
			"web.sdhub.test.":  {net.ParseIP("10.0.0.1"), net.ParseIP("10.0.0.2"), net.ParseIP("2001:db8::1")},
			"web6.sdhub.test.": {net.ParseIP("2001:db8::1"), net.ParseIP("2001:db8::2")},
		},
	}
	for _, netw := range []string{"udp", "tcp"} {
		started := make(chan struct{})
		srv := &dns.Server{Addr: addr + ":53", Net: netw, Handler: z, NotifyStartedFunc: func() { close(started) }}
		errc := make(chan error, 1)
		go func() { errc <- srv.ListenAndServe() }()
		select {
		case <-started:
		case err := <-errc:
			t.Fatalf("DNS server on %s/%s: %v", addr, netw, err)
		}
		t.Cleanup(func() { _ = srv.Shutdown() })
	}
	dir := t.TempDir()
	resolv := filepath.Join(dir, "resolv.conf")
	writeFile(t, resolv, "nameserver "+addr+"\noptions timeout:1 attempts:1\n")
	if err := syscall.Mount(resolv, "/etc/resolv.conf", "", syscall.MS_BIND, ""); err != nil {
		t.Fatalf("bind-mounting %s on /etc/resolv.conf: %v", resolv, err)
	}

	blocks := map[string]string{
		"srv":  "names: [_prometheus._tcp.sdhub.test]\nrefresh_interval: 1s\n",
		"a":    "names: [web.sdhub.test]\ntype: A\nport: 9100\nrefresh_interval: 1s\n",
		"aaaa": "names: [web6.sdhub.test]\ntype: AAAA\nport: 9100\nrefresh_interval: 1s\n",
	}
	var cfg strings.Builder
	cfg.WriteString("scrape_configs:\n")
	refs := map[string]*reference{}
	for _, job := range []string{"srv", "a", "aaaa"} {
		fmt.Fprintf(&cfg, "  - job_name: %s\n    dns_sd_configs:\n      - %s", job, strings.ReplaceAll(blocks[job], "\n", "\n        "))
		cfg.WriteString("\n")
		refs[job] = newReference(t, "dns", blocks[job])
	}
	cfgFile, out := filepath.Join(dir, "sdhub.yml"), filepath.Join(dir, "out")
	writeFile(t, cfgFile, cfg.String())
	startSdhub(t, "--config.file="+cfgFile, "--output.dir="+out)

	agree(t, filepath.Join(out, "srv.json"), refs["srv"], 2)
	agree(t, filepath.Join(out, "a.json"), refs["a"], 2)
	agree(t, filepath.Join(out, "aaaa.json"), refs["aaaa"], 2)
	for _, l := range outputTargets(t, filepath.Join(out, "srv.json")) {
		t.Logf("srv: %s", l)
	}

	z.mu.Lock()
	z.srv["_prometheus._tcp.sdhub.test."] = append(z.srv["_prometheus._tcp.sdhub.test."], &dns.SRV{Priority: 20, Weight: 1, Port: 9102, Target: "c.sdhub.test."})
	z.a["web.sdhub.test."] = z.a["web.sdhub.test."][:1]
	z.a["web6.sdhub.test."] = append(z.a["web6.sdhub.test."], net.ParseIP("2001:db8::3"))
	z.mu.Unlock()
	agree(t, filepath.Join(out, "srv.json"), refs["srv"], 3)
	agree(t, filepath.Join(out, "a.json"), refs["a"], 1)
	agree(t, filepath.Join(out, "aaaa.json"), refs["aaaa"], 3)
}

// TestHTTPSDMatchesPrometheus runs http_sd_configs against a real HTTP
// server through sdhub: its file and its own http_sd endpoint hold what
// Prometheus's http discoverer finds, before and after the source changes.
func TestHTTPSDMatchesPrometheus(t *testing.T) {
	var mu sync.Mutex
	body := `[{"targets": ["10.0.0.1:9100", "10.0.0.2:9100"], "labels": {"env": "prod"}}, {"targets": ["10.0.0.3:9100"], "labels": {"env": "dev", "__meta_rack": "r1"}}]`
	src := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, body)
	}))
	t.Cleanup(src.Close)
	block := "url: " + src.URL + "/inventory\nrefresh_interval: 1s\n"
	ref := newReference(t, "http", block)
	dir := t.TempDir()
	cfgFile, out := filepath.Join(dir, "sdhub.yml"), filepath.Join(dir, "out")
	writeFile(t, cfgFile, "scrape_configs:\n  - job_name: inventory\n    http_sd_configs:\n      - "+strings.ReplaceAll(block, "\n", "\n        ")+"\n")
	p := startSdhub(t, "--config.file="+cfgFile, "--output.dir="+out)

	path := filepath.Join(out, "inventory.json")
	agree(t, path, ref, 3)
	if got := outputTargets(t, path); !strings.Contains(got[0], `__meta_url="`+src.URL+`/inventory"`) {
		t.Errorf("no __meta_url in %s", got[0])
	}
	mu.Lock()
	body = `[{"targets": ["10.0.0.9:9100"], "labels": {"env": "canary"}}]`
	mu.Unlock()
	agree(t, path, ref, 1)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if code, served := p.get(t, "/api/v1/sd/inventory"); code != http.StatusOK || served != string(data) {
		t.Errorf("http_sd: %d %q, want the file's bytes %q", code, served, data)
	}
}

// TestDockerMatchesPrometheus runs docker_sd_configs (Prometheus's docker
// discoverer; sdhub's own implementation is dockerswarm's) against the real
// Docker engine, through sdhub, and compares with Prometheus's discoverer
// as containers start and stop.
func TestDockerMatchesPrometheus(t *testing.T) {
	e := swarmtest.New(t)
	run := func(short string, args ...string) {
		name := e.Name(short)
		all := append([]string{"run", "-d", "--name", name, "--label", swarmtest.LabelRun + "=" + e.Prefix}, args...)
		e.Docker(t, append(all, swarmtest.Image)...)
		t.Cleanup(func() { _, _ = e.Try("rm", "-f", name) })
	}
	run("web", "--label", "app=web", "--expose", "9100", "--expose", "9101/udp")
	run("bare", "--label", "app=bare")

	block := fmt.Sprintf("host: %s\nrefresh_interval: 1s\nfilters:\n  - name: label\n    values: [%s=%s]\n", e.Host, swarmtest.LabelRun, e.Prefix)
	ref := newReference(t, "docker", block)
	dir := t.TempDir()
	cfgFile, out := filepath.Join(dir, "sdhub.yml"), filepath.Join(dir, "out")
	writeFile(t, cfgFile, "scrape_configs:\n  - job_name: containers\n    docker_sd_configs:\n      - "+strings.ReplaceAll(block, "\n", "\n        ")+"\n")
	startSdhub(t, "--config.file="+cfgFile, "--output.dir="+out)

	path := filepath.Join(out, "containers.json")
	agree(t, path, ref, 2) // web's TCP port (Prometheus leaves UDP ports out), bare's default port
	for _, l := range outputTargets(t, path) {
		t.Logf("containers: %s", l)
	}
	run("late", "--label", "app=late", "--expose", "8080")
	agree(t, path, ref, 3)
	e.Docker(t, "rm", "-f", e.Name("web"))
	agree(t, path, ref, 2)
}
