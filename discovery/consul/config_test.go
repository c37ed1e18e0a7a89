package consul

import (
	"bytes"
	"fmt"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	promconsul "github.com/prometheus/prometheus/discovery/consul"
	yamlv2 "go.yaml.in/yaml/v2"

	"github.com/sdhub/sdhub/internal/configtest"
)

func decodeConfig(t testing.TB, data []byte) (*SDConfig, error) {
	t.Helper()
	var c SDConfig
	err := configtest.Strict(data, &c)
	return &c, err
}

// toPrometheus is the same config as Prometheus's own type, for the
// conformance tests.
func toPrometheus(c *SDConfig) *promconsul.SDConfig {
	return &promconsul.SDConfig{
		Server: c.Server, PathPrefix: c.PathPrefix, Token: c.Token, Datacenter: c.Datacenter,
		Namespace: c.Namespace, Partition: c.Partition, TagSeparator: c.TagSeparator, Scheme: c.Scheme,
		AllowStale: c.AllowStale, RefreshInterval: c.RefreshInterval, Services: c.Services,
		ServiceTags: c.ServiceTags, NodeMeta: c.NodeMeta, Filter: c.Filter, HealthFilter: c.HealthFilter,
		HTTPClientConfig: c.HTTPClientConfig,
	}
}

func TestConfigFiles(t *testing.T) {
	good := map[string]SDConfig{
		"defaults.good.yml": DefaultSDConfig,
		"all-keys.good.yml": {
			Server: "consul.example:8501", PathPrefix: "/consul", Token: "s3cret", Datacenter: "dc2",
			Namespace: "ns1", Partition: "part1", TagSeparator: ";", Scheme: "https", AllowStale: false,
			RefreshInterval: model.Duration(10 * time.Second), Services: []string{"web", "db"},
			ServiceTags: []string{"prod", "v2"}, NodeMeta: map[string]string{"rack": "r1"},
			Filter: `ServiceName != "consul"`, HealthFilter: `Service.Tags contains "prod"`, MaxConnections: 8,
			HTTPClientConfig: config.HTTPClientConfig{
				TLSConfig:   config.TLSConfig{CAFile: "ca.pem", InsecureSkipVerify: true},
				ProxyConfig: config.ProxyConfig{ProxyURL: config.URL{URL: mustURL(t, "http://proxy.example:3128")}},
			},
		},
		"username.good.yml": func() SDConfig {
			c := DefaultSDConfig
			c.HTTPClientConfig.BasicAuth = &config.BasicAuth{Username: "alice", Password: "pw"}
			return c
		}(),
	}
	bad := map[string]string{
		"empty-server.bad.yml":            "line 1: consul SD configuration requires a server address",
		"user-and-basic-auth.bad.yml":     "line 1: at most one of consul SD configuration username and password and basic auth can be configured",
		"token-and-authorization.bad.yml": "line 1: at most one of consul SD token, authorization, or oauth2 can be configured",
		"token-and-oauth2.bad.yml":        "line 1: at most one of consul SD token, authorization, or oauth2 can be configured",
		"bad-scheme.bad.yml":              `line 1: invalid scheme "ftp" for consul_sd_configs (one of: http, https)`,
		"bad-server-protocol.bad.yml":     `line 1: unknown protocol "ftp" in consul SD server "ftp://consul.example" (one of: http, https, unix)`,
		"zero-refresh.bad.yml":            `line 1: invalid refresh_interval "0s" for consul_sd_configs (must be greater than 0)`,
		"bad-max-connections.bad.yml":     "line 1: invalid max_connections 3 for consul_sd_configs (must be 0 for the default, or at least 5: four change detectors and one reader)",
		"unknown-key.bad.yml":             "yaml: unmarshal errors:\n  line 2: field service not found in type consul.plain",
		"bad-http-config.bad.yml":         "line 1: invalid HTTP client settings for consul_sd_configs: at most one of bearer_token & bearer_token_file must be configured",
		"bad-duration.bad.yml":            `line 1: not a valid duration string: "soon"`,
	}
	decode := func(t *testing.T, data []byte) (SDConfig, error) {
		c, err := decodeConfig(t, data)
		return *c, err
	}
	configtest.Table[SDConfig]{Good: good, Bad: bad, Decode: decode, Then: func(t *testing.T, data []byte, got SDConfig) {
		// Prometheus reads the same file (without sdhub's own key) to
		// the same settings and defaults.
		var prom promconsul.SDConfig
		if err := yamlv2.UnmarshalStrict(bytes.ReplaceAll(data, []byte("max_connections: 8\n"), nil), &prom); err != nil {
			t.Fatalf("prometheus rejects it: %v", err)
		}
		prom.Username, prom.Password = "", ""
		if mine := toPrometheus(&got); !reflect.DeepEqual(mine, &prom) {
			t.Fatalf("prometheus reads %+v\nsdhub reads %+v", prom, *mine)
		}
	}}.Run(t)
}

func TestSetDirectory(t *testing.T) {
	c, err := decodeConfig(t, []byte("tls_config:\n  ca_file: ca.pem\n"))
	if err != nil {
		t.Fatal(err)
	}
	c.SetDirectory("/etc/sdhub")
	if got := c.HTTPClientConfig.TLSConfig.CAFile; got != filepath.Join("/etc/sdhub", "ca.pem") {
		t.Fatalf("ca_file = %q", got)
	}
}

func TestParseServer(t *testing.T) {
	for _, tc := range []struct {
		server, scheme, prefix string
		want                   endpoint
	}{
		{server: "localhost:8500", scheme: "http", want: endpoint{scheme: "http", host: "localhost:8500"}},
		{server: "https://c.example:8501/consul", scheme: "http", prefix: "/ignored", want: endpoint{scheme: "https", host: "c.example:8501", pathPrefix: "/consul"}},
		{server: "http://c.example", scheme: "https", want: endpoint{scheme: "https", host: "c.example"}},
		{server: "unix:///run/consul.sock", scheme: "http", want: endpoint{scheme: "http", host: "localhost", unixSocket: "/run/consul.sock"}},
	} {
		t.Run(tc.server, func(t *testing.T) {
			got, err := parseServer(tc.server, tc.scheme, tc.prefix)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestConnectionWarnings: distinct configs for one agent whose
// max_connections add up past Consul's default limit of 200 per client are
// warned about; equal configs count once, other agents apart.
func TestConnectionWarnings(t *testing.T) {
	cfg := func(server string, conns int, services ...string) *SDConfig {
		c := DefaultSDConfig
		c.Server, c.MaxConnections, c.Services = server, conns, services
		return &c
	}
	var configs []*SDConfig
	for i := range 12 { // 12 × 16 = 192: under the limit
		configs = append(configs, cfg("consul:8500", 16, fmt.Sprintf("svc-%d", i)))
	}
	configs = append(configs, cfg("consul:8500", 16, "svc-0"), cfg("other:8500", 64)) // equal to one above; another agent
	if w := ConnectionWarnings(configs); len(w) != 0 {
		t.Fatalf("warnings under the limit: %q", w)
	}
	configs = append(configs, cfg("http://consul:8500", 16, "svc-12")) // the same agent, written as a URL: 208
	want := "consul_sd_configs for consul:8500 may open up to 208 connections together (the sum of their max_connections), more than Consul's default limit of 200 per client (limits.http_max_conns_per_client): lower max_connections or merge the configs"
	if w := ConnectionWarnings(configs); len(w) != 1 || w[0] != want {
		t.Fatalf("warnings = %q, want [%q]", w, want)
	}
}
