//go:build !remove_all_sd || enable_kubernetes_sd

package promsd

import (
	"github.com/prometheus/client_golang/prometheus"
	promdiscovery "github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/discovery/kubernetes"
)

// Kubernetes's first full set: the objects of the role its informers hold,
// added less deleted (prometheus_sd_kubernetes_events_total), under the
// build tags Prometheus's plugins/plugin_kubernetes.go keeps it by.
func init() {
	liveRules["kubernetes"] = func(c promdiscovery.Config, g prometheus.Gatherer) func() float64 {
		k, ok := c.(*kubernetes.SDConfig)
		if !ok {
			return nil
		}
		role := string(k.Role)
		return func() float64 {
			return counterValue(g, "prometheus_sd_kubernetes_events_total", role, kubernetes.MetricLabelRoleAdd) -
				counterValue(g, "prometheus_sd_kubernetes_events_total", role, kubernetes.MetricLabelRoleDelete)
		}
	}
}
