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
	"os"
	"path/filepath"
	"slices"
	"strconv"
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
	// WholeFileInterval is how often at most the file of a job of several
	// parts that holds the whole job (`<dir>/<job>.json`, which consumers
	// configured before the job had parts read) is written; 0 leaves it
	// out and removes it.
	WholeFileInterval time.Duration
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

	mu      sync.Mutex // serialises Apply and the file checks; guards the fields below
	renders map[string]*jobState
	order   []string             // the published jobs, sorted: kept until a job comes or goes
	parts   map[string]int       // jobs of more than one part (SetLayout)
	filters map[string]jobFilter // jobs filtered at the hub (SetFilters)
	last    manager.Update       // the update applied last
	whole   time.Duration        // Options.WholeFileInterval
	wholeAt time.Time            // when a whole file that waits for its interval is due; zero if none
	// wholeWritten is when the whole file of each job of parts was last
	// written, by the stage's clock.
	wholeWritten map[string]time.Time
	lastGen      uint64 // the last snapshot Gen given

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
		renders: map[string]*jobState{},
		whole:   o.WholeFileInterval,

		wholeWritten: map[string]time.Time{},
		names:        newLabelNames(),
		gate:         o.Priority,
	}
	if s.verify <= 0 {
		s.verify = DefaultVerifyInterval
	}
	if o.Now != nil {
		s.now = o.Now
	}
	if dir != "" {
		f, err := openFiles(dir, logger)
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
		whole  *time.Timer      // a whole file of a job of parts is due
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
	defer func() {
		if whole != nil {
			whole.Stop()
		}
	}()
	var wholeC <-chan time.Time
	done := func(err error) {
		if at := s.wholeDue(); !at.IsZero() && wholeC == nil {
			whole = time.NewTimer(max(at.Sub(s.now()), 0))
			wholeC = whole.C
		}
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
		case <-wholeC:
			wholeC = nil
			done(s.Check())
		}
	}
}

// wholeDue is when the whole file of a job of parts that waits for
// Options.WholeFileInterval is due; zero if none waits.
func (s *Stage) wholeDue() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.wholeAt
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
	s.last = u
	prev := s.cur.Load().jobs
	next := make(map[string]*Snapshot, len(u))
	now := s.now()
	waiting, joined, left, relaid := 0, false, false, false
	for job, jt := range u {
		joined = joined || prev[job] == nil
		if st := s.renders[job]; st != nil && (len(st.parts) != max(s.parts[job], 1) || st.refilter(s.filters[job])) {
			relaid = true
		}
		next[job] = s.render(job, jt, prev[job], now)
		if next[job].Waiting {
			waiting++
		}
		if next[job].Serving() && (prev[job] == nil || !prev[job].Serving()) {
			relaid = true // its first complete state: files it kept while waiting may be obsolete
		}
	}
	for job := range s.renders {
		if _, ok := u[job]; !ok {
			delete(s.renders, job)
			delete(s.wholeWritten, job)
			s.metrics.deleteJob(job)
			left = true
		}
	}
	if (left || relaid) && s.files != nil {
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

// nextGen numbers a new content.
func (s *Stage) nextGen() uint64 {
	s.lastGen++
	return s.lastGen
}

// SetLayout sets the number of parts of each job's output (Layout.Plan;
// jobs not in parts have one). A job whose number changes is rendered again
// at once, its new files written before its old ones are removed.
//
// The parts' directories are made at once: a consumer's file_sd watches
// the directory of each file it reads, and cannot watch one that does not
// exist (it tries again at its refresh_interval).
func (s *Stage) SetLayout(parts map[string]int) error {
	s.mu.Lock()
	if s.files != nil && !maps.Equal(s.parts, parts) {
		s.files.tidy = false // the directories of parts gone
	}
	s.parts = maps.Clone(parts)
	last := s.last
	var errs []error
	if s.files != nil {
		for job, n := range parts {
			for i := range n {
				if err := os.MkdirAll(filepath.Dir(s.files.partPath(job, i)), 0o755); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	s.mu.Unlock()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if last == nil {
		return nil
	}
	return s.Apply(last)
}

// SetFilters sets the jobs whose output is filtered at the hub, and how
// (filter.go): the others have none. A job whose filter changes is
// rendered again at once.
func (s *Stage) SetFilters(filters map[string]FilterSpec) error {
	s.mu.Lock()
	s.filters = make(map[string]jobFilter, len(filters))
	for job, spec := range filters {
		s.filters[job] = jobFilter{spec: spec, digest: FilterDigest(job, spec.Settings, spec.Rules)}
	}
	last := s.last
	s.mu.Unlock()
	if last == nil {
		return nil
	}
	return s.Apply(last)
}

// jobFilter is a job's FilterSpec and its digest.
type jobFilter struct {
	spec   FilterSpec
	digest string
}

// refilter reports whether st was rendered with another filter than f.
func (st *jobState) refilter(f jobFilter) bool {
	if st.filter == nil {
		return f.digest != ""
	}
	return st.filter.digest != f.digest || st.filter.spec.Files != f.spec.Files
}

// render returns job's snapshot for jt: old when nothing it shows changed.
func (s *Stage) render(job string, jt *manager.JobTargets, old *Snapshot, now time.Time) *Snapshot {
	k := max(s.parts[job], 1)
	st := s.renders[job]
	if st == nil {
		s.metrics.initJob(job)
	}
	f, filtered := s.filters[job]
	// The job's number of parts or its filter changed.
	relaid := st != nil && (len(st.parts) != k || st.refilter(f))
	if st == nil || relaid {
		var jf *jobFilter
		if filtered {
			jf = &f
		}
		st = newJobState(job, k, s.names, jf)
		s.renders[job] = st
	}
	if old == nil {
		old = &Snapshot{Job: job, names: s.names, shards: &shardCache{}}
		if s.files != nil {
			old.File.Path = s.files.path(job)
		}
	}
	changed := false
	if jt.Complete && jt.Gen != st.gen {
		st.gen = jt.Gen
		before, _, _ := st.dropped()
		changed = st.apply(jt.Groups) || old.Gen == 0 || relaid
		if !changed {
			s.metrics.unchanged.WithLabelValues(job).Inc()
		}
		if dropped, addr, reason := st.dropped(); dropped != before {
			s.logger.Warn("left targets Prometheus would reject out of the job's output",
				"job", job, "dropped", dropped, "example_target", truncate(addr), "example_reason", reason)
		}
	}
	if !changed && old.Waiting == !jt.Complete && old.FailedConfigs == jt.FailedConfigs {
		return old
	}
	snap := *old
	snap.Waiting, snap.FailedConfigs = !jt.Complete, jt.FailedConfigs
	if changed {
		snap.Dropped, _, _ = st.dropped()
		filesKept := st.filter != nil && st.filter.spec.Files // the files hold the kept view
		s.fill(&snap, old, st, filesKept, relaid, now, true)
		snap.Filter, snap.alt, snap.filtered, snap.spec = nil, nil, false, nil
		if st.filter != nil {
			alt := &Snapshot{Job: job, names: s.names, filtered: !filesKept}
			if !filesKept {
				alt.spec = &st.filter.spec // the kept view
			}
			var oldAlt *Snapshot
			if old.alt != nil && old.alt.filtered == alt.filtered {
				oldAlt = old.alt
			}
			if !s.fill(alt, oldAlt, st, !filesKept, relaid, now, false) {
				alt = oldAlt
			}
			snap.filtered, snap.alt = filesKept, alt
			if filesKept {
				snap.spec = &st.filter.spec
			}
			whole, kept := snap.Whole(), snap.Kept()
			snap.Filter = &FilterState{Digest: st.filter.digest, Files: filesKept, Kept: kept.Targets, DroppedAtHub: whole.Targets - kept.Targets}
		}
		s.metrics.targets.WithLabelValues(job).Set(float64(snap.Whole().Targets))
		s.metrics.dropped.WithLabelValues(job).Set(float64(snap.Dropped))
		s.metrics.hubDropped.WithLabelValues(job).Set(float64(snap.Filter.dropped()))
		s.metrics.kept.WithLabelValues(job).Set(float64(snap.Kept().Targets))
	}
	return &snap
}

// fill sets snap's content to st's output, or its kept targets when kept:
// its entries or parts, Gen and counts. Parts whose content did not change
// since old are old's. With files, the parts get their files' paths. It
// reports whether the content changed (always when old is nil or relaid).
func (s *Stage) fill(snap, old *Snapshot, st *jobState, kept, relaid bool, now time.Time, files bool) bool {
	k := len(st.parts)
	changedPart := func(i int) bool {
		if kept {
			return st.parts[i].keptChanged
		}
		return st.changed[i]
	}
	order := func(r *jobRender) []*entry {
		if kept {
			return r.kept.order
		}
		return r.all.order
	}
	fresh := old == nil || relaid || old.Gen == 0
	if !fresh {
		any := false
		for i := range k {
			any = any || changedPart(i)
		}
		if !any {
			return false
		}
	}
	snap.Gen, snap.Changed = s.nextGen(), now
	snap.shards = &shardCache{}
	snap.entries, snap.Parts, snap.merged = nil, nil, nil
	if k == 1 {
		snap.entries = order(st.parts[0])
	} else {
		snap.Parts = make([]*Snapshot, k)
		for i, r := range st.parts {
			if !fresh && !changedPart(i) && len(old.Parts) == k {
				snap.Parts[i] = old.Parts[i]
				continue
			}
			p := &Snapshot{Job: snap.Job, Part: i, Gen: s.nextGen(), Changed: now, entries: order(r), names: s.names}
			if files && s.files != nil {
				p.File.Path = s.files.partPath(snap.Job, i)
			}
			p.count()
			snap.Parts[i] = p
		}
		snap.merged = &merged{parts: snap.Parts, names: s.names}
	}
	snap.count()
	return true
}

// sync writes the files of every job whose snapshot they do not hold yet
// (a job of several parts: the parts that changed, and its whole file at
// most every s.whole), removes the files of jobs gone, and publishes what
// it did. With verify it also checks the files it wrote, and puts back
// what changed. Called with s.mu held.
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
	now := s.now()
	s.wholeAt = time.Time{}
	for _, job := range s.order {
		snap := p.jobs[job]
		if !snap.Serving() {
			continue // no complete state yet: the files stay as they are
		}
		c, partsCopied := *snap, false
		for i, part := range snap.Parts {
			if fs := s.syncFile(part, verify, &errs); fs != part.File {
				if !partsCopied {
					c.Parts, partsCopied = slices.Clone(snap.Parts), true
				}
				cp := *part
				cp.File = fs
				c.Parts[i] = &cp
			}
		}
		whole := snap.Parts == nil || s.whole > 0
		last, ok := s.wholeWritten[job]
		if whole && snap.Parts != nil && snap.File.Gen != snap.Gen && ok {
			if due := last.Add(s.whole); now.Before(due) {
				whole = false // written again when due
				if s.wholeAt.IsZero() || due.Before(s.wholeAt) {
					s.wholeAt = due
				}
			}
		}
		if whole {
			c.File = s.syncFile(snap, verify, &errs)
			if c.File.Written != snap.File.Written {
				s.wholeWritten[job] = now
			}
		}
		if c.File != snap.File || partsCopied {
			if updated == nil {
				updated = make(map[string]*Snapshot, len(p.jobs))
			}
			updated[job] = &c
		}
	}
	if !s.files.tidy {
		if err := s.files.removeObsolete(s.wanted(p.jobs), s.laidOut(), s.metrics.removed); err != nil {
			errs = append(errs, err)
		}
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

// syncFile makes snap's file (a job's, or a part's) hold it, counts what it
// did and returns the file's state; an error is added to errs.
func (s *Stage) syncFile(snap *Snapshot, verify bool, errs *[]error) FileState {
	job := snap.Job
	fs, repaired, err := s.files.sync(snap, verify)
	if repaired {
		s.metrics.repairs.WithLabelValues(job).Inc()
	}
	switch {
	case err != nil:
		fs.Err, fs.ErrTime = err, s.now()
		s.metrics.failures.WithLabelValues(job).Inc()
		*errs = append(*errs, fmt.Errorf("job %q: %w", job, err))
	case fs.Written != snap.File.Written:
		s.metrics.writes.WithLabelValues(job).Inc()
		s.metrics.lastWrite.WithLabelValues(job).Set(float64(fs.Written.UnixNano()) / 1e9)
	case fs.Gen != snap.File.Gen:
		// Found on disk as it should be (after a restart): not written.
		s.metrics.unchanged.WithLabelValues(job).Inc()
	}
	return fs
}

// wanted reports whether a file (its name relative to the output
// directory) is one the jobs' snapshots have. A job with no complete state
// since sdhub started keeps every file it may have had, its parts
// included: its files stay as they are until it has one (a restart before
// the job's sources answer must not take a consumer's targets away).
// laidOut reports whether the layout has the part whose file is name
// (relative to the output directory): SetLayout made its directory, for a
// job that may not be in the update yet.
func (s *Stage) laidOut() func(name string) bool {
	dirs := make(map[string]int, len(s.parts))
	for job, n := range s.parts {
		dirs[partsDirName(job)] = n
	}
	return func(name string) bool {
		c := strings.Split(name, string(filepath.Separator))
		if len(c) != 3 {
			return false
		}
		i, err := strconv.Atoi(c[1])
		return err == nil && i < dirs[c[0]]
	}
}

func (s *Stage) wanted(jobs map[string]*Snapshot) func(name string) bool {
	names := make(map[string]struct{}, len(jobs))
	var waiting []string // the parts' directories of jobs not serving yet
	for job, snap := range jobs {
		if !snap.Serving() {
			names[s.files.name(snap.File.Path)] = struct{}{}
			waiting = append(waiting, partsDirName(job)+string(filepath.Separator))
			continue
		}
		if snap.Parts == nil || s.whole > 0 {
			names[s.files.name(snap.File.Path)] = struct{}{}
		}
		for _, p := range snap.Parts {
			names[s.files.name(p.File.Path)] = struct{}{}
		}
	}
	return func(name string) bool {
		if _, ok := names[name]; ok {
			return true
		}
		for _, d := range waiting {
			if strings.HasPrefix(name, d) {
				return true
			}
		}
		return false
	}
}
