package output

import (
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
)

// ScrapeSettings are the settings of the consuming Prometheus's job that its
// scrape target population sets as labels on every target before the job's
// relabel_configs run (__scheme__, __metrics_path__, __scrape_interval__,
// __scrape_timeout__, __param_<name>, and Prometheus 3's histogram
// settings). A zero field means Prometheus's default.
type ScrapeSettings struct {
	Scheme, MetricsPath string
	Interval, Timeout   model.Duration
	Params              url.Values

	ScrapeNativeHistograms, ConvertClassicHistogramsToNHCB, AlwaysScrapeClassicHistograms bool
}

// Prometheus's defaults for a job and a global section that set none.
const (
	defaultScheme      = "http"
	defaultMetricsPath = "/metrics"
	defaultInterval    = model.Duration(time.Minute)
	defaultTimeout     = model.Duration(10 * time.Second)
)

// withDefaults fills the zero fields with Prometheus's defaults.
func (s ScrapeSettings) withDefaults() ScrapeSettings {
	if s.Scheme == "" {
		s.Scheme = defaultScheme
	}
	if s.MetricsPath == "" {
		s.MetricsPath = defaultMetricsPath
	}
	if s.Interval == 0 {
		s.Interval = defaultInterval
	}
	if s.Timeout == 0 {
		s.Timeout = defaultTimeout
	}
	return s
}

// nativeLabels maps the labels under which sdhub's output carries a
// source's __meta_filepath and __meta_url (the consuming Prometheus sets its
// own values of those two) back to their names: `sdhub generate
// prometheus-config` puts the same relabelling first in the consuming job,
// so the job's own rules see what native service discovery gives them.
var nativeLabels = map[string]string{
	FilepathLabel: "__meta_filepath",
	URLLabel:      "__meta_url",
}

// Target is one target of a job's output as the consuming Prometheus's
// scrape target population makes it, as `promtool check service-discovery`
// prints it.
type Target struct {
	// Discovered are the target's labels before relabelling: the entry's
	// labels as native service discovery gives them, __address__, and the
	// labels the job's scrape settings set.
	Discovered labels.Labels
	// Labels are the target's labels after relabelling, without the
	// __meta_ labels and with instance set: empty when the relabelling
	// dropped the target or Prometheus rejects it (Err).
	Labels labels.Labels
	// Err says why Prometheus rejects the target after relabelling (no
	// address, an invalid one, a bad scrape interval...).
	Err error
	// DroppedBy is the index in the job's relabel_configs of the rule that
	// dropped the target, when Dropped.
	DroppedBy int
}

// Dropped reports whether the job's relabelling dropped the target.
func (t Target) Dropped() bool { return t.Labels.IsEmpty() && t.Err == nil }

// Populate returns what the consuming Prometheus's job makes of each target
// of entries (a snapshot's Entries), in order: the labels each has before
// and after rules, the job's relabel_configs. It does what Prometheus's
// scrape target population does when it reads the job's file or http_sd
// endpoint.
//
// Rules are used as they are; a rule whose label name validation is unset
// (not validated by Prometheus's config loader) is run with UTF-8
// validation, Prometheus 3's default.
func Populate(job string, settings ScrapeSettings, rules []*relabel.Config, entries []Entry) []Target {
	p := newPopulation(job, settings, rules)
	var out []Target
	for _, e := range entries {
		for _, addr := range e.Targets {
			out = append(out, p.target(addr, e.Labels))
		}
	}
	return out
}

// RelabelCounts are the targets of a job after the consuming Prometheus's
// relabelling: kept, dropped by a rule, and rejected after relabelling
// (Prometheus logs those and scrapes nothing), with the first rejection.
type RelabelCounts struct {
	Kept, Dropped, Rejected int
	FirstError              string
}

// CountRelabelled counts the targets of entries that the consuming
// Prometheus's job keeps and drops, as Populate makes them. Prometheus's
// service-discovery page shows the same counts.
func CountRelabelled(job string, settings ScrapeSettings, rules []*relabel.Config, entries []Entry) RelabelCounts {
	p := newPopulation(job, settings, rules)
	var c RelabelCounts
	for _, e := range entries {
		for _, addr := range e.Targets {
			t := p.target(addr, e.Labels)
			switch {
			case t.Err != nil:
				if c.Rejected == 0 {
					c.FirstError = fmt.Sprintf("%s: %v", addr, t.Err)
				}
				c.Rejected++
			case t.Dropped():
				c.Dropped++
			default:
				c.Kept++
			}
		}
	}
	return c
}

// population turns targets into Targets for one job; it is not safe for
// concurrent use.
type population struct {
	defaults []labels.Label
	rules    []*relabel.Config
	lb       *labels.Builder
}

func newPopulation(job string, s ScrapeSettings, rules []*relabel.Config) *population {
	s = s.withDefaults()
	p := &population{lb: labels.NewBuilder(labels.EmptyLabels()), rules: rules}
	p.defaults = []labels.Label{
		{Name: model.JobLabel, Value: job},
		{Name: model.ScrapeIntervalLabel, Value: s.Interval.String()},
		{Name: model.ScrapeTimeoutLabel, Value: s.Timeout.String()},
		{Name: model.MetricsPathLabel, Value: s.MetricsPath},
		{Name: model.SchemeLabel, Value: s.Scheme},
		{Name: convertNHCBLabel, Value: strconv.FormatBool(s.ConvertClassicHistogramsToNHCB)},
		{Name: alwaysClassicLabel, Value: strconv.FormatBool(s.AlwaysScrapeClassicHistograms)},
		{Name: nativeHistogramsLabel, Value: strconv.FormatBool(s.ScrapeNativeHistograms)},
	}
	for _, k := range slices.Sorted(maps.Keys(s.Params)) {
		if v := s.Params[k]; len(v) > 0 {
			p.defaults = append(p.defaults, labels.Label{Name: model.ParamLabelPrefix + k, Value: v[0]})
		}
	}
	if slices.ContainsFunc(rules, func(r *relabel.Config) bool { return r.NameValidationScheme == model.UnsetValidation }) {
		p.rules = make([]*relabel.Config, len(rules))
		for i, r := range rules {
			c := *r
			if c.NameValidationScheme == model.UnsetValidation {
				c.NameValidationScheme = model.UTF8Validation
			}
			p.rules[i] = &c
		}
	}
	return p
}

// The labels Prometheus 3 sets from a job's histogram settings.
const (
	convertNHCBLabel      = "__convert_classic_histograms_to_nhcb__"
	alwaysClassicLabel    = "__always_scrape_classic_histograms__"
	nativeHistogramsLabel = "__scrape_native_histograms__"
)

func (p *population) target(addr string, ls []LabelPair) Target {
	lb := p.lb
	lb.Reset(labels.EmptyLabels())
	for _, l := range ls {
		name := l.Name
		if n, ok := nativeLabels[name]; ok {
			name = n
		}
		lb.Set(name, l.Value)
	}
	p.setDefaults(addr)
	t := Target{Discovered: lb.Labels()}
	for i, r := range p.rules {
		if !relabel.ProcessBuilder(lb, r) {
			t.DroppedBy = i
			return t
		}
	}
	t.Labels, t.Err = finish(lb)
	if t.Err != nil {
		t.Labels = labels.EmptyLabels()
	}
	return t
}

// setDefaults sets a target's address and the labels of the job's scrape
// settings it does not have.
func (p *population) setDefaults(addr string) {
	p.lb.Set(model.AddressLabel, addr) // a target's own labels win over its group's
	for _, l := range p.defaults {
		if p.lb.Get(l.Name) == "" {
			p.lb.Set(l.Name, l.Value)
		}
	}
}

// keeps reports whether the job's rules keep target t of a group labelled
// gl, at address addr, as the consumer reads it from sdhub's output: each
// label under its native name, none that the output leaves out.
func (p *population) keeps(addr string, t, gl model.LabelSet) bool {
	p.lb.Reset(labels.EmptyLabels())
	for _, ls := range []model.LabelSet{gl, t} { // a target's labels win over its group's
		for n, v := range ls {
			name := outputLabelName(string(n))
			if n == model.AddressLabel || name == "" {
				continue
			}
			if native, ok := nativeLabels[name]; ok {
				name = native
			}
			p.lb.Set(name, string(v))
		}
	}
	p.setDefaults(addr)
	return relabel.ProcessBuilder(p.lb, p.rules...)
}

// finish checks a relabelled target as Prometheus does before it scrapes
// it, removes the __meta_ labels and sets instance.
func finish(lb *labels.Builder) (labels.Labels, error) {
	addr := lb.Get(model.AddressLabel)
	if addr == "" {
		return labels.EmptyLabels(), errors.New("no address")
	}
	if strings.Contains(addr, "/") {
		return labels.EmptyLabels(), fmt.Errorf("%q is not a valid hostname", addr)
	}
	interval, err := model.ParseDuration(lb.Get(model.ScrapeIntervalLabel))
	if err != nil {
		return labels.EmptyLabels(), fmt.Errorf("error parsing scrape interval: %w", err)
	}
	if interval == 0 {
		return labels.EmptyLabels(), errors.New("scrape interval cannot be 0")
	}
	timeout, err := model.ParseDuration(lb.Get(model.ScrapeTimeoutLabel))
	if err != nil {
		return labels.EmptyLabels(), fmt.Errorf("error parsing scrape timeout: %w", err)
	}
	if timeout == 0 {
		return labels.EmptyLabels(), errors.New("scrape timeout cannot be 0")
	}
	if timeout > interval {
		return labels.EmptyLabels(), fmt.Errorf("scrape timeout cannot be greater than scrape interval (%q > %q)",
			lb.Get(model.ScrapeTimeoutLabel), lb.Get(model.ScrapeIntervalLabel))
	}
	for _, l := range []struct{ name, desc string }{
		{convertNHCBLabel, "convert classic histograms to nhcb"},
		{alwaysClassicLabel, "always scrape classic histograms"},
		{nativeHistogramsLabel, "scrape native histograms"},
	} {
		if v := lb.Get(l.name); v != "" {
			if _, err := strconv.ParseBool(v); err != nil {
				return labels.EmptyLabels(), fmt.Errorf("error parsing %s: %w", l.desc, err)
			}
		}
	}
	lb.Range(func(l labels.Label) {
		if strings.HasPrefix(l.Name, model.MetaLabelPrefix) {
			lb.Del(l.Name)
		}
	})
	if lb.Get(model.InstanceLabel) == "" {
		lb.Set(model.InstanceLabel, addr)
	}
	res := lb.Labels()
	var invalid error
	res.Range(func(l labels.Label) {
		if invalid == nil && !model.LabelValue(l.Value).IsValid() {
			invalid = fmt.Errorf("invalid label value for %q: %q", l.Name, l.Value)
		}
	})
	if invalid != nil {
		return labels.EmptyLabels(), invalid
	}
	return res, nil
}

// DroppedByText names the rule of rules, the job's, that dropped t, as
// "relabel_configs[1]: {action: drop, ...}"; "" when t was not dropped.
func DroppedByText(t Target, rules []*relabel.Config) string {
	if !t.Dropped() || t.DroppedBy >= len(rules) {
		return ""
	}
	return fmt.Sprintf("relabel_configs[%d]: %s", t.DroppedBy, RuleText(rules[t.DroppedBy]))
}

// RuleText is a relabel rule in one line, its fields as YAML names them,
// those at their defaults left out.
func RuleText(r *relabel.Config) string {
	var parts []string
	parts = append(parts, "action: "+string(r.Action))
	if len(r.SourceLabels) > 0 {
		parts = append(parts, "source_labels: ["+strings.Join(nameStrings(r.SourceLabels), ", ")+"]")
	}
	if r.Separator != relabel.DefaultRelabelConfig.Separator {
		parts = append(parts, fmt.Sprintf("separator: %q", r.Separator))
	}
	if re := r.Regex.String(); re != relabel.DefaultRelabelConfig.Regex.String() {
		parts = append(parts, fmt.Sprintf("regex: %q", re))
	}
	if r.Modulus != 0 {
		parts = append(parts, fmt.Sprintf("modulus: %d", r.Modulus))
	}
	if r.TargetLabel != "" {
		parts = append(parts, "target_label: "+r.TargetLabel)
	}
	return "{" + strings.Join(parts, ", ") + "}"
}
