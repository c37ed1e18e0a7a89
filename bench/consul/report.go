package main

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sdhub/sdhub/internal/benchproc"
)

// percentile and ms are the benchmarks' own, by shorter names for the
// tables.
var (
	percentile = benchproc.Percentile
	ms         = benchproc.Ms
)

// latencies are a side's times from a change being made to it holding at
// point, for the changes of kind (all kinds for -1), and how many never
// held.
func (r *result) latencies(c *child, point string, kind int, variant string) (lat []time.Duration, missed int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ch := range r.changes[c.side] {
		if kind >= 0 && ch.kind != kind || variant != "" && ch.variant != variant {
			continue
		}
		made, ok := r.made[c.side][ch.id]
		if !ok {
			continue // the change failed on this agent
		}
		seen, ok := c.seen[point][strconv.Itoa(ch.id)]
		if !ok {
			missed++
			continue
		}
		lat = append(lat, max(seen.Sub(made), 0))
	}
	slices.Sort(lat)
	return lat, missed
}

// cell is a side's p50 / p99 of n changes, and how many it saw if not all.
func (r *result) cell(c *child, point string, kind int, variant string, n int) string {
	lat, missed := r.latencies(c, point, kind, variant)
	if len(lat) == 0 {
		return fmt.Sprintf("- / - (0 of %d)", n)
	}
	s := fmt.Sprintf("%s / %s", ms(percentile(lat, 0.5)), ms(percentile(lat, 0.99)))
	if missed > 0 || len(lat) != n {
		s += fmt.Sprintf(" (%d of %d)", len(lat), n)
	} else {
		s += fmt.Sprintf(" (%d)", n)
	}
	return s
}

func (r *result) print(cfg benchConfig) {
	fmt.Printf("\n## over %s\n\n", strings.ToUpper(r.proto))
	fmt.Println("| side | targets | time to complete | CPU to complete | requests/s idle | requests/s changes | agent CPU idle | agent CPU changes | peak TCP connections | peak RSS | CPU total | RPC failures |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, c := range r.children {
		var targets, rssKiB int
		var failures, cpu float64
		_, _ = fmt.Sscanf(c.final, "%d %g %d %g", &targets, &failures, &rssKiB, &cpu)
		complete, cpuComplete := "never", "-"
		if !c.complete.IsZero() {
			complete = ms(c.complete.Sub(c.t0))
			cpuComplete = fmt.Sprintf("%.1f s", c.at(c.complete.Add(time.Second)).cpu)
		}
		idle, churn := r.idle[c.side], r.churn[c.side]
		rate := func(p *phase) float64 {
			return (c.at(p.to).requests - c.at(p.from).requests) / p.to.Sub(p.from).Seconds()
		}
		fmt.Printf("| %s | %d | %s | %s | %.1f | %.1f | %.1f s | %.1f s | %d | %d MiB | %.1f s | %.0f |\n",
			c.side, targets, complete, cpuComplete, rate(idle), rate(churn),
			idle.cpuTo-idle.cpuFrom, churn.cpuTo-churn.cpuFrom,
			c.peak, rssKiB/1024, cpu, failures)
	}
	for _, c := range r.children {
		idle, churn := r.idle[c.side], r.churn[c.side]
		fmt.Printf("\n%s: idle window %.0f s; changes: %d at %g/s for %v, window %.0f s", c.side,
			idle.to.Sub(idle.from).Seconds(), len(r.changes[c.side]), cfg.rate, cfg.duration, churn.to.Sub(churn.from).Seconds())
	}
	fmt.Println()
	fmt.Println()
	header, rule := "| kind |", "|---|"
	for _, c := range r.children {
		header += fmt.Sprintf(" %s output p50 / p99 | %s discoverer p50 / p99 |", c.side, c.side)
		rule += "---|---|"
	}
	fmt.Println(header)
	fmt.Println(rule)
	row := func(name string, kind int, variant string) {
		line, some := "| "+name+" |", false
		for _, c := range r.children {
			n := 0
			for _, ch := range r.changes[c.side] {
				if kind < 0 || ch.kind == kind && (variant == "" || ch.variant == variant) {
					n++
				}
			}
			some = some || n > 0
			line += fmt.Sprintf(" %s | %s |", r.cell(c, "o", kind, variant, n), r.cell(c, "d", kind, variant, n))
		}
		if !some {
			return
		}
		fmt.Println(line)
	}
	for k, name := range kinds {
		row(name, k, "")
	}
	for _, v := range []string{"port", "address", "tags", "service meta"} {
		row("  re-registration: "+v, 6, v)
	}
	row("every change", -1, "")
}
