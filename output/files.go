package output

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"
)

// files is the file side of the stage: one file per job in dir, the
// manifest, and what sdhub knows each file holds. Used with Stage.mu held.
type files struct {
	dir      string
	logger   *slog.Logger
	manifest map[string]struct{} // file names in dir that sdhub wrote
	known    map[string]*fileInfo
	lost     bool              // the directory was found missing: logged once until it is back
	tidy     bool              // the manifest lists only current jobs' files: no job left since removeObsolete last succeeded
	watcher  *fsnotify.Watcher // set by watch; safe for concurrent use
}

// fileInfo is what sdhub knows of one job's file.
type fileInfo struct {
	gen  uint64      // the snapshot Gen the file holds
	info fs.FileInfo // the file as sdhub wrote or last checked it
}

func openFiles(dir string, logger *slog.Logger) (*files, error) {
	if err := os.MkdirAll(filepath.Join(dir, StagingDir), 0o755); err != nil {
		return nil, fmt.Errorf("creating output directory: %w", err)
	}
	removed, err := removeTempFiles(dir)
	if err != nil {
		return nil, fmt.Errorf("removing stale temp files from %q: %w", dir, err)
	}
	if len(removed) > 0 {
		logger.Info("removed stale temp files", "dir", dir, "files", removed)
	}
	manifest, err := loadManifest(dir)
	if err != nil {
		logger.Error("cannot read the output manifest, no existing file will be deleted", "err", err, "dir", dir)
	}
	return &files{dir: dir, logger: logger, manifest: manifest, known: map[string]*fileInfo{}}, nil
}

func (f *files) path(job string) string { return Path(f.dir, job) }

func (f *files) partPath(job string, i int) string { return PartPath(f.dir, job, i) }

// name is path relative to the output directory: a job's file name, or a
// part's `<x>.parts/<i>/targets.json`.
func (f *files) name(path string) string {
	rel, err := filepath.Rel(f.dir, path)
	if err != nil {
		return filepath.Base(path)
	}
	return rel
}

// ensureDir recreates the output directory when someone removed it, and
// reports whether it did: every file must then be written again.
func (f *files) ensureDir() bool {
	_, err := os.Stat(f.dir)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return false
	}
	if err := os.MkdirAll(filepath.Join(f.dir, StagingDir), 0o755); err != nil {
		if !f.lost {
			f.logger.Error("the output directory is gone and cannot be created again", "dir", f.dir, "err", err)
			f.lost = true
		}
		return false
	}
	f.logger.Warn("the output directory was removed; created it again, writing every job's file", "dir", f.dir)
	f.lost = false
	if f.watcher != nil {
		if err := f.watcher.Add(f.dir); err != nil {
			f.logger.Warn("cannot watch the output directory again; checking its files every interval only", "err", err)
		}
	}
	clear(f.known)
	if len(f.manifest) > 0 {
		if err := saveManifest(f.dir, f.manifest); err != nil {
			f.logger.Error("writing the output manifest", "err", err)
		}
	}
	return true
}

// sync makes snap's file (a job's, or a part's) hold snap. Without verify
// it trusts what it knows; with verify it checks the file it wrote (a stat)
// and puts it back when someone removed or changed it, reporting that as a
// repair.
func (f *files) sync(snap *Snapshot, verify bool) (state FileState, repaired bool, err error) {
	job := snap.Job
	state = snap.File
	name := f.name(state.Path)
	k := f.known[name]
	if k != nil && k.gen == snap.Gen && state.Err == nil {
		if !verify {
			return state, false, nil
		}
		cur, err := os.Stat(state.Path)
		if err == nil && sameFile(cur, k.info) {
			return state, false, nil
		}
		if err == nil && equalContent(state.Path, snap) {
			k.info = cur // the same bytes in another file, or touched: fine
			return state, false, nil
		}
		what := "changed"
		if errors.Is(err, fs.ErrNotExist) {
			what = "removed"
		}
		f.logger.Warn("a job's targets file was "+what+" by someone else; putting it back", "job", job, "path", state.Path)
		repaired = true
	}
	if k == nil && equalContent(state.Path, snap) {
		// First sight of this job in this process: a restart with the same
		// targets does not rewrite the file.
		info, err := os.Stat(state.Path)
		if err == nil {
			f.known[name] = &fileInfo{gen: snap.Gen, info: info}
			state.Gen, state.Targets, state.Err = snap.Gen, snap.Targets, nil
			f.own(name)
			return state, repaired, nil
		}
	}
	if err := f.own(name); err != nil {
		return state, repaired, err
	}
	if d := filepath.Dir(name); d != "." {
		if err := os.MkdirAll(filepath.Join(f.dir, d), 0o755); err != nil {
			return state, repaired, err
		}
	}
	info, err := writeAtomicFunc(f.dir, name, snap.writeBuffered)
	if err != nil {
		delete(f.known, name) // the file may hold anything now: compare it next time
		return state, repaired, err
	}
	f.known[name] = &fileInfo{gen: snap.Gen, info: info}
	state.Gen, state.Targets, state.Err, state.Written = snap.Gen, snap.Targets, nil, info.ModTime()
	f.logger.Debug("wrote targets file", "job", job, "path", state.Path, "targets", snap.Targets)
	return state, repaired, nil
}

// own lists name in the manifest before it is written: a crash in between
// leaves a listed file that is at worst the previous one sdhub was
// replacing.
func (f *files) own(name string) error {
	if _, ok := f.manifest[name]; ok {
		return nil
	}
	f.manifest[name] = struct{}{}
	if err := saveManifest(f.dir, f.manifest); err != nil {
		delete(f.manifest, name)
		return fmt.Errorf("updating manifest: %w", err)
	}
	return nil
}

// removeObsolete deletes the files sdhub wrote that are not wanted (names
// relative to the output directory): those of jobs gone, and the parts or
// the whole file a job no longer has. A file is dropped from the manifest only after it is
// removed; a part's directories go with their last file.
func (f *files) removeObsolete(wanted, laidOut func(name string) bool, removed prometheus.Counter) error {
	for name := range f.known {
		if !wanted(name) {
			delete(f.known, name)
		}
	}
	var errs []error
	changed := false
	for _, name := range slices.Sorted(maps.Keys(f.manifest)) {
		if wanted(name) {
			continue
		}
		path := filepath.Join(f.dir, name)
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("removing targets file of a removed job: %w", err))
			continue
		}
		if d := filepath.Dir(path); d != f.dir {
			// Removed when empty: the part's directory, then the job's.
			if os.Remove(d) == nil {
				_ = os.Remove(filepath.Dir(d))
			}
		}
		delete(f.manifest, name)
		changed = true
		removed.Inc()
		f.logger.Info("removed a targets file no longer wanted", "path", path)
	}
	// The directories of parts never written: SetLayout makes them for
	// every part at once, and a job can leave before it wrote them all.
	// Those of the layout stay, for jobs that are not in the update yet.
	if top, err := os.ReadDir(f.dir); err == nil {
		for _, e := range top {
			if !e.IsDir() || !strings.HasSuffix(e.Name(), PartsDirSuffix) {
				continue
			}
			parts, _ := os.ReadDir(filepath.Join(f.dir, e.Name()))
			for _, p := range parts {
				if name := filepath.Join(e.Name(), p.Name(), partFileName); p.IsDir() && isPartName(name) && !wanted(name) && !laidOut(name) {
					_ = os.Remove(filepath.Join(f.dir, e.Name(), p.Name())) // when empty
				}
			}
			if !laidOut(filepath.Join(e.Name(), "0", partFileName)) {
				_ = os.Remove(filepath.Join(f.dir, e.Name())) // when empty
			}
		}
	}
	if changed {
		if err := syncDir(f.dir); err != nil {
			errs = append(errs, err)
		}
		if err := saveManifest(f.dir, f.manifest); err != nil {
			errs = append(errs, fmt.Errorf("updating manifest: %w", err))
		}
	}
	f.tidy = len(errs) == 0
	return errors.Join(errs...)
}

// sameFile reports whether a and b describe the same file with the same
// size and modification time: a file sdhub wrote that nobody touched since.
func sameFile(a, b fs.FileInfo) bool {
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

// equalContent reports whether the file at path holds exactly snap's bytes.
// It streams the comparison: no copy of the output is made.
func equalContent(path string, snap *Snapshot) bool {
	file, err := os.Open(path)
	if err != nil {
		return false
	}
	defer file.Close()
	info, err := file.Stat()
	if err != nil || info.Size() != int64(snap.Size) {
		return false
	}
	c := &comparer{r: bufio.NewReaderSize(file, 256<<10)}
	if _, err := snap.WriteTo(c); err != nil {
		return false
	}
	_, err = c.r.ReadByte()
	return errors.Is(err, io.EOF)
}

// comparer is a writer that checks what is written against r.
type comparer struct {
	r   *bufio.Reader
	buf []byte
}

var errDiffers = errors.New("content differs")

func (c *comparer) Write(p []byte) (int, error) {
	if cap(c.buf) < len(p) {
		c.buf = make([]byte, len(p))
	}
	b := c.buf[:len(p)]
	if _, err := io.ReadFull(c.r, b); err != nil || !bytes.Equal(b, p) {
		return 0, errDiffers
	}
	return len(p), nil
}

func (c *comparer) WriteString(s string) (int, error) {
	if cap(c.buf) < len(s) {
		c.buf = make([]byte, len(s))
	}
	b := c.buf[:len(s)]
	if _, err := io.ReadFull(c.r, b); err != nil || string(b) != s {
		return 0, errDiffers
	}
	return len(s), nil
}

// watch watches the output directory and sends a signal for every event
// that may have touched a job's file or the directory itself, until ctx
// ends. When the directory goes, so does its watch: ensureDir watches the
// directory it creates again.
func (f *files) watch(ctx context.Context, logger *slog.Logger) (<-chan string, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	if err := w.Add(f.dir); err != nil {
		_ = w.Close()
		return nil, err
	}
	f.watcher = w
	out := make(chan string, 1)
	go func() {
		defer close(out)
		defer w.Close()
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				if !interesting(f.dir, ev) {
					continue
				}
				select {
				case out <- ev.Name:
				default:
				}
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				logger.Debug("output directory watch error", "err", err)
				select {
				case out <- "":
				default:
				}
			}
		}
	}()
	return out, nil
}

// interesting reports whether ev may have changed a job's file or the
// directory: not sdhub's own temp files, manifest included.
func interesting(dir string, ev fsnotify.Event) bool {
	if ev.Op == fsnotify.Chmod {
		return false
	}
	name := filepath.Base(ev.Name)
	if filepath.Clean(ev.Name) == filepath.Clean(dir) {
		return true
	}
	return filepath.Ext(name) == ".json" && !tempPattern.MatchString(name)
}
