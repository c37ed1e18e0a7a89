// Package output writes the targets of every job as one file_sd JSON file
// per job, `<dir>/<job>.json`, for Prometheus's file_sd_configs to read.
//
// Files change only when their bytes change, and atomically. A job whose
// state is incomplete is not written, so its previous file stays. A job that
// leaves the config has its file deleted, but only if sdhub wrote it: the
// files it wrote are listed in the directory's manifest (ManifestName). A
// file already at a configured job's path when that job is first written is
// replaced, and listed from then on.
package output

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/sdhub/sdhub/manager"
)

// Retry delays after a failed Apply, when no newer update comes to retry it.
const (
	minRetry = time.Second
	maxRetry = 30 * time.Second
)

// Options configure a Writer.
type Options struct {
	// Logger receives the writer's logs; nil discards them.
	Logger *slog.Logger
	// Registerer registers the writer's metrics; nil leaves them unregistered.
	Registerer prometheus.Registerer
}

// JobStatus describes one job's file, for a status page.
type JobStatus struct {
	Job  string
	Path string
	// Targets is the number of targets in the job's last complete state.
	Targets int
	// LastWrite is when this process last wrote the file (zero: never).
	LastWrite time.Time
	// LastError is the error of the last attempt to write the file, if it failed.
	LastError error
	// Waiting is true while the job's state is incomplete (a provider has not
	// delivered its first full set, or a config failed to start): the file
	// is left as it is.
	Waiting bool
	// FailedConfigs is how many of the job's SD configs failed to start.
	FailedConfigs int
	// UpToDate is true when the file holds the job's last complete state
	// (written, or found identical on disk) since this process started.
	UpToDate bool
}

type jobState struct {
	path     string
	digest   [sha256.Size]byte
	known    bool // digest is what the file holds: read at first sight, then written
	upToDate bool
	// groups are those the file was last rendered from, while upToDate.
	// The manager shares a provider's groups between updates until they
	// change and never modifies one, so the same pointers mean the same
	// file, and the render is skipped.
	groups    []*targetgroup.Group
	targets   int
	lastWrite time.Time
	lastErr   error
	waiting   bool
	failed    int
}

// Writer writes one targets file per job into a directory.
type Writer struct {
	dir     string
	logger  *slog.Logger
	metrics *metrics

	mu       sync.Mutex          // serialises Apply; guards the fields below
	manifest map[string]struct{} // file names in dir that sdhub wrote
	jobs     map[string]*jobState
	applied  bool // at least one update applied

	// What Ready and Jobs report, published at the end of each Apply, so
	// that a readiness probe never waits for a large file to be written.
	statusMu sync.Mutex
	status   []JobStatus
	isReady  bool
}

// New makes a writer for dir: it creates dir if needed, removes the temp
// files a killed run left there and loads the manifest. A corrupt manifest is
// logged and treated as empty, so no existing file is ever deleted on its
// word.
func New(dir string, o Options) (*Writer, error) {
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
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
	met, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, fmt.Errorf("registering output metrics: %w", err)
	}
	return &Writer{
		dir:      dir,
		logger:   logger,
		metrics:  met,
		manifest: manifest,
		jobs:     map[string]*jobState{},
	}, nil
}

// Path is the targets file of job in dir: `<dir>/<job>.json`, with every
// byte of job other than ASCII letters, digits, '_', '-' and '.' (and a
// leading '.') written as %XX, so that distinct jobs get distinct files, no
// job name leaves dir, and no file is hidden. A name that would be longer
// than maxFileName is cut and ends in a hash of the job name (shortName).
func Path(dir, job string) string {
	return filepath.Join(dir, fileName(job))
}

func fileName(job string) string {
	var b strings.Builder
	for i := 0; i < len(job); i++ {
		c := job[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-', c == '.' && i > 0:
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	if b.Len()+len(".json") > maxFileName {
		return shortName(job, b.String()) // filename.go
	}
	b.WriteString(".json")
	return b.String()
}

// Run applies every update from updates until ctx ends or updates is closed,
// and returns nil then. A failed Apply is logged and retried with backoff
// (1 s doubling to 30 s) until it succeeds or a newer update replaces it.
func (w *Writer) Run(ctx context.Context, updates <-chan manager.Update) error {
	var (
		last  manager.Update
		retry <-chan time.Time
		delay = minRetry
	)
	apply := func(u manager.Update) {
		last = u
		if err := w.Apply(u); err != nil {
			w.logger.Error("writing targets files", "err", err, "retry_in", delay)
			retry = time.After(delay)
			delay = min(2*delay, maxRetry)
			return
		}
		retry, delay = nil, minRetry
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case u, ok := <-updates:
			if !ok {
				return nil
			}
			apply(u)
		case <-retry:
			apply(last)
		}
	}
}

// Apply applies one update: it writes the file of every complete job whose
// bytes changed, leaves the files of incomplete jobs as they are, and deletes
// the files sdhub wrote for jobs no longer in u. It returns every error, per
// job; the other jobs are written regardless.
func (w *Writer) Apply(u manager.Update) error {
	w.mu.Lock()
	defer w.mu.Unlock()

	var errs []error
	wanted := make(map[string]struct{}, len(u))
	waiting := 0
	for _, job := range sortedJobs(u) {
		jt := u[job]
		st := w.jobs[job]
		if st == nil {
			st = &jobState{path: Path(w.dir, job)}
			w.jobs[job] = st
		}
		wanted[filepath.Base(st.path)] = struct{}{}
		st.waiting, st.failed = !jt.Complete, jt.FailedConfigs
		if !jt.Complete {
			waiting++
			continue
		}
		if err := w.writeJob(job, st, jt.Groups); err != nil {
			st.lastErr, st.upToDate = err, false
			w.metrics.failures.WithLabelValues(job).Inc()
			errs = append(errs, fmt.Errorf("job %q: %w", job, err))
		}
	}
	for job := range w.jobs {
		if _, ok := u[job]; !ok {
			delete(w.jobs, job)
			w.metrics.deleteJob(job)
		}
	}
	if err := w.removeObsolete(wanted); err != nil {
		errs = append(errs, err)
	}
	w.applied = true
	w.publish()
	w.metrics.waiting.Set(float64(waiting))
	return errors.Join(errs...)
}

// publish makes the state of the jobs what Ready and Jobs report. Called
// with w.mu held.
func (w *Writer) publish() {
	ready := w.applied
	status := make([]JobStatus, 0, len(w.jobs))
	for _, job := range sortedJobs(w.jobs) {
		st := w.jobs[job]
		ready = ready && st.upToDate
		status = append(status, JobStatus{
			Job:           job,
			Path:          st.path,
			Targets:       st.targets,
			LastWrite:     st.lastWrite,
			LastError:     st.lastErr,
			Waiting:       st.waiting,
			FailedConfigs: st.failed,
			UpToDate:      st.upToDate,
		})
	}
	w.statusMu.Lock()
	w.status, w.isReady = status, ready
	w.statusMu.Unlock()
	if ready {
		w.metrics.ready.Set(1)
	} else {
		w.metrics.ready.Set(0)
	}
}

// writeJob writes the job's file if its bytes differ from what is on disk.
func (w *Writer) writeJob(job string, st *jobState, groups []*targetgroup.Group) error {
	if st.upToDate && slices.Equal(st.groups, groups) {
		w.metrics.unchanged.WithLabelValues(job).Inc()
		return nil
	}
	given := groups
	st.groups = nil
	groups = w.metrics.dropped.filter(w.logger, job, groups) // validate.go
	data, n, err := render(groups)
	if err != nil {
		return err
	}
	st.targets = n
	w.metrics.targets.WithLabelValues(job).Set(float64(n))
	sum := sha256.Sum256(data)
	if !st.known {
		// First sight of this job in this process: compare with the disk, so
		// a restart with the same targets does not rewrite the file.
		old, err := os.ReadFile(st.path)
		switch {
		case err == nil:
			st.digest, st.known = sha256.Sum256(old), true
		case !errors.Is(err, fs.ErrNotExist):
			w.logger.Warn("cannot read existing targets file, rewriting it", "err", err, "path", st.path)
		}
	}
	if st.known && st.digest == sum {
		st.upToDate, st.lastErr, st.groups = true, nil, given
		w.metrics.unchanged.WithLabelValues(job).Inc()
		return nil
	}
	name := filepath.Base(st.path)
	if _, ok := w.manifest[name]; !ok {
		// Listed before it is written: a crash in between leaves a listed
		// file that is at worst the previous one sdhub was replacing.
		w.manifest[name] = struct{}{}
		if err := saveManifest(w.dir, w.manifest); err != nil {
			delete(w.manifest, name)
			return fmt.Errorf("updating manifest: %w", err)
		}
	}
	if err := writeAtomic(w.dir, name, data); err != nil {
		st.known = false // the file may hold anything now: read it again next time
		return err
	}
	now := time.Now()
	st.digest, st.known, st.upToDate, st.lastErr, st.lastWrite, st.groups = sum, true, true, nil, now, given
	w.metrics.writes.WithLabelValues(job).Inc()
	w.metrics.lastWrite.WithLabelValues(job).Set(float64(now.UnixNano()) / 1e9)
	w.logger.Debug("wrote targets file", "job", job, "path", st.path, "targets", n)
	return nil
}

// removeObsolete deletes the files sdhub wrote whose job is gone. A file is
// dropped from the manifest only after it is removed.
func (w *Writer) removeObsolete(wanted map[string]struct{}) error {
	var errs []error
	changed := false
	for _, name := range sortedJobs(w.manifest) {
		if _, ok := wanted[name]; ok {
			continue
		}
		path := filepath.Join(w.dir, name)
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("removing targets file of a removed job: %w", err))
			continue
		}
		delete(w.manifest, name)
		changed = true
		w.metrics.removed.Inc()
		w.logger.Info("removed targets file of a job no longer configured", "path", path)
	}
	if changed {
		if err := syncDir(w.dir); err != nil {
			errs = append(errs, err)
		}
		if err := saveManifest(w.dir, w.manifest); err != nil {
			errs = append(errs, fmt.Errorf("updating manifest: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Ready reports whether an update was applied and every job in the last one
// has its file written, or found identical on disk, since this process
// started. It does not wait for an Apply in progress.
func (w *Writer) Ready() bool {
	w.statusMu.Lock()
	defer w.statusMu.Unlock()
	return w.isReady
}

// Jobs describes every job of the last applied update, sorted by job name.
// It does not wait for an Apply in progress.
func (w *Writer) Jobs() []JobStatus {
	w.statusMu.Lock()
	defer w.statusMu.Unlock()
	return slices.Clone(w.status)
}

func sortedJobs[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
