package main

import (
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/model"
	promhttp "github.com/prometheus/prometheus/discovery/http"
	"github.com/prometheus/prometheus/model/relabel"

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

// checkConsumer is `sdhub check consumer-config`: in each consumer config,
// every job that reads sdhub's http_sd endpoint with ?rules=DIGEST must
// have the relabel rules and scrape settings DIGEST names, once the rules
// `generate prometheus-config` puts first are set aside: otherwise sdhub
// drops, for that consumer, what the rules sdhub filters with drop, and
// the consumer's own rules, edited since, may keep some of those.
func checkConsumer(files []string, stdout, stderr io.Writer) int {
	code := exitOK
	for _, f := range files {
		fmt.Fprintf(stdout, "Checking %s\n", f)
		cfg, err := config.LoadFile(f)
		if err != nil {
			fmt.Fprintf(stderr, "  FAILED: %s\n", indent(err.Error()))
			code = exitError
			continue
		}
		var checked []string
		var failed []string
		for _, sc := range cfg.ScrapeConfigs {
			if sc.Prometheus == nil {
				continue
			}
			for _, c := range sc.Prometheus.ServiceDiscoveryConfigs {
				h, ok := c.(*promhttp.SDConfig)
				if !ok {
					continue
				}
				u, err := url.Parse(h.URL)
				if err != nil || !strings.Contains(u.Path, "/api/v1/sd/") || !u.Query().Has("rules") {
					continue
				}
				want := u.Query().Get("rules")
				rules := jobRelabel(cfg, sc.JobName)
				if n := restored(rules); n > 0 {
					rules = rules[n:]
				}
				got := output.FilterDigest(sc.JobName, jobScrape(cfg, sc.JobName), rules)
				if got != want {
					failed = append(failed, fmt.Sprintf("job %q reads %s, but its relabel_configs and scrape settings are those of digest %s: "+
						"sdhub drops for it what the rules of %s drop; regenerate it with `sdhub generate prometheus-config` from sdhub's prometheus.yml, "+
						"or drop rules= from the URL to be served every target", sc.JobName, h.URL, got, want))
					continue
				}
				checked = append(checked, sc.JobName)
			}
		}
		for _, msg := range failed {
			fmt.Fprintf(stderr, "  FAILED: %s\n", msg)
			code = exitError
		}
		if len(failed) == 0 {
			fmt.Fprintf(stdout, " SUCCESS: %d %s read sdhub's kept targets with the rules they name", len(checked), plural(len(checked), "job", "jobs"))
			if len(checked) > 0 {
				fmt.Fprintf(stdout, ": %s", strings.Join(checked, ", "))
			}
			fmt.Fprintln(stdout)
		}
	}
	return code
}

// restored returns how many of rules are the rules `generate
// prometheus-config` puts first in a job (restoreRules): 0 if they are
// not there.
func restored(rules []*relabel.Config) int {
	if len(rules) < 3 {
		return 0
	}
	first, url, drop := rules[0], rules[1], rules[2]
	if first.Action == relabel.Replace && first.TargetLabel == "__meta_filepath" && slices.Equal(first.SourceLabels, model.LabelNames{output.FilepathLabel}) &&
		url.Action == relabel.Replace && url.TargetLabel == "__meta_url" && slices.Contains(url.SourceLabels, output.URLLabel) &&
		drop.Action == relabel.LabelDrop && drop.Regex.MatchString(output.FilepathLabel) && drop.Regex.MatchString(output.URLLabel) {
		return 3
	}
	return 0
}
