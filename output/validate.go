package output

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
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

// droppedTargets leaves out of a job's file the targets Prometheus would
// reject, counts them per job in sdhub_output_dropped_targets and logs a
// change of that count at warn level (with one example), so that one bad
// target from a source never costs the job's other targets.
//
// Label names must be valid in Prometheus's legacy scheme,
// [a-zA-Z_][a-zA-Z0-9_]*: what every Prometheus version accepts, and what
// sdhub's mechanisms produce (fixed prefixes plus sanitised names).
type droppedTargets struct {
	gauge *prometheus.GaugeVec

	mu   sync.Mutex
	last map[string]int // job → count in its last render
}

func newDroppedTargets() *droppedTargets {
	return &droppedTargets{
		gauge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sdhub_output_dropped_targets",
			Help: "Number of targets left out of a job's last rendered targets file because Prometheus would reject them (a label name it does not accept, a label value that is not valid UTF-8).",
		}, []string{"job"}),
		last: map[string]int{},
	}
}

// DeleteLabelValues forgets a job (lvs is the job's name), so that the
// writer's metrics deletes it with the job's other series.
func (d *droppedTargets) DeleteLabelValues(lvs ...string) bool {
	d.mu.Lock()
	for _, job := range lvs {
		delete(d.last, job)
	}
	d.mu.Unlock()
	return d.gauge.DeleteLabelValues(lvs...)
}

// filter returns groups without the targets Prometheus would reject, and
// counts and logs them for job. It returns groups itself when none is (the
// common case: no allocation); the groups are shared with the manager and
// never modified.
func (d *droppedTargets) filter(logger *slog.Logger, job string, groups []*targetgroup.Group) []*targetgroup.Group {
	out, dropped, exampleAddr, example := valid(groups)
	d.gauge.WithLabelValues(job).Set(float64(dropped))
	d.mu.Lock()
	prev, seen := d.last[job]
	d.last[job] = dropped
	d.mu.Unlock()
	if dropped > 0 || seen && prev != dropped {
		level := slog.LevelDebug
		if prev != dropped {
			level = slog.LevelWarn
		}
		logger.Log(context.Background(), level, "left targets Prometheus would reject out of the job's file",
			"job", job, "dropped", dropped, "example_target", truncate(exampleAddr), "example_reason", example)
	}
	return out
}

// RenderValid is Render of groups without the targets Prometheus would
// reject: the bytes the writer writes for a job, for whoever serves them
// another way (the http_sd endpoint).
func RenderValid(groups []*targetgroup.Group) ([]byte, error) {
	kept, _, _, _ := valid(groups)
	return Render(kept)
}

// valid returns groups without the targets Prometheus would reject, how
// many it left out, and the address and reason of the first. It returns
// groups itself when it leaves none out.
func valid(groups []*targetgroup.Group) (_ []*targetgroup.Group, dropped int, exampleAddr, example string) {
	var out []*targetgroup.Group // nil until a target is dropped
	for gi, g := range groups {
		if g == nil {
			continue
		}
		badGroup := invalidLabels(g.Labels) // "" in the common case
		var kept []model.LabelSet
		for ti, t := range g.Targets {
			reason := targetProblem(t, g.Labels, badGroup)
			if reason == "" {
				if kept != nil {
					kept = append(kept, t)
				}
				continue
			}
			if kept == nil {
				kept = append(make([]model.LabelSet, 0, len(g.Targets)), g.Targets[:ti]...)
			}
			if dropped == 0 {
				exampleAddr, example = string(address(t, g.Labels)), reason
			}
			dropped++
		}
		if kept == nil {
			if out != nil {
				out = append(out, g)
			}
			continue
		}
		if out == nil {
			out = append(make([]*targetgroup.Group, 0, len(groups)), groups[:gi]...)
		}
		out = append(out, &targetgroup.Group{Source: g.Source, Labels: g.Labels, Targets: kept})
	}
	if out == nil {
		return groups, dropped, exampleAddr, example
	}
	return out, dropped, exampleAddr, example
}

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
