//go:build !remove_all_sd || enable_kubernetes_sd

package promsd

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/sdhub/sdhub/discovery"
	"github.com/sdhub/sdhub/internal/kubetest"
)

// kubeDiscovery builds a kubernetes_sd_configs discoverer of role pod on
// a, with a logger that takes no record.
func kubeDiscovery(t *testing.T, a *kubetest.API, h discovery.Health) discovery.Discoverer {
	t.Helper()
	_, _, m := mechanismMetrics(t, "kubernetes")
	d, err := decode(t, "kubernetes", "role: pod\napi_server: "+a.URL()+"\n").NewDiscoverer(discovery.Options{
		SetName: "k8s", Metrics: m, Health: h, Logger: slog.New(silent{}),
	})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestKubernetesFirstUpdate: the first update of a kubernetes discoverer
// is the role's full set once the informers synced, and that holds for a
// role with no object as for one with some: with none, Prometheus's
// discoverer sends nothing, and the first update is empty.
func TestKubernetesFirstUpdate(t *testing.T) {
	for _, pods := range []int{3, 0} {
		t.Run(fmt.Sprintf("%d pods", pods), func(t *testing.T) {
			h := newHealth()
			a := kubetest.New(t)
			a.SetPods(pods, "one")
			up := run(t, kubeDiscovery(t, a, h))
			first := next(t, up, "the first update")
			if got := flatten(first); len(got) != pods {
				t.Fatalf("first update %q, want %d targets", got, pods)
			}
			h.waitFor(t, "synced", func(_ []string, synced int) bool { return synced >= 1 })
			drain(t, up)
		})
	}
}

// TestKubernetesUnreachable: while the API server fails every request, the
// discoverer sends nothing and the failure reaches its Health, with a
// logger that takes no record; once it answers, with no pod, the first
// update is the empty set.
func TestKubernetesUnreachable(t *testing.T) {
	h := newHealth()
	a := kubetest.New(t)
	a.Failing.Store(true)
	up := run(t, kubeDiscovery(t, a, h))
	h.waitFor(t, "a failure", func(failed []string, _ int) bool { return len(failed) > 0 })
	failed, synced := h.state()
	if want := "listing the pod objects of kubernetes_sd_configs: "; !strings.HasPrefix(failed[0], want) || synced != 0 {
		t.Fatalf("failed %q, synced %d; want a failure starting %q and no sync", failed, synced, want)
	}
	select {
	case tgs := <-up:
		t.Fatalf("an update while the API server fails: %v", tgs)
	default:
	}
	a.Failing.Store(false)
	if first := next(t, up, "the first update once the API server answers"); len(first) != 0 {
		t.Fatalf("first update %v, want the empty set", first)
	}
	h.waitFor(t, "synced", func(_ []string, synced int) bool { return synced >= 1 })
	drain(t, up)
}
