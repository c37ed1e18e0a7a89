package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestDiscoverPrintsTheFilesBytes: discover --format=file_sd prints what
// the job's file would hold, so a target Prometheus would reject (here a label name
// Prometheus 2.x refuses, which would make it drop the whole file) is left
// out, as the writer leaves it out.
func TestDiscoverPrintsTheFilesBytes(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "sdhub.yml")
	if err := os.WriteFile(cfg, []byte(`scrape_configs:
  - job_name: j
    static_configs:
      - targets: ["good:1"]
      - targets: ["dotted:1"]
        labels: {"a.b": "v"}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	want := `[
  {
    "targets": [
      "good:1"
    ],
    "labels": {}
  }
]
`
	var stdout, stderr bytes.Buffer
	if code := runMain([]string{"discover", "--format=file_sd", cfg, "j"}, &stdout, &stderr); code != exitOK || stdout.String() != want {
		t.Errorf("discover = exit %d, stdout\n%s\nwant exit 0 and\n%s\nstderr: %s", code, stdout.String(), want, stderr.String())
	}
}
