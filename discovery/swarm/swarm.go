// Package swarm implements `dockerswarm_sd_configs`: Docker Swarm service
// discovery with Prometheus's keys, defaults, targets and
// `__meta_dockerswarm_*` labels for the services, tasks and nodes roles.
//
// Like Prometheus it refreshes the full state at start and every
// refresh_interval; in addition it follows the engine's events stream and
// refreshes within a second of a change to a service, node, network or
// container.
package swarm

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	"github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/sdhub/sdhub/discovery"
)

const (
	// mechanism is the name of the mechanism and of its refresh metrics.
	mechanism = "dockerswarm"
	// key is the YAML key of the config list, used in error messages.
	key = mechanism + "_sd_configs"
	// source is the Source of the one group every refresh returns, as in Prometheus.
	source = "DockerSwarm"
	// userAgent is sent to http and https hosts.
	userAgent = "sdhub"

	metaPrefix = model.MetaLabelPrefix + "dockerswarm_"
)

// Mechanism describes dockerswarm_sd_configs to the config loader and manager.
var Mechanism = discovery.Mechanism{
	Name:       mechanism,
	NewConfig:  func() discovery.Config { return &SDConfig{} },
	NewMetrics: NewMetrics,
}

// DefaultSDConfig holds the defaults Prometheus applies.
var DefaultSDConfig = SDConfig{
	RefreshInterval:  model.Duration(60 * time.Second),
	Port:             80,
	Filters:          []Filter{},
	HTTPClientConfig: config.DefaultHTTPClientConfig,
}

// SDConfig is one element of `dockerswarm_sd_configs`, with Prometheus's keys.
type SDConfig struct {
	// HTTPClientConfig applies to http and https hosts only, as in Prometheus.
	HTTPClientConfig config.HTTPClientConfig `yaml:",inline"`

	Host    string   `yaml:"host"`
	Role    string   `yaml:"role"`
	Port    int      `yaml:"port"`
	Filters []Filter `yaml:"filters"`

	RefreshInterval model.Duration `yaml:"refresh_interval"`
}

// Filter is a Docker API filter passed to the role's list call.
type Filter struct {
	Name   string   `yaml:"name"`
	Values []string `yaml:"values"`
}

var (
	roles   = []string{"services", "tasks", "nodes"}
	schemes = []string{"unix", "tcp", "http", "https"}
)

// Name returns "dockerswarm".
func (*SDConfig) Name() string { return mechanism }

// NewDiscoverer returns a Discovery for the config.
func (c *SDConfig) NewDiscoverer(opts discovery.Options) (discovery.Discoverer, error) {
	return NewDiscovery(c, opts)
}

// SetDirectory resolves the HTTP client's relative file paths against dir.
func (c *SDConfig) SetDirectory(dir string) { c.HTTPClientConfig.SetDirectory(dir) }

// UnmarshalYAML applies the defaults, decodes strictly and validates.
func (c *SDConfig) UnmarshalYAML(unmarshal func(any) error) error {
	*c = DefaultSDConfig
	type plain SDConfig
	return discovery.UnmarshalConfig(unmarshal, (*plain)(c), c.Validate)
}

// Validate checks the config as Prometheus does (host present and a URL,
// role, HTTP client settings), plus what Prometheus only finds when the
// discoverer starts (a host scheme the Docker client rejects) or never
// (refresh_interval 0, which panics its ticker; a port outside 0-65535; a
// filter without a name, which the engine rejects on every refresh).
func (c *SDConfig) Validate() error {
	if c.Host == "" {
		return discovery.Fieldf("host", "host missing for %s", key)
	}
	u, err := url.Parse(c.Host)
	if err != nil {
		return discovery.Fieldf("host", "invalid host %q for %s: %w", c.Host, key, err)
	}
	if _, ok := u.User.Password(); ok {
		// Never echo the password, and the Docker client would not use it.
		return discovery.Fieldf("host", "invalid host %q for %s: a password in the URL is not supported, use basic_auth", u.Redacted(), key)
	}
	if !slices.Contains(schemes, u.Scheme) {
		return discovery.Fieldf("host", "invalid host %q for %s (scheme one of: %s)", c.Host, key, strings.Join(schemes, ", "))
	}
	switch {
	case c.Role == "":
		return discovery.Fieldf("role", "role missing for %s (one of: %s)", key, strings.Join(roles, ", "))
	case !slices.Contains(roles, c.Role):
		return discovery.Fieldf("role", "invalid role %q for %s (one of: %s)", c.Role, key, strings.Join(roles, ", "))
	}
	if c.Port < 0 || c.Port > 65535 {
		return discovery.Fieldf("port", "invalid port %d for %s (0-65535)", c.Port, key)
	}
	if c.RefreshInterval <= 0 {
		return discovery.Fieldf("refresh_interval", "invalid refresh_interval %q for %s (must be greater than 0)", c.RefreshInterval, key)
	}
	for i, f := range c.Filters {
		if f.Name == "" {
			return discovery.Fieldf("filters", "filter %d of %s has no name", i, key)
		}
	}
	if err := c.HTTPClientConfig.Validate(); err != nil {
		return fmt.Errorf("invalid HTTP client settings for %s: %w", key, err)
	}
	return nil
}

// Discovery discovers Docker Swarm targets of one role.
type Discovery struct {
	client   *client.Client
	role     string
	port     int
	filters  filters.Args
	interval time.Duration
	logger   *slog.Logger
	health   discovery.Health
	refreshM *discovery.Refresh
	metrics  *Metrics
	watch    watchTiming

	negotiation sync.Mutex // guards negotiated; held while negotiating
	negotiated  bool
}

// NewDiscovery builds a Discovery; it does not contact the engine.
func NewDiscovery(c *SDConfig, opts discovery.Options) (*Discovery, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	m, err := metricsFrom(opts.Metrics)
	if err != nil {
		return nil, err
	}
	cli, err := newClient(c)
	if err != nil {
		return nil, err
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	f := filters.NewArgs()
	for _, flt := range c.Filters {
		for _, v := range flt.Values {
			f.Add(flt.Name, v)
		}
	}
	return &Discovery{
		client:   cli,
		role:     c.Role,
		port:     c.Port,
		filters:  f,
		interval: time.Duration(c.RefreshInterval),
		logger:   logger,
		health:   discovery.HealthOf(opts),
		refreshM: m.refresh.Instantiate(mechanism, opts.SetName),
		metrics:  m,
		watch:    defaultWatchTiming,
	}, nil
}

// newClient makes the Docker client with API version negotiation. As in
// Prometheus, the HTTP client settings and User-Agent apply to http and
// https hosts only; unix and tcp hosts use the Docker client's transport.
// Requests are bounded by contexts (refresh_interval per refresh), not by a
// client timeout, which would also cut the long-lived events stream.
func newClient(c *SDConfig) (*client.Client, error) {
	u, err := url.Parse(c.Host)
	if err != nil {
		return nil, err
	}
	opts := []client.Opt{client.WithHost(c.Host), client.WithAPIVersionNegotiation()}
	if u.Scheme == "http" || u.Scheme == "https" {
		rt, err := config.NewRoundTripperFromConfig(c.HTTPClientConfig, "dockerswarm_sd")
		if err != nil {
			return nil, fmt.Errorf("dockerswarm_sd_configs: HTTP client for %q: %w", c.Host, err)
		}
		opts = append(opts,
			client.WithHTTPClient(&http.Client{Transport: rt}),
			client.WithScheme(u.Scheme),
			client.WithHTTPHeaders(map[string]string{"User-Agent": userAgent}),
		)
	}
	cli, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return nil, fmt.Errorf("dockerswarm_sd_configs: docker client for %q: %w", c.Host, err)
	}
	return cli, nil
}

// refresh lists the role's objects once and returns one group holding
// every target, Source "DockerSwarm", as Prometheus does.
func (d *Discovery) refresh(ctx context.Context) ([]*targetgroup.Group, error) {
	if err := d.negotiate(ctx); err != nil {
		return nil, fmt.Errorf("error while negotiating the Docker API version: %w", err)
	}
	var (
		tg  *targetgroup.Group
		err error
	)
	switch d.role {
	case "services":
		tg, err = d.refreshServices(ctx)
	case "tasks":
		tg, err = d.refreshTasks(ctx)
	case "nodes":
		tg, err = d.refreshNodes(ctx)
	default:
		err = fmt.Errorf("invalid role %q for %s (one of: %s)", d.role, key, strings.Join(roles, ", "))
	}
	if err != nil {
		return nil, err
	}
	return []*targetgroup.Group{tg}, nil
}

var _ discovery.Config = (*SDConfig)(nil)
var _ discovery.Discoverer = (*Discovery)(nil)
