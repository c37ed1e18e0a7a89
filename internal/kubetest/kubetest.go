// Package kubetest is a small kube-apiserver on loopback for the tests of
// kubernetes_sd_configs: it serves list and watch of pods as client-go's
// informers read them.
package kubetest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// API serves pods: a LIST (or a watch-list stream of ADDED events ending
// with the initial-events-end bookmark, as Kubernetes 1.35 serves
// informers), then a WATCH that stays open until the test ends.
type API struct {
	srv  *httptest.Server
	stop chan struct{}
	// Failing, while set, makes every request answer 500.
	Failing atomic.Bool
	// Listed receives when a full list was served (a LIST without limit,
	// or a watch-list stream), if it has room (10).
	Listed chan time.Time

	mu   sync.Mutex
	pods []byte // the items, one JSON object each, comma separated
	n    int
	rv   int
}

// New starts an API holding no pod, stopped when the test ends.
func New(t testing.TB) *API {
	a := &API{stop: make(chan struct{}), Listed: make(chan time.Time, 10), rv: 1}
	a.srv = httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(func() {
		close(a.stop)
		a.srv.Close()
	})
	return a
}

// URL is the API server's address, for api_server.
func (a *API) URL() string { return a.srv.URL }

// SetPods makes the API hold n running pods whose label gen is gen, each
// with one container port: one target each.
func (a *API) SetPods(n int, gen string) {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"kind":"Pod","apiVersion":"v1","metadata":{"name":"web-%d","namespace":"ns-%d","uid":"uid-%d","resourceVersion":"%d",`+
			`"labels":{"app":"web","gen":%q,"shard":"s%d"},"annotations":{"team":"infra"}},`+
			`"spec":{"nodeName":"node-%d","containers":[{"name":"app","image":"web:1","ports":[{"name":"metrics","containerPort":9100,"protocol":"TCP"}]}]},`+
			`"status":{"phase":"Running","podIP":"10.%d.%d.%d","hostIP":"192.168.0.%d","conditions":[{"type":"Ready","status":"True"}]}}`,
			i, i%20, i, i+1, gen, i%7, i%50, i>>16&255, i>>8&255, i&255, i%50)
	}
	a.mu.Lock()
	a.pods, a.n, a.rv = []byte(b.String()), n, n+1
	a.mu.Unlock()
}

func (a *API) serve(w http.ResponseWriter, r *http.Request) {
	if a.Failing.Load() {
		http.Error(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"failing","code":500}`, http.StatusInternalServerError)
		return
	}
	if r.URL.Path != "/api/v1/pods" {
		http.NotFound(w, r)
		return
	}
	a.mu.Lock()
	pods, n, rv := a.pods, a.n, a.rv
	a.mu.Unlock()
	items := func() []json.RawMessage {
		var items []json.RawMessage
		if err := json.Unmarshal([]byte("["+string(pods)+"]"), &items); err != nil {
			panic(err)
		}
		return items[:n]
	}
	q := r.URL.Query()
	w.Header().Set("Content-Type", "application/json")
	if q.Get("watch") != "true" && q.Get("watch") != "1" {
		fmt.Fprintf(w, `{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"%d"},"items":[`, rv)
		if l, err := strconv.Atoi(q.Get("limit")); err == nil && l > 0 && l < n {
			for i, it := range items()[:l] {
				if i > 0 {
					fmt.Fprint(w, ",")
				}
				_, _ = w.Write(it)
			}
			fmt.Fprint(w, "]}")
			return
		}
		_, _ = w.Write(pods)
		fmt.Fprint(w, "]}")
		a.listed()
		return
	}
	w.WriteHeader(http.StatusOK)
	if q.Get("sendInitialEvents") == "true" {
		bw := bufio.NewWriterSize(w, 1<<16)
		for _, it := range items() {
			fmt.Fprintf(bw, `{"type":"ADDED","object":%s}`+"\n", it)
		}
		fmt.Fprintf(bw, `{"type":"BOOKMARK","object":{"kind":"Pod","apiVersion":"v1","metadata":{"resourceVersion":"%d","annotations":{"k8s.io/initial-events-end":"true"}}}}`+"\n", rv)
		_ = bw.Flush()
		a.listed()
	}
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	select {
	case <-r.Context().Done():
	case <-a.stop:
	}
}

func (a *API) listed() {
	select {
	case a.Listed <- time.Now():
	default:
	}
}
