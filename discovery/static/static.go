// Package static implements `static_configs`: target groups written in the
// config file itself. The config loader gathers every static_configs group
// of a job into one SDConfig (see FromGroups), as Prometheus does.
package static

import (
	"context"
	"maps"
	"strconv"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/sdhub/sdhub/discovery"
)

// SDConfig is the static_configs groups of one job, in file order, with
// Source set to each group's index.
type SDConfig []*targetgroup.Group

// Interface guard.
var _ discovery.Config = SDConfig(nil)

// FromGroups gathers a job's static_configs groups into one SDConfig and
// sets each group's Source to its index ("0", "1", ...), which is how
// Prometheus names static groups within a scrape pool. It sets Source on the
// groups it is given.
func FromGroups(groups []*targetgroup.Group) SDConfig {
	c := make(SDConfig, len(groups))
	for i, g := range groups {
		g.Source = strconv.Itoa(i)
		c[i] = g
	}
	return c
}

// Name returns "static".
func (SDConfig) Name() string { return "static" }

// NewDiscoverer returns a discoverer that sends the groups once.
func (c SDConfig) NewDiscoverer(discovery.Options) (discovery.Discoverer, error) {
	return NewDiscovery(c), nil
}

// Discovery sends a fixed list of groups.
type Discovery struct {
	groups []*targetgroup.Group
}

// NewDiscovery returns a discovery for the groups of c.
func NewDiscovery(c SDConfig) *Discovery {
	return &Discovery{groups: c}
}

// Run sends the whole list as its first and only message, then waits for
// ctx. It does not close up: the groups stay until the provider is cancelled.
func (d *Discovery) Run(ctx context.Context, up chan<- []*targetgroup.Group) {
	groups, _ := d.refresh(ctx)
	select {
	case up <- groups:
	case <-ctx.Done():
		return
	}
	<-ctx.Done()
}

// refresh returns copies of the groups, so a consumer that changes what it
// receives cannot change the config the manager compares on reload.
func (d *Discovery) refresh(context.Context) ([]*targetgroup.Group, error) {
	out := make([]*targetgroup.Group, 0, len(d.groups))
	for _, g := range d.groups {
		if g == nil {
			continue
		}
		c := &targetgroup.Group{Source: g.Source, Labels: maps.Clone(g.Labels)}
		if g.Targets != nil {
			c.Targets = make([]model.LabelSet, len(g.Targets))
			for i, t := range g.Targets {
				c.Targets[i] = maps.Clone(t)
			}
		}
		out = append(out, c)
	}
	return out, nil
}
