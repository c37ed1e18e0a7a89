package config

import (
	"path/filepath"
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
