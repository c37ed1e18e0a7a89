package main

import (
	"bytes"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sdhub/sdhub/internal/swarmtest"
)

// The native-SD tests run one real Prometheus with two jobs per SD block:
// one with the block itself (Prometheus's own discovery) and one reading
// sdhub's file for the same block through file_sd_configs. Both drop every
// target by relabelling (no container or Consul address is scraped), so
// Prometheus lists them all among its dropped targets with their discovered
// labels, which must be the same in both jobs but for job and
// __meta_filepath. This is what a user sees when a job moves from native SD
// to sdhub, with the Prometheus of Debian's package (2.42). Debian builds it
// without consul SD, so consul's labels are compared with Prometheus's own
// discoverer from the prometheus module instead (discovery/consul's
// TestConformance).

// dropAll is a relabelling that drops every target.
const dropAll = `
    relabel_configs:
      - source_labels: [__address__]
        regex: ".*"
        action: drop
`

// nativeAndSdhub runs sdhub on the jobs in blocks (job name → SD block, as
// it stands in a scrape config) and a Prometheus with, for each, a job
// native-<name> with the block and a job sdhub-<name> reading sdhub's file.
// It waits until each pair agrees on want[name] distinct targets and fails
// the test with the difference when they do not agree in time.
func nativeAndSdhub(t *testing.T, blocks map[string]string, want map[string]int) {
	t.Helper()
	var hub, prom strings.Builder
	hub.WriteString("scrape_configs:\n")
	prom.WriteString("global:\n  scrape_interval: 1h\nscrape_configs:\n")
	cfgFile, outDir, _ := hubDir(t, "")
	for _, name := range slices.Sorted(maps.Keys(blocks)) {
		fmt.Fprintf(&hub, "  - job_name: %s\n%s", name, blocks[name])
		fmt.Fprintf(&prom, "  - job_name: native-%s\n%s%s", name, blocks[name], dropAll)
		fmt.Fprintf(&prom, "  - job_name: sdhub-%s\n    file_sd_configs: [{files: [%q]}]\n%s", name, outDir+"/"+name+".json", dropAll)
	}
	writeFile(t, cfgFile, hub.String())
	p := startSdhub(t, "--config.file="+cfgFile, "--output.dir="+outDir)
	eventually(t, "sdhub ready", func() bool { code, _ := p.get(t, "/-/ready"); return code == http.StatusOK })
	addr := startPrometheus(t, prom.String())

	var native, viaHub map[string][]string
	defer func() {
		if !t.Failed() {
			return
		}
		for name, n := range want {
			var b bytes.Buffer
			for _, s := range native[name] {
				if !slices.Contains(viaHub[name], s) {
					fmt.Fprintf(&b, "  only native: %s\n", s)
				}
			}
			for _, s := range viaHub[name] {
				if !slices.Contains(native[name], s) {
					fmt.Fprintf(&b, "  only via sdhub: %s\n", s)
				}
			}
			t.Logf("%s: native %d targets, via sdhub %d (want %d each, with the same labels)\n%s", name, len(native[name]), len(viaHub[name]), n, b.String())
		}
	}()
	// Prometheus applies discovered targets every 5 s.
	eventually(t, "the native and the sdhub jobs to agree", func() bool {
		_, dropped := promTargets(t, addr)
		native, viaHub = map[string][]string{}, map[string][]string{}
		for _, tg := range dropped {
			job := tg.DiscoveredLabels["job"]
			if name, ok := strings.CutPrefix(job, "native-"); ok {
				native[name] = append(native[name], flatLabels(tg.DiscoveredLabels))
			} else if name, ok := strings.CutPrefix(job, "sdhub-"); ok {
				viaHub[name] = append(viaHub[name], flatLabels(tg.DiscoveredLabels))
			}
		}
		agree := true
		for name, n := range want {
			// As sets: Prometheus's own tasks role lists a host-mode port
			// twice (from the service's endpoint and from the task's port
			// status), with the same labels; its scrape pool keeps one of
			// them, and sdhub's file one entry.
			native[name] = slices.Compact(slices.Sorted(slices.Values(native[name])))
			viaHub[name] = slices.Compact(slices.Sorted(slices.Values(viaHub[name])))
			agree = agree && len(native[name]) == n && slices.Equal(native[name], viaHub[name])
		}
		return agree
	})
	for name := range want {
		t.Logf("%s: %d targets with identical discovered labels", name, len(native[name]))
	}
}

// flatLabels is a target's discovered labels as sorted k=v pairs, without
// job and __meta_filepath, the labels the two jobs differ in by design.
func flatLabels(ls map[string]string) string {
	var kv []string
	for k, v := range ls {
		if k != "job" && k != "__meta_filepath" {
			kv = append(kv, fmt.Sprintf("%s=%q", k, v))
		}
	}
	slices.Sort(kv)
	return strings.Join(kv, ",")
}

// TestSwarmMatchesNativePrometheus compares Prometheus's own dockerswarm SD
// with sdhub's file for the services, tasks and nodes roles on a real swarm,
// over a replicated service with an ingress-published port and labels, and
// a global one with a host-mode port.
func TestSwarmMatchesNativePrometheus(t *testing.T) {
	e := swarmtest.New(t)
	net := e.CreateNetwork(t, "front", "--label", "tier=front")
	e.CreateService(t, "web", []string{"--replicas", "2", "--network", net, "--publish", "published=0,target=8080",
		"--label", "team-name=a", "--container-label", "app=web"})
	e.CreateService(t, "agent", []string{"--mode", "global", "--publish", "mode=host,published=0,target=9100"})
	e.WaitRunning(t, "web", 2, 90*time.Second)
	e.WaitRunning(t, "agent", 1, 90*time.Second)

	host := swarmtest.Host()
	services := fmt.Sprintf("[{name: label, values: [%q]}]", swarmtest.LabelRun+"="+e.Prefix)
	tasks := fmt.Sprintf("[{name: service, values: [%q, %q]}]", e.Name("web"), e.Name("agent"))
	// Both sides re-read every 5 s, not Prometheus's default 60 s: a task
	// replaced after the native job's first read (a loaded machine can
	// restart one) must reach both before the wait below ends.
	nativeAndSdhub(t, map[string]string{
		"services": fmt.Sprintf("    dockerswarm_sd_configs: [{host: %q, role: services, refresh_interval: 5s, filters: %s}]\n", host, services),
		"tasks":    fmt.Sprintf("    dockerswarm_sd_configs: [{host: %q, role: tasks, refresh_interval: 5s, filters: %s}]\n", host, tasks),
		"nodes":    fmt.Sprintf("    dockerswarm_sd_configs: [{host: %q, role: nodes, refresh_interval: 5s}]\n", host),
	}, map[string]int{"services": 2, "tasks": 5, "nodes": 1}) // web: 2 VIPs; 2 tasks × 2 networks; agent: 1 host port
}
