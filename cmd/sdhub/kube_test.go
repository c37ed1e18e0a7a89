package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// kubeAPI is a small kube-apiserver on loopback serving list and watch of
// pods, as client-go's informers read them: a LIST (or a watch-list stream
// of ADDED events ending with the initial-events-end bookmark, as
// Kubernetes 1.35 serves informers), then a WATCH that stays open.
type kubeAPI struct {
	srv  *httptest.Server
	stop chan struct{}

	mu     sync.Mutex
	pods   []byte // the items, one JSON object each, comma separated
	n      int
	rv     int
	listed chan time.Time // when a full list was served
}

func newKubeAPI(t *testing.T) *kubeAPI {
	k := &kubeAPI{stop: make(chan struct{}), listed: make(chan time.Time, 10)}
	k.srv = httptest.NewServer(http.HandlerFunc(k.serve))
	t.Cleanup(func() {
		close(k.stop)
		k.srv.Close()
	})
	return k
}

// setPods makes the API hold n pods whose label gen is gen.
func (k *kubeAPI) setPods(n int, gen string) {
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
	k.mu.Lock()
	k.pods, k.n, k.rv = []byte(b.String()), n, n+1
	k.mu.Unlock()
}

func (k *kubeAPI) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/api/v1/pods" {
		http.NotFound(w, r)
		return
	}
	k.mu.Lock()
	pods, n, rv := k.pods, k.n, k.rv
	k.mu.Unlock()
	q := r.URL.Query()
	if q.Get("watch") != "true" && q.Get("watch") != "1" {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"%d"},"items":[`, rv)
		_, _ = w.Write(pods)
		fmt.Fprint(w, "]}")
		k.listed <- time.Now()
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	if q.Get("sendInitialEvents") == "true" {
		bw := bufio.NewWriterSize(w, 1<<16)
		dec := json.NewDecoder(strings.NewReader("[" + string(pods) + "]"))
		var items []json.RawMessage
		if err := dec.Decode(&items); err != nil {
			panic(err)
		}
		for _, it := range items[:n] {
			fmt.Fprintf(bw, `{"type":"ADDED","object":%s}`+"\n", it)
		}
		fmt.Fprintf(bw, `{"type":"BOOKMARK","object":{"kind":"Pod","apiVersion":"v1","metadata":{"resourceVersion":"%d","annotations":{"k8s.io/initial-events-end":"true"}}}}`+"\n", rv)
		_ = bw.Flush()
		k.listed <- time.Now()
	}
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	select {
	case <-r.Context().Done():
	case <-k.stop:
	}
}

// kubePods is the number of pods of TestKubernetesFirstBurst: enough that
// the discoverer's first burst (one message per pod once its informer has
// synced) takes longer than the old 2 s bound here.
const kubePods = 8000

// kubeWait bounds the wait for each run's full set.
const kubeWait = 2 * time.Minute

// TestKubernetesFirstBurst runs sdhub on a kubernetes_sd_configs job
// against a kube-apiserver on loopback holding thousands of pods, kills it
// once the file is written, and starts it again on a changed set of pods:
// every content the file ever holds, polled throughout, is absent, the
// first full set or the second full set, never part of one.
func TestKubernetesFirstBurst(t *testing.T) {
	api := newKubeAPI(t)
	api.setPods(kubePods, "one")
	dir := t.TempDir()
	outDir := filepath.Join(dir, "out")
	cfgFile := filepath.Join(dir, "sdhub.yml")
	writeFile(t, cfgFile, `scrape_configs:
  - job_name: pods
    kubernetes_sd_configs:
      - role: pod
        api_server: `+api.srv.URL+"\n")
	out := filepath.Join(outDir, "pods.json")

	// watch polls out until stop and fails the test on any content that is
	// not a full set of kubePods targets of one generation.
	stop, watched := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	seen := map[string]int{} // generation -> polls that saw it
	go func() {
		defer close(watched)
		var last []byte
		for {
			select {
			case <-stop:
				return
			default:
			}
			data, err := os.ReadFile(out)
			if err != nil || bytes.Equal(data, last) {
				continue // absent (nothing written yet), or checked already
			}
			last = data
			var entries []entry
			if err := json.Unmarshal(data, &entries); err != nil {
				t.Errorf("pods.json is not file_sd JSON: %v", err)
				return
			}
			gens, targets := map[string]int{}, 0
			for _, e := range entries {
				gens[e.Labels["__meta_kubernetes_pod_label_gen"]] += len(e.Targets)
				targets += len(e.Targets)
			}
			if len(gens) != 1 || targets != kubePods {
				t.Errorf("pods.json holds a partial set: %d targets, by generation %v; want %d of one", targets, gens, kubePods)
				return
			}
			mu.Lock()
			for g := range gens {
				seen[g]++
			}
			mu.Unlock()
		}
	}()
	defer func() {
		close(stop)
		<-watched
	}()
	holds := func(gen string) func() bool {
		return func() bool {
			mu.Lock()
			defer mu.Unlock()
			return seen[gen] > 0 || t.Failed()
		}
	}

	for i, gen := range []string{"one", "two"} {
		api.setPods(kubePods, gen)
		p := startSdhub(t, "--config.file="+cfgFile, "--output.dir="+outDir)
		var listed time.Time
		select {
		case listed = <-api.listed:
		case <-time.After(waitTimeout):
			t.Fatalf("run %d: the pods were not listed within %s", i+1, waitTimeout)
		}
		// The burst is CPU-bound and the machine shared: a bound of its own.
		for deadline := time.Now().Add(kubeWait); !holds(gen)(); {
			if time.Now().After(deadline) {
				t.Fatalf("run %d: timed out after %s waiting for pods.json holding generation %s", i+1, kubeWait, gen)
			}
			select {
			case <-time.After(50 * time.Millisecond):
			case <-watched:
			}
		}
		if t.Failed() {
			return
		}
		t.Logf("run %d: the full set of %d pods written %s after the list was served", i+1, kubePods, time.Since(listed).Round(time.Millisecond))
		for _, line := range strings.Split(p.log(), "\n") {
			if strings.Contains(line, "First full set received") {
				t.Logf("run %d: %s", i+1, line)
			}
		}
		if code := p.stop(t, syscall.SIGKILL); code != -1 {
			t.Fatalf("run %d: exit code %d after SIGKILL, want -1", i+1, code)
		}
		for len(api.listed) > 0 { // lists of a relisting informer
			<-api.listed
		}
	}
}
