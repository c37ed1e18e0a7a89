package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/promslog"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"

	"github.com/sdhub/sdhub/config"
	"github.com/sdhub/sdhub/discovery"
	"github.com/sdhub/sdhub/internal/priority"
	"github.com/sdhub/sdhub/manager"
	"github.com/sdhub/sdhub/output"
	"github.com/sdhub/sdhub/web"
)

// discoverCommand is `sdhub discover CONFIG JOB`: one job's discovery,
// once, as `promtool check service-discovery` runs it.
type discoverCommand struct {
	cmd                 *kingpin.CmdClause
	configArg, jobArg   string
	configFlag, jobFlag string // the older flag forms of the arguments
	timeout             time.Duration
	format              string
	log                 *promslog.Config
}

func newDiscoverCommand(app *kingpin.Application, log *promslog.Config) *discoverCommand {
	c := &discoverCommand{log: log}
	c.cmd = app.Command("discover", "Run one job's service discovery once, as `promtool check service-discovery` does for Prometheus, "+
		"and print each target's labels before and after the job's relabelling, as promtool prints them.")
	c.cmd.Arg("config-file", "The config file: a prometheus.yml.").StringVar(&c.configArg)
	c.cmd.Arg("job", "The job to discover.").StringVar(&c.jobArg)
	c.cmd.Flag("timeout", "How long to wait for every provider of the job to deliver its first full set.").Default("30s").DurationVar(&c.timeout)
	c.cmd.Flag("format", "promtool: each target's labels before and after relabelling, in promtool check service-discovery's JSON; "+
		"file_sd: the job's targets as its output file holds them.").Default(formatPromtool).EnumVar(&c.format, formatPromtool, formatFileSD)
	c.cmd.Flag("config.file", "The config-file argument as a flag.").Hidden().StringVar(&c.configFlag)
	c.cmd.Flag("job", "The job argument as a flag.").Hidden().StringVar(&c.jobFlag)
	addLogFlags(c.cmd, log)
	return c
}

// The output formats of discover.
const (
	formatPromtool = "promtool"
	formatFileSD   = "file_sd"
)

// discoverFlush is the manager's coalescing interval for discover: short,
// as only the first complete state matters.
const discoverFlush = 10 * time.Millisecond

// run loads the config, runs the job's providers until they have all
// delivered their first full set and prints the job's targets; it returns
// 0. It returns 2 when the config is invalid or sdhub serves no such job,
// 1 when an SD config fails to start or the timeout passes first.
func (c *discoverCommand) run(stdout, stderr io.Writer) int {
	fail := func(code int, format string, args ...any) int {
		fmt.Fprintf(stderr, "sdhub discover: "+format+"\n", args...)
		return code
	}
	file, err := argOrFlag("config-file", c.configArg, c.configFlag)
	if err != nil {
		return fail(exitBadConfig, "%v", err)
	}
	if file == "" {
		file = defaultCfgFile
	}
	job, err := argOrFlag("job", c.jobArg, c.jobFlag)
	if err != nil {
		return fail(exitBadConfig, "%v", err)
	}
	if job == "" {
		return fail(exitBadConfig, "no job given: sdhub discover CONFIG JOB")
	}
	cfg, err := config.LoadFile(file)
	if err != nil {
		return fail(exitBadConfig, "%v", err)
	}
	var configs discovery.Configs
	jobs := make([]string, 0, len(cfg.ScrapeConfigs))
	for _, sc := range cfg.ScrapeConfigs {
		jobs = append(jobs, sc.JobName)
		if sc.JobName == job {
			configs = sc.ServiceDiscoveryConfigs
		}
	}
	if configs == nil {
		if why := leftToPrometheus(cfg, job); why != "" {
			return fail(exitBadConfig, "job %q is not served by sdhub: %s; `promtool check service-discovery %s %s` discovers it", job, why, file, job)
		}
		return fail(exitBadConfig, "no job %q in %s (jobs sdhub serves: %s)", job, file, strings.Join(jobs, ", "))
	}

	snap, err := discoverOnce(job, configs, c.timeout, promslog.New(c.log))
	if err != nil {
		return fail(exitError, "%v", err)
	}
	if c.format == formatFileSD {
		_, err = snap.WriteTo(stdout) // as the job's file holds it
	} else {
		err = printTargets(stdout, job, snap, cfg)
	}
	if err != nil {
		return fail(exitError, "%v", err)
	}
	return exitOK
}

// argOrFlag returns an argument given either as itself or as its older
// flag form, not both with different values.
func argOrFlag(name, arg, flag string) (string, error) {
	if arg != "" && flag != "" && arg != flag {
		return "", fmt.Errorf("the %s argument %q and its flag %q disagree: give one", name, arg, flag)
	}
	if arg != "" {
		return arg, nil
	}
	return flag, nil
}

// leftToPrometheus says why sdhub does not serve job, a job of cfg's file
// (config.Config.Skipped); "" when the file has no such job.
func leftToPrometheus(cfg *config.Config, job string) string {
	for _, sc := range cfg.Skipped {
		switch {
		case sc.JobName != job:
		case len(sc.Unsupported) > 0:
			return strings.Join(sc.Unsupported, ", ") + " left to Prometheus (this build of sdhub leaves them out)"
		default:
			return "it has no service discovery configs"
		}
	}
	return ""
}

// sdCheckResult is one target as `promtool check service-discovery`
// prints it, with its error as text.
type sdCheckResult struct {
	DiscoveredLabels labels.Labels `json:"discoveredLabels"`
	Labels           labels.Labels `json:"labels"`
	Error            string        `json:"error,omitempty"`
	// DroppedBy names the rule that dropped the target, if one did.
	DroppedBy string `json:"droppedBy,omitempty"`
}

// printTargets prints each target of snap before and after the job's
// relabelling (jobRelabel, jobScrape), as promtool does.
func printTargets(w io.Writer, job string, snap *output.Snapshot, cfg *config.Config) error {
	var rules []*relabel.Config
	if jobRelabel != nil {
		rules = jobRelabel(cfg, job)
	}
	var settings web.ScrapeSettings
	if jobScrape != nil {
		settings = jobScrape(cfg, job)
	}
	results := []sdCheckResult{}
	for _, t := range web.Populate(job, settings, rules, snap.Whole().Entries()) {
		r := sdCheckResult{DiscoveredLabels: t.Discovered, Labels: t.Labels}
		if t.Err != nil {
			r.Error = t.Err.Error()
		}
		r.DroppedBy = output.DroppedByText(t, rules)
		results = append(results, r)
	}
	out, err := json.MarshalIndent(results, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(out, '\n'))
	return err
}

// discoverOnce runs the providers of job's configs in a manager of its own
// until they have all delivered their first full set, and returns the job's
// output, as the output stage renders it. It fails when a config
// cannot start, or when timeout passes first; the message then names the
// providers still waiting and the last errors they reported.
func discoverOnce(job string, configs discovery.Configs, timeout time.Duration, logger *slog.Logger) (*output.Snapshot, error) {
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
	gate := &priority.Gate{}
	mgr, err := manager.New(manager.Options{
		Logger:         logger,
		Registerer:     reg,
		FlushInterval:  discoverFlush,
		Metrics:        mechMetrics,
		RefreshMetrics: refresh,
		Priority:       gate,
	})
	if err != nil {
		return nil, err
	}
	outputs, err := output.New("", output.Options{Logger: logger, Priority: gate})
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
			return outputs.Job(job), nil
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
