// Package file implements `file_sd_configs`: target groups read from JSON
// and YAML files, with Prometheus's keys, defaults, `__meta_filepath` label,
// Source names and metrics. Files are watched with fsnotify (their parent
// directories) and re-read every refresh_interval as a safety net.
package file

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/sdhub/sdhub/discovery"
	"github.com/sdhub/sdhub/internal/debounce"
)

// patFileSDName is the file name pattern Prometheus accepts: at most one
// `*`, in the last path segment, and a .json, .yml or .yaml extension.
var patFileSDName = regexp.MustCompile(`^[^*]*(\*[^/]*)?\.(json|yml|yaml|JSON|YML|YAML)$`)

// filepathLabel is set on every group to the file it was read from.
const filepathLabel = model.MetaLabelPrefix + "filepath"

// Bursts of fsnotify events (a writer's create, write and rename) cause one
// refresh: it runs once no event came for debounceQuiet, and at the latest
// debounceMax after the first event of the burst.
const (
	debounceQuiet = 50 * time.Millisecond
	debounceMax   = 500 * time.Millisecond
)

// DefaultSDConfig is Prometheus's default file SD configuration.
var DefaultSDConfig = SDConfig{
	RefreshInterval: model.Duration(5 * time.Minute),
}

// Mechanism describes file SD to the config loader and the manager.
var Mechanism = discovery.Mechanism{
	Name:      "file",
	NewConfig: func() discovery.Config { return &SDConfig{} },
	NewMetrics: func(reg prometheus.Registerer, _ *discovery.RefreshMetrics) (discovery.Metrics, error) {
		m, err := NewMetrics(reg)
		if err != nil {
			return nil, err
		}
		return m, nil
	},
}

// SDConfig is one element of `file_sd_configs`.
type SDConfig struct {
	Files           []string       `yaml:"files"`
	RefreshInterval model.Duration `yaml:"refresh_interval,omitempty"`
}

// Interface guard.
var _ discovery.Config = (*SDConfig)(nil)

// UnmarshalYAML applies the defaults, decodes strictly and validates.
func (c *SDConfig) UnmarshalYAML(unmarshal func(any) error) error {
	*c = DefaultSDConfig
	type plain SDConfig
	return discovery.UnmarshalConfig(unmarshal, (*plain)(c), c.Validate)
}

// Validate checks the config as Prometheus does, with Prometheus's error
// text, and also rejects what Prometheus would accept but cannot run: a
// malformed glob and a zero refresh_interval.
func (c *SDConfig) Validate() error {
	if len(c.Files) == 0 {
		return discovery.Fieldf("files", "file service discovery config must contain at least one path name")
	}
	for _, name := range c.Files {
		if !patFileSDName.MatchString(name) {
			return discovery.Fieldf("files", "path name %q is not valid for file discovery", name)
		}
		if _, err := filepath.Match(name, ""); err != nil {
			return discovery.Fieldf("files", "path name %q is not valid for file discovery: %w", name, err)
		}
	}
	if c.RefreshInterval <= 0 {
		return discovery.Fieldf("refresh_interval", "invalid refresh_interval %q for file_sd_configs (must be greater than 0s)", c.RefreshInterval)
	}
	return nil
}

// Name returns "file".
func (*SDConfig) Name() string { return "file" }

// SetDirectory joins relative file patterns to dir, the config file's directory.
func (c *SDConfig) SetDirectory(dir string) {
	for i, name := range c.Files {
		if !filepath.IsAbs(name) {
			c.Files[i] = filepath.Join(dir, name)
		}
	}
}

// NewDiscoverer returns a file discovery for the config.
func (c *SDConfig) NewDiscoverer(opts discovery.Options) (discovery.Discoverer, error) {
	return NewDiscovery(c, opts)
}

// Discovery reads target groups from the files matching the patterns.
type Discovery struct {
	paths    []string
	dirs     []string // the parent directory of each pattern, once each
	interval time.Duration
	logger   *slog.Logger
	health   discovery.Health
	metrics  *Metrics

	// Used by one goroutine only: Run, or a test calling refresh.
	files       map[string]*fileState // last good read of each file listed at the last refresh; a broken file keeps its own
	reader      *reader
	watchFailed map[string]bool // directories whose last watch attempt failed

	mu     sync.Mutex
	mtimes map[string]float64 // mtime of each file at its last good read, for the mtime metric
}

// NewDiscovery returns a file discovery for conf. Options.Metrics must be
// the *Metrics made by Mechanism.NewMetrics, or nil for unregistered metrics.
func NewDiscovery(conf *SDConfig, opts discovery.Options) (*Discovery, error) {
	if err := conf.Validate(); err != nil {
		return nil, err
	}
	var m *Metrics
	switch om := opts.Metrics.(type) {
	case nil:
		m, _ = NewMetrics(nil)
	case *Metrics:
		m = om
	default:
		return nil, fmt.Errorf("invalid metrics type %T for file_sd_configs (want *file.Metrics)", opts.Metrics)
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	d := &Discovery{
		paths:       slices.Clone(conf.Files),
		interval:    time.Duration(conf.RefreshInterval),
		logger:      logger,
		health:      discovery.HealthOf(opts),
		metrics:     m,
		files:       map[string]*fileState{},
		reader:      newReader(),
		watchFailed: map[string]bool{},
		mtimes:      map[string]float64{},
	}
	for _, p := range d.paths {
		if dir := filepath.Dir(p); !slices.Contains(d.dirs, dir) {
			d.dirs = append(d.dirs, dir)
		}
	}
	return d, nil
}

// Run sends the full state first, then the groups that changed, after every
// burst of file events and every refresh_interval. A file that cannot be
// read or parsed keeps its last good groups; a file that disappears or
// shrinks is sent as empty groups for its vanished indexes.
func (d *Discovery) Run(ctx context.Context, up chan<- []*targetgroup.Group) {
	d.metrics.mtime.add(d)
	defer d.metrics.mtime.remove(d)

	var (
		watcher *fsnotify.Watcher
		events  <-chan fsnotify.Event
		werrs   <-chan error
	)
	if w, err := fsnotify.NewWatcher(); err != nil {
		d.metrics.watcherErrors.Inc()
		d.health.Failed(fmt.Errorf("create file watcher: %w", err))
		d.logger.Error("cannot create file watcher; re-reading files every refresh_interval only", "interval", d.interval, "err", err)
	} else {
		watcher, events, werrs = w, w.Events, w.Errors
		defer func() {
			if err := w.Close(); err != nil {
				d.logger.Debug("closing file watcher", "err", err)
			}
		}()
	}

	// Watch before the first read, so no change falls between the two.
	d.watch(watcher)
	sent := map[string]*targetgroup.Group{}
	if !d.update(ctx, up, sent, true) {
		return
	}

	ticker := time.NewTicker(d.interval)
	defer ticker.Stop()
	burst := debounce.New(debounceQuiet, debounceMax)
	defer burst.Stop()

	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			// fsnotify sends some events without a name; a chmod changes no content.
			if ev.Name == "" || ev.Op&^fsnotify.Chmod == 0 {
				continue
			}
			burst.Event()
		case err, ok := <-werrs:
			if !ok {
				werrs = nil
				continue
			}
			// Events may have been lost (e.g. a queue overflow): re-read.
			d.metrics.watcherErrors.Inc()
			d.health.Failed(fmt.Errorf("file watch: %w", err))
			d.logger.Warn("file watch error; re-reading files", "err", err)
			burst.Event()
		case <-burst.C():
			burst.Fired()
			d.watch(watcher)
			if !d.update(ctx, up, sent, false) {
				return
			}
		case <-ticker.C:
			// A directory that did not exist at the last attempt may
			// exist now; watch it before reading it.
			d.watch(watcher)
			if !d.update(ctx, up, sent, false) {
				return
			}
		}
	}
}

// update refreshes and sends the result: everything when first, otherwise
// only the groups that changed since the last send. It returns false when
// ctx is done.
func (d *Discovery) update(ctx context.Context, up chan<- []*targetgroup.Group, sent map[string]*targetgroup.Group, first bool) bool {
	all, changed, err := d.scan(ctx, first)
	if ctx.Err() != nil {
		return false
	}
	if err != nil {
		d.logger.Error("cannot read target files; keeping their last good targets", "err", err)
	}
	var msg []*targetgroup.Group
	if first {
		changes(all, sent)
		msg = all
		if msg == nil {
			msg = []*targetgroup.Group{}
		}
	} else {
		msg = changes(changed, sent)
		if len(msg) == 0 {
			return true
		}
	}
	d.logger.Debug("file discovery update", "groups", len(msg))
	select {
	case up <- msg:
		return true
	case <-ctx.Done():
		return false
	}
}

// changes returns the groups the receiver does not have in this form yet
// and records them in sent. A group without targets stands for no group, as
// it does for the manager: it is sent only to remove a group sent before.
// It is given only the groups a refresh found new, so its cost is that of
// the change, not of the job.
func changes(groups []*targetgroup.Group, sent map[string]*targetgroup.Group) []*targetgroup.Group {
	var out []*targetgroup.Group
	for _, g := range groups {
		prev, ok := sent[g.Source]
		if len(g.Targets) == 0 {
			if ok {
				out = append(out, g)
				delete(sent, g.Source)
			}
			continue
		}
		if !ok || !groupEqual(prev, g) {
			out = append(out, g)
			sent[g.Source] = g
		}
	}
	return out
}

// watch adds a watch on every pattern's parent directory. Adding one that is
// already watched is cheap, and re-adding restores a watch lost when the
// directory was removed and created again.
func (d *Discovery) watch(w *fsnotify.Watcher) {
	if w == nil {
		return
	}
	for _, dir := range d.dirs {
		err := w.Add(dir)
		switch {
		case err != nil && !d.watchFailed[dir]:
			d.metrics.watcherErrors.Inc()
			d.health.Failed(fmt.Errorf("watch directory %q: %w", dir, err))
			d.logger.Warn("cannot watch directory; its files are re-read every refresh_interval only", "dir", dir, "interval", d.interval, "err", err)
		case err == nil && d.watchFailed[dir]:
			d.logger.Info("watching directory again", "dir", dir)
		}
		d.watchFailed[dir] = err != nil
	}
}

// refresh reads every file matching the patterns once. It returns the
// groups of every file it could read, plus an empty group for each index of
// a file that vanished or shrank since the last refresh. A file it cannot
// read or parse contributes nothing (the receiver keeps its last good
// groups) and an error; the returned groups are valid even then. Only when
// ctx ends does it return no groups.
func (d *Discovery) refresh(ctx context.Context) ([]*targetgroup.Group, error) {
	all, _, err := d.scan(ctx, true)
	return all, err
}

// scan is refresh, and also returns changed: the groups that are not the
// ones the last refresh returned (new pointers: decoded again, moved, or
// emptied). A file whose content is unchanged since its last good read is
// not decoded and contributes nothing to changed. all is only gathered when
// wantAll. It reports the outcome to the discoverer's Health.
func (d *Discovery) scan(ctx context.Context, wantAll bool) (all, changed []*targetgroup.Group, err error) {
	start := time.Now()
	defer func() { d.metrics.scanDuration.Observe(time.Since(start).Seconds()) }()

	files, errs := d.listFiles()
	listed := make(map[string]bool, len(files))
	for _, name := range files {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		listed[name] = true
		prev := d.files[name]
		st, err := d.reader.read(name, prev)
		if err != nil {
			d.metrics.readErrors.Inc()
			errs = append(errs, err)
			continue // not vanished: its last good groups stay
		}
		d.mu.Lock()
		d.mtimes[name] = st.mtime
		d.mu.Unlock()
		if wantAll {
			all = append(all, st.groups...)
		}
		if st == prev {
			continue
		}
		for i, g := range st.groups {
			if prev == nil || i >= len(prev.groups) || prev.groups[i] != g {
				changed = append(changed, g)
			}
		}
		if prev != nil {
			gone := emptied(name, prev, len(st.groups))
			all, changed = append(all, gone...), append(changed, gone...)
		}
		d.files[name] = st
	}
	for _, name := range slices.Sorted(maps.Keys(d.files)) {
		if listed[name] {
			continue
		}
		gone := emptied(name, d.files[name], 0)
		all, changed = append(all, gone...), append(changed, gone...)
		delete(d.files, name)
		d.mu.Lock()
		delete(d.mtimes, name)
		d.mu.Unlock()
	}
	if !wantAll {
		all = nil
	}
	d.reader.in.maybeRebuild(d.held)
	err = errors.Join(errs...)
	if err != nil {
		d.health.Failed(err)
	} else {
		d.health.Synced()
	}
	return all, changed, err
}

// emptied returns an empty group for each index of st from n on: the
// groups of a file that vanished or shrank.
func emptied(name string, st *fileState, n int) []*targetgroup.Group {
	var out []*targetgroup.Group
	for i := n; i < len(st.groups); i++ {
		out = append(out, &targetgroup.Group{Source: st.source(name, i)})
	}
	return out
}

// held yields every group the discoverer holds.
func (d *Discovery) held(yield func(*targetgroup.Group) bool) {
	for _, st := range d.files {
		for _, g := range st.groups {
			if !yield(g) {
				return
			}
		}
	}
}

// listFiles expands the patterns; a file matched by two patterns is listed once.
func (d *Discovery) listFiles() ([]string, []error) {
	var (
		files []string
		errs  []error
	)
	seen := map[string]bool{}
	for _, p := range d.paths {
		matches, err := filepath.Glob(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("expand %q: %w", p, err))
			continue
		}
		for _, m := range matches {
			if !seen[m] {
				seen[m] = true
				files = append(files, m)
			}
		}
	}
	return files, errs
}

// source names the i-th group of a file, as Prometheus does.
func source(name string, i int) string {
	return name + ":" + strconv.Itoa(i)
}

// copyMtimes copies the file mtimes into dst, for the mtime collector.
func (d *Discovery) copyMtimes(dst map[string]float64) {
	d.mu.Lock()
	maps.Copy(dst, d.mtimes)
	d.mu.Unlock()
}
