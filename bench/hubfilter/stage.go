package main

import (
	"fmt"
	"io"
	"runtime"
	"syscall"
	"time"

	"github.com/prometheus/prometheus/model/relabel"

	"github.com/sdhub/sdhub/internal/benchproc"
	"github.com/sdhub/sdhub/internal/managertest"
	"github.com/sdhub/sdhub/manager"
	"github.com/sdhub/sdhub/output"
)

// stageResult is what a run of the output stage measured.
type stageResult struct {
	fill, fillCPU time.Duration // the first Apply, the whole job
	times, cpu    []time.Duration
	whole, kept   int // the targets of the job's output and of its kept view
}

// stageRun is one output stage (package output, writing no files) and
// what was measured of it.
type stageRun struct {
	st *output.Stage
	r  stageResult
}

func newStageRun(rules []*relabel.Config) (*stageRun, error) {
	st, err := output.New("", output.Options{})
	if err != nil {
		return nil, err
	}
	if rules != nil {
		if err := st.SetFilters(map[string]output.FilterSpec{jobName: {Rules: rules}}); err != nil {
			return nil, err
		}
	}
	return &stageRun{st: st}, nil
}

// apply applies the job of groups, and returns its time and CPU.
func (sr *stageRun) apply(gs []manager.Group) (time.Duration, time.Duration, error) {
	c0, t0 := cpuTime(), time.Now()
	err := sr.st.Apply(manager.Update{jobName: managertest.NewJob(true, gs...)})
	return time.Since(t0), cpuTime() - c0, err
}

// measureStage fills two output stages, one with the job filtered at the
// hub with rules and one without, with the job as consul_sd gives it (one
// group per service), then applies changes updates to both that each change
// one target of one group, in turn (which goes first alternates), timing
// each Apply. It returns the stage without filtering's figures, then the
// one with.
func measureStage(pop population, rules []*relabel.Config, changes int) (off, on stageResult, err error) {
	runs := make([]*stageRun, 2)
	for i, rs := range [][]*relabel.Config{nil, rules} {
		if runs[i], err = newStageRun(rs); err != nil {
			return off, on, err
		}
	}
	groups := make([]manager.Group, pop.services())
	for s := range groups {
		groups[s] = managertest.NewGroup("consul", pop.group(s, -1, 0))
	}
	for _, sr := range runs {
		runtime.GC()
		if sr.r.fill, sr.r.fillCPU, err = sr.apply(groups); err != nil {
			return off, on, err
		}
	}
	const warmup = 10
	for k := range warmup + changes {
		s := (k * 7) % len(groups)
		next := make([]manager.Group, len(groups))
		copy(next, groups)
		next[s] = managertest.NewGroup("consul", pop.group(s, (k*13)%pop.perService, k+1))
		if k == warmup {
			runtime.GC()
		}
		for j := range runs {
			sr := runs[(j+k)%2]
			d, c, err := sr.apply(next)
			if err != nil {
				return off, on, err
			}
			if k >= warmup {
				sr.r.times, sr.r.cpu = append(sr.r.times, d), append(sr.r.cpu, c)
			}
		}
		groups = next
	}
	for _, sr := range runs {
		snap := sr.st.Job(jobName)
		if snap == nil || !snap.Serving() {
			return off, on, fmt.Errorf("the stage serves no %s", jobName)
		}
		sr.r.whole, sr.r.kept = snap.Whole().Targets, snap.Kept().Targets
	}
	return runs[0].r, runs[1].r, nil
}

// cpuTime is the CPU time this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func mean(s []time.Duration) time.Duration {
	if len(s) == 0 {
		return 0
	}
	var t time.Duration
	for _, d := range s {
		t += d
	}
	return t / time.Duration(len(s))
}

// writeStage prints the output stage's cost of a change of one group, with
// the job filtered at the hub and not.
func writeStage(w io.Writer, pop population, rules []*relabel.Config, changes int) error {
	off, on, err := measureStage(pop, rules, changes)
	if err != nil {
		return fmt.Errorf("the output stage: %w", err)
	}
	fmt.Fprintf(w, "### sdhub's output stage: a change of one group, filtering on and off (in process)\n\n")
	fmt.Fprintf(w, "The job as consul_sd gives it: %d groups (services) of %d targets; %d changes after 10 untimed ones, "+
		"each of one target's label in one group, applied to a stage with filtering and one without in turn; the time and the process's CPU (getrusage) of each output.Stage.Apply.\n\n",
		pop.services(), pop.perService, changes)
	fmt.Fprintln(w, "| filtering | kept view | fill (first Apply) | fill CPU | per change: mean | p99 | CPU |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	for _, r := range []struct {
		name string
		r    stageResult
	}{{"off", off}, {"on", on}} {
		view := "-"
		if r.name == "on" {
			view = fmt.Sprintf("%d of %d targets", r.r.kept, r.r.whole)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", r.name, view, benchproc.MsFine(r.r.fill), benchproc.MsFine(r.r.fillCPU),
			us(mean(r.r.times)), us(benchproc.Percentile(r.r.times, 0.99)), us(mean(r.r.cpu)))
	}
	fmt.Fprintf(w, "\n- on / off: mean %.2fx, p99 %.2fx, CPU %.2fx\n\n", ratio(mean(on.times), mean(off.times)),
		ratio(benchproc.Percentile(on.times, 0.99), benchproc.Percentile(off.times, 0.99)), ratio(mean(on.cpu), mean(off.cpu)))
	if on.kept != pop.keptCount() || on.whole != pop.targets || off.whole != pop.targets {
		return fmt.Errorf("the stage's views: %d kept of %d with filtering, %d without; want %d of %d", on.kept, on.whole, off.whole, pop.keptCount(), pop.targets)
	}
	return nil
}

// us formats a short duration: microseconds under a millisecond, then
// milliseconds with two decimals.
func us(d time.Duration) string {
	if d < time.Millisecond {
		return fmt.Sprintf("%d µs", d.Microseconds())
	}
	if d < time.Second {
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	}
	return benchproc.MsFine(d)
}

func ratio(a, b time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}
