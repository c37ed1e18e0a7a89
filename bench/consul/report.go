package main

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

func percentile(s []time.Duration, p float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	i := int(float64(len(s))*p+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func ms(d time.Duration) string {
	if d >= 10*time.Second {
		return fmt.Sprintf("%.1f s", d.Seconds())
	}
	if d >= time.Second {
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
	return fmt.Sprintf("%d ms", d.Milliseconds())
}

// latencies are a side's times from a change being made to it holding at
// point, for the changes of kind (all kinds for -1), and how many never
// held.
func (r *result) latencies(c *child, point string, kind int, variant string) (lat []time.Duration, missed int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ch := range r.changes {
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

func (r *result) cell(c *child, point string, kind int, variant string) string {
	lat, missed := r.latencies(c, point, kind, variant)
	if len(lat) == 0 {
		return fmt.Sprintf("- / - (0 of %d)", missed)
	}
	s := fmt.Sprintf("%s / %s", ms(percentile(lat, 0.5)), ms(percentile(lat, 0.99)))
	if missed > 0 {
		s += fmt.Sprintf(" (%d of %d)", len(lat), len(lat)+missed)
	}
	return s
}

func (r *result) print(cfg benchConfig) {
	fmt.Printf("\n## over %s\n\n", strings.ToUpper(r.proto))
	idle := r.idle.to.Sub(r.idle.from).Seconds()
	churn := r.churn.to.Sub(r.churn.from).Seconds()
	fmt.Printf("idle window %.0f s; changes: %d at %g/s for %v, window %.0f s\n\n", idle, len(r.changes), cfg.rate, cfg.duration, churn)
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
		rate := func(p phase) float64 {
			return (c.at(p.to).requests - c.at(p.from).requests) / p.to.Sub(p.from).Seconds()
		}
		fmt.Printf("| %s | %d | %s | %s | %.1f | %.1f | %.1f s | %.1f s | %d | %d MiB | %.1f s | %.0f |\n",
			c.side, targets, complete, cpuComplete, rate(r.idle), rate(r.churn),
			r.idle.cpuTo[c.side]-r.idle.cpuFrom[c.side], r.churn.cpuTo[c.side]-r.churn.cpuFrom[c.side],
			c.peak, rssKiB/1024, cpu, failures)
	}
	fmt.Println()
	header, rule := "| kind |", "|---|"
	for _, c := range r.children {
		header += fmt.Sprintf(" %s output p50 / p99 | %s discoverer p50 / p99 |", c.side, c.side)
		rule += "---|---|"
	}
	fmt.Println(header)
	fmt.Println(rule)
	row := func(name string, kind int, variant string) {
		n := 0
		for _, ch := range r.changes {
			if ch.kind == kind && (variant == "" || ch.variant == variant) {
				n++
			}
		}
		if kind >= 0 && n == 0 {
			return
		}
		if kind < 0 {
			n = len(r.changes)
		}
		line := fmt.Sprintf("| %s (%d) |", name, n)
		for _, c := range r.children {
			line += fmt.Sprintf(" %s | %s |", r.cell(c, "o", kind, variant), r.cell(c, "d", kind, variant))
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
