package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/sdhub/sdhub/internal/consulagent"
)

// TestFleetReplicas runs a fleet of four real Prometheus servers, each with
// the config `sdhub generate prometheus-config --shards=4 --shard=I
// --replicas=2` prints for it, on a job of a real Consul agent: every
// target is scraped by exactly two servers, as each server's
// /api/v1/targets shows. The split is bounded-load by a service meta, so
// the generated URL carries every parameter of a fleet.
func TestFleetReplicas(t *testing.T) {
	const instances, servers, replicas = 60, 4, 2
	confDir := t.TempDir()
	var services []map[string]any
	for i := range instances {
		services = append(services, map[string]any{
			"id": fmt.Sprintf("web-%d", i), "name": "web",
			"address": fmt.Sprintf("127.0.3.%d", i+1), "port": 9100,
			"meta": map[string]string{"series": strconv.Itoa(1 + i%5)},
		})
	}
	data, err := json.Marshal(map[string]any{"services": services})
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(confDir, "services.json"), string(data))
	agent := consulagent.StartT(t, consulagent.Options{ConfigDir: confDir})

	cfgFile, outDir, _ := hubDir(t, fmt.Sprintf(`scrape_configs:
  - job_name: web
    scrape_interval: 1m
    consul_sd_configs:
      - server: %q
        services: [web]
`, agent.Addr()))
	p := startSdhub(t, "--config.file="+cfgFile, "--output.dir="+outDir)
	eventually(t, "every instance on the http_sd endpoint", func() bool {
		code, body := p.get(t, "/api/v1/sd/web")
		var entries []struct {
			Targets []string `json:"targets"`
		}
		if code != http.StatusOK || json.Unmarshal([]byte(body), &entries) != nil {
			return false
		}
		n := 0
		for _, e := range entries {
			n += len(e.Targets)
		}
		return n == instances
	})

	var proms []string
	for i := range servers {
		var stdout, stderr bytes.Buffer
		args := []string{"generate", "prometheus-config", "--config.file=" + cfgFile, "--output.dir=" + outDir,
			"--http-sd-url=http://" + p.addr, "--shards=" + strconv.Itoa(servers), "--shard=" + strconv.Itoa(i),
			"--replicas=" + strconv.Itoa(replicas), "--strategy=bounded-load", "--weight-label=__meta_consul_service_metadata_series"}
		if code := runMain(args, &stdout, &stderr); code != exitOK {
			t.Fatalf("generate for server %d: exit %d: %s", i, code, stderr.String())
		}
		proms = append(proms, startPrometheus(t, stdout.String()))
	}

	scrapedBy := map[string][]int{}
	eventually(t, "every server to hold its share", func() bool {
		clear(scrapedBy)
		total := 0
		for i, addr := range proms {
			active, _ := promTargets(t, addr)
			for _, tg := range active {
				if tg.ScrapePool == "web" {
					scrapedBy[tg.Labels["instance"]] = append(scrapedBy[tg.Labels["instance"]], i)
					total++
				}
			}
		}
		return total == instances*replicas
	})
	if len(scrapedBy) != instances {
		t.Errorf("the servers scrape %d distinct targets, want %d", len(scrapedBy), instances)
	}
	perServer := make([]int, servers)
	for inst, by := range scrapedBy {
		if len(by) != replicas || len(slices.Compact(slices.Sorted(slices.Values(by)))) != replicas {
			t.Errorf("target %s scraped by servers %v, want %d distinct servers", inst, by, replicas)
		}
		for _, s := range by {
			perServer[s]++
		}
	}
	t.Logf("%d targets over %d servers, %d replicas: %v per server", instances, servers, replicas, perServer)
}
