package output

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
)

// ManifestName is the file, in the output directory, listing the targets
// files sdhub wrote there. Only files it lists are ever deleted. Its name
// has no .json/.yml/.yaml extension: Go's filepath.Glob, which Prometheus's
// file_sd uses, matches dot files, so `*.json` would match
// ".sdhub-manifest.json" and Prometheus would fail to parse it.
const ManifestName = ".sdhub-manifest"

const manifestVersion = 1

type manifestFile struct {
	Version int      `json:"version"`
	Files   []string `json:"files"`
}

// loadManifest reads the manifest of dir. A missing manifest is empty. An
// unreadable or corrupt one is returned as an error with the names it could
// not vouch for dropped: the caller then owns no file, the safe side.
func loadManifest(dir string) (map[string]struct{}, error) {
	files := map[string]struct{}{}
	b, err := os.ReadFile(filepath.Join(dir, ManifestName))
	if errors.Is(err, fs.ErrNotExist) {
		return files, nil
	}
	if err != nil {
		return files, err
	}
	var mf manifestFile
	if err := json.Unmarshal(b, &mf); err != nil {
		return files, fmt.Errorf("parsing %s: %w", filepath.Join(dir, ManifestName), err)
	}
	if mf.Version != manifestVersion {
		return files, fmt.Errorf("unsupported version %d in %s (want %d)", mf.Version, filepath.Join(dir, ManifestName), manifestVersion)
	}
	for _, name := range mf.Files {
		// Never follow a name out of the directory or onto a file sdhub would
		// not have written, whatever the manifest says.
		if name != filepath.Base(name) || !strings.HasSuffix(name, ".json") || strings.HasPrefix(name, ".") {
			continue
		}
		files[name] = struct{}{}
	}
	return files, nil
}

// saveManifest writes the manifest of dir atomically.
func saveManifest(dir string, files map[string]struct{}) error {
	mf := manifestFile{Version: manifestVersion, Files: make([]string, 0, len(files))}
	for name := range files {
		mf.Files = append(mf.Files, name)
	}
	slices.Sort(mf.Files)
	b, err := json.MarshalIndent(mf, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(dir, ManifestName, append(b, '\n'))
}

// tempPattern matches the temp files writeAtomic makes: a dot, the target
// name, ".tmp-" and os.CreateTemp's random digits; and the spares of large
// files: a dot, the target name and ".spare". No consumer glob (*.json,
// *.yml, *.yaml) matches them.
var tempPattern = regexp.MustCompile(`^\..+\.(tmp-[0-9]+|spare)$`)

// removeTempFiles removes the temp files a killed run left in dir.
func removeTempFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || !tempPattern.MatchString(name) {
			continue
		}
		base := strings.TrimPrefix(name[:strings.LastIndexByte(name, '.')], ".") // ".tmp-<digits>" or ".spare" off
		if base != ManifestName && !strings.HasSuffix(base, ".json") {
			continue
		}
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, name)
	}
	return removed, errors.Join(errs...)
}

// writeAtomic replaces dir/name with data so that a reader sees the old or
// the new content, never a part: a temp file in the same directory, written,
// fsynced, made 0644 and renamed over name, then the directory is fsynced.
// The temp file is removed on any failure.
func writeAtomic(dir, name string, data []byte) error {
	_, err := writeAtomicFunc(dir, name, "", func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
	return err
}

// writeAtomicFunc is writeAtomic of what write writes. It returns the
// file's information as written, to recognise the file later. With keep
// set, the file it replaces is not freed but moved to dir/keep, a spare for
// the next write (spare.go).
func writeAtomicFunc(dir, name, keep string, write func(io.Writer) error) (_ fs.FileInfo, err error) {
	f, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return nil, err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if err = write(f); err != nil {
		return nil, err
	}
	if err = f.Sync(); err != nil {
		return nil, err
	}
	if err = f.Chmod(0o644); err != nil {
		return nil, err
	}
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if err = f.Close(); err != nil {
		return nil, err
	}
	if err = replace(tmp, filepath.Join(dir, name), keep); err != nil {
		return nil, err
	}
	return info, syncDir(dir)
}

// syncDir makes a rename or a removal in dir durable. Windows cannot fsync
// a directory; its renames are durable once MoveFileEx returns.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
