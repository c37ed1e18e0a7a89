package web

import (
	"embed"
	"fmt"
	"html/template"
	"net/url"
	"strings"
	"time"

	"github.com/sdhub/sdhub/output"
)

//go:embed templates/*.html
var templateFS embed.FS

var templates = template.Must(template.New("").Funcs(template.FuncMap{
	"ago":       ago,
	"for":       forDuration,
	"timestamp": timestamp,
	// jobref is the path of a job's page relative to the root.
	"jobref": func(job string) string { return "job/" + url.PathEscape(job) },
	"at": func(now time.Time, v any) any {
		return struct {
			Now time.Time
			V   any
		}{now, v}
	},
	"head": func(title, root string) any {
		return struct{ Title, Root string }{title, root}
	},
	"int":    func(n uint64) int { return int(n) },
	"split":  splitLabels,
	"plural": plural,
}).ParseFS(templateFS, "templates/*.html"))

// sdPath is the path of job's http_sd endpoint.
func sdPath(job string) string { return strings.Replace(SDPath, "{job}", url.PathEscape(job), 1) }

// ago renders t relative to now: "never", "12s ago", or the time itself
// when in the future or older than a day.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	switch {
	case d < 0 || d > 24*time.Hour:
		return timestamp(t)
	case d < time.Second:
		return "just now"
	}
	return human(d) + " ago"
}

// forDuration renders how long it is from t to now: "5m0s", "3d4h".
func forDuration(now, t time.Time) string {
	if d := now.Sub(t); d >= 0 {
		return human(d)
	}
	return "0s"
}

// human renders d to the second under an hour, to the minute under a day,
// to the hour beyond.
func human(d time.Duration) string {
	switch {
	case d < time.Hour:
		return d.Truncate(time.Second).String()
	case d < 24*time.Hour:
		return strings.TrimSuffix(d.Truncate(time.Minute).String(), "0s")
	}
	return fmt.Sprintf("%dd%dh", d/(24*time.Hour), (d%(24*time.Hour))/time.Hour)
}

// timestamp renders t in UTC, to the second; "never" when zero.
func timestamp(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format(time.RFC3339)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}

// labelsShown is how many labels of a target the pages show before the
// rest, collapsed.
const labelsShown = 6

// labelSplit is a label list cut for the pages: the labels shown, and the
// rest behind a <details>.
type labelSplit struct {
	Shown, Rest []output.LabelPair
}

// splitLabels orders a target's labels for reading (the labels its series
// keep first, then those starting with "__") and cuts the list after
// labelsShown, unless only one or two would be left over.
func splitLabels(ls []output.LabelPair) labelSplit {
	ordered := make([]output.LabelPair, 0, len(ls))
	for _, l := range ls {
		if !strings.HasPrefix(l.Name, "__") {
			ordered = append(ordered, l)
		}
	}
	for _, l := range ls {
		if strings.HasPrefix(l.Name, "__") {
			ordered = append(ordered, l)
		}
	}
	if len(ordered) <= labelsShown+2 {
		return labelSplit{Shown: ordered}
	}
	return labelSplit{Shown: ordered[:labelsShown], Rest: ordered[labelsShown:]}
}
