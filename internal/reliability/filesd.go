package reliability

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/common/model"

	"github.com/sdhub/sdhub/output"
)

// Entry is one file_sd entry.
type Entry struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
}

// ParseFileSD parses data as Prometheus 2.x's file_sd does, and stricter:
// a JSON array of objects with only "targets" and "labels", every label
// name valid in the legacy scheme (what every Prometheus accepts), the
// whole file valid UTF-8, no null entry. Targets are not checked: an
// empty address, or one with "/", goes to the consuming job's relabelling.
func ParseFileSD(data []byte) ([]Entry, error) {
	if !utf8.Valid(data) {
		return nil, fmt.Errorf("not valid UTF-8")
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, err
	}
	entries := make([]Entry, 0, len(raw))
	for i, r := range raw {
		if bytes.Equal(bytes.TrimSpace(r), []byte("null")) {
			return nil, fmt.Errorf("entry %d is null", i)
		}
		var e Entry
		dec := json.NewDecoder(bytes.NewReader(r))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil {
			return nil, fmt.Errorf("entry %d: %w", i, err)
		}
		for n := range e.Labels {
			if !model.LegacyValidation.IsValidLabelName(n) {
				return nil, fmt.Errorf("entry %d: %q is not a valid label name", i, n)
			}
		}
		entries = append(entries, e)
	}
	return entries, nil
}

// tempRE matches the writer's temp files (output/manifest.go): the
// target's name with "/" made "_", ".tmp-" and os.CreateTemp's digits, in
// the output directory's staging directory.
var tempRE = regexp.MustCompile(`^.+\.tmp-[0-9]+$`)

// StagingDir is the output directory's staging directory, where the writer
// makes its temp files.
func StagingDir(dir string) string { return filepath.Join(dir, output.StagingDir) }

// TempFiles lists the writer's temp files in dir's staging directory, as
// paths relative to dir.
func TempFiles(dir string) ([]string, error) {
	es, err := os.ReadDir(StagingDir(dir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range es {
		if tempRE.MatchString(e.Name()) {
			out = append(out, filepath.Join(output.StagingDir, e.Name()))
		}
	}
	return out, nil
}

// OutsideFiles lists the regular files under root that are not directly in
// dir: a job name that escaped the output directory would leave one.
func OutsideFiles(root, dir string, ignore ...string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		if inOutputDir(path, dir) {
			return nil
		}
		for _, ig := range ignore {
			if path == ig {
				return nil
			}
		}
		out = append(out, path)
		return nil
	})
	return out, err
}

// WatchDir watches dir with fsnotify.
func WatchDir(dir string) (*fsnotify.Watcher, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	if err := w.Add(dir); err != nil {
		_ = w.Close()
		return nil, err
	}
	return w, nil
}

// inOutputDir reports whether path is one of the writer's files in dir: a
// job's file directly in dir, a part of a job (<dir>/<job>.parts/<i>/
// targets.json) or a temp file in dir's staging directory.
func inOutputDir(path, dir string) bool {
	dir = filepath.Clean(dir)
	parent := filepath.Dir(path)
	switch {
	case parent == dir, parent == StagingDir(dir):
		return true
	case filepath.Base(path) != "targets.json":
		return false
	}
	parts := filepath.Dir(parent)
	return filepath.Dir(parts) == dir && strings.HasSuffix(filepath.Base(parts), ".parts")
}
