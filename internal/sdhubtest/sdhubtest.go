// Package sdhubtest is the harness for the sdhub binary, shared by the
// tests, the benchmarks and the reliability suite: it builds the binary and
// reads the address it listens on from its log.
package sdhubtest

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
)

// Build builds cmd/sdhub as dir/sdhub and returns its path. The build runs
// in root, a directory of the module ("" for the current one).
func Build(ctx context.Context, root, dir string) (string, error) {
	bin := filepath.Join(dir, "sdhub")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/sdhub/sdhub/cmd/sdhub")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/sdhub: %w\n%s", err, out)
	}
	return bin, nil
}

// listenRE matches the line exporter-toolkit logs once sdhub listens.
var listenRE = regexp.MustCompile(`msg="Listening on" .*address=(\S+)`)

// ListenAddress returns the address in line if it is the line sdhub logs
// once it listens (logfmt), and ok.
func ListenAddress(line string) (addr string, ok bool) {
	m := listenRE.FindStringSubmatch(line)
	if m == nil {
		return "", false
	}
	return m[1], true
}
