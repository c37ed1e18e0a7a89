package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sdhub/sdhub/config"
	"github.com/sdhub/sdhub/discovery"
	"github.com/sdhub/sdhub/manager"
	"github.com/sdhub/sdhub/output"
	"github.com/sdhub/sdhub/web"
)

// reloadDebounce is how long the config watcher waits for a burst of file
// events (an editor's write, rename and chmod) to settle.
const reloadDebounce = 200 * time.Millisecond

// reloader reloads the configuration, one reload at a time, whatever asked
// for it: SIGHUP, /-/reload or a change of the config file.
type reloader struct {
	file   string
	mgr    *manager.Manager
	logger *slog.Logger

	mu       sync.Mutex // serialises reloads
	checksum [sha256.Size]byte
	current  atomic.Pointer[config.Config] // the running config
	last     atomic.Pointer[web.ReloadStatus]

	success     prometheus.Gauge
	successTime prometheus.Gauge

	// outputDir, if set, is checked for every config (config.CheckOutputDir).
	outputDir string
	// outputs, if set, is given every config's layout.
	outputs *output.Stage
	layout  output.Layout
	filter  filterFlags
	plans   atomic.Pointer[map[string]output.FilterPlan] // each job's filtering at the hub (setFilters)
}

// setFilters gives the output stage cfg's filters at the hub, and keeps
// every job's plan for the pages.
func (rl *reloader) setFilters(cfg *config.Config) error {
	plans, specs := rl.filter.plan(cfg)
	rl.plans.Store(&plans)
	return rl.outputs.SetFilters(specs)
}

// filterPlan is job's filtering at the hub, or why it has none.
func (rl *reloader) filterPlan(job string) output.FilterPlan {
	if p := rl.plans.Load(); p != nil {
		return (*p)[job]
	}
	return output.FilterPlan{}
}

func newReloader(file string, cfg *config.Config, mgr *manager.Manager, reg prometheus.Registerer, logger *slog.Logger) (*reloader, error) {
	rl := &reloader{
		file:   file,
		mgr:    mgr,
		logger: logger,
		success: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sdhub_config_last_reload_successful",
			Help: "Whether the last configuration reload attempt was successful.",
		}),
		successTime: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sdhub_config_last_reload_success_timestamp_seconds",
			Help: "Timestamp of the last successful configuration reload.",
		}),
	}
	if err := discovery.RegisterAll(reg, rl.success, rl.successTime); err != nil {
		return nil, err
	}
	rl.current.Store(cfg)
	now := time.Now()
	rl.last.Store(&web.ReloadStatus{Time: now, Loaded: now})
	rl.success.Set(1)
	rl.successTime.SetToCurrentTime()
	if data, err := os.ReadFile(file); err == nil {
		rl.checksum = sha256.Sum256(data)
	}
	return rl, nil
}

// reload loads the config file and applies it. On error the running config
// and the outputs stay as they are.
func (rl *reloader) reload() error {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	data, err := os.ReadFile(rl.file)
	if err == nil {
		err = rl.apply(data)
	}
	now := time.Now()
	if err != nil {
		rl.last.Store(&web.ReloadStatus{Time: now, Err: err, Loaded: rl.last.Load().Loaded})
		rl.success.Set(0)
		rl.logger.Error("Error reloading config, keeping the running config", "file", rl.file, "err", err)
		return err
	}
	rl.last.Store(&web.ReloadStatus{Time: now, Loaded: now})
	rl.success.Set(1)
	rl.successTime.SetToCurrentTime()
	rl.checksum = sha256.Sum256(data)
	return nil
}

func (rl *reloader) apply(data []byte) error {
	cfg, err := config.Load(data, rl.file)
	if err != nil {
		return err
	}
	if rl.outputDir != "" {
		if err := cfg.CheckOutputDir(rl.outputDir); err != nil {
			return err
		}
	}
	for _, w := range cfg.Warnings {
		rl.logger.Warn("Configuration warning", "file", rl.file, "warning", w)
	}
	if rl.outputs != nil {
		// Before the manager's update, which the stage then writes in the
		// new layout; a job whose parts change is written again now.
		if err := rl.outputs.SetLayout(rl.layout.Plan(cfg.Splittable())); err != nil {
			rl.logger.Error("Writing the outputs in the config's layout", "err", err)
		}
		if err := rl.setFilters(cfg); err != nil {
			rl.logger.Error("Writing the outputs with the config's filters", "err", err)
		}
	}
	if err := rl.mgr.ApplyConfig(cfg.Jobs()); err != nil {
		return fmt.Errorf("applying the config: %w", err)
	}
	rl.current.Store(cfg)
	rl.logger.Info("Completed loading of configuration file", "file", rl.file, "jobs", len(cfg.ScrapeConfigs))
	return nil
}

// status returns the outcome of the last load of the config file.
func (rl *reloader) status() web.ReloadStatus { return *rl.last.Load() }

// config returns the running config.
func (rl *reloader) config() *config.Config { return rl.current.Load() }

// changed reports whether the config file's content differs from the last
// one loaded.
func (rl *reloader) changed() bool {
	data, err := os.ReadFile(rl.file)
	if err != nil {
		return false // gone or unreadable for now: wait for the next event
	}
	sum := sha256.Sum256(data)
	rl.mu.Lock()
	defer rl.mu.Unlock()
	return !bytes.Equal(sum[:], rl.checksum[:])
}

// watch reloads when the config file's content changes. It watches the
// file's directory, so that editors that replace the file by renaming, and
// ConfigMap updates that swap a symlink, are seen too, and debounces bursts
// of events.
func (rl *reloader) watch(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watching the config file: %w", err)
	}
	defer w.Close()
	abs, err := filepath.Abs(rl.file)
	if err != nil {
		return err
	}
	if err := w.Add(filepath.Dir(abs)); err != nil {
		return fmt.Errorf("watching the config file: %w", err)
	}
	timer := time.NewTimer(0)
	if !timer.Stop() {
		<-timer.C
	}
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			// Any event in the directory, not only the file's: a mounted
			// Kubernetes ConfigMap changes by renaming its ..data symlink.
			// changed() compares the content.
			if !ev.Has(fsnotify.Chmod) {
				timer.Reset(reloadDebounce)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			rl.logger.Warn("Config file watcher error", "err", err)
		case <-timer.C:
			if rl.changed() {
				rl.logger.Info("Config file changed, reloading", "file", rl.file)
				_ = rl.reload() // logged by reload
			}
		}
	}
}
