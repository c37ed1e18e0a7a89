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
		if (name != filepath.Base(name) || !strings.HasSuffix(name, ".json") || strings.HasPrefix(name, ".")) && !isPartName(name) {
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

// StagingDir is the directory, inside the output directory, where sdhub
// writes each file before it renames it into place. A consumer watches the
// output directory (Prometheus's file_sd watches the directory of each of
// its files, not the files) and reads every file of a file_sd_configs entry
// again on any event there but a chmod: a temp file written in the watched
// directory makes it read the job again for its creation and its writes, a
// rename from here only once. No consumer glob matches the directory's
// name, and inotify does not report what happens inside it to a watch of
// its parent.
const StagingDir = ".sdhub-staging"

// tempPattern matches the temp files that sdhub before the staging
// directory made in the output directory itself: a dot, the target name,
// ".tmp-" and os.CreateTemp's random digits; and the spares of large files
// it kept: a dot, the target name and ".spare". No consumer glob (*.json,
// *.yml, *.yaml) matches them.
var tempPattern = regexp.MustCompile(`^\..+\.(tmp-[0-9]+|spare)$`)

// removeTempFiles removes the temp files a killed run left in dir: all of
// the staging directory's, and those of earlier versions of sdhub in dir
// itself.
func removeTempFiles(dir string) ([]string, error) {
	var removed []string
	var errs []error
	staged, err := os.ReadDir(filepath.Join(dir, StagingDir))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	for _, e := range staged {
		if err := os.Remove(filepath.Join(dir, StagingDir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, filepath.Join(StagingDir, e.Name()))
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
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
// the new content, never a part, and a watcher of dir one event: a temp
// file in dir's staging directory, written, fsynced, made 0644 and renamed
// over name, then the directory is fsynced. The temp file is removed on
// any failure. name may be a path below dir.
func writeAtomic(dir, name string, data []byte) error {
	_, err := writeAtomicFunc(dir, name, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
	return err
}

// writeAtomicFunc is writeAtomic of what write writes. It returns the
// file's information as written, to recognise the file later.
func writeAtomicFunc(dir, name string, write func(io.Writer) error) (_ fs.FileInfo, err error) {
	staging := filepath.Join(dir, StagingDir)
	pattern := strings.ReplaceAll(name, string(filepath.Separator), "_") + ".tmp-*"
	f, err := os.CreateTemp(staging, pattern)
	if errors.Is(err, fs.ErrNotExist) { // someone removed it
		if err = os.Mkdir(staging, 0o755); err == nil || errors.Is(err, fs.ErrExist) {
			f, err = os.CreateTemp(staging, pattern)
		}
	}
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
	path := filepath.Join(dir, name)
	if err = os.Rename(tmp, path); err != nil {
		return nil, err
	}
	return info, syncDir(filepath.Dir(path))
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
