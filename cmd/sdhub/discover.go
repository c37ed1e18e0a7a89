package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/promslog"

	"github.com/sdhub/sdhub/config"
	"github.com/sdhub/sdhub/discovery"
	"github.com/sdhub/sdhub/manager"
	"github.com/sdhub/sdhub/output"
)

// discoverCommand is `sdhub discover`: one job's discovery, once, like
// `promtool check service-discovery`.
type discoverCommand struct {
	cmd     *kingpin.CmdClause
	job     string
	timeout time.Duration
}

func newDiscoverCommand(app *kingpin.Application) *discoverCommand {
	c := &discoverCommand{}
	c.cmd = app.Command("discover", "Run one job's service discovery once and print its targets in the file_sd format, as the job's output file would hold them.")
	c.cmd.Flag("job", "The job to discover.").Required().StringVar(&c.job)
	c.cmd.Flag("timeout", "How long to wait for every provider of the job to deliver its first full set.").Default("30s").DurationVar(&c.timeout)
	return c
}

// discoverFlush is the manager's coalescing interval for discover: short,
// as only the first complete state matters.
const discoverFlush = 10 * time.Millisecond

// run loads the config, runs the job's providers until they have all
// delivered their first full set, prints the job's file_sd JSON on stdout
// and returns 0. It returns 2 when the config is invalid or has no such
// job, 1 when an SD config fails to start or the timeout passes first.
func (c *discoverCommand) run(f flags, stdout, stderr io.Writer) int {
	fail := func(code int, format string, args ...any) int {
		fmt.Fprintf(stderr, "sdhub discover: "+format+"\n", args...)
		return code
	}
	cfg, err := config.LoadFile(f.configFile)
	if err != nil {
		return fail(exitBadConfig, "%v", err)
	}
	var configs discovery.Configs
	jobs := make([]string, 0, len(cfg.ScrapeConfigs))
	for _, sc := range cfg.ScrapeConfigs {
		jobs = append(jobs, sc.JobName)
		if sc.JobName == c.job {
			configs = sc.ServiceDiscoveryConfigs
		}
	}
	if configs == nil {
		return fail(exitBadConfig, "no job %q with service discovery sdhub runs in %s (jobs: %s)", c.job, f.configFile, strings.Join(jobs, ", "))
	}

	f.log.Writer = stderr
	data, err := discoverOnce(c.job, configs, c.timeout, promslog.New(&f.log))
	if err != nil {
		return fail(exitError, "%v", err)
	}
	if _, err := stdout.Write(data); err != nil {
		return fail(exitError, "%v", err)
	}
	return exitOK
}

// discoverOnce runs the providers of job's configs in a manager of its own
// until they have all delivered their first full set, and returns the job's
// file_sd JSON, as the output stage renders it. It fails when a config
// cannot start, or when timeout passes first; the message then names the
// providers still waiting and the last errors they reported.
func discoverOnce(job string, configs discovery.Configs, timeout time.Duration, logger *slog.Logger) ([]byte, error) {
	reg := prometheus.NewRegistry()
	refresh, err := discovery.NewRefreshMetrics(reg)
	if err != nil {
		return nil, err
	}
	mechMetrics := map[string]discovery.Metrics{}
	for _, m := range config.Mechanisms {
		if m.NewMetrics == nil {
			continue
		}
		if mechMetrics[m.Name], err = m.NewMetrics(reg, refresh); err != nil {
			return nil, err
		}
	}
	mgr, err := manager.New(manager.Options{
		Logger:         logger,
		Registerer:     reg,
		FlushInterval:  discoverFlush,
		Metrics:        mechMetrics,
		RefreshMetrics: refresh,
	})
	if err != nil {
		return nil, err
	}
	outputs, err := output.New("", output.Options{Logger: logger})
	if err != nil {
		return nil, err
	}
	lastErrors := func() string {
		var s []string
		for _, p := range mgr.Providers() {
			if p.LastError != "" {
				s = append(s, p.Name+": "+p.LastError)
			}
		}
		return strings.Join(s, "; ")
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = mgr.Run(runCtx)
	}()
	defer func() {
		stop()
		<-done
	}()
	if err := mgr.ApplyConfig(map[string]discovery.Configs{job: configs}); err != nil {
		return nil, err
	}

	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case u := <-mgr.SyncCh():
			jt := u[job]
			if jt.FailedConfigs > 0 {
				return nil, fmt.Errorf("job %q: %d of its %d SD configs failed to start: %s", job, jt.FailedConfigs, len(configs),
					strings.Join(mgr.Jobs()[job].ConfigErrors, "; "))
			}
			if !jt.Complete {
				continue
			}
			if err := outputs.Apply(u); err != nil {
				return nil, fmt.Errorf("job %q: %w", job, err)
			}
			return outputs.Job(job).Bytes(), nil // as the job's file holds it
		case <-timer.C:
			var waiting []string
			for _, p := range mgr.Providers() {
				if !p.Delivered {
					waiting = append(waiting, p.Name)
				}
			}
			msg := fmt.Sprintf("job %q: timed out after %s waiting for the first full set of %s", job, timeout, strings.Join(waiting, ", "))
			if e := lastErrors(); e != "" {
				msg += "; last errors: " + e
			}
			return nil, errors.New(msg)
		}
	}
}
