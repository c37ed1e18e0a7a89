package config

import (
	"reflect"
	"slices"
	"strings"

	// Prometheus's SD mechanisms, each registering its `<name>_sd_configs`
	// in Prometheus's registry. All are linked by default; Prometheus's own
	// build tags trim them: `-tags remove_all_sd,enable_kubernetes_sd,...`
	// keeps file and http and the ones enabled (see docs/mechanisms/prometheus.md).
	_ "github.com/prometheus/prometheus/plugins"
	// Prometheus's consul and moby (docker, dockerswarm) packages, in every
	// build: Prometheus's loader validates the native mechanisms' blocks too,
	// and sdhub links their client libraries anyway.
	_ "github.com/prometheus/prometheus/discovery/consul"
	_ "github.com/prometheus/prometheus/discovery/moby"

	"github.com/sdhub/sdhub/discovery"
	"github.com/sdhub/sdhub/discovery/consul"
	"github.com/sdhub/sdhub/discovery/file"
	"github.com/sdhub/sdhub/discovery/promsd"
	"github.com/sdhub/sdhub/discovery/swarm"
)

// Native lists the mechanisms sdhub implements itself, by the YAML key
// Name()+"_sd_configs". static_configs is handled apart, as in Prometheus:
// all of a job's static groups form one static config.
var Native = []discovery.Mechanism{
	consul.Mechanism,
	file.Mechanism,
	swarm.Mechanism,
}

// Mechanisms lists every mechanism sdhub runs: the native ones, then every
// other one in Prometheus's SD registry, run with Prometheus's own config
// types and discoverers (package discovery/promsd), sorted by name.
var Mechanisms = append(slices.Clip(Native), promsd.Mechanisms(names(Native)...)...)

// extensions are the keys sdhub's native mechanisms accept beyond
// Prometheus's, by mechanism key. Prometheus's loader rejects them, so they
// are taken out of its view of the file.
var extensions = map[string][]string{
	"consul_sd_configs": {"max_connections"},
}

// prometheusMechanisms are the names of every `<name>_sd_configs` that
// Prometheus v0.316 knows. A build that leaves some of them out (build tags)
// still loads their blocks: it leaves those to Prometheus, with a warning.
// A mechanism Prometheus adds later is served without being listed here.
var prometheusMechanisms = []string{
	"aws", "azure", "consul", "digitalocean", "dns", "docker", "dockerswarm", "ec2", "ecs", "elasticache",
	"eureka", "file", "gce", "hetzner", "http", "ionos", "kubernetes", "kuma", "lightsail", "linode",
	"marathon", "msk", "nerve", "nomad", "oci", "openstack", "outscale", "ovhcloud", "puppetdb", "rds",
	"scaleway", "serverset", "stackit", "triton", "uyuni", "vultr",
}

// leftOutKeys are the `<name>_sd_configs` keys of the mechanisms Prometheus
// knows that this build leaves out.
func leftOutKeys() []string {
	var out []string
	for _, name := range prometheusMechanisms {
		if !slices.ContainsFunc(Mechanisms, func(m discovery.Mechanism) bool { return m.Name == name }) {
			out = append(out, name+"_sd_configs")
		}
	}
	return out
}

// isNative reports whether sdhub implements the mechanism named name itself.
func isNative(name string) bool {
	return slices.ContainsFunc(Native, func(m discovery.Mechanism) bool { return m.Name == name })
}

// served reports whether sdhub runs the mechanism named name.
func served(name string) bool {
	return slices.ContainsFunc(Mechanisms, func(m discovery.Mechanism) bool { return m.Name == name })
}

func names(ms []discovery.Mechanism) []string {
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		out = append(out, m.Name)
	}
	return out
}

// packageName is the Go package name of a mechanism's config type.
func packageName(m discovery.Mechanism) string {
	t := reflect.TypeOf(m.NewConfig())
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	p := t.PkgPath()
	return p[strings.LastIndex(p, "/")+1:]
}
