package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestAutoReloadConfigMap updates the config the way Kubernetes updates a
// mounted ConfigMap: the file is a symlink through ..data, and an update
// writes a new directory and renames a new ..data symlink over the old
// one. No event names the config file itself.
func TestAutoReloadConfigMap(t *testing.T) {
	_, outDir, _ := hubDir(t, "")
	dir := filepath.Join(t.TempDir(), "config")
	version := func(n, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(dir, n), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, n, "sdhub.yml"), content)
		if err := os.Symlink(n, filepath.Join(dir, "..data_tmp")); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	version("..v1", configV1)
	if err := os.Symlink(filepath.Join("..data", "sdhub.yml"), filepath.Join(dir, "sdhub.yml")); err != nil {
		t.Fatal(err)
	}
	startSdhub(t, "--config.file="+filepath.Join(dir, "sdhub.yml"), "--output.dir="+outDir, "--config.auto-reload")
	eventually(t, "static.json", outputIs(t, filepath.Join(outDir, "static.json"), "127.0.0.1:9100 env=prod"))
	version("..v2", configV2)
	eventually(t, "extra.json after the ConfigMap changed", outputIs(t, filepath.Join(outDir, "extra.json"), "127.0.0.2:9100 "))
}
