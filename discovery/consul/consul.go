// Package consul implements `consul_sd_configs` with Prometheus's keys,
// defaults and `__meta_consul_*` labels, and a watch that holds a bounded
// number of connections to the Consul agent however large the catalog is
// (see docs/mechanisms/consul.md for the design).
package consul

import (
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/config"
	"github.com/prometheus/common/model"

	"github.com/sdhub/sdhub/discovery"
)

// DefaultMaxConnections bounds the TCP connections one discoverer opens to
// a Consul agent over HTTP unless max_connections says otherwise. Consul's
// default http_max_conns_per_client is 200.
const DefaultMaxConnections = 16

// DefaultMaxConnectionsHTTPS is the bound over HTTPS. There Consul speaks
// HTTP/2, and each connection carries up to 250 blocking queries: 32
// connections watch up to 7,750 services with a query each (one connection
// goes to the detectors and reads). Only the connections needed are
// opened: two for a few hundred services.
const DefaultMaxConnectionsHTTPS = 32

// minConnections is the least max_connections that works: over HTTP/1.1
// each of the four change detectors holds a blocking query on a connection
// of its own, and at least one reader needs another.
const minConnections = detectors + 1

// DefaultSDConfig is the default Consul SD configuration: Prometheus's
// defaults plus sdhub's connection bound.
var DefaultSDConfig = SDConfig{
	Server:           "localhost:8500",
	TagSeparator:     ",",
	Scheme:           "http",
	AllowStale:       true,
	RefreshInterval:  model.Duration(30 * time.Second),
	HTTPClientConfig: config.DefaultHTTPClientConfig,
}

// SDConfig is one element of `consul_sd_configs`. Every key is Prometheus's
// except max_connections, which is sdhub's own.
type SDConfig struct {
	Server       string        `yaml:"server,omitempty"`
	PathPrefix   string        `yaml:"path_prefix,omitempty"`
	Token        config.Secret `yaml:"token,omitempty"`
	Datacenter   string        `yaml:"datacenter,omitempty"`
	Namespace    string        `yaml:"namespace,omitempty"`
	Partition    string        `yaml:"partition,omitempty"`
	TagSeparator string        `yaml:"tag_separator,omitempty"`
	Scheme       string        `yaml:"scheme,omitempty"`
	// Username and Password are deprecated; decoding moves them into
	// HTTPClientConfig.BasicAuth and clears them.
	Username string        `yaml:"username,omitempty"`
	Password config.Secret `yaml:"password,omitempty"`

	// AllowStale lets any Consul server answer (`?stale`): much cheaper.
	AllowStale bool `yaml:"allow_stale"`
	// RefreshInterval is not a poll interval: it is the least time between
	// two change-driven re-reads of one service (see docs/mechanisms/consul.md).
	RefreshInterval model.Duration `yaml:"refresh_interval,omitempty"`

	// Services to discover; all when empty.
	Services []string `yaml:"services,omitempty"`
	// ServiceTags: an instance must carry all of them.
	ServiceTags []string `yaml:"tags,omitempty"`
	// NodeMeta is a server-side node metadata filter.
	NodeMeta map[string]string `yaml:"node_meta,omitempty"`
	// Filter is a Catalog API filter expression.
	Filter string `yaml:"filter,omitempty"`
	// HealthFilter is a Health API filter expression.
	HealthFilter string `yaml:"health_filter,omitempty"`

	// MaxConnections bounds the TCP connections to the agent (sdhub only);
	// 0 is the default of the scheme (see maxConnections).
	MaxConnections int `yaml:"max_connections,omitempty"`

	HTTPClientConfig config.HTTPClientConfig `yaml:",inline"`
}

// Interface guard.
var _ discovery.Config = (*SDConfig)(nil)

// Mechanism describes consul to the config loader and the manager.
var Mechanism = discovery.Mechanism{
	Name:      "consul",
	NewConfig: func() discovery.Config { return &SDConfig{} },
	NewMetrics: func(reg prometheus.Registerer, _ *discovery.RefreshMetrics) (discovery.Metrics, error) {
		return NewMetrics(reg)
	},
	Warnings: func(configs []discovery.Config) []string {
		cs := make([]*SDConfig, 0, len(configs))
		for _, c := range configs {
			cs = append(cs, c.(*SDConfig))
		}
		return ConnectionWarnings(cs)
	},
}

// Name returns "consul".
func (*SDConfig) Name() string { return "consul" }

// NewDiscoverer returns a Discovery for the config.
func (c *SDConfig) NewDiscoverer(opts discovery.Options) (discovery.Discoverer, error) {
	return NewDiscovery(c, opts)
}

// SetDirectory resolves relative TLS and credential file paths against dir.
func (c *SDConfig) SetDirectory(dir string) {
	c.HTTPClientConfig.SetDirectory(dir)
}

// UnmarshalYAML applies the defaults, decodes strictly, validates and moves
// the deprecated username/password into basic_auth.
func (c *SDConfig) UnmarshalYAML(unmarshal func(any) error) error {
	*c = DefaultSDConfig
	type plain SDConfig
	if err := discovery.UnmarshalConfig(unmarshal, (*plain)(c), c.Validate); err != nil {
		return err
	}
	if c.Username != "" || c.Password != "" {
		c.HTTPClientConfig.BasicAuth = &config.BasicAuth{Username: c.Username, Password: c.Password}
		c.Username, c.Password = "", ""
	}
	return nil
}

// Validate checks the config. Besides Prometheus's own checks it rejects
// what Prometheus would only fail on at run time (a zero refresh_interval
// panics Prometheus's ticker; an unknown scheme fails every request).
// HTTPClientConfig.Validate normalises bearer_token into authorization.
func (c *SDConfig) Validate() error {
	if strings.TrimSpace(c.Server) == "" {
		return discovery.Fieldf("server", "consul SD configuration requires a server address")
	}
	if _, err := parseServer(c.Server, c.Scheme, c.PathPrefix); err != nil {
		return discovery.Fieldf("server", "%w", err)
	}
	if c.Scheme != "http" && c.Scheme != "https" {
		return discovery.Fieldf("scheme", "invalid scheme %q for consul_sd_configs (one of: http, https)", c.Scheme)
	}
	if c.RefreshInterval <= 0 {
		return discovery.Fieldf("refresh_interval", "invalid refresh_interval %q for consul_sd_configs (must be greater than 0)", c.RefreshInterval)
	}
	if c.MaxConnections != 0 && c.MaxConnections < minConnections {
		return discovery.Fieldf("max_connections", "invalid max_connections %d for consul_sd_configs (must be 0 for the default, or at least %d: four change detectors and one reader)", c.MaxConnections, minConnections)
	}
	if (c.Username != "" || c.Password != "") && c.HTTPClientConfig.BasicAuth != nil {
		return discovery.Fieldf("username", "at most one of consul SD configuration username and password and basic auth can be configured")
	}
	if c.Token != "" && (c.HTTPClientConfig.Authorization != nil || c.HTTPClientConfig.BearerToken != "" ||
		c.HTTPClientConfig.BearerTokenFile != "" || c.HTTPClientConfig.OAuth2 != nil) {
		return discovery.Fieldf("token", "at most one of consul SD token, authorization, or oauth2 can be configured")
	}
	if err := c.HTTPClientConfig.Validate(); err != nil {
		return fmt.Errorf("invalid HTTP client settings for consul_sd_configs: %w", err)
	}
	return nil
}

// maxConnections is max_connections, or its default for the scheme.
func (c *SDConfig) maxConnections() int {
	if c.MaxConnections > 0 {
		return c.MaxConnections
	}
	if ep, err := parseServer(c.Server, c.Scheme, c.PathPrefix); err == nil && ep.scheme == "https" && ep.unixSocket == "" {
		return DefaultMaxConnectionsHTTPS
	}
	return DefaultMaxConnections
}

// endpoint is where and how to reach the agent, from server, scheme and
// path_prefix, following the consul api client's rules: a server of the form
// "https://host:port/prefix" sets the scheme and path prefix, and
// "unix:///path" dials a Unix socket.
type endpoint struct {
	scheme, host, pathPrefix string
	unixSocket               string
}

func parseServer(server, scheme, pathPrefix string) (endpoint, error) {
	ep := endpoint{scheme: scheme, host: server, pathPrefix: pathPrefix}
	proto, rest, ok := strings.Cut(server, "://")
	if !ok {
		return ep, nil
	}
	switch proto {
	case "http":
	case "https":
		ep.scheme = "https"
	case "unix":
		ep.unixSocket, ep.host = rest, "localhost"
		return ep, nil
	default:
		return ep, fmt.Errorf("unknown protocol %q in consul SD server %q (one of: http, https, unix)", proto, server)
	}
	ep.host = rest
	if host, path, ok := strings.Cut(rest, "/"); ok {
		ep.host, ep.pathPrefix = host, "/"+path
	}
	if ep.host == "" {
		return ep, fmt.Errorf("missing host in consul SD server %q", server)
	}
	return ep, nil
}

// errInvalidMetrics is returned when a discoverer is handed another
// mechanism's metrics.
var errInvalidMetrics = errors.New("invalid metrics type for consul discovery")

func discard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}

// consulConnLimit is Consul's default limits.http_max_conns_per_client.
const consulConnLimit = 200

// ConnectionWarnings warns about agents that the configs, together, may
// open more connections to than Consul allows one client by default. Equal
// configs share one discoverer (the manager's providers) and count once.
func ConnectionWarnings(configs []*SDConfig) []string {
	var distinct []*SDConfig
	for _, c := range configs {
		if !slices.ContainsFunc(distinct, func(d *SDConfig) bool { return reflect.DeepEqual(c, d) }) {
			distinct = append(distinct, c)
		}
	}
	total := map[string]int{}
	var agents []string
	for _, c := range distinct {
		ep, err := parseServer(c.Server, c.Scheme, c.PathPrefix)
		if err != nil {
			continue // Validate reports it
		}
		agent := ep.host
		if ep.unixSocket != "" {
			agent = "unix://" + ep.unixSocket
		}
		if _, ok := total[agent]; !ok {
			agents = append(agents, agent)
		}
		total[agent] += c.maxConnections()
	}
	var out []string
	for _, a := range agents {
		if total[a] > consulConnLimit {
			out = append(out, fmt.Sprintf("consul_sd_configs for %s may open up to %d connections together (the sum of their max_connections), more than Consul's default limit of %d per client (limits.http_max_conns_per_client): lower max_connections or merge the configs", a, total[a], consulConnLimit))
		}
	}
	return out
}
