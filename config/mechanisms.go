package config

import (
	"reflect"
	"strings"

	"github.com/sdhub/sdhub/discovery"
	"github.com/sdhub/sdhub/discovery/consul"
	"github.com/sdhub/sdhub/discovery/file"
	"github.com/sdhub/sdhub/discovery/swarm"
)

// Mechanisms lists every service-discovery mechanism sdhub implements, by
// the YAML key Name()+"_sd_configs". static_configs is handled apart, as in
// Prometheus: all of a job's static groups form one static config.
var Mechanisms = []discovery.Mechanism{
	consul.Mechanism,
	file.Mechanism,
	swarm.Mechanism,
}

// unsupportedMechanisms are the other `<name>_sd_configs` keys Prometheus
// accepts. A job may carry them; sdhub leaves those to Prometheus and warns.
var unsupportedMechanisms = []string{
	"aws", "azure", "digitalocean", "dns", "docker", "ec2", "ecs", "elasticache", "eureka", "gce",
	"hetzner", "http", "ionos", "kubernetes", "kuma", "lightsail", "linode", "marathon", "msk", "nerve",
	"nomad", "oci", "openstack", "outscale", "ovhcloud", "puppetdb", "rds", "scaleway", "serverset",
	"stackit", "triton", "uyuni", "vultr",
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
