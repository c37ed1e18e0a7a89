//go:build !remove_all_sd

// A build that leaves Prometheus's mechanisms out registers fewer metrics
// than docs/reference/metrics.md lists for the default build.

package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sdhub/sdhub/internal/doccheck"
)

// metricsFileEnv names the file into which the sdhub a test runs writes the
// name of every metric it registers, one a line.
const metricsFileEnv = "SDHUB_TEST_METRICS_FILE"

func init() {
	if p := os.Getenv(metricsFileEnv); p != "" && os.Getenv(mainEnv) == "1" {
		wrapRegisterer = func(r prometheus.Registerer) prometheus.Registerer { return &recordingRegisterer{next: r, file: p} }
	}
}

// recordingRegisterer appends the names of every collector it registers to
// a file.
type recordingRegisterer struct {
	next prometheus.Registerer
	file string
}

var fqNameRE = regexp.MustCompile(`fqName: "([^"]+)"`)

func (r *recordingRegisterer) Register(c prometheus.Collector) error {
	if err := r.next.Register(c); err != nil {
		return err
	}
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	var names strings.Builder
	for d := range ch {
		if m := fqNameRE.FindStringSubmatch(d.String()); m != nil {
			names.WriteString(m[1] + "\n")
		}
	}
	f, err := os.OpenFile(r.file, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	_, err = f.WriteString(names.String())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func (r *recordingRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

func (r *recordingRegisterer) Unregister(c prometheus.Collector) bool { return r.next.Unregister(c) }

// registeredMetrics runs sdhub on the example config and returns the name
// of every metric it registers (its wiring, every mechanism's metrics
// included) or serves on /metrics once it runs. The Go and process
// collectors' metrics are named go_* and process_*.
func registeredMetrics(t *testing.T) []string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "metrics")
	t.Setenv(metricsFileEnv, file)
	p := startSdhub(t, "--config.file="+filepath.Join(repoRoot, "examples", "sdhub.yml"), "--output.dir="+t.TempDir())
	eventually(t, "sdhub ready", func() bool { code, _ := p.get(t, "/-/ready"); return code == 200 })
	_, body := p.get(t, "/metrics")
	if code := p.stop(t, syscall.SIGTERM); code != exitOK {
		t.Fatalf("sdhub exited with %d", code)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	names := strings.Fields(string(b))
	for _, line := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			names = append(names, strings.Fields(rest)[0])
		}
	}
	for i, n := range names {
		for _, family := range []string{"go_", "process_"} {
			if strings.HasPrefix(n, family) {
				names[i] = family + "*"
			}
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// TestMetricsDocumented holds docs/reference/metrics.md to the metrics
// sdhub registers: each has a row, and every row names one sdhub has.
func TestMetricsDocumented(t *testing.T) {
	page := filepath.Join(repoRoot, "docs", "reference", "metrics.md")
	doc, err := doccheck.TableNames(page)
	if err != nil {
		t.Fatal(err)
	}
	actual := registeredMetrics(t)
	if len(actual) < 20 {
		t.Fatalf("only %d metrics recorded: %q", len(actual), actual)
	}
	missing, gone := doccheck.Diff(doc.All(), actual)
	for _, m := range missing {
		t.Errorf("%s: metric %s is registered but not documented", page, m)
	}
	for _, m := range gone {
		t.Errorf("%s: metric %s is documented but sdhub does not register it", page, m)
	}
}
