package swarm

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"

	"github.com/sdhub/sdhub/discovery"
)

// load decodes a testdata file strictly, as the config loader does.
func load(t *testing.T, name string) ([]*SDConfig, error) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var out struct {
		Configs []*SDConfig `yaml:"dockerswarm_sd_configs"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	err = dec.Decode(&out)
	return out.Configs, err
}

func TestConfigGood(t *testing.T) {
	full := DefaultSDConfig
	full.Host = "https://swarm.example.com:2376"
	full.Role = "services"
	full.Port = 9100
	full.RefreshInterval = model.Duration(15 * time.Second)
	full.Filters = []Filter{
		{Name: "label", Values: []string{"prometheus.io/scrape=true", "team=a"}},
		{Name: "name", Values: []string{"web"}},
	}
	full.HTTPClientConfig.BasicAuth = &config.BasicAuth{Username: "prom", PasswordFile: "secrets/pass"}
	full.HTTPClientConfig.TLSConfig.CAFile = "certs/ca.pem"
	full.HTTPClientConfig.FollowRedirects = false

	minimal := DefaultSDConfig
	minimal.Host = "unix:///var/run/docker.sock"
	minimal.Role = "tasks"

	tcp := DefaultSDConfig
	tcp.Host = "tcp://127.0.0.1:2375"
	tcp.Role = "nodes"
	tcp.Port = 0

	cases := map[string]SDConfig{
		"full.good.yml":      full,
		"minimal.good.yml":   minimal,
		"tcp_nodes.good.yml": tcp,
	}
	checkCovered(t, "*.good.yml", len(cases), func(name string) bool { _, ok := cases[name]; return ok })
	for name, want := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := load(t, name)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || !reflect.DeepEqual(*got[0], want) {
				t.Fatalf("got %+v\nwant %+v", got[0], want)
			}
			again, _ := load(t, name)
			if !reflect.DeepEqual(got, again) {
				t.Fatal("two loads of the same file are not DeepEqual")
			}
		})
	}
}

func TestConfigBad(t *testing.T) {
	cases := map[string]string{
		"host_missing.bad.yml":    `line 2: host missing for dockerswarm_sd_configs`,
		"host_unparsable.bad.yml": `line 2: invalid host "http://[::1" for dockerswarm_sd_configs: parse "http://[::1": missing ']' in host`,
		"host_scheme.bad.yml":     `line 2: invalid host "ssh://me@swarm" for dockerswarm_sd_configs (scheme one of: unix, tcp, http, https)`,
		"host_noscheme.bad.yml":   `line 2: invalid host "/var/run/docker.sock" for dockerswarm_sd_configs (scheme one of: unix, tcp, http, https)`,
		"host_password.bad.yml":   `line 2: invalid host "ftp://me:xxxxx@swarm" for dockerswarm_sd_configs: a password in the URL is not supported, use basic_auth`,
		"role_missing.bad.yml":    `line 2: role missing for dockerswarm_sd_configs (one of: services, tasks, nodes)`,
		"role_invalid.bad.yml":    `line 4: invalid role "taks" for dockerswarm_sd_configs (one of: services, tasks, nodes)`,
		"port_range.bad.yml":      `line 4: invalid port 70000 for dockerswarm_sd_configs (0-65535)`,
		"refresh_zero.bad.yml":    `line 4: invalid refresh_interval "0s" for dockerswarm_sd_configs (must be greater than 0)`,
		"refresh_syntax.bad.yml":  `line 2: not a valid duration string: "soon"`,
		"filter_name.bad.yml":     `line 4: filter 0 of dockerswarm_sd_configs has no name`,
		"unknown_key.bad.yml":     "yaml: unmarshal errors:\n  line 4: field rol not found in type swarm.plain",
		"http_auth.bad.yml":       `line 2: invalid HTTP client settings for dockerswarm_sd_configs: at most one of basic_auth, oauth2, bearer_token & bearer_token_file must be configured`,
	}
	checkCovered(t, "*.bad.yml", len(cases), func(name string) bool { _, ok := cases[name]; return ok })
	for name, want := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := load(t, name)
			if err == nil || err.Error() != want {
				t.Fatalf("error = %v\nwant    %s", err, want)
			}
		})
	}
}

// checkCovered fails when a testdata file matching glob has no case.
func checkCovered(t *testing.T, glob string, n int, has func(string) bool) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", glob))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if !has(filepath.Base(f)) {
			t.Errorf("testdata/%s has no case", filepath.Base(f))
		}
	}
	if len(files) != n {
		t.Errorf("%d files match %s, %d cases", len(files), glob, n)
	}
}

func TestSetDirectory(t *testing.T) {
	cs, err := load(t, "full.good.yml")
	if err != nil {
		t.Fatal(err)
	}
	cs[0].SetDirectory("/etc/sdhub")
	if got := cs[0].HTTPClientConfig.BasicAuth.PasswordFile; got != "/etc/sdhub/secrets/pass" {
		t.Errorf("password_file = %q", got)
	}
	if got := cs[0].HTTPClientConfig.TLSConfig.CAFile; got != "/etc/sdhub/certs/ca.pem" {
		t.Errorf("ca_file = %q", got)
	}
}

func TestMechanism(t *testing.T) {
	c := Mechanism.NewConfig()
	if c.Name() != "dockerswarm" || Mechanism.Key() != "dockerswarm_sd_configs" {
		t.Fatalf("name %q key %q", c.Name(), Mechanism.Key())
	}
	if _, ok := c.(*SDConfig); !ok {
		t.Fatalf("NewConfig gives %T", c)
	}
	if _, err := (&SDConfig{}).NewDiscoverer(discovery.Options{}); err == nil || !strings.Contains(err.Error(), "host missing") {
		t.Fatalf("NewDiscoverer on an unvalidated empty config: %v", err)
	}
}
