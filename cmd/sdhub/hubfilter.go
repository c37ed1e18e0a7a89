package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/alecthomas/kingpin/v2"

	"github.com/sdhub/sdhub/config"
	"github.com/sdhub/sdhub/output"
)

// filterFlags say which jobs' outputs are filtered at the hub (package
// output, filter.go). run, `check config` and `generate
// prometheus-config` take the same flags, so that the digest a consumer's
// http_sd URL names is the one the hub filters with.
type filterFlags struct {
	on    bool
	files bool
	skip  []string
}

func addFilterFlags(cmd *kingpin.CmdClause, f *filterFlags) {
	cmd.Flag("output.hub-filter", "Filter at the hub: for a job whose relabel_configs drop targets, serve an http_sd consumer that names the digest of the job's rules "+
		"(sdhub generate prometheus-config puts it in the URL) only the targets they keep. A consumer naming no digest or another one is served every target. "+
		"--no-output.hub-filter turns it off for every job.").
		Default("true").BoolVar(&f.on)
	cmd.Flag("output.hub-filter.skip-job", "A job not to filter at the hub (repeatable).").PlaceHolder("JOB").StringsVar(&f.skip)
	cmd.Flag("output.hub-filter.files", "Filter the files too: each job's files hold only the targets its relabel_configs keep. "+
		"A consumer reading files cannot name the digest of its rules, so a drift of its rules from sdhub's copy is not caught.").
		BoolVar(&f.files)
}

// plan returns, for every job of cfg, whether its output is filtered at
// the hub and why not, and the filters of those that are.
func (f filterFlags) plan(cfg *config.Config) (map[string]output.FilterPlan, map[string]output.FilterSpec) {
	plans, specs := map[string]output.FilterPlan{}, map[string]output.FilterSpec{}
	if cfg == nil {
		return plans, specs
	}
	for _, sc := range cfg.ScrapeConfigs {
		job := sc.JobName
		var p output.FilterPlan
		switch {
		case !f.on:
			p.Reason = "filtering at the hub is off (--no-output.hub-filter)"
		case slices.Contains(f.skip, job):
			p.Reason = "the job is skipped (--output.hub-filter.skip-job)"
		default:
			settings, rules := jobScrape(cfg, job), jobRelabel(cfg, job)
			if p = output.PlanFilter(job, settings, rules); p.Digest != "" {
				specs[job] = output.FilterSpec{Settings: settings, Rules: rules, Files: f.files}
			}
		}
		plans[job] = p
	}
	return plans, specs
}

// describe is `check config`'s line on the jobs' filtering at the hub: the
// jobs filtered, with their rules' digests, then the others by reason.
func (f filterFlags) describe(cfg *config.Config) string {
	plans, _ := f.plan(cfg)
	var on, reasons []string
	off := map[string][]string{}
	for _, sc := range cfg.ScrapeConfigs {
		p := plans[sc.JobName]
		if p.Digest != "" {
			on = append(on, fmt.Sprintf("%s (rules %s)", sc.JobName, p.Digest))
			continue
		}
		if off[p.Reason] == nil {
			reasons = append(reasons, p.Reason)
		}
		off[p.Reason] = append(off[p.Reason], sc.JobName)
	}
	var l []string
	if len(on) > 0 {
		l = append(l, "on for "+strings.Join(on, ", "))
	}
	for _, r := range reasons {
		l = append(l, fmt.Sprintf("off for %s: %s", strings.Join(off[r], ", "), r))
	}
	return strings.Join(l, "; ")
}
