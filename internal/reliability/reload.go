package reliability

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/sdhub/sdhub/output"
)

// ReloadOptions size the reload storm.
type ReloadOptions struct {
	Bin     string
	Dir     string
	Reloads int
}

// reloadConfigs add, remove and rename jobs; keep-static and keep-file are
// in all of them, and their files must never be missing.
var reloadConfigs = []struct {
	jobs string   // the scrape_configs, %[1]s is the input directory
	want []string // the output files it makes, and the parts directories of the jobs written in parts
}{
	{`
  - job_name: keep-static
    static_configs: [{targets: ["k:1"]}]
  - job_name: keep-file
    file_sd_configs: [{files: ["%[1]s/keep.json"]}]
  - job_name: a
    static_configs: [{targets: ["x:1"]}]
  - job_name: b-file
    file_sd_configs: [{files: ["%[1]s/b.json"]}]
`, []string{"a.json", "b-file.json", "b-file.parts", "keep-file.json", "keep-file.parts", "keep-static.json"}},
	{`
  - job_name: keep-static
    static_configs: [{targets: ["k:1"]}]
  - job_name: keep-file
    file_sd_configs: [{files: ["%[1]s/keep.json"]}]
  - job_name: a2
    static_configs: [{targets: ["x:1"]}]
  - job_name: c
    static_configs: [{targets: ["c:1"]}, {targets: ["c:2"], labels: {z: "1"}}]
`, []string{"a2.json", "c.json", "keep-file.json", "keep-file.parts", "keep-static.json"}},
	{`
  - job_name: keep-static
    static_configs: [{targets: ["k:1"]}]
  - job_name: keep-file
    file_sd_configs: [{files: ["%[1]s/keep.json"]}]
  - job_name: c
    static_configs: [{targets: ["c:1"]}]
  - job_name: d-file
    file_sd_configs: [{files: ["%[1]s/b.json"]}, {files: ["%[1]s/keep.json"]}]
`, []string{"c.json", "d-file.json", "d-file.parts", "keep-file.json", "keep-file.parts", "keep-static.json"}},
}

// ReloadStorm reloads sdhub Reloads times in quick succession, SIGHUP and
// POST /-/reload in turn, over configs that add, remove and rename jobs,
// while a watcher checks that the files of the jobs configured throughout
// are never missing. It compares goroutines (go_goroutines) and open file
// descriptors before and after, and the outputs at the end.
func ReloadStorm(ctx context.Context, o ReloadOptions) (r Result) {
	r = Result{Scenario: "reload storm"}
	defer r.timed(time.Now())
	ps, err := makeDirs(o.Dir)
	if r.failOn(err) {
		return r
	}
	out := ps.out
	for name, body := range map[string]string{"keep.json": `[{"targets":["f:1"]}]`, "b.json": `[{"targets":["b:1","b:2"]}]`} {
		if r.failOn(os.WriteFile(filepath.Join(ps.in, name), []byte(body), 0o644)) {
			return r
		}
	}
	setConfig := func(i int) error {
		return WriteFileAtomic(ps.cfg, []byte("scrape_configs:"+fmt.Sprintf(reloadConfigs[i%len(reloadConfigs)].jobs, ps.in)))
	}
	if r.failOn(setConfig(0)) {
		return r
	}
	p, err := ps.start(o.Bin, "--web.enable-lifecycle", "--output.flush-interval=10ms")
	if r.failOn(err) {
		return r
	}
	defer r.stop(p, 3000)

	reload := func(i int) error {
		if err := setConfig(i); err != nil {
			return err
		}
		if i%2 == 0 {
			before := p.Count("Completed loading of configuration file")
			if err := p.Signal(syscall.SIGHUP); err != nil {
				return err
			}
			return Eventually("the SIGHUP reload", func() bool { return p.Count("Completed loading of configuration file") > before })
		}
		code, body, err := p.Do(http.MethodPost, "/-/reload")
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("POST /-/reload = %d: %s", code, body)
		}
		return nil
	}
	settled := func(i int) error {
		want := append([]string{".sdhub-manifest"}, reloadConfigs[i%len(reloadConfigs)].want...)
		var names []string
		err := Eventually(fmt.Sprintf("outputs of config %d", i%len(reloadConfigs)), func() bool {
			names = listNames(out)
			return slices.Equal(names, want) && outputsValid(out) && readyOK(p) && allWritten(p)
		})
		if err != nil {
			return fmt.Errorf("%w: the output directory holds %q, want %q (outputs valid: %v)", err, names, want, outputsValid(out))
		}
		return nil
	}
	// Warm up: every config once, so that lazily started goroutines and
	// connections exist before the measure.
	for i := 1; i <= len(reloadConfigs); i++ {
		if err := reload(i); err != nil {
			r.Fail("warm-up reload: %v", err)
			return r
		}
		if err := settled(i); err != nil {
			r.Fail("%v", err)
			return r
		}
	}
	gBefore, _ := p.Metric("go_goroutines")
	fdBefore, _ := p.FDs()

	// The watcher: the files of keep-static and keep-file must exist at
	// every look, and never be removed.
	var missing, looks atomic.Int64
	var wg sync.WaitGroup
	w, err := WatchDir(out)
	if r.failOn(err) {
		return r
	}
	defer w.Close()
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	kept := []string{filepath.Join(out, "keep-static.json"), filepath.Join(out, "keep-file.json")}
	wg.Add(2)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-wctx.Done():
				return
			case ev := <-w.Events:
				// Replacing by rename is a Create of the name; a Remove or
				// a Rename away means the file was gone, if only briefly.
				if slices.Contains(kept, ev.Name) && (ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename)) {
					missing.Add(1)
				}
			case <-w.Errors:
			}
		}
	}()
	go func() {
		defer wg.Done()
		tick := time.NewTicker(200 * time.Microsecond)
		defer tick.Stop()
		for wctx.Err() == nil {
			<-tick.C
			for _, k := range kept {
				looks.Add(1)
				if _, err := os.Stat(k); err != nil {
					missing.Add(1)
				}
			}
		}
	}()

	n := 0
	for i := 0; i < o.Reloads && ctx.Err() == nil; i++ {
		if err := reload(i); err != nil {
			r.Fail("reload %d: %v", i, err)
			break
		}
		n++
	}
	// End on the first config.
	last := n - 1
	if last%len(reloadConfigs) != 0 {
		if err := reload(0); err != nil {
			r.Fail("final reload: %v", err)
		}
		last = 0
	}
	if err := settled(last); err != nil {
		r.Fail("%v", err)
	}
	stopWatch()
	wg.Wait()
	r.Runs = n
	if m := missing.Load(); m > 0 {
		r.Fail("a configured job's file was missing %d times in %d looks", m, looks.Load())
	}
	if ok, _ := p.Metric("sdhub_config_last_reload_successful"); ok != 1 {
		r.Fail("sdhub_config_last_reload_successful = %v", ok)
	}

	// Goroutines and fds settle back: poll, bounded.
	var gAfter float64
	var fdAfter int
	_ = Eventually("goroutines and fds back to their level", func() bool {
		gAfter, _ = p.Metric("go_goroutines")
		fdAfter, _ = p.FDs()
		return gAfter <= gBefore+2 && fdAfter <= fdBefore+2
	})
	if gAfter > gBefore+2 {
		r.Fail("goroutines grew from %v to %v", gBefore, gAfter)
	}
	if fdAfter > fdBefore+2 {
		r.Fail("open fds grew from %d to %d", fdBefore, fdAfter)
	}
	r.Fig("reloads %d (SIGHUP and /-/reload in turn)", n)
	r.Fig("goroutines %v→%v", gBefore, gAfter)
	r.Fig("fds %d→%d", fdBefore, fdAfter)
	r.Fig("configured job files missing %d in %d looks", missing.Load(), looks.Load())
	return r
}

// listNames lists dir's entries but the writer's staging directory.
func listNames(dir string) []string {
	es, _ := os.ReadDir(dir)
	var out []string
	for _, e := range es {
		if e.Name() != output.StagingDir {
			out = append(out, e.Name())
		}
	}
	return out
}

// outputsValid checks every .json in dir, and every part of a job written
// in parts, parses as file_sd, and that each job's file and the union of
// its parts hold the targets its job's config says.
func outputsValid(dir string) bool {
	want := map[string]string{
		"keep-static": "k:1", "keep-file": "f:1", "a": "x:1", "a2": "x:1",
		"b-file": "b:1 b:2", "d-file": "b:1 b:2 f:1",
	}
	targets := func(files ...string) (string, bool) {
		var ts []string
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				return "", false
			}
			es, err := ParseFileSD(data)
			if err != nil {
				return "", false
			}
			for _, e := range es {
				ts = append(ts, e.Targets...)
			}
		}
		slices.Sort(ts)
		return strings.Join(ts, " "), true
	}
	for _, name := range listNames(dir) {
		var files []string
		job, isFile := strings.CutSuffix(name, ".json")
		if isFile {
			files = []string{filepath.Join(dir, name)}
		} else if j, isParts := strings.CutSuffix(name, output.PartsDirSuffix); isParts {
			job = j
			files, _ = filepath.Glob(filepath.Join(dir, name, "*", "targets.json"))
			if len(files) == 0 {
				return false
			}
		} else {
			continue
		}
		ts, ok := targets(files...)
		if !ok {
			return false
		}
		if w, known := want[job]; known && ts != w {
			return false
		}
	}
	return true
}

func readyOK(p *Proc) bool {
	c, _, err := p.Do(http.MethodGet, "/-/ready")
	return err == nil && c == http.StatusOK
}

// allWritten reports whether every job's file holds its current output
// (sdhub_output_ready).
func allWritten(p *Proc) bool {
	v, err := p.Metric("sdhub_output_ready")
	return err == nil && v == 1
}

// jobHealthy reports whether job is healthy (sdhub_job_healthy): its
// providers delivered and read their sources, its output is on disk.
func jobHealthy(p *Proc, job string) bool {
	v, err := p.Metric(fmt.Sprintf(`sdhub_job_healthy{job=%q}`, job))
	return err == nil && v == 1
}

// jobServed reports whether job's http_sd endpoint answers 200.
func jobServed(p *Proc, job string) bool {
	c, _, err := p.Do(http.MethodGet, "/api/v1/sd/"+url.PathEscape(job))
	return err == nil && c == http.StatusOK
}
