package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/sdhub/sdhub/internal/consulagent"
)

// TestSdhubReplicas runs two sdhub processes on one real Consul agent
// under 2 changes per second over 8 services (instances added and
// removed, tags and meta changed), SIGKILLs one mid-run and starts it
// again, and checks that both serve the same bytes once the catalog is
// quiet: the whole job, every shard of two fleet splits, and every file of
// the output directory; that each change reaches both within 2 s; and
// that a real Prometheus reading each replica over http_sd holds the same
// targets.
func TestSdhubReplicas(t *testing.T) {
	// The changes go to the services in turn: each service gets one in
	// services, well within its change budget (discovery/consul reads a
	// service that changes more than 10 times per refresh_interval every
	// refresh_interval/10, 3 s by default).
	const initial, changes, services = 40, 24, 8
	agent := consulagent.StartT(t, consulagent.Options{})
	client, err := api.NewClient(&api.Config{Address: agent.Addr(), Scheme: "http"})
	if err != nil {
		t.Fatal(err)
	}
	register := func(i int, tags []string, meta map[string]string) {
		t.Helper()
		err := client.Agent().ServiceRegister(&api.AgentServiceRegistration{
			ID: fmt.Sprintf("web-%d", i), Name: fmt.Sprintf("s%d", i%services), Address: instanceAddr(i), Port: 9100, Tags: tags, Meta: meta,
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := range initial {
		register(i, []string{"v0"}, map[string]string{"rev": "0"})
	}

	cfgFile, outA, _ := hubDir(t, fmt.Sprintf(`scrape_configs:
  - job_name: web
    scrape_interval: 1m
    consul_sd_configs:
      - server: %q
        services: [s0, s1, s2, s3, s4, s5, s6, s7]
`, agent.Addr()))
	outB := filepath.Join(t.TempDir(), "out")
	argsA := []string{"--config.file=" + cfgFile, "--output.dir=" + outA}
	argsB := []string{"--config.file=" + cfgFile, "--output.dir=" + outB}
	a := startSdhub(t, argsA...)
	var mu sync.Mutex // guards b, which the restart replaces
	b := startSdhub(t, argsB...)
	replicaB := func() *sdhubProc { mu.Lock(); defer mu.Unlock(); return b }

	// serve reads a replica's job, nil while it does not answer 200.
	httpClient := &http.Client{Timeout: 5 * time.Second}
	serve := func(p *sdhubProc, query string) []byte {
		resp, err := httpClient.Get("http://" + p.addr + "/api/v1/sd/web" + query)
		if err != nil {
			return nil
		}
		defer resp.Body.Close()
		var buf bytes.Buffer
		if _, err := buf.ReadFrom(resp.Body); err != nil || resp.StatusCode != http.StatusOK {
			return nil
		}
		return buf.Bytes()
	}
	eventually(t, "both replicas to serve every instance", func() bool {
		return len(sdTargets(serve(a, ""))) == initial && len(sdTargets(serve(replicaB(), ""))) == initial
	})

	// Change k touches instance k alone, so that its effect stays once
	// made: kinds in turn are an instance added, one removed, its tags
	// changed, its meta changed.
	type change struct {
		at    time.Time
		kind  string
		seenA time.Duration
		seenB time.Duration
		done  func(targets map[string]map[string]string) bool
	}
	var pending []change
	var pmu sync.Mutex
	latencies := map[string][]time.Duration{}
	stop := make(chan struct{})
	var watch sync.WaitGroup
	watch.Add(1)
	go func() {
		defer watch.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			ta, tb := sdTargets(serve(a, "")), sdTargets(serve(replicaB(), ""))
			now := time.Now()
			pmu.Lock()
			for i := range pending {
				c := &pending[i]
				if c.seenA == 0 && ta != nil && c.done(ta) {
					c.seenA = now.Sub(c.at)
				}
				if c.seenB == 0 && tb != nil && c.done(tb) {
					c.seenB = now.Sub(c.at)
				}
			}
			pending = slices.DeleteFunc(pending, func(c change) bool {
				if c.seenA == 0 || c.seenB == 0 {
					return false
				}
				latencies[c.kind] = append(latencies[c.kind], now.Sub(c.at))
				return true
			})
			pmu.Unlock()
		}
	}()

	tick := time.NewTicker(500 * time.Millisecond)
	var killedAt, backAt time.Time
	for k := range changes {
		<-tick.C
		c := change{at: time.Now()}
		switch k % 4 {
		case 0:
			i := initial + k
			register(i, []string{"v0"}, map[string]string{"rev": "0"})
			c.kind, c.done = "added", func(ts map[string]map[string]string) bool { return ts[instanceAddr(i)+":9100"] != nil }
		case 1:
			if err := client.Agent().ServiceDeregister(fmt.Sprintf("web-%d", k)); err != nil {
				t.Fatal(err)
			}
			c.kind, c.done = "removed", func(ts map[string]map[string]string) bool { return ts[instanceAddr(k)+":9100"] == nil }
		case 2:
			tag := fmt.Sprintf("v%d", k)
			register(k, []string{tag}, map[string]string{"rev": "0"})
			c.kind, c.done = "tags", func(ts map[string]map[string]string) bool {
				return ts[instanceAddr(k)+":9100"]["__meta_consul_tags"] == ","+tag+","
			}
		case 3:
			rev := fmt.Sprint(k)
			register(k, []string{"v0"}, map[string]string{"rev": rev})
			c.kind, c.done = "meta", func(ts map[string]map[string]string) bool {
				return ts[instanceAddr(k)+":9100"]["__meta_consul_service_metadata_rev"] == rev
			}
		}
		pmu.Lock()
		pending = append(pending, c)
		pmu.Unlock()
		if k == changes/2 {
			// SIGKILL one replica mid-run and start it again on its output.
			killedAt = time.Now()
			if code := replicaB().stop(t, syscall.SIGKILL); code != -1 {
				t.Fatalf("exit code %d after SIGKILL, want -1", code)
			}
			p := startSdhub(t, argsB...)
			mu.Lock()
			b = p
			mu.Unlock()
			backAt = time.Now()
		}
	}
	tick.Stop()
	eventually(t, "every change on both replicas", func() bool {
		pmu.Lock()
		defer pmu.Unlock()
		return len(pending) == 0
	})
	close(stop)
	watch.Wait()
	var worst time.Duration
	var summary []string
	for _, kind := range []string{"added", "removed", "tags", "meta"} {
		ls := latencies[kind]
		slices.Sort(ls)
		worst = max(worst, ls[len(ls)-1])
		summary = append(summary, fmt.Sprintf("%s max %s", kind, ls[len(ls)-1].Round(time.Millisecond)))
	}
	t.Logf("convergence on both replicas, %d changes at 2/s, one replica SIGKILLed at %s and listening again %s later: %s",
		changes, killedAt.Format("15:04:05.000"), backAt.Sub(killedAt).Round(time.Millisecond), strings.Join(summary, ", "))
	if worst > 2*time.Second {
		t.Errorf("a change took %s to reach both replicas, want at most 2s", worst)
	}

	// Quiet: the same bytes everywhere.
	b = replicaB()
	queries := []string{""}
	for _, split := range []string{"shards=3&replicas=2", "shards=4&strategy=bounded-load"} {
		for i := range 4 {
			if i < 3 || strings.Contains(split, "shards=4") {
				queries = append(queries, fmt.Sprintf("?shard=%d&%s", i, split))
			}
		}
	}
	var differing int
	for _, q := range queries {
		var ba, bb []byte
		eventually(t, "both replicas to serve "+q, func() bool {
			ba, bb = serve(a, q), serve(b, q)
			return ba != nil && bb != nil
		})
		if d := differingBytes(ba, bb); d > 0 {
			differing += d
			t.Errorf("/api/v1/sd/web%s: %d bytes differ between the replicas:\n%s\n%s", q, d, ba, bb)
		}
	}
	// The files: the parts at once, the whole file within its interval.
	files := func(dir string) map[string][]byte {
		m := map[string][]byte{}
		_ = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || filepath.Base(path) == ".sdhub-manifest" {
				return err
			}
			data, err := os.ReadFile(path)
			if err == nil {
				rel, _ := filepath.Rel(dir, path)
				m[rel] = data
			}
			return err
		})
		return m
	}
	var fa, fb map[string][]byte
	eventually(t, "the two output directories to hold the same files", func() bool {
		fa, fb = files(outA), files(outB)
		if len(fa) != len(fb) {
			return false
		}
		for name, data := range fa {
			if !bytes.Equal(data, fb[name]) {
				return false
			}
		}
		return true
	})
	t.Logf("at quiescence: %d endpoint answers and %d files compared, %d bytes differ", len(queries), len(fa), differing)

	// A Prometheus per replica holds the same targets, with the labels the
	// replicas serve (__meta_url, the one label that differs, is the
	// replica's own URL).
	promConfig := func(p *sdhubProc) string {
		return fmt.Sprintf(`global:
  scrape_interval: 1m
scrape_configs:
  - job_name: web
    http_sd_configs: [{url: "http://%s/api/v1/sd/web", refresh_interval: 1s}]
`, p.addr)
	}
	proms := []string{startPrometheus(t, promConfig(a)), startPrometheus(t, promConfig(b))}
	var want []string
	for addr, ls := range sdTargets(serve(a, "")) {
		m := map[string]string{"__address__": addr}
		for k, v := range ls {
			if v != "" { // a label set holds no empty value
				m[k] = v
			}
		}
		want = append(want, describeLabels(m))
	}
	slices.Sort(want)
	skip := []string{"__meta_url", "__scheme__", "__metrics_path__", "__scrape_interval__", "__scrape_timeout__", "job"}
	var last []string
	defer func() {
		if t.Failed() && last != nil {
			t.Logf("a Prometheus server holds\n%s\nwant\n%s", strings.Join(last, "\n"), strings.Join(want, "\n"))
		}
	}()
	eventually(t, "both Prometheus servers to hold the replicas' targets", func() bool {
		for _, addr := range proms {
			active, _ := promTargets(t, addr)
			var got []string
			for _, tg := range active {
				m := map[string]string{}
				for k, v := range tg.DiscoveredLabels {
					if !slices.Contains(skip, k) {
						m[k] = v
					}
				}
				got = append(got, describeLabels(m))
			}
			slices.Sort(got)
			if !slices.Equal(got, want) {
				last = got
				return false
			}
		}
		return true
	})
}

// instanceAddr is the loopback address of instance i.
func instanceAddr(i int) string { return fmt.Sprintf("127.0.5.%d", i+1) }

// sdTargets parses an http_sd body into each target's labels, the group's
// with its address; nil if body is not one.
func sdTargets(body []byte) map[string]map[string]string {
	var entries []struct {
		Targets []string          `json:"targets"`
		Labels  map[string]string `json:"labels"`
	}
	if body == nil || json.Unmarshal(body, &entries) != nil {
		return nil
	}
	m := map[string]map[string]string{}
	for _, e := range entries {
		for _, tg := range e.Targets {
			m[tg] = e.Labels
		}
	}
	return m
}

func describeLabels(ls map[string]string) string {
	var kv []string
	for k, v := range ls {
		kv = append(kv, k+"="+v)
	}
	slices.Sort(kv)
	return strings.Join(kv, ",")
}

// differingBytes counts the positions at which a and b differ, and the
// length difference.
func differingBytes(a, b []byte) int {
	n := max(len(a), len(b)) - min(len(a), len(b))
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			n++
		}
	}
	return n
}
