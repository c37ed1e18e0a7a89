package output

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/relabel"
)

// Filtering at the hub: for a job whose relabel_configs drop targets, the
// stage keeps, besides the job's output, its kept view (Snapshot.Kept):
// the same entries with only the targets the consuming Prometheus's
// relabelling keeps, their discovered labels unchanged, so that the
// consumer's rules give the same result on what is left. Each target is
// judged once, when its group brings it, so a change costs the targets it
// brings.
//
// The consumer's rules can drift from sdhub's copy. A kept view is served
// only to a consumer that names the digest of the rules it was computed
// with (FilterDigest) and only while that digest is the job's: `sdhub
// generate prometheus-config` puts it in the http_sd URL. Anything else
// gets the whole output, as without filtering. The files hold the whole
// output unless FilterSpec.Files.

// FilterSpec is one job's filtering: the consuming Prometheus's job as
// sdhub's config has it.
type FilterSpec struct {
	Settings ScrapeSettings
	Rules    []*relabel.Config
	// Files makes the job's files hold only the kept targets: a consumer
	// reading them cannot tell sdhub its rules, so a drift of its rules is
	// not caught.
	Files bool
}

// FilterPlan is what PlanFilter decides for a job.
type FilterPlan struct {
	// Digest names the job's rules and scrape settings; "" when the job is
	// not filtered.
	Digest string
	// Reason says why the job is not filtered; "" when it is.
	Reason string
}

// The labels Prometheus sets before relabelling whose values depend on its
// version, not on the job: Prometheus 2 does not set them at all.
var versionLabels = []string{convertNHCBLabel, alwaysClassicLabel, nativeHistogramsLabel}

// PlanFilter decides whether job's output can be filtered at the hub with
// rules and settings: not when no rule can drop a target (nothing to
// filter), and not when a rule reads a label sdhub cannot know the value
// of in the consumer (the histogram settings' labels, which Prometheus 2
// does not set).
func PlanFilter(job string, settings ScrapeSettings, rules []*relabel.Config) FilterPlan {
	drops := false
	for i, r := range rules {
		switch r.Action {
		case relabel.Keep, relabel.Drop, relabel.KeepEqual, relabel.DropEqual:
			drops = true
		}
		if l := readsVersionLabel(r); l != "" {
			return FilterPlan{Reason: fmt.Sprintf("relabel_configs[%d] reads %s, which Prometheus sets or not by its version", i, l)}
		}
	}
	if !drops {
		return FilterPlan{Reason: "no relabel rule that drops targets (keep, drop, keepequal, dropequal)"}
	}
	return FilterPlan{Digest: FilterDigest(job, settings, rules)}
}

// readsVersionLabel returns the version-dependent label r reads: one of its
// source labels, or one its regex matches as a label name (labelmap,
// labelkeep, labeldrop).
func readsVersionLabel(r *relabel.Config) string {
	for _, l := range r.SourceLabels {
		if slices.Contains(versionLabels, string(l)) {
			return string(l)
		}
	}
	switch r.Action {
	case relabel.LabelMap, relabel.LabelKeep, relabel.LabelDrop:
		for _, l := range versionLabels {
			if r.Regex.MatchString(l) {
				return l
			}
		}
	}
	return ""
}

// FilterDigest names what a job's filtering depends on: the job's name,
// the scrape settings it sets as labels (with Prometheus's defaults) and
// its relabel rules. Two configs whose jobs give the same digest keep the
// same targets.
func FilterDigest(job string, settings ScrapeSettings, rules []*relabel.Config) string {
	s := settings.withDefaults()
	type rule struct {
		SourceLabels []string `json:"s"`
		Separator    string   `json:"sep"`
		Regex        string   `json:"re"`
		Modulus      uint64   `json:"mod"`
		TargetLabel  string   `json:"t"`
		Replacement  string   `json:"rep"`
		Action       string   `json:"a"`
	}
	in := struct {
		Job      string              `json:"job"`
		Settings []string            `json:"settings"`
		Params   map[string][]string `json:"params"`
		Rules    []rule              `json:"rules"`
	}{Job: job, Params: map[string][]string{}}
	in.Settings = []string{s.Scheme, s.MetricsPath, s.Interval.String(), s.Timeout.String()}
	for _, k := range slices.Sorted(maps.Keys(s.Params)) {
		if len(s.Params[k]) > 0 {
			in.Params[k] = s.Params[k][:1] // Prometheus sets the first value only
		}
	}
	for _, r := range rules {
		in.Rules = append(in.Rules, rule{
			SourceLabels: nameStrings(r.SourceLabels), Separator: r.Separator, Regex: r.Regex.String(),
			Modulus: r.Modulus, TargetLabel: r.TargetLabel, Replacement: r.Replacement, Action: string(r.Action),
		})
	}
	b, _ := json.Marshal(in) // strings, numbers and maps of them: never fails
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

func nameStrings(ns model.LabelNames) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = string(n)
	}
	return out
}
