package main

import (
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestPrometheusReadsHTTPSD runs sdhub and real Prometheus servers reading
// it through http_sd_configs: one reads a whole job and sees its targets
// and labels; two shards of another job together see every target once.
func TestPrometheusReadsHTTPSD(t *testing.T) {
	const fleetSize = 24
	var fleet strings.Builder
	for i := range fleetSize {
		fmt.Fprintf(&fleet, "      - targets: [\"127.0.1.%d:9100\"]\n        labels: {rack: r%d}\n", i+1, i%3)
	}
	cfgFile, outDir, inDir := hubDir(t, `scrape_configs:
  - job_name: web
    file_sd_configs:
      - files: ["in/*.json"]
  - job_name: fleet
    static_configs:
`+fleet.String())
	p := startSdhub(t, "--config.file="+cfgFile, "--output.dir="+outDir)
	eventually(t, "the fleet job on the http_sd endpoint", func() bool {
		code, _ := p.get(t, "/api/v1/sd/fleet")
		return code == http.StatusOK
	})

	promConfig := func(shard int) string {
		return fmt.Sprintf(`global:
  scrape_interval: 1m
scrape_configs:
  - job_name: web
    http_sd_configs: [{url: "http://%[1]s/api/v1/sd/web", refresh_interval: 1s}]
  - job_name: fleet
    http_sd_configs: [{url: "http://%[1]s/api/v1/sd/fleet?shard=%[2]d&shards=2", refresh_interval: 1s}]
`, p.addr, shard)
	}
	proms := []string{startPrometheus(t, promConfig(0)), startPrometheus(t, promConfig(1))}

	discovered := func(tg promTarget) map[string]string { return tg.DiscoveredLabels }
	skip := []string{"__scrape_interval__", "__scrape_timeout__", "__metrics_path__", "__scheme__"}
	webURL := "http://" + p.addr + "/api/v1/sd/web"
	inFile := filepath.Join(inDir, "a.json")
	wantWeb := []string{
		"web 127.0.0.1:8080 __meta_sdhub_filepath=" + inFile + ",__meta_url=" + webURL + ",app=web,job=web",
		"web 127.0.0.1:8081 __meta_sdhub_filepath=" + inFile + ",__meta_url=" + webURL + ",app=web,job=web",
	}
	var shards [2][]string
	eventually(t, "both Prometheus servers to show sdhub's targets", func() bool {
		for i, addr := range proms {
			active, _ := promTargets(t, addr)
			var web, fleet []promTarget
			for _, tg := range active {
				if tg.ScrapePool == "web" {
					web = append(web, tg)
				} else {
					fleet = append(fleet, tg)
				}
			}
			if !slices.Equal(describe(web, discovered, skip...), wantWeb) {
				return false
			}
			shards[i] = nil
			for _, tg := range fleet {
				shards[i] = append(shards[i], tg.DiscoveredLabels["__address__"]+" "+tg.DiscoveredLabels["rack"])
			}
		}
		return len(shards[0])+len(shards[1]) == fleetSize
	})
	all := slices.Concat(shards[0], shards[1])
	slices.Sort(all)
	var want []string
	for i := range fleetSize {
		want = append(want, fmt.Sprintf("127.0.1.%d:9100 r%d", i+1, i%3))
	}
	slices.Sort(want)
	if !slices.Equal(all, want) {
		t.Errorf("the two shards show\n%q\nwant every target of the job once\n%q", all, want)
	}
	if len(shards[0]) == 0 || len(shards[1]) == 0 {
		t.Errorf("shard sizes %d and %d: one shard is empty", len(shards[0]), len(shards[1]))
	}
	t.Logf("fleet of %d targets: %d in shard 0, %d in shard 1", fleetSize, len(shards[0]), len(shards[1]))

	// A change reaches Prometheus through the endpoint.
	writeFile(t, filepath.Join(inDir, "a.json"), `[{"targets": ["127.0.0.1:8090"], "labels": {"app": "api"}}]`)
	eventually(t, "Prometheus to follow the change over http_sd", func() bool {
		active, _ := promTargets(t, proms[1])
		var web []promTarget
		for _, tg := range active {
			if tg.ScrapePool == "web" {
				web = append(web, tg)
			}
		}
		return slices.Equal(describe(web, discovered, skip...), []string{
			"web 127.0.0.1:8090 __meta_sdhub_filepath=" + inFile + ",__meta_url=" + webURL + ",app=api,job=web",
		})
	})
}
