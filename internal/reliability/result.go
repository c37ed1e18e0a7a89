package reliability

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// Result is one scenario's outcome: a row of the table.
type Result struct {
	Scenario string
	Runs     int
	Failures int
	// Figures are what the scenario measured, in order, e.g. "kills 200".
	Figures []string
	// Errors describe the failures (a few; the count is Failures).
	Errors   []string
	Duration time.Duration
	// Skipped says why the scenario could not run (no root for a mount,
	// no Prometheus binary); empty when it ran.
	Skipped string
}

// Fig appends a figure.
func (r *Result) Fig(format string, args ...any) {
	r.Figures = append(r.Figures, fmt.Sprintf(format, args...))
}

// Fail counts a failure and keeps its description (the first 10).
func (r *Result) Fail(format string, args ...any) {
	r.Failures++
	if len(r.Errors) < 10 {
		r.Errors = append(r.Errors, fmt.Sprintf(format, args...))
	}
}

// OK reports whether the scenario ran and had no failure.
func (r *Result) OK() bool { return r.Failures == 0 && (r.Runs > 0 || r.Skipped != "") }

// PrintTable writes the results as one table, then the failures.
func PrintTable(w io.Writer, results []Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tRUNS\tFAILURES\tTIME\tFIGURES")
	for _, r := range results {
		figs := strings.Join(r.Figures, "; ")
		if r.Skipped != "" {
			figs = "SKIPPED: " + r.Skipped
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\n", r.Scenario, r.Runs, r.Failures, r.Duration.Round(100*time.Millisecond), figs)
	}
	_ = tw.Flush()
	for _, r := range results {
		for _, e := range r.Errors {
			fmt.Fprintf(w, "FAIL %s: %s\n", r.Scenario, e)
		}
	}
}
