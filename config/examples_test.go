package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/sdhub/sdhub/discovery/consul"
	"github.com/sdhub/sdhub/discovery/static"
	"github.com/sdhub/sdhub/output"
)

// TestExamples loads every sdhub config in examples/ with the server's
// loader. The consumer configs (prometheus*.yml) are checked by promtool in
// cmd/sdhub's tests, docker-compose.yml by TestDockerCompose.
func TestExamples(t *testing.T) {
	files, err := filepath.Glob("../examples/*.yml")
	if err != nil {
		t.Fatal(err)
	}
	consumer, err := os.ReadFile("../examples/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	restored := strings.Contains(string(consumer), "source_labels: ["+output.FilepathLabel+"]")
	n := 0
	for _, f := range files {
		base := filepath.Base(f)
		if strings.HasPrefix(base, "prometheus") || base == "docker-compose.yml" {
			continue
		}
		n++
		t.Run(base, func(t *testing.T) {
			cfg, err := LoadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if len(cfg.ScrapeConfigs) == 0 {
				t.Fatalf("%s serves no job", f)
			}
			for _, w := range cfg.Warnings {
				// The consumer generated from this file, prometheus.yml,
				// carries the rules that restore what native SD gives.
				if strings.Contains(w, "sdhub generate prometheus-config") && restored {
					continue
				}
				t.Errorf("unexpected warning: %s", w)
			}
		})
	}
	if n < 2 {
		t.Fatalf("found %d sdhub configs in examples/, want at least 2", n)
	}
}

// TestDockerCompose checks examples/docker-compose.yml against the files it
// names: every mounted file exists in examples/, sdhub's config loads, its
// consul jobs point at the compose's consul service, and Prometheus reads
// a file in the shared volume for every job sdhub serves but static-only
// ones.
func TestDockerCompose(t *testing.T) {
	data, err := os.ReadFile("../examples/docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Command any `yaml:"command"` // a string or a list

			Volumes []string `yaml:"volumes"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(data, &compose); err != nil {
		t.Fatal(err)
	}
	// mounted returns the file in examples/ that service sees at path: a
	// file mounted there, or in a directory mounted above it.
	mounted := func(service, path string) string {
		for _, v := range compose.Services[service].Volumes {
			parts := strings.Split(v, ":")
			if len(parts) < 2 || !strings.HasPrefix(parts[0], "./") {
				continue
			}
			src := filepath.Join("../examples", parts[0])
			if _, err := os.Stat(src); err != nil {
				t.Errorf("service %s mounts %s: %v", service, parts[0], err)
			}
			if rel, err := filepath.Rel(parts[1], path); err == nil && !strings.HasPrefix(rel, "..") {
				return filepath.Join(src, rel)
			}
		}
		t.Fatalf("service %s mounts nothing at %s", service, path)
		return ""
	}
	flag := func(service, name string) string {
		args, _ := compose.Services[service].Command.([]any)
		for _, a := range args {
			if v, ok := strings.CutPrefix(fmt.Sprint(a), "--"+name+"="); ok {
				return v
			}
		}
		t.Fatalf("service %s has no --%s", service, name)
		return ""
	}
	for _, s := range []string{"consul", "sdhub", "prometheus"} {
		if _, ok := compose.Services[s]; !ok {
			t.Fatalf("no service %s", s)
		}
	}
	hub, err := LoadFile(mounted("sdhub", flag("sdhub", "config.file")))
	if err != nil {
		t.Fatal(err)
	}
	outDir := flag("sdhub", "output.dir")
	prom, err := os.ReadFile(mounted("prometheus", flag("prometheus", "config.file")))
	if err != nil {
		t.Fatal(err)
	}
	for job, configs := range hub.Jobs() {
		staticOnly := true
		for _, c := range configs {
			if cc, ok := c.(*consul.SDConfig); ok && cc.Server != "consul:8500" {
				t.Errorf("job %s: consul server %q, not the compose's consul service", job, cc.Server)
			}
			_, ok := c.(static.SDConfig)
			staticOnly = staticOnly && ok
		}
		if staticOnly {
			continue // generate leaves it with Prometheus
		}
		// The job's file, or the first of its parts (output.PartPath).
		one, part := filepath.Join(outDir, job+".json"), filepath.Join(outDir, job+".parts", "0", "targets.json")
		if !strings.Contains(string(prom), one) && !strings.Contains(string(prom), part) {
			t.Errorf("prometheus-compose.yml reads neither %s nor %s for job %s", one, part, job)
		}
	}
}
