// Package consulagent starts a real Consul agent for tests and the
// benchmark: a single-server datacenter on loopback, on free ports, with
// its data in a temporary directory, so it can be stopped and restarted on
// the same ports with the same catalog.
package consulagent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sdhub/sdhub/internal/testenv"
)

// Version is the Consul version scripts/deps/consul.sh installs.
const Version = "1.20.6"

// Binary finds the consul binary: $SDHUB_CONSUL_BIN, else consul on PATH,
// else the cache path scripts/deps/consul.sh writes. ok is false, with the
// reason, when none exists.
func Binary() (path string, ok bool, why string) {
	if p := os.Getenv("SDHUB_CONSUL_BIN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", false, fmt.Sprintf("SDHUB_CONSUL_BIN=%q: %v", p, err)
		}
		return p, true, ""
	}
	if p, err := exec.LookPath("consul"); err == nil {
		return p, true, ""
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", false, "no SDHUB_CONSUL_BIN, no consul on PATH, no home directory"
		}
		cache = filepath.Join(home, ".cache")
	}
	p := filepath.Join(cache, "sdhub", "bin", "consul-"+Version)
	if _, err := os.Stat(p); err != nil {
		return "", false, "no SDHUB_CONSUL_BIN, no consul on PATH, and " + p + " is missing (run scripts/deps/consul.sh)"
	}
	return p, true, ""
}

// Options tune the agent.
type Options struct {
	// MaxConnsPerClient sets limits.http_max_conns_per_client; 0 keeps
	// Consul's default (200).
	MaxConnsPerClient int
	// Log receives the agent's output; nil discards it.
	Log io.Writer
	// Debug sets enable_debug: the agent serves Go's /debug/pprof.
	Debug bool
	// IPv6 makes the HTTP API listen on [::1] too (see Addr6). Consul
	// limits connections per client IP, so processes that connect over
	// 127.0.0.1 and [::1] count as two clients.
	IPv6 bool
	// TLS adds an HTTPS listener (HTTPSAddr) beside the plain one, with a
	// CA and a server certificate made by `consul tls ca create` and
	// `consul tls cert create -server` in the agent's directory (CAFile).
	// Consul's HTTPS listener speaks HTTP/2 as well as HTTP/1.1.
	TLS bool
	// ConfigDir, if set, is a directory of agent config files (services to
	// register, ...) loaded with -config-dir.
	ConfigDir string
}

// Agent is a running (or stopped) Consul agent.
type Agent struct {
	bin, dir string
	opts     Options
	ports    [5]int // http, serf lan, serf wan, server rpc, https

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	tail tailBuffer // the agent's last output, for start-up errors
}

// tailBuffer keeps the last 2 KiB written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > 2048 {
		b.buf = b.buf[len(b.buf)-2048:]
	}
	return len(p), nil
}

func (b *tailBuffer) reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.TrimSpace(string(b.buf))
}

// Start starts an agent in a new temporary directory and waits until it
// is the leader with its own node in the catalog.
func Start(ctx context.Context, bin string, opts Options) (*Agent, error) {
	dir, err := os.MkdirTemp("", "sdhub-consul-")
	if err != nil {
		return nil, err
	}
	a := &Agent{bin: bin, dir: dir, opts: opts}
	if opts.TLS {
		if err := a.makeCerts(ctx); err != nil {
			_ = os.RemoveAll(dir)
			return nil, err
		}
	}
	// A port found free can be taken by another process before the agent
	// binds it; then the agent exits at once and a new set of ports is
	// tried. Restart keeps its ports, so only the first start retries.
	for attempt := 1; ; attempt++ {
		if a.ports, err = pickPorts(); err != nil {
			_ = os.RemoveAll(dir)
			return nil, err
		}
		err = a.start(ctx)
		if err == nil {
			return a, nil
		}
		a.Stop()
		if attempt == startAttempts || !errors.Is(err, errExited) || !portTaken(a.tail.String()) {
			a.Close()
			return nil, err
		}
		a.tail.reset()
		// The failed agent may have written Raft state naming its old
		// server port; with new ports it would never elect itself.
		if err := os.RemoveAll(filepath.Join(dir, "data")); err != nil {
			a.Close()
			return nil, err
		}
	}
}

// startAttempts bounds the retries of Start on ports taken meanwhile.
const startAttempts = 3

// errExited is wrapped by the error of an agent that exited while starting.
var errExited = errors.New("consul agent exited during start-up")

// portTaken reports whether the agent's output says one of its ports was
// in use.
func portTaken(out string) bool {
	return strings.Contains(out, "address already in use") || strings.Contains(out, "already configured")
}

// StartT starts an agent for a test, skipping or failing (see
// internal/testenv) when there is no consul binary. It is stopped and its
// directory removed when the test ends.
func StartT(t testing.TB, opts Options) *Agent {
	t.Helper()
	bin, ok, why := Binary()
	testenv.Require(t, "consul", ok, why)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, err := Start(ctx, bin, opts)
	if err != nil {
		t.Fatalf("starting consul: %v", err)
	}
	t.Cleanup(a.Close)
	return a
}

// Addr is the agent's HTTP address, host:port.
func (a *Agent) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(a.ports[0])) }

// Addr6 is the agent's HTTP address on [::1], with Options.IPv6.
func (a *Agent) Addr6() string { return net.JoinHostPort("::1", strconv.Itoa(a.ports[0])) }

// HTTPPort is the agent's HTTP port.
func (a *Agent) HTTPPort() int { return a.ports[0] }

// HTTPSAddr is the agent's HTTPS address, host:port, with Options.TLS.
func (a *Agent) HTTPSAddr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(a.ports[4])) }

// HTTPSAddr6 is the agent's HTTPS address on [::1], with Options.TLS and
// Options.IPv6.
func (a *Agent) HTTPSAddr6() string { return net.JoinHostPort("::1", strconv.Itoa(a.ports[4])) }

// HTTPSPort is the agent's HTTPS port, with Options.TLS.
func (a *Agent) HTTPSPort() int { return a.ports[4] }

// CAFile is the CA certificate that signed the agent's HTTPS certificate,
// with Options.TLS. The certificate names localhost, 127.0.0.1 and ::1.
func (a *Agent) CAFile() string { return filepath.Join(a.dir, "tls", caFile) }

// The files `consul tls` writes for datacenter dc1.
const (
	caFile   = "consul-agent-ca.pem"
	certFile = "dc1-server-consul-0.pem"
	keyFile  = "dc1-server-consul-0-key.pem"
)

// makeCerts creates a CA and a server certificate with the agent's own
// `consul tls` commands, in dir/tls.
func (a *Agent) makeCerts(ctx context.Context) error {
	dir := filepath.Join(a.dir, "tls")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, args := range [][]string{
		{"tls", "ca", "create"},
		{"tls", "cert", "create", "-server", "-dc", "dc1", "-additional-ipaddress", "::1"},
	} {
		cmd := exec.CommandContext(ctx, a.bin, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("consul %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

// PID is the agent process id, 0 when stopped.
func (a *Agent) PID() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cmd == nil {
		return 0
	}
	return a.cmd.Process.Pid
}

func (a *Agent) start(ctx context.Context) error {
	https := -1
	if a.opts.TLS {
		https = a.ports[4]
	}
	hcl := fmt.Sprintf(`performance { raft_multiplier = 1 }
ports { http = %d, serf_lan = %d, serf_wan = %d, server = %d, https = %d, dns = -1, grpc = -1, grpc_tls = -1 }
`, a.ports[0], a.ports[1], a.ports[2], a.ports[3], https)
	if a.opts.TLS {
		tls := filepath.Join(a.dir, "tls")
		hcl += fmt.Sprintf("tls { defaults { ca_file = %q, cert_file = %q, key_file = %q, verify_incoming = false } }\n",
			filepath.Join(tls, caFile), filepath.Join(tls, certFile), filepath.Join(tls, keyFile))
	}
	if a.opts.MaxConnsPerClient > 0 {
		hcl += fmt.Sprintf("limits { http_max_conns_per_client = %d }\n", a.opts.MaxConnsPerClient)
	}
	if a.opts.Debug {
		hcl += "enable_debug = true\n"
	}
	client := "127.0.0.1"
	if a.opts.IPv6 {
		client += " ::1"
	}
	cmd := exec.Command(a.bin, "agent", "-server", "-bootstrap-expect=1", "-node=sdhub-test",
		"-bind=127.0.0.1", "-client="+client, "-data-dir="+filepath.Join(a.dir, "data"),
		"-log-level=warn", "-disable-host-node-id", "-hcl", hcl)
	if a.opts.ConfigDir != "" {
		cmd.Args = append(cmd.Args, "-config-dir="+a.opts.ConfigDir)
	}
	var out io.Writer = &a.tail
	if a.opts.Log != nil {
		out = io.MultiWriter(&a.tail, a.opts.Log)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", a.bin, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	a.mu.Lock()
	a.cmd, a.done = cmd, done
	a.mu.Unlock()
	return a.waitReady(ctx, done)
}

// waitReady polls until there is a leader and the agent's node is in the
// catalog as the agent's sync writes it, so that registrations succeed and
// the node no longer changes.
func (a *Agent) waitReady(ctx context.Context, done <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		select {
		case <-done:
			return fmt.Errorf("%w: %s", errExited, a.tail.String())
		case <-ctx.Done():
			return fmt.Errorf("consul agent not ready: %w (last: %v)", ctx.Err(), last)
		case <-tick.C:
		}
		// Each request has a short timeout of its own: whatever holds a port
		// the agent failed to take may accept and never answer, and the
		// agent's exit must still be seen.
		leader, err := a.getWithin(ctx, time.Second, "/v1/status/leader")
		if err != nil || strings.Trim(leader, "\"\n ") == "" {
			last = fmt.Errorf("leader %q: %v", leader, err)
			continue
		}
		// The agent's node is first written by the leader from serf, then
		// by the agent's own sync with its tagged addresses and metadata:
		// a test that read it in between would see the "consul" service's
		// labels change under it.
		nodes, err := a.getWithin(ctx, time.Second, "/v1/catalog/nodes")
		if err != nil || !strings.Contains(nodes, `"sdhub-test"`) || !strings.Contains(nodes, `"lan"`) || !strings.Contains(nodes, `"consul-network-segment"`) {
			last = fmt.Errorf("nodes %q: %v", nodes, err)
			continue
		}
		return nil
	}
}

func (a *Agent) getWithin(ctx context.Context, d time.Duration, path string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return a.get(ctx, path)
}

func (a *Agent) get(ctx context.Context, path string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+a.Addr()+path, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("status %d", resp.StatusCode)
	}
	return string(b), err
}

// Stop stops the agent (SIGTERM, then SIGKILL after 10 s) and keeps its
// data and ports for Restart.
func (a *Agent) Stop() {
	a.mu.Lock()
	cmd, done := a.cmd, a.done
	a.cmd = nil
	a.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		_ = cmd.Process.Kill()
		<-done
	}
}

// Restart starts a stopped agent again on the same ports with the same data.
func (a *Agent) Restart(ctx context.Context) error {
	a.Stop()
	return a.start(ctx)
}

// Close stops the agent and removes its directory.
func (a *Agent) Close() {
	a.Stop()
	_ = os.RemoveAll(a.dir)
}

// pickPorts is freePorts; tests replace it.
var pickPorts = freePorts

// freePorts finds five distinct free loopback ports. Each listener stays
// open until all are found, so the kernel cannot hand out one port twice.
func freePorts() ([5]int, error) {
	var ports [5]int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return ports, err
		}
		ls = append(ls, l)
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}

func (a *Agent) put(ctx context.Context, path, body string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, "http://"+a.Addr()+path, strings.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("PUT %s: status %d: %s", path, resp.StatusCode, b)
	}
	return nil
}
