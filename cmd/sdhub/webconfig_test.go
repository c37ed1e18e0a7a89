package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// webPassword's bcrypt hash (cost 10) is in the web config of the tests.
const (
	webUser     = "prometheus"
	webPassword = "scrape-s3cret"
	webHash     = "$2a$10$eCNkPYlOjwHKaM0PSg213urowrJI1IKAFqP4fEWc7rU3aJEjP7MoC"
)

// selfSigned writes a certificate for 127.0.0.1 and its key into dir and
// returns a pool that trusts it.
func selfSigned(t *testing.T, dir string) *x509.CertPool {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "sdhub test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "cert.pem"), string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	writeFile(t, filepath.Join(dir, "key.pem"), string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})))
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool
}

// TestWebConfigTLSAndBasicAuth runs sdhub with --web.config.file: its
// endpoints answer over TLS only, and only with the right credentials.
func TestWebConfigTLSAndBasicAuth(t *testing.T) {
	cfgFile, outDir, _ := hubDir(t, configV1)
	dir := t.TempDir()
	pool := selfSigned(t, dir)
	webCfg := filepath.Join(dir, "web.yml")
	writeFile(t, webCfg, "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\nbasic_auth_users:\n  "+webUser+": "+webHash+"\n")
	p := startSdhub(t, "--config.file="+cfgFile, "--output.dir="+outDir, "--web.config.file="+webCfg)

	tlsClient := &http.Client{Timeout: waitTimeout, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	get := func(c *http.Client, url, user, pass string) (int, string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := c.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String(), nil
	}
	https := "https://" + p.addr
	eventually(t, "the static job served over TLS", func() bool {
		code, _, err := get(tlsClient, https+"/api/v1/sd/static", webUser, webPassword)
		return err == nil && code == http.StatusOK
	})
	for _, c := range []struct {
		name, path, user, pass string
		code                   int
		body                   string
	}{
		{"right credentials", "/api/v1/sd/static", webUser, webPassword, http.StatusOK, `"127.0.0.1:9100"`},
		{"status page", "/", webUser, webPassword, http.StatusOK, "<h1>sdhub</h1>"},
		{"metrics", "/metrics", webUser, webPassword, http.StatusOK, "prometheus_sd_discovered_targets"},
		{"wrong password", "/api/v1/sd/static", webUser, "guess", http.StatusUnauthorized, "Unauthorized"},
		{"wrong user", "/metrics", "admin", webPassword, http.StatusUnauthorized, "Unauthorized"},
		{"no credentials", "/-/healthy", "", "", http.StatusUnauthorized, "Unauthorized"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, body, err := get(tlsClient, https+c.path, c.user, c.pass)
			if err != nil || code != c.code || !strings.Contains(body, c.body) {
				t.Errorf("GET %s as %q: %d %v\n%s\nwant %d with %q", c.path, c.user, code, err, body, c.code, c.body)
			}
			if strings.Contains(body, webHash) || strings.Contains(body, webPassword) {
				t.Errorf("GET %s shows the credentials", c.path)
			}
		})
	}
	// Plain HTTP is refused; a client that does not trust the certificate
	// cannot connect.
	if code, _, err := get(&http.Client{Timeout: waitTimeout}, "http://"+p.addr+"/-/healthy", webUser, webPassword); err != nil || code != http.StatusBadRequest {
		t.Errorf("plain HTTP: %d %v, want 400 from the TLS server", code, err)
	}
	var unknownAuthority x509.UnknownAuthorityError
	if _, _, err := get(&http.Client{Timeout: waitTimeout}, https+"/-/healthy", webUser, webPassword); !errors.As(err, &unknownAuthority) {
		t.Errorf("a client without the CA: %v, want an unknown authority error", err)
	}
}

// TestWebConfigInvalid checks that a bad --web.config.file stops sdhub at
// start with exit 2, as a bad config does.
func TestWebConfigInvalid(t *testing.T) {
	cfgFile, outDir, _ := hubDir(t, configV1)
	dir := t.TempDir()
	for name, c := range map[string]struct{ content, err string }{
		"missing cert": {"tls_server_config:\n  cert_file: none.pem\n  key_file: none.key\n", "none.pem"},
		"bad hash":     {"basic_auth_users:\n  " + webUser + ": not-a-bcrypt-hash\n", "hashedSecret too short to be a bcrypted password"},
		"unknown key":  {"tls_config: {}\n", "tls_config"},
	} {
		t.Run(name, func(t *testing.T) {
			webCfg := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".yml")
			writeFile(t, webCfg, c.content)
			var stdout, stderr bytes.Buffer
			code := runMain([]string{"--config.file=" + cfgFile, "--output.dir=" + outDir, "--web.listen-address=127.0.0.1:0", "--web.config.file=" + webCfg}, &stdout, &stderr)
			if code != exitBadConfig || !strings.Contains(stderr.String(), "Error loading web config") || !strings.Contains(stderr.String(), c.err) {
				t.Errorf("exit %d, stderr:\n%s\nwant exit 2 and an error naming %q", code, stderr.String(), c.err)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(outDir, "static.json")); err == nil {
		t.Errorf("sdhub wrote outputs with an invalid web config")
	}
}
