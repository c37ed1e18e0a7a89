package config

import (
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sdhub/sdhub/internal/doccheck"
)

// ownKeysSection is the section of docs/reference/config.md that lists
// sdhub's own keys, each as <mechanism key>.<key>.
const ownKeysSection = "sdhub's own keys"

// TestOwnKeysDocumented holds docs/reference/config.md to the keys sdhub
// accepts beyond Prometheus's: each has a row in its section, and every row
// there names one the loader accepts.
func TestOwnKeysDocumented(t *testing.T) {
	page := filepath.Join("..", "docs", "reference", "config.md")
	doc, err := doccheck.TableNames(page)
	if err != nil {
		t.Fatal(err)
	}
	var actual []string
	for mech, keys := range extensions {
		for _, k := range keys {
			actual = append(actual, mech+"."+k)
		}
	}
	if len(actual) == 0 {
		t.Fatal("no sdhub-only keys found")
	}
	missing, gone := doccheck.Diff(doc[ownKeysSection], actual)
	for _, k := range missing {
		t.Errorf("%s: key %s is accepted but not documented in %q", page, k, ownKeysSection)
	}
	for _, k := range gone {
		t.Errorf("%s: key %s is documented in %q but not accepted", page, k, ownKeysSection)
	}
}

// exampleChecks names, for every file under examples/, the test that loads
// or runs it.
var exampleChecks = map[string]string{
	"sdhub.yml":               "config TestExamples; cmd/sdhub TestExamplesWorkWithPrometheus, TestDocCommands, TestTrimmedBuild",
	"consul.yml":              "config TestExamples, TestDockerCompose; packaging TestImage",
	"prometheus.yml":          "cmd/sdhub TestExamplePrometheusIsGenerated, TestExamplesWorkWithPrometheus (promtool)",
	"prometheus-compose.yml":  "cmd/sdhub TestExamplePrometheusIsGenerated, TestExamplesWorkWithPrometheus (promtool)",
	"docker-compose.yml":      "config TestDockerCompose; packaging TestImage",
	"consul.d/prometheus.hcl": "config TestDockerCompose (mounted); packaging TestImage (on a real agent)",
	"targets/web.json":        "read by sdhub.yml's file_sd jobs in cmd/sdhub TestExamplesWorkWithPrometheus",
	"targets/batch.yml":       "read by sdhub.yml's file_sd job web in cmd/sdhub TestExamplesWorkWithPrometheus",
}

// TestExamplesCovered fails when a file under examples/ is not in
// exampleChecks (say which test loads it), or one listed there is gone.
func TestExamplesCovered(t *testing.T) {
	var files []string
	err := filepath.WalkDir(filepath.Join("..", "examples"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(filepath.Join("..", "examples"), p)
		files = append(files, filepath.ToSlash(rel))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	missing, gone := doccheck.Diff(slices.Collect(maps.Keys(exampleChecks)), files)
	for _, f := range missing {
		t.Errorf("examples/%s: no test is listed as loading it (exampleChecks)", f)
	}
	for _, f := range gone {
		t.Errorf("exampleChecks lists examples/%s, which is gone", f)
	}
}

// TestDocYAMLIsFromExamples holds the YAML the docs show to the files
// under examples/, which the tests load: every ```yaml block of README.md
// and docs/ is a run of whole lines of one of them.
func TestDocYAMLIsFromExamples(t *testing.T) {
	blocks, err := doccheck.Blocks("..", "yaml")
	if err != nil {
		t.Fatal(err)
	}
	var examples []string
	for f := range exampleChecks {
		b, err := os.ReadFile(filepath.Join("..", "examples", f))
		if err != nil {
			t.Fatal(err)
		}
		examples = append(examples, "\n"+string(b))
	}
	for _, b := range blocks {
		if !slices.ContainsFunc(examples, func(e string) bool { return strings.Contains(e, "\n"+b.Text) }) {
			t.Errorf("%s:%d: this YAML is not an excerpt of a file under examples/; show an example file's lines instead:\n%s", b.File, b.Line, b.Text)
		}
	}
}
