package web

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sdhub/sdhub/internal/doccheck"
)

// TestEndpointsDocumented holds docs/reference/endpoints.md to the routes
// the handler serves (with every option that adds one): each has a row,
// written as its pattern ("GET /metrics", "/-/ready"), and every row names
// a route the handler has.
func TestEndpointsDocumented(t *testing.T) {
	page := filepath.Join("..", "docs", "reference", "endpoints.md")
	doc, err := doccheck.TableNames(page)
	if err != nil {
		t.Fatal(err)
	}
	h, ok := NewHandler(Options{Gatherer: prometheus.NewRegistry(), Outputs: &fakeOutputs{}}).(*routeMux)
	if !ok {
		t.Fatal("NewHandler without a route prefix does not return its routeMux")
	}
	missing, gone := doccheck.Diff(doc.All(), h.patterns)
	for _, p := range missing {
		t.Errorf("%s: endpoint %q is served but not documented", page, p)
	}
	for _, p := range gone {
		t.Errorf("%s: endpoint %q is documented but not served", page, p)
	}
	if len(h.patterns) < 5 || !strings.HasPrefix(h.patterns[0], "GET /metrics") {
		t.Errorf("routes %q: want /metrics first", h.patterns)
	}
}
