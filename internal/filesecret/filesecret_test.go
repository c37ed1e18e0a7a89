package filesecret

import (
	"context"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/config"
)

func TestCacheReadsOncePerMaxAge(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ca.pem")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("one")
	c := New()
	now := time.Unix(1000, 0)
	c.now = func() time.Time { return now }
	fetch := func(want string) {
		t.Helper()
		got, err := c.Fetch(context.Background(), path)
		if err != nil || got != want {
			t.Fatalf("Fetch = %q, %v; want %q", got, err, want)
		}
	}
	fetch("one")
	write("two")
	now = now.Add(MaxAge - time.Millisecond)
	fetch("one") // within MaxAge: not read again
	now = now.Add(time.Millisecond)
	fetch("two") // rotated: read again
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	now = now.Add(MaxAge)
	if _, err := c.Fetch(context.Background(), path); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("Fetch of a removed file: %v, want an error naming it", err)
	}
}

func TestConfigKeepsInputAndInlineSecrets(t *testing.T) {
	in := config.HTTPClientConfig{
		TLSConfig:     config.TLSConfig{CAFile: "/ca", Cert: "inline-cert", KeyRef: "already-a-ref"},
		Authorization: &config.Authorization{Type: "Bearer", CredentialsFile: "/token"},
	}
	basic := config.HTTPClientConfig{BasicAuth: &config.BasicAuth{Username: "u", PasswordFile: "/password"}}
	out, _ := Config(in)
	outBasic, _ := Config(basic)
	if in.TLSConfig.CAFile != "/ca" || in.Authorization.CredentialsFile != "/token" || basic.BasicAuth.PasswordFile != "/password" {
		t.Fatalf("the input was changed: %+v %+v %+v", in.TLSConfig, *in.Authorization, *basic.BasicAuth)
	}
	if out.TLSConfig.CAFile != "" || out.TLSConfig.CARef != "/ca" || out.TLSConfig.Cert != "inline-cert" || out.TLSConfig.KeyRef != "already-a-ref" {
		t.Fatalf("TLS config: %+v", out.TLSConfig)
	}
	if out.Authorization.CredentialsRef != "/token" || out.Authorization.CredentialsFile != "" || outBasic.BasicAuth.PasswordRef != "/password" || outBasic.BasicAuth.Username != "u" {
		t.Fatalf("auth: %+v %+v", *out.Authorization, *outBasic.BasicAuth)
	}
	for _, c := range []config.HTTPClientConfig{out, outBasic} {
		if err := c.Validate(); err != nil {
			t.Fatalf("converted config invalid: %v", err)
		}
	}
}

// TestClientUsesFiles: a client built from the converted config reaches a
// TLS server through the CA file and sends the credentials file's token;
// a CA file that is gone fails with an error naming it.
func TestClientUsesFiles(t *testing.T) {
	var got string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = r.Header.Get("Authorization") }))
	defer srv.Close()
	dir := t.TempDir()
	ca, token := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "token")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(token, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hc, opt := Config(config.HTTPClientConfig{
		TLSConfig:     config.TLSConfig{CAFile: ca},
		Authorization: &config.Authorization{Type: "Bearer", CredentialsFile: token},
	})
	c, err := config.NewClientFromConfig(hc, "test", opt)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		resp, err := c.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if got != "Bearer s3cret" {
			t.Fatalf("Authorization = %q", got)
		}
	}

	hc, opt = Config(config.HTTPClientConfig{TLSConfig: config.TLSConfig{CAFile: filepath.Join(dir, "missing.pem")}})
	if c, err = config.NewClientFromConfig(hc, "test", opt); err == nil {
		_, err = c.Get(srv.URL)
	}
	if err == nil || !strings.Contains(err.Error(), "missing.pem") {
		t.Fatalf("missing CA file: %v, want an error naming it", err)
	}
}
