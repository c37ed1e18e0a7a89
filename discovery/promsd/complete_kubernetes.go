//go:build !remove_all_sd || enable_kubernetes_sd

package promsd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/config"
	"github.com/prometheus/common/version"
	promdiscovery "github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/discovery/kubernetes"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8s "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Kubernetes's first full set: the objects of the role its informers hold,
// added less deleted (prometheus_sd_kubernetes_events_total), under the
// build tags Prometheus's plugins/plugin_kubernetes.go keeps it by. A role
// with no object sends nothing once synced: the API server, asked as the
// informers ask it, says so (kubeEmpty).
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
	emptyProbes["kubernetes"] = func(c promdiscovery.Config) func(context.Context) (bool, error) {
		k, ok := c.(*kubernetes.SDConfig)
		if !ok {
			return nil
		}
		return func(ctx context.Context) (bool, error) { return kubeEmpty(ctx, k) }
	}
}

// kubeEmpty reports whether the API server holds no object of c's role in
// c's namespaces, with the role's selectors: a LIST of at most one object
// per namespace, with the client Prometheus's discoverer builds from c.
func kubeEmpty(ctx context.Context, c *kubernetes.SDConfig) (bool, error) {
	kcfg, own, err := kubeClientConfig(c)
	if err != nil {
		return false, err
	}
	if ci, ok := kcfg.Transport.(interface{ CloseIdleConnections() }); ok {
		defer ci.CloseIdleConnections() // a transport of its own: the probe is done with it
	}
	cs, err := k8s.NewForConfig(kcfg)
	if err != nil {
		return false, err
	}
	opts := metav1.ListOptions{Limit: 1}
	for _, s := range c.Selectors {
		if s.Role == c.Role {
			opts.LabelSelector, opts.FieldSelector = s.Label, s.Field
		}
	}
	namespaces := c.NamespaceDiscovery.Names
	switch {
	case len(namespaces) == 0 && !c.NamespaceDiscovery.IncludeOwnNamespace:
		namespaces = []string{metav1.NamespaceAll}
	case c.NamespaceDiscovery.IncludeOwnNamespace && own != "":
		namespaces = append(namespaces, own)
	}
	if c.Role == kubernetes.RoleNode {
		namespaces = []string{metav1.NamespaceAll} // nodes have none
	}
	var list func(ns string) (runtime.Object, error)
	switch c.Role {
	case kubernetes.RolePod:
		list = func(ns string) (runtime.Object, error) { return cs.CoreV1().Pods(ns).List(ctx, opts) }
	case kubernetes.RoleService:
		list = func(ns string) (runtime.Object, error) { return cs.CoreV1().Services(ns).List(ctx, opts) }
	case kubernetes.RoleEndpoint:
		list = func(ns string) (runtime.Object, error) { return cs.CoreV1().Endpoints(ns).List(ctx, opts) } //nolint:staticcheck // the role Prometheus watches
	case kubernetes.RoleEndpointSlice:
		list = func(ns string) (runtime.Object, error) { return cs.DiscoveryV1().EndpointSlices(ns).List(ctx, opts) }
	case kubernetes.RoleIngress:
		list = func(ns string) (runtime.Object, error) { return cs.NetworkingV1().Ingresses(ns).List(ctx, opts) }
	case kubernetes.RoleNode:
		list = func(string) (runtime.Object, error) { return cs.CoreV1().Nodes().List(ctx, opts) }
	default:
		return false, fmt.Errorf("unknown role %q", c.Role)
	}
	for _, ns := range namespaces {
		l, err := list(ns)
		if err != nil {
			return false, fmt.Errorf("listing the %s objects of kubernetes_sd_configs: %w", c.Role, err)
		}
		if meta.LenList(l) > 0 {
			return false, nil
		}
	}
	return true, nil
}

// kubeClientConfig is the client of c's API server, reached as c says:
// through c.KubeConfig, at c.APIServer with c.HTTPClientConfig, or from
// inside the cluster (the pod's service account). The second result is the
// pod's own namespace, when c includes it and sdhub runs in a pod.
func kubeClientConfig(c *kubernetes.SDConfig) (*rest.Config, string, error) {
	var (
		kcfg *rest.Config
		own  string
	)
	switch {
	case c.KubeConfig != "":
		k, err := clientcmd.BuildConfigFromFlags("", c.KubeConfig)
		if err != nil {
			return nil, "", fmt.Errorf("kubernetes_sd_configs kubeconfig_file %s: %w", c.KubeConfig, err)
		}
		kcfg = k
	case c.APIServer.URL != nil:
		rt, err := config.NewRoundTripperFromConfig(c.HTTPClientConfig, "sdhub_kubernetes_list")
		if err != nil {
			return nil, "", fmt.Errorf("kubernetes_sd_configs api_server %s: %w", c.APIServer.String(), err)
		}
		kcfg = &rest.Config{Host: c.APIServer.String(), Transport: rt}
	default:
		k, err := rest.InClusterConfig()
		if err != nil {
			return nil, "", fmt.Errorf("kubernetes_sd_configs without api_server nor kubeconfig_file, and not in a pod: %w", err)
		}
		kcfg = k
		if c.NamespaceDiscovery.IncludeOwnNamespace {
			if own, err = podNamespace(); err != nil {
				return nil, "", err
			}
		}
	}
	kcfg.UserAgent = version.PrometheusUserAgent()
	kcfg.ContentType = "application/vnd.kubernetes.protobuf"
	return kcfg, own, nil
}

// serviceAccountNamespace is where Kubernetes puts a pod's namespace.
const serviceAccountNamespace = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// podNamespace is the namespace of the pod sdhub runs in.
func podNamespace() (string, error) {
	b, err := os.ReadFile(serviceAccountNamespace)
	if ns := strings.TrimSpace(string(b)); err == nil && ns != "" {
		return ns, nil
	}
	if err == nil {
		err = errors.New("the file is empty")
	}
	return "", fmt.Errorf("kubernetes_sd_configs namespaces.own_namespace: reading the pod's namespace from %s: %w", serviceAccountNamespace, err)
}
