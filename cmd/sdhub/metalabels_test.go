package main

import (
	"bytes"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestMetaLabelsMatchNativePrometheus runs one config three ways in real
// Prometheus servers: with its own SD (native), and through sdhub with the
// config `generate prometheus-config` makes, once reading sdhub's files
// and once its http_sd endpoint. The jobs' relabel_configs read
// __meta_filepath and __meta_url, which the consumer sets on whatever it
// reads from sdhub; after relabelling every target must have the same
// labels in all three, and the same targets must be dropped.
func TestMetaLabelsMatchNativePrometheus(t *testing.T) {
	// An inventory a job reads through http_sd_configs of its own, which
	// sdhub leaves to Prometheus.
	inventory := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `[{"targets": ["127.0.0.1:10"], "labels": {"team": "inventory"}}]`)
	}))
	defer inventory.Close()

	cfgFile, outDir, inDir := hubDir(t, "")
	writeFile(t, filepath.Join(inDir, "a.json"), `[{"targets": ["127.0.0.1:11", "127.0.0.1:12"], "labels": {"app": "web"}}]`)
	writeFile(t, filepath.Join(inDir, "b.yml"), "- targets: [\"127.0.0.1:13\"]\n  labels: {app: batch}\n")
	// The web job is examples/sdhub.yml's, with a drop on the file and a
	// labelmap that shows every __meta label in the target's labels; mixed
	// holds every kind of target: static (no label), from a file
	// (__meta_filepath) and from Prometheus's own http_sd (__meta_url).
	config := fmt.Sprintf(`global:
  scrape_interval: 1h
scrape_configs:
  - job_name: web
    file_sd_configs:
      - files: [%[1]q, %[2]q]
    relabel_configs:
      - source_labels: [__meta_filepath]
        regex: ".*/([^/]+)\\.(json|yml)"
        target_label: source_file
      - source_labels: [__meta_filepath]
        regex: ".*/b\\.yml"
        action: drop
      - regex: __meta_(.+)
        action: labelmap

  - job_name: mixed
    static_configs:
      - targets: ["127.0.0.1:14"]
        labels: {kind: static}
    file_sd_configs:
      - files: [%[3]q]
    http_sd_configs:
      - url: %[4]q
    relabel_configs:
      - source_labels: [__meta_filepath]
        regex: ""
        target_label: not_from_a_file
        replacement: "yes"
      - regex: __meta_(.+)
        action: labelmap
`, filepath.Join(inDir, "*.json"), filepath.Join(inDir, "*.yml"), filepath.Join(inDir, "a.json"), inventory.URL+"/targets")
	writeFile(t, cfgFile, config)

	p := startSdhub(t, "--config.file="+cfgFile, "--output.dir="+outDir)
	eventually(t, "sdhub ready", func() bool { code, _ := p.get(t, "/-/ready"); return code == http.StatusOK })
	generate := func(args ...string) string {
		t.Helper()
		var stdout, stderr bytes.Buffer
		args = append([]string{"generate", "prometheus-config", "--config.file=" + cfgFile, "--output.dir=" + outDir}, args...)
		if code := runMain(args, &stdout, &stderr); code != exitOK {
			t.Fatalf("generate %v: exit %d: %s", args, code, stderr.String())
		}
		return stdout.String()
	}
	viaFile := generate()
	viaHTTP := generate("--http-sd-url=http://" + p.addr)
	proms := map[string]string{
		"native":          startPrometheus(t, config),
		"sdhub's files":   startPrometheus(t, viaFile),
		"sdhub's http_sd": startPrometheus(t, viaHTTP),
	}

	// want: the targets by job and address, and which are kept.
	want := map[string]bool{
		"web 127.0.0.1:11": true, "web 127.0.0.1:12": true, "web 127.0.0.1:13": false,
		"mixed 127.0.0.1:10": true, "mixed 127.0.0.1:11": true, "mixed 127.0.0.1:12": true, "mixed 127.0.0.1:14": true,
	}
	got := map[string]map[string]string{}
	defer func() {
		if t.Failed() {
			for _, name := range slices.Sorted(maps.Keys(got)) {
				t.Logf("%s:\n%s", name, got[name])
			}
			t.Logf("generated for sdhub's files:\n%s\ngenerated for sdhub's http_sd:\n%s", viaFile, viaHTTP)
		}
	}()
	// Through http_sd, job web's rules drop at the hub what they drop: its
	// consumer never sees 127.0.0.1:13, and keeps the same targets.
	wantHTTP := maps.Clone(want)
	delete(wantHTTP, "web 127.0.0.1:13")
	eventually(t, "the three Prometheus servers to agree", func() bool {
		for name, addr := range proms {
			got[name] = relabelled(t, addr)
			w := want
			if name == "sdhub's http_sd" {
				w = wantHTTP
			}
			if len(got[name]) != len(w) {
				return false
			}
			for k, kept := range w {
				if v, ok := got[name][k]; !ok || strings.HasPrefix(v, "dropped") == kept {
					return false
				}
			}
		}
		nativeKept := maps.Clone(got["native"])
		delete(nativeKept, "web 127.0.0.1:13")
		return maps.Equal(got["native"], got["sdhub's files"]) && maps.Equal(nativeKept, got["sdhub's http_sd"])
	})
	for _, k := range slices.Sorted(maps.Keys(got["native"])) {
		t.Logf("%s: %s", k, got["native"][k])
	}
}

// relabelled returns the targets of the Prometheus at addr by "job
// address": an active target's labels after relabelling, sorted, or
// "dropped". (A dropped target's labels are those before relabelling, the
// consumer's own __meta_filepath or __meta_url among them: what differs by
// design.)
func relabelled(t *testing.T, addr string) map[string]string {
	t.Helper()
	active, dropped := promTargets(t, addr)
	out := map[string]string{}
	for _, tg := range active {
		var kv []string
		for k, v := range tg.Labels {
			kv = append(kv, fmt.Sprintf("%s=%q", k, v))
		}
		slices.Sort(kv)
		out[tg.ScrapePool+" "+tg.Labels["instance"]] = strings.Join(kv, ",")
	}
	for _, tg := range dropped {
		out[tg.DiscoveredLabels["job"]+" "+tg.DiscoveredLabels["__address__"]] = "dropped"
	}
	return out
}
