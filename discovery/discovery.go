// Package discovery holds the contracts every service-discovery mechanism of
// sdhub implements. They mirror Prometheus's own: a Config is one
// `<name>_sd_configs` element, it builds a Discoverer, and a Discoverer sends
// target groups until its context ends.
package discovery

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/sdhub/sdhub/internal/priority"
)

// Discoverer provides information about target groups.
//
// Run sends the full set of groups first, then either full or changed groups.
// Every group carries a Source unique within the discoverer; a group with a
// known Source and no targets means that group is gone. Run returns when ctx
// is done, selects on ctx for every send, and never closes up.
type Discoverer interface {
	Run(ctx context.Context, up chan<- []*targetgroup.Group)
}

// Config is one service-discovery configuration: one element of a job's
// `<Name()>_sd_configs` list. Configs must compare with reflect.DeepEqual
// (no funcs, no pointers to fresh objects): the manager shares and keeps
// providers whose configs are deeply equal.
type Config interface {
	// Name is the mechanism name, e.g. "consul"; its YAML key is Name()+"_sd_configs".
	Name() string
	// NewDiscoverer builds a discoverer for this config.
	NewDiscoverer(Options) (Discoverer, error)
}

// Configs is the list of SD configs of one job.
type Configs []Config

// Options are what the manager hands a config when it builds a discoverer.
type Options struct {
	// Logger is never nil when the manager builds a discoverer; tests may leave it nil.
	Logger *slog.Logger
	// SetName is the job the provider was created for: the `config` label of refresh metrics.
	SetName string
	// Metrics is the mechanism's metric set, made once per process by its
	// Mechanism.NewMetrics. A discoverer given nil uses unregistered metrics.
	Metrics Metrics
	// Health receives what the discoverer learns about its source: the
	// manager records it per provider for the status page, `discover` and
	// the per-job health metrics. Nil (in tests) discards it; discoverers
	// call HealthOf(opts), which is never nil.
	Health Health
	// Priority orders the discoverer's deferrable work (decoding answers)
	// after the output's; nil orders nothing.
	Priority *priority.Gate
	// Tuning is the hub's settings for its native mechanisms.
	Tuning Tuning
}

// Tuning holds the hub's settings for its native mechanisms, from flags of
// `sdhub run` (docs/reference/flags.md); the zero value is every default.
type Tuning struct {
	// ConsulServiceListInterval is the least time between two answers of
	// Consul's service list while every service of a consul_sd_configs
	// entry has a blocking query of its own, which is how late a new
	// service can be seen; 0: each entry's refresh_interval (consul's
	// listPace).
	ConsulServiceListInterval time.Duration
}

// Health is where a discoverer reports the state of its source. It is the
// only way the rest of sdhub learns about a discoverer's errors: nothing
// reads its log records. Safe for concurrent use.
type Health interface {
	// Failed records that reading the source failed: a refresh, a watch, a
	// read of one part of it. The discoverer keeps its last good targets,
	// so its output may be stale until the next Synced.
	Failed(err error)
	// Synced records that everything the discoverer has sent reflects its
	// source as of now: a full refresh succeeded, or every watch is caught
	// up without an error.
	Synced()
}

// HealthOf returns o.Health, or a Health that discards reports when it is nil.
func HealthOf(o Options) Health {
	if o.Health == nil {
		return nopHealth{}
	}
	return o.Health
}

type nopHealth struct{}

func (nopHealth) Failed(error) {}
func (nopHealth) Synced()      {}

// Metrics is a mechanism's metric set; each mechanism type-asserts its own.
type Metrics interface {
	// Unregister removes the set from the registerer it was registered with.
	Unregister()
}
