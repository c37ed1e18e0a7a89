package config

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestExamples loads every sdhub config in examples/ with the server's
// loader. The consumer configs (prometheus*.yml) and docker-compose.yml are
// checked by promtool in cmd/sdhub's tests.
func TestExamples(t *testing.T) {
	files, err := filepath.Glob("../examples/*.yml")
	if err != nil {
		t.Fatal(err)
	}
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
				if !strings.Contains(w, "dns_sd_configs") {
					t.Errorf("unexpected warning: %s", w)
				}
			}
		})
	}
	if n < 2 {
		t.Fatalf("found %d sdhub configs in examples/, want at least 2", n)
	}
}
