package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sdhub/sdhub/internal/kubetest"
)

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
	api := kubetest.New(t)
	api.SetPods(kubePods, "one")
	dir := t.TempDir()
	outDir := filepath.Join(dir, "out")
	cfgFile := filepath.Join(dir, "sdhub.yml")
	writeFile(t, cfgFile, `scrape_configs:
  - job_name: pods
    kubernetes_sd_configs:
      - role: pod
        api_server: `+api.URL()+"\n")
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
		api.SetPods(kubePods, gen)
		p := startSdhub(t, "--config.file="+cfgFile, "--output.dir="+outDir)
		var listed time.Time
		select {
		case listed = <-api.Listed:
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
		for len(api.Listed) > 0 { // lists of a relisting informer
			<-api.Listed
		}
	}
}
