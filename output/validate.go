package output

import (
	"strings"
	"unicode/utf8"

	"github.com/prometheus/common/model"
)

// Why a target is left out of its job's file: Prometheus would reject it.
// One invalid label name makes Prometheus ignore the whole file; a label
// value that is not valid UTF-8 would reach it as U+FFFD, a value the
// source never had (and Prometheus drops such targets when it sees them).
//
// A target with an empty __address__, or one with a "/" in it, stays in
// the file: Prometheus reads such a file, and checks the address only
// after the consuming job's relabel_configs, which may build a good one
// from the target's labels. Native SD hands Prometheus the same targets,
// so leaving them out would break relabelling that works with it.
const (
	reasonLabelName  = "invalid label name"
	reasonLabelValue = "label value not valid UTF-8"
)

// maxLogged bounds the length of a hostile address or label name in a log line.
const maxLogged = 128

// Label names must be valid in Prometheus's legacy scheme,
// [a-zA-Z_][a-zA-Z0-9_]*: what every Prometheus version accepts, and what
// sdhub's mechanisms produce (fixed prefixes plus sanitised names). The
// renderer leaves a target out when targetProblem finds a reason, counts it
// in sdhub_output_dropped_targets{job} and logs a change of that count, so
// that one bad target from a source never costs the job's other targets.

// invalidLabels returns the names of ls that are invalid, or whose values
// are, joined by a NUL byte; "" when all are valid.
func invalidLabels(ls model.LabelSet) string {
	var bad []string
	for n, v := range ls {
		if n == model.AddressLabel {
			continue
		}
		if !model.LegacyValidation.IsValidLabelName(string(n)) || !utf8.ValidString(string(v)) {
			bad = append(bad, string(n))
		}
	}
	return strings.Join(bad, "\x00")
}

// targetProblem returns why Prometheus would reject target t of a group
// with labels gl ("" when it would not). badGroup lists gl's invalid
// labels, which a target's own label of the same name overrides.
func targetProblem(t, gl model.LabelSet, badGroup string) string {
	if !utf8.ValidString(string(address(t, gl))) {
		return reasonLabelValue
	}
	for n, v := range t {
		if n == model.AddressLabel {
			continue
		}
		if !model.LegacyValidation.IsValidLabelName(string(n)) {
			return reasonLabelName
		}
		if !utf8.ValidString(string(v)) {
			return reasonLabelValue
		}
	}
	if badGroup == "" {
		return ""
	}
	for _, n := range strings.Split(badGroup, "\x00") {
		if _, ok := t[model.LabelName(n)]; ok {
			continue // the target's own label wins, and it is valid
		}
		if !model.LegacyValidation.IsValidLabelName(n) {
			return reasonLabelName
		}
		return reasonLabelValue
	}
	return ""
}

// address is the target's __address__, or its group's.
func address(t, gl model.LabelSet) model.LabelValue {
	if a, ok := t[model.AddressLabel]; ok {
		return a
	}
	return gl[model.AddressLabel]
}

// truncate keeps a hostile value short and valid UTF-8 in a log line.
func truncate(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) > maxLogged {
		return s[:maxLogged] + "…"
	}
	return s
}
