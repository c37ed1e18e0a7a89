// Package output owns every job's output: it renders the targets of each
// job as file_sd JSON, incrementally, publishes them as an immutable
// Snapshot per job, and keeps one file per job, `<dir>/<job>.json`, true on
// disk for Prometheus's file_sd_configs to read. The http_sd endpoint, the
// status pages and `sdhub discover` read the same snapshots; nothing renders
// a job's targets a second time.
//
// Files change only when their content changes, and atomically. A job whose
// state is incomplete keeps its previous output and file. A job that leaves
// the config has its file deleted, but only if sdhub wrote it: the files it
// wrote are listed in the directory's manifest (ManifestName). A file
// already at a configured job's path when that job is first written is
// replaced, and listed from then on. A file someone removes, truncates or
// edits, or the whole directory, is put back.
package output

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sdhub/sdhub/internal/priority"
	"github.com/sdhub/sdhub/manager"
)

// Retry delays after a failed write, when no newer update comes to retry
// it: doubling from minRetry to maxRetry, without jitter.
const (
	minRetry = time.Second
	maxRetry = 30 * time.Second
)

// DefaultVerifyInterval is how often the stage checks, besides watching the
// directory, that every file holds what it wrote: a stat per file.
const DefaultVerifyInterval = 5 * time.Second

// Options configure a Stage.
type Options struct {
	// Logger receives the stage's logs; nil discards them.
	Logger *slog.Logger
	// Registerer registers the stage's metrics; nil leaves them unregistered.
	Registerer prometheus.Registerer
	// Discovery returns the discovery state of every job
	// (manager.Manager.Jobs), for sdhub_job_healthy; nil counts every job's
	// discovery as healthy.
	Discovery func() map[string]manager.JobStatus
	// VerifyInterval is how often the files are checked against what was
	// written, besides the directory watch; 0 means DefaultVerifyInterval.
	VerifyInterval time.Duration
	// Now is the clock of the snapshots' Changed times; nil means time.Now.
	Now func() time.Time
	// NoSpares writes every file anew: a large file is not written over the
	// file it replaced (spare.go). For a directory other machines read over
	// NFS or SMB.
	NoSpares bool
	// Priority is the gate writing goes through before the discoverers'
	// deferrable work (package priority); nil orders nothing.
	Priority *priority.Gate
}

// Stage owns the output of every job.
type Stage struct {
	logger  *slog.Logger
	metrics *metrics
	now     func() time.Time
	files   *files // nil when the stage writes no files
	verify  time.Duration
	names   *labelNames // the label names of every job's output
	gate    *priority.Gate

	mu      sync.Mutex // serialises Apply and the file checks; guards renders and order
	renders map[string]*jobRender
	order   []string // the published jobs, sorted: kept until a job comes or goes
	lastGen uint64   // the last snapshot Gen given

	cur atomic.Pointer[published]
}

// published is what readers see: the snapshot of every configured job.
type published struct {
	applied bool // an update was applied
	jobs    map[string]*Snapshot
}

// New makes a stage writing into dir: it creates dir if needed, removes the
// temp files a killed run left there and loads the manifest. A corrupt
// manifest is logged and treated as empty, so no existing file is ever
// deleted on its word. With dir "" the stage writes no files (for `sdhub
// discover`).
func New(dir string, o Options) (*Stage, error) {
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Stage{
		logger:  logger,
		now:     time.Now,
		verify:  o.VerifyInterval,
		renders: map[string]*jobRender{},
		names:   newLabelNames(),
		gate:    o.Priority,
	}
	if s.verify <= 0 {
		s.verify = DefaultVerifyInterval
	}
	if o.Now != nil {
		s.now = o.Now
	}
	if dir != "" {
		f, err := openFiles(dir, logger, o.NoSpares)
		if err != nil {
			return nil, err
		}
		s.files = f
	}
	met, err := newMetrics(o.Registerer, s, o.Discovery)
	if err != nil {
		return nil, fmt.Errorf("registering output metrics: %w", err)
	}
	s.metrics = met
	s.cur.Store(&published{jobs: map[string]*Snapshot{}})
	return s, nil
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

// Snapshots returns the snapshot of every configured job, and whether an
// update was applied yet. The map is shared: do not modify it.
func (s *Stage) Snapshots() (jobs map[string]*Snapshot, applied bool) {
	p := s.cur.Load()
	return p.jobs, p.applied
}

// Job returns the snapshot of job, nil when the job is not configured.
func (s *Stage) Job(job string) *Snapshot { return s.cur.Load().jobs[job] }

// Ready reports whether the stage applied an update: it serves every job
// from then on, each by its own state (Snapshot.Serving).
func (s *Stage) Ready() bool { return s.cur.Load().applied }

// Run applies every update from updates until ctx ends or updates is closed,
// and returns nil then. A failed write is logged and retried with backoff
// (1 s doubling to 30 s) until it succeeds or a newer update writes the
// job. Meanwhile it keeps the files true: it watches the output directory
// and checks every file each VerifyInterval, and puts back a file, or the
// directory, that someone removed or changed.
func (s *Stage) Run(ctx context.Context, updates <-chan manager.Update) error {
	var (
		retry  <-chan time.Time
		bo     = &backoff.ExponentialBackOff{InitialInterval: minRetry, Multiplier: 2, MaxInterval: maxRetry}
		events <-chan string
		wake   <-chan time.Time // a debounced check after directory events
	)
	if s.files != nil {
		w, err := s.files.watch(ctx, s.logger)
		if err != nil {
			s.logger.Warn("cannot watch the output directory; checking its files every interval only", "err", err, "interval", s.verify)
		} else {
			events = w
		}
	}
	ticker := time.NewTicker(s.verify)
	defer ticker.Stop()
	done := func(err error) {
		if err != nil {
			delay := bo.NextBackOff()
			s.logger.Error("writing targets files", "err", err, "retry_in", delay)
			retry = time.After(delay)
			return
		}
		retry = nil
		bo.Reset()
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case u, ok := <-updates:
			if !ok {
				return nil
			}
			done(s.Apply(u))
		case <-retry:
			done(s.Check())
		case _, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if wake == nil {
				wake = time.After(checkDebounce)
			}
		case <-wake:
			wake = nil
			done(s.Check())
		case <-ticker.C:
			done(s.Check())
		}
	}
}

// checkDebounce gathers a burst of directory events into one check.
const checkDebounce = 50 * time.Millisecond

// Apply applies one update: it renders every job whose state changed,
// publishes the snapshots, writes the file of every job whose content
// changed, leaves the output of incomplete jobs as it is, and deletes the
// files sdhub wrote for jobs no longer in u. It returns every write error,
// per job; the other jobs are written regardless.
func (s *Stage) Apply(u manager.Update) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.gate.Foreground()() // see package priority
	prev := s.cur.Load().jobs
	next := make(map[string]*Snapshot, len(u))
	now := s.now()
	waiting, joined, left := 0, false, false
	for job, jt := range u {
		joined = joined || prev[job] == nil
		next[job] = s.render(job, jt, prev[job], now)
		if next[job].Waiting {
			waiting++
		}
	}
	for job := range s.renders {
		if _, ok := u[job]; !ok {
			delete(s.renders, job)
			s.metrics.deleteJob(job)
			left = true
		}
	}
	if left && s.files != nil {
		s.files.tidy = false
	}
	if joined || left {
		s.order = slices.Sorted(maps.Keys(next))
	}
	s.cur.Store(&published{applied: true, jobs: next})
	s.metrics.waiting.Set(float64(waiting))
	err := s.sync(false)
	s.metrics.setReady(s.cur.Load().jobs)
	return err
}

// Check makes the files hold what the snapshots say: it writes what is not
// written yet (after a failure), and puts back what someone removed or
// changed. Run calls it on directory events and every VerifyInterval.
func (s *Stage) Check() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.gate.Foreground()()
	if !s.cur.Load().applied {
		return nil
	}
	err := s.sync(true)
	s.metrics.setReady(s.cur.Load().jobs)
	return err
}

// render returns job's snapshot for jt: old when nothing it shows changed.
func (s *Stage) render(job string, jt *manager.JobTargets, old *Snapshot, now time.Time) *Snapshot {
	r := s.renders[job]
	if r == nil {
		r = newJobRender(job, s.names)
		s.renders[job] = r
		s.metrics.initJob(job)
	}
	if old == nil {
		old = &Snapshot{Job: job, names: s.names, shards: &shardCache{}}
		if s.files != nil {
			old.File.Path = s.files.path(job)
		}
	}
	changed := false
	if jt.Complete && jt.Gen != r.gen {
		r.gen = jt.Gen
		dropped := r.dropped
		changed = r.apply(jt.Groups) || old.Gen == 0
		if !changed {
			s.metrics.unchanged.WithLabelValues(job).Inc()
		}
		if r.dropped != dropped {
			s.logger.Warn("left targets Prometheus would reject out of the job's output",
				"job", job, "dropped", r.dropped, "example_target", truncate(r.exampleAddr), "example_reason", r.exampleReason)
		}
	}
	if !changed && old.Waiting == !jt.Complete && old.FailedConfigs == jt.FailedConfigs {
		return old
	}
	snap := *old
	snap.Waiting, snap.FailedConfigs = !jt.Complete, jt.FailedConfigs
	if changed {
		s.lastGen++
		snap.Gen, snap.entries, snap.Dropped, snap.Changed = s.lastGen, r.order, r.dropped, now
		snap.shards = &shardCache{}
		snap.count()
		s.metrics.targets.WithLabelValues(job).Set(float64(snap.Targets))
		s.metrics.dropped.WithLabelValues(job).Set(float64(snap.Dropped))
	}
	return &snap
}

// sync writes the file of every job whose snapshot it does not hold yet,
// removes the files of jobs gone, and publishes what it did. With verify
// it also checks the files it wrote, and puts back what changed. Called
// with s.mu held.
func (s *Stage) sync(verify bool) error {
	if s.files == nil {
		return nil
	}
	p := s.cur.Load()
	var (
		errs    []error
		updated map[string]*Snapshot
	)
	if s.files.ensureDir() {
		verify = true
	}
	for _, job := range s.order {
		snap := p.jobs[job]
		if !snap.Serving() {
			continue // no complete state yet: the file stays as it is
		}
		fs, repaired, err := s.files.sync(job, snap, verify)
		if repaired {
			s.metrics.repairs.WithLabelValues(job).Inc()
		}
		switch {
		case err != nil:
			fs.Err, fs.ErrTime = err, s.now()
			s.metrics.failures.WithLabelValues(job).Inc()
			errs = append(errs, fmt.Errorf("job %q: %w", job, err))
		case fs.Written != snap.File.Written:
			s.metrics.writes.WithLabelValues(job).Inc()
			s.metrics.lastWrite.WithLabelValues(job).Set(float64(fs.Written.UnixNano()) / 1e9)
		case fs.Gen != snap.File.Gen:
			// Found on disk as it should be (after a restart): not written.
			s.metrics.unchanged.WithLabelValues(job).Inc()
		}
		if fs != snap.File {
			if updated == nil {
				updated = make(map[string]*Snapshot, len(p.jobs))
			}
			c := *snap
			c.File = fs
			updated[job] = &c
		}
	}
	if err := s.files.removeObsolete(p.jobs, s.metrics.removed); err != nil {
		errs = append(errs, err)
	}
	if updated != nil {
		next := make(map[string]*Snapshot, len(p.jobs))
		for job, snap := range p.jobs {
			next[job] = snap
			if c, ok := updated[job]; ok {
				next[job] = c
			}
		}
		s.cur.Store(&published{applied: p.applied, jobs: next})
	}
	return errors.Join(errs...)
}
