package reliability

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/sdhub/sdhub/internal/managertest"
	"github.com/sdhub/sdhub/manager"
	"github.com/sdhub/sdhub/output"
)

// WriterOptions size the writer-cost scenario.
type WriterOptions struct {
	Bin   string
	Dir   string
	Sizes []int // targets per job, e.g. 10,000, 50,000, 100,000
	Reps  int   // writes per size; the median is reported
	// RSSTargets is the size of the job whose memory is measured in the
	// real binary (0 leaves it out).
	RSSTargets int
}

// WriterCost measures a changed job written end to end by the output stage
// (every group new: render, temp file, fsync, rename, directory fsync) at
// each size, with consul-like targets (every target its own label set),
// and checks the cost grows linearly: the time per target at the largest
// size is at most three times that at the smallest. Then it runs sdhub on
// a file_sd job of RSSTargets such targets and reports its peak RSS and the
// time from a change of the input to the new output.
func WriterCost(ctx context.Context, o WriterOptions) (r Result) {
	r = Result{Scenario: "writer cost"}
	defer r.timed(time.Now())
	var perTarget []float64
	for _, n := range o.Sizes {
		dir := filepath.Join(o.Dir, fmt.Sprintf("w%d", n))
		w, err := output.New(dir, output.Options{})
		if err != nil {
			r.Fail("%v", err)
			return r
		}
		versions := [2][]*targetgroup.Group{consulLike(n, 0), consulLike(n, 1)}
		var times []time.Duration
		for i := 0; i < o.Reps && ctx.Err() == nil; i++ {
			t0 := time.Now()
			gs := make([]manager.Group, len(versions[i%2]))
			for j, g := range versions[i%2] {
				gs[j] = managertest.NewGroup("p", g)
			}
			if err := w.Apply(manager.Update{"big": managertest.NewJob(true, gs...)}); err != nil {
				r.Fail("%d targets: %v", n, err)
				break
			}
			times = append(times, time.Since(t0))
		}
		r.Runs++
		if len(times) == 0 {
			continue
		}
		slices.Sort(times)
		med := times[len(times)/2]
		info, _ := os.Stat(output.Path(dir, "big"))
		size := int64(0)
		if info != nil {
			size = info.Size()
		}
		r.Fig("%dk: %.0f ms (%.1f MB)", n/1000, float64(med)/1e6, float64(size)/1e6)
		perTarget = append(perTarget, float64(med)/float64(n))
	}
	if len(perTarget) > 1 {
		ratio := perTarget[len(perTarget)-1] / perTarget[0]
		r.Fig("per-target cost %dk/%dk ×%.2f", o.Sizes[len(o.Sizes)-1]/1000, o.Sizes[0]/1000, ratio)
		if ratio > 3 {
			r.Fail("the writer's cost grows faster than linearly: ×%.2f per target from %d to %d targets", ratio, o.Sizes[0], o.Sizes[len(o.Sizes)-1])
		}
	}
	if o.RSSTargets > 0 {
		rssOf(ctx, o, &r)
	}
	return r
}

// rssOf runs sdhub on a file_sd job of o.RSSTargets consul-like targets.
func rssOf(ctx context.Context, o WriterOptions, r *Result) {
	r.Runs++
	ps, err := makeDirs(o.Dir)
	if r.failOn(err) {
		return
	}
	out := ps.out
	input := filepath.Join(ps.in, "big.json")
	put := func(k int) error {
		data, err := fileSDInput(consulLike(o.RSSTargets, k))
		if err != nil {
			return err
		}
		return WriteFileAtomic(input, data)
	}
	if r.failOn(put(0)) || r.failOn(ps.writeConfig(fmt.Sprintf("scrape_configs:\n  - job_name: big\n    file_sd_configs:\n      - files: [%q]\n", input))) {
		return
	}
	p, err := ps.start(o.Bin, "--output.flush-interval=10ms")
	if r.failOn(err) {
		return
	}
	defer func() { _ = p.Stop() }()
	outPath := filepath.Join(out, "big.json")
	// Wait on the cheap write counter, then check the file once.
	writes := 0.0
	written := func(k int) func() bool {
		port := fmt.Sprintf(`"10.0.0.0:%d"`, 8080+k)
		return func() bool {
			if n, err := p.Metric(`sdhub_output_writes_total{job="big"}`); err != nil || n <= writes {
				return false
			}
			writes++
			b, err := os.ReadFile(outPath)
			return err == nil && json.Valid(b) && bytes.Contains(b, []byte(port))
		}
	}
	if err := Eventually("the 100k job's first output", written(0)); err != nil {
		r.Fail("%v", err)
		return
	}
	// The consumer `generate prometheus-config` configures reads the job's
	// parts; one configured for one file per job reads big.json, written
	// at most every --output.whole-file-interval.
	partsAt := func(k int) bool {
		files, _ := filepath.Glob(filepath.Join(out, "big.parts", "*", "targets.json"))
		now, before := []byte(fmt.Sprintf(`:%d"`, 8080+k)), []byte(fmt.Sprintf(`:%d"`, 8080+k-1))
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil || !json.Valid(b) || bytes.Contains(b, before) || (len(b) > len("[]\n") && !bytes.Contains(b, now)) {
				return false
			}
		}
		return len(files) > 0
	}
	var lat, partsLat []time.Duration
	for k := 1; k <= 3 && ctx.Err() == nil; k++ {
		data, err := fileSDInput(consulLike(o.RSSTargets, k))
		if err != nil {
			r.Fail("%v", err)
			return
		}
		t0 := time.Now()
		if err := WriteFileAtomic(input, data); err != nil {
			r.Fail("%v", err)
			return
		}
		if err := Eventually(fmt.Sprintf("version %d of the parts", k), func() bool { return partsAt(k) }); err != nil {
			r.Fail("%v", err)
			return
		}
		partsLat = append(partsLat, time.Since(t0))
		if err := Eventually(fmt.Sprintf("version %d of the output", k), written(k)); err != nil {
			r.Fail("%v", err)
			return
		}
		lat = append(lat, time.Since(t0))
	}
	rss, peak, err := p.RSS()
	if err != nil {
		r.Fail("%v", err)
		return
	}
	slices.Sort(lat)
	slices.Sort(partsLat)
	info, _ := os.Stat(input)
	r.Fig("sdhub with a %dk-target file_sd job (%d MB input): RSS %d MB, peak %d MB, input change→every part %d ms, →the whole file %d ms (written at most every 5 s)",
		o.RSSTargets/1000, info.Size()>>20, rss>>20, peak>>20, partsLat[len(partsLat)/2].Milliseconds(), lat[len(lat)/2].Milliseconds())
}

// consulLike makes n targets shaped like consul_sd's (every target its own
// label set), 50 per service, version k in their port.
func consulLike(n, k int) []*targetgroup.Group {
	const perService = 50
	var groups []*targetgroup.Group
	for i := 0; i < n; i++ {
		svc := i / perService
		if i%perService == 0 {
			groups = append(groups, &targetgroup.Group{
				Source: fmt.Sprintf("svc-%d", svc),
				Labels: model.LabelSet{"__meta_consul_service": model.LabelValue(fmt.Sprintf("svc-%d", svc)), "__meta_consul_dc": "dc1"},
			})
		}
		g := groups[len(groups)-1]
		addr := fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
		g.Targets = append(g.Targets, model.LabelSet{
			"__address__":                          model.LabelValue(fmt.Sprintf("%s:%d", addr, 8080+k)),
			"__meta_consul_address":                model.LabelValue(addr),
			"__meta_consul_node":                   model.LabelValue(fmt.Sprintf("node-%d", i%97)),
			"__meta_consul_tags":                   ",prod,http,",
			"__meta_consul_service_address":        model.LabelValue(addr),
			"__meta_consul_service_port":           model.LabelValue(fmt.Sprint(8080 + k)),
			"__meta_consul_service_id":             model.LabelValue(fmt.Sprintf("svc-%d-%d", svc, i)),
			"__meta_consul_health":                 "passing",
			"__meta_consul_metadata_rack":          model.LabelValue(fmt.Sprintf("r%d", i%7)),
			"__meta_consul_service_metadata_owner": "team-a",
		})
	}
	return groups
}

// fileSDInput writes groups as a file_sd input: one entry per target, its
// group's labels merged in.
func fileSDInput(groups []*targetgroup.Group) ([]byte, error) {
	var entries []Entry
	for _, g := range groups {
		for _, t := range g.Targets {
			e := Entry{Labels: map[string]string{}}
			for n, v := range g.Labels {
				e.Labels[string(n)] = string(v)
			}
			for n, v := range t {
				if n == model.AddressLabel {
					e.Targets = []string{string(v)}
					continue
				}
				e.Labels[string(n)] = string(v)
			}
			entries = append(entries, e)
		}
	}
	return json.Marshal(entries)
}
