package consulagent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sdhub/sdhub/internal/poll"
	"github.com/sdhub/sdhub/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestStartRestartKeepsCatalog(t *testing.T) {
	a := StartT(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := a.put(ctx, "/v1/agent/service/register", `{"Name":"web","Port":80}`); err != nil {
		t.Fatal(err)
	}
	if err := a.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	// The agent re-registers its own services from its data directory.
	var body string
	var err error
	if poll.Until(30*time.Second, 50*time.Millisecond, "service web", func() bool {
		body, err = a.get(ctx, "/v1/catalog/services")
		return err == nil && strings.Contains(body, `"web"`)
	}) != nil {
		t.Fatalf("service web missing after restart: %q, %v", body, err)
	}
}

func TestFreePortsDistinct(t *testing.T) {
	for range 200 {
		ports, err := freePorts()
		if err != nil {
			t.Fatal(err)
		}
		seen := map[int]bool{}
		for _, p := range ports {
			if p == 0 || seen[p] {
				t.Fatalf("ports %v: zero or repeated", ports)
			}
			seen[p] = true
		}
	}
}

// A port taken between the search and the agent's bind makes the agent
// exit; Start then tries new ports.
func TestStartRetriesTakenPort(t *testing.T) {
	bin, ok, why := Binary()
	testenv.Require(t, "consul", ok, why)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = taken.Close() }()
	calls := 0
	pickPorts = func() ([5]int, error) {
		calls++
		ports, err := freePorts()
		if calls == 1 {
			ports[0] = taken.Addr().(*net.TCPAddr).Port
		}
		return ports, err
	}
	defer func() { pickPorts = freePorts }()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, err := Start(ctx, bin, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if calls != 2 {
		t.Fatalf("pickPorts called %d times, want 2", calls)
	}
	if a.HTTPPort() == taken.Addr().(*net.TCPAddr).Port {
		t.Fatal("agent kept the taken port")
	}
}

// TestTLS: the HTTPS listener serves the API with the certificate `consul
// tls` made, and speaks HTTP/2 to a client that offers it.
func TestTLS(t *testing.T) {
	a := StartT(t, Options{TLS: true, IPv6: true})
	pem, err := os.ReadFile(a.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("no certificate in the CA file")
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	for _, addr := range []string{a.HTTPSAddr(), a.HTTPSAddr6()} {
		resp, err := (&http.Client{Transport: tr}).Get("https://" + addr + "/v1/status/leader")
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
			t.Fatalf("%s: status %d over %s, want 200 over HTTP/2", addr, resp.StatusCode, resp.Proto)
		}
	}
}

// TestEstablished counts this process's connections to the agent: each
// connection it opens adds one (the start-up checks may have left one).
func TestEstablished(t *testing.T) {
	a := StartT(t, Options{})
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	base, err := Established(os.Getpid(), a.HTTPPort())
	if err != nil {
		t.Fatal(err)
	}
	for k := 0; k <= 3; k++ {
		if n, err := Established(os.Getpid(), a.HTTPPort()); err != nil || n != base+k {
			t.Fatalf("Established = %d, %v; want %d", n, err, base+k)
		}
		c, err := net.Dial("tcp", a.Addr())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
}
