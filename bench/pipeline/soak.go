package main

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// soakResult is one sdhub's figures on the soak.
type soakResult struct {
	name          string
	made          int
	rate          float64 // changes made per second
	seen          int
	lat           []time.Duration
	window        int     // the changes in each RSS window
	early, mid    int64   // mean RSS while changes window..2*window were made; the window before halfway
	late          int64   // mean RSS while the last window changes were made
	curve         []point // RSS and heap goal by changes made
	peak          int64
	before, after int // goroutines
	cpu           float64
	duration      time.Duration
	err           error
}

// sample is a reading of the process's RSS while the soak runs, and of
// its heap goal (go_memstats_next_gc_bytes: twice the heap live after the
// last GC), 0 when not read.
type sample struct {
	made int // changes made so far
	rss  int64
	goal int64
}

// runSoak runs one sdhub through the soak in dir.
func runSoak(cfg config, name, dir string, start func(input string) (*side, error)) (r soakResult) {
	r.name = name
	in, s, err := setUp(dir, "soak.json", cfg.soakTargets, start)
	if err != nil {
		r.err = err
		return r
	}
	defer keepFirst(&r.err, s.stop)
	if _, err := s.obs.waitFull(cfg.timeout); err != nil {
		r.err = err
		return r
	}
	if r.before, err = s.goroutines(); err != nil {
		r.err = err
		return r
	}
	u0, err := s.usage()
	if err != nil {
		r.err = err
		return r
	}

	// RSS every 200 ms, with the number of changes made by then.
	var (
		mu      sync.Mutex
		made    int
		samples []sample
	)
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-tick.C:
			}
			u, err := s.usage()
			if err != nil {
				continue
			}
			var goal float64
			if len(samples)%5 == 0 { // once a second
				goal, _ = s.metric("go_memstats_next_gc_bytes")
			}
			mu.Lock()
			samples = append(samples, sample{made, u.rss, int64(goal)})
			mu.Unlock()
		}
	}()

	madeAt := make([]int64, cfg.soakChanges+1)
	step := stride(cfg.soakTargets)
	// Change k is due at k/rate seconds from the start; a change that is
	// late (the write of the previous one took longer) is made at once.
	interval := time.Duration(float64(time.Second) / cfg.soakRate)
	began := time.Now()
	for k := 1; k <= cfg.soakChanges; k++ {
		if wait := time.Until(began.Add(time.Duration(k) * interval)); wait > 0 {
			<-time.After(wait)
		}
		i := k * step % cfg.soakTargets
		if k%2 == 0 {
			in.setLabels(i, k)
		} else {
			in.setTarget(i, k)
		}
		if madeAt[k], err = in.write(); err != nil {
			r.err = err
			break
		}
		mu.Lock()
		made = k
		mu.Unlock()
	}
	r.made = made
	r.rate = float64(made) / time.Since(began).Seconds()
	if made > 0 {
		if _, err := s.obs.waitMarker(made, cfg.timeout); err != nil && r.err == nil {
			r.err = err
		}
	}
	r.duration = time.Since(began)
	close(stopSampling)
	<-sampled

	for k := 1; k <= made; k++ {
		if at, ok := s.obs.seenAt(k); ok {
			r.seen++
			r.lat = append(r.lat, time.Duration(at-madeAt[k]))
		}
	}
	if r.seen < made && r.err == nil {
		r.err = fmt.Errorf("%d of %d changes never reached the output", made-r.seen, made)
	}
	if r.after, err = s.goroutines(); err != nil && r.err == nil {
		r.err = err
	}
	u1, err := s.usage()
	if err != nil && r.err == nil {
		r.err = err
	}
	r.peak, r.cpu = u1.peak, u1.cpu-u0.cpu
	r.window = min(100, made/4)
	between := func(from, to int) func(int) bool { return func(m int) bool { return m > from && m <= to } }
	r.early, _ = mean(samples, between(r.window, 2*r.window))
	r.mid, _ = mean(samples, between(made/2-r.window, made/2))
	r.late, _ = mean(samples, between(made-r.window, made))
	for _, f := range []int{1, 2, 4, 6, 8, 10} { // a tenth of the changes, every fifth of them
		to := made * f / 10
		rss, goal := mean(samples, between(to-made/10, to))
		r.curve = append(r.curve, point{to, rss, goal})
	}
	return r
}

// point is the mean RSS and heap goal over the tenth of the changes up to made.
type point struct {
	made      int
	rss, goal int64
}

// mean is the mean RSS, and the mean heap goal, of the samples taken while
// the number of changes made was in.
func mean(samples []sample, in func(made int) bool) (rss, goal int64) {
	var n, ng int64
	for _, s := range samples {
		if !in(s.made) {
			continue
		}
		rss += s.rss
		n++
		if s.goal > 0 {
			goal += s.goal
			ng++
		}
	}
	if n > 0 {
		rss /= n
	}
	if ng > 0 {
		goal /= ng
	}
	return rss, goal
}

func printSoak(w io.Writer, cfg config, rs []soakResult) {
	fmt.Fprintf(w, "\n### Soak: %d changes at %g per second to a job of %d targets (sdhub only)\n\n", cfg.soakChanges, cfg.soakRate, cfg.soakTargets)
	fmt.Fprintln(w, "Each change goes to another group: its labels, or its target, in turn. Each RSS is the mean of samples every 200 ms while w changes were made: the changes after the first w, the w before halfway, the last w.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| side | changes made (per second) | changes in the output | change p50 / p99 / max | RSS after the first w changes | RSS halfway | RSS at the end | growth, first w to end | peak RSS | goroutines before, after | CPU |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range rs {
		if r.err != nil && r.made == 0 {
			fmt.Fprintf(w, "| %s | failed: %v | | | | | | | | | |\n", r.name, oneLine(r.err))
			continue
		}
		growth := "-"
		if r.early > 0 {
			growth = fmt.Sprintf("%+.1f%%", 100*(float64(r.late)/float64(r.early)-1))
		}
		fmt.Fprintf(w, "| %s | %d (%.1f) | %d of %d | %s / %s / %s | %s (w=%d) | %s | %s | %s | %s | %d, %d | %.1f s |\n", r.name,
			r.made, r.rate, r.seen, r.made, ms(percentile(r.lat, 0.5)), ms(percentile(r.lat, 0.99)), ms(percentile(r.lat, 1)),
			mib(r.early), r.window, mib(r.mid), mib(r.late), growth, mib(r.peak), r.before, r.after, r.cpu)
	}
	fmt.Fprintln(w)
	for _, r := range rs {
		if r.err != nil {
			fmt.Fprintf(w, "- %s: %v\n", r.name, oneLine(r.err))
		}
		if len(r.curve) == 0 {
			continue
		}
		fmt.Fprintf(w, "- %s, RSS / heap goal (the live heap plus GOGC%%) over each tenth of the changes up to:", r.name)
		for i, p := range r.curve {
			sep := ","
			if i == 0 {
				sep = ""
			}
			fmt.Fprintf(w, "%s %d: %s / %s", sep, p.made, mib(p.rss), mib(p.goal))
		}
		fmt.Fprintln(w)
	}
}
