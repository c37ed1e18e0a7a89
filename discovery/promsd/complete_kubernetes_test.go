//go:build !remove_all_sd || enable_kubernetes_sd

package promsd

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sdhub/sdhub/discovery"
)

// kubeAPI is a loopback Kubernetes API server holding a fixed set of pods:
// it answers a LIST, and a WATCH with the pods then the end of the initial
// events (the watch-list protocol), and holds every watch open until the
// test ends. While failing is set every request answers 500.
type kubeAPI struct {
	srv     *httptest.Server
	pods    []string // JSON objects
	failing atomic.Bool
}

func newKubeAPI(t *testing.T, pods ...string) *kubeAPI {
	a := &kubeAPI{pods: pods}
	stop := make(chan struct{})
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.failing.Load() {
			http.Error(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","code":500}`, http.StatusInternalServerError)
			return
		}
		if r.URL.Path != "/api/v1/pods" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		q := r.URL.Query()
		if q.Get("watch") != "true" && q.Get("watch") != "1" {
			fmt.Fprintf(w, `{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"10"},"items":[%s]}`, strings.Join(a.pods, ","))
			return
		}
		if q.Get("sendInitialEvents") == "true" {
			for _, p := range a.pods {
				fmt.Fprintf(w, `{"type":"ADDED","object":%s}`+"\n", p)
			}
			fmt.Fprint(w, `{"type":"BOOKMARK","object":{"kind":"Pod","apiVersion":"v1","metadata":{"resourceVersion":"10","annotations":{"k8s.io/initial-events-end":"true"}}}}`+"\n")
		}
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-stop:
		}
	}))
	t.Cleanup(func() {
		close(stop)
		a.srv.Close()
	})
	return a
}

// pod is a running pod's JSON with one container port.
func pod(name, ip string) string {
	return fmt.Sprintf(`{"kind":"Pod","apiVersion":"v1","metadata":{"name":%q,"namespace":"default","uid":%q,"resourceVersion":"10"},`+
		`"spec":{"nodeName":"n1","containers":[{"name":"c","ports":[{"name":"http","containerPort":8080,"protocol":"TCP"}]}]},`+
		`"status":{"phase":"Running","podIP":%q,"hostIP":"10.1.0.1"}}`, name, "uid-"+name, ip)
}

// kubeDiscovery builds a kubernetes_sd_configs discoverer of role pod on a.
func kubeDiscovery(t *testing.T, a *kubeAPI, h discovery.Health) discovery.Discoverer {
	t.Helper()
	_, _, m := mechanismMetrics(t, "kubernetes")
	d, err := decode(t, "kubernetes", "role: pod\napi_server: "+a.srv.URL+"\n").NewDiscoverer(discovery.Options{
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
	for _, tc := range []struct {
		name string
		pods []string
		want int
	}{
		{"two pods", []string{pod("web-0", "10.0.0.1"), pod("web-1", "10.0.0.2")}, 2},
		{"no pod", nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHealth()
			up := run(t, kubeDiscovery(t, newKubeAPI(t, tc.pods...), h))
			first := next(t, up, "the first update")
			if got := flatten(first); len(got) != tc.want {
				t.Fatalf("first update %q, want %d targets", got, tc.want)
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
	a := newKubeAPI(t)
	a.failing.Store(true)
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
	a.failing.Store(false)
	if first := next(t, up, "the first update once the API server answers"); len(first) != 0 {
		t.Fatalf("first update %v, want the empty set", first)
	}
	h.waitFor(t, "synced", func(_ []string, synced int) bool { return synced >= 1 })
	drain(t, up)
}
