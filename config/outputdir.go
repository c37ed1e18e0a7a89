package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/sdhub/sdhub/output"
)

// CheckOutputDir returns an error when two jobs sdhub serves would share one
// output file in dir: Prometheus accepts job names that differ only in case
// ("Web" and "web"), and a file system that ignores case (macOS's and
// Windows' by default) holds Web.json and web.json as one file. Where case
// matters, as on Linux, each job has its own file and the config is fine;
// http_sd serves the jobs apart everywhere.
func (c *Config) CheckOutputDir(dir string) error {
	seen := map[string]string{}
	var clash [][2]string
	for _, sc := range c.ScrapeConfigs {
		name := strings.ToLower(filepath.Base(output.Path(dir, sc.JobName)))
		if prev, ok := seen[name]; ok {
			clash = append(clash, [2]string{prev, sc.JobName})
			continue
		}
		seen[name] = sc.JobName
	}
	if len(clash) == 0 {
		return nil
	}
	ignores, err := ignoresCase(dir)
	if err != nil {
		return fmt.Errorf("checking whether the file system of %s ignores case: %w", dir, err)
	}
	if !ignores {
		return nil
	}
	msgs := make([]string, 0, len(clash))
	for _, p := range clash {
		msgs = append(msgs, fmt.Sprintf("jobs %q and %q would write one output file in %s, whose file system ignores case: rename one of them or use another output directory", p[0], p[1], dir))
	}
	return errors.New(strings.Join(msgs, "\n"))
}

// ignoresCase reports whether the file system of dir (or of its nearest
// existing parent) ignores case in file names: it creates a file with a
// lower-case name there and looks it up in upper case. A variable, so that
// tests on a file system that does not ignore case reach the other branch.
var ignoresCase = func(dir string) (bool, error) {
	for {
		_, err := os.Stat(dir)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrNotExist) || filepath.Dir(dir) == dir {
			return false, err
		}
		dir = filepath.Dir(dir)
	}
	f, err := os.CreateTemp(dir, ".sdhub-case-probe-")
	if err != nil {
		return false, err
	}
	name := f.Name()
	defer os.Remove(name)
	if err := f.Close(); err != nil {
		return false, err
	}
	lower, err := os.Stat(name)
	if err != nil {
		return false, err
	}
	upper, err := os.Stat(filepath.Join(dir, strings.ToUpper(filepath.Base(name))))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return os.SameFile(lower, upper), nil
}
