package web

import (
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/sdhub/sdhub/manager"
	"github.com/sdhub/sdhub/output"
)

// TestHTTPSDServesTheFilesBytes: a job with a target Prometheus would
// reject (a label name Prometheus 2.x refuses, which makes it drop the
// whole answer) is served over http_sd with the same bytes the writer
// writes to its file: without it, and with the target whose address has a
// "/", which the consumer's relabelling may fix.
func TestHTTPSDServesTheFilesBytes(t *testing.T) {
	groups := []*targetgroup.Group{
		{Source: "a", Labels: model.LabelSet{"env": "prod"}, Targets: []model.LabelSet{{model.AddressLabel: "good:1"}}},
		{Source: "b", Targets: []model.LabelSet{{model.AddressLabel: "dotted:1", "a.b": "v"}, {model.AddressLabel: "h:1/x"}}},
	}
	dir := t.TempDir()
	w, err := output.New(dir, output.Options{})
	if err != nil {
		t.Fatal(err)
	}
	apply(t, w, manager.Update{"job": job(true, groups...)})
	h := NewHandler(Options{Gatherer: prometheus.NewRegistry(), Outputs: w})
	code, _, body := do(t, h, http.MethodGet, "/api/v1/sd/job")
	if code != http.StatusOK {
		t.Fatalf("GET /api/v1/sd/job = %d: %s", code, body)
	}

	file, err := os.ReadFile(output.Path(dir, "job"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(body, "dotted:1") || !strings.Contains(body, `"h:1/x"`) {
		t.Errorf("http_sd serves\n%s\nwant h:1/x without dotted:1", body)
	}
	if body != string(file) {
		t.Errorf("http_sd serves\n%s\nthe file holds\n%s", body, file)
	}
	// One shard of one is the whole job.
	if _, _, body := do(t, h, http.MethodGet, "/api/v1/sd/job?shard=0&shards=1"); body != string(file) {
		t.Errorf("shard 0 of 1 serves\n%s\nthe file holds\n%s", body, file)
	}
}
