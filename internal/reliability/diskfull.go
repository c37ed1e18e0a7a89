package reliability

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// DiskOptions size the full and read-only output directory scenario.
type DiskOptions struct {
	Bin string
	Dir string
}

// skipNoMount starts Result.Skipped when the tmpfs could not be mounted.
const skipNoMount = "cannot mount a tmpfs"

// DiskFull runs sdhub with its output directory on a small tmpfs. It fills
// the tmpfs with a job's larger output, then makes it read-only: each time
// the job's old file must stay intact, the failure be logged and counted
// for that job only, the job be unhealthy (sdhub_job_healthy), and the next successful write
// (a smaller input, or the writer's retry once the mount is writable again)
// recover, with no temp file left behind.
func DiskFull(ctx context.Context, o DiskOptions) (r Result) {
	r = Result{Scenario: "output dir full / read-only"}
	defer r.timed(time.Now())

	ps, err := makeDirs(o.Dir)
	if r.failOn(err) {
		return r
	}
	out := ps.out
	if err := syscall.Mount("tmpfs", out, "tmpfs", 0, "size=256k,mode=0755"); err != nil {
		r.Skipped = fmt.Sprintf("%s at %s (need root): %v", skipNoMount, out, err)
		return r
	}
	defer func() {
		if err := syscall.Unmount(out, 0); err != nil {
			r.Fail("unmount %s: %v", out, err)
		}
	}()

	input := filepath.Join(ps.in, "big.json")
	if r.failOn(ps.writeConfig(fmt.Sprintf("scrape_configs:\n  - job_name: big\n    file_sd_configs:\n      - files: [%q]\n  - job_name: small\n    static_configs:\n      - targets: [\"a:1\"]\n", input))) {
		return r
	}
	bigPath := filepath.Join(out, "big.json")
	hasTargets := func(n, k int) func() bool {
		return func() bool {
			data, err := os.ReadFile(bigPath)
			return err == nil && verifyDiskOutput(data, n, k) == nil
		}
	}
	setInput := func(n, k int) bool {
		return !r.failOn(WriteFileAtomic(input, diskInput(n, k)))
	}
	if !setInput(1000, 1) {
		return r
	}
	p, err := ps.start(o.Bin, fastFlush)
	if r.failOn(err) {
		return r
	}
	defer r.stop(p, 2000)

	failures := func(job string) float64 {
		v, _ := p.Metric(fmt.Sprintf(`sdhub_output_write_failures_total{job=%q}`, job))
		return v
	}
	if r.failOn(Eventually("1000 targets written and ready", func() bool { return hasTargets(1000, 1)() && allWritten(p) })) {
		return r
	}

	// fault makes a write fail by cause, then checks the old file, the
	// log, the metric and readiness, then lifts the fault with recover and
	// waits for want targets of version k.
	fault := func(name, logText string, cause func() bool, recover func() bool, n, k int) {
		r.Runs++
		old, err := os.ReadFile(bigPath)
		if err != nil {
			r.Fail("%s: %v", name, err)
			return
		}
		before := failures("big")
		smallBefore := failures("small")
		if !cause() {
			return
		}
		if err := Eventually(name+": a write failure counted for job big", func() bool { return failures("big") > before }); err != nil {
			r.Fail("%v", err)
			return
		}
		now, err := os.ReadFile(bigPath)
		if err != nil || !bytes.Equal(now, old) {
			r.Fail("%s: the old file changed (err %v)", name, err)
		}
		if jobHealthy(p, "big") || allWritten(p) {
			r.Fail("%s: job big healthy, or every file written, during the failure", name)
		}
		if !strings.Contains(p.Log(), logText) {
			r.Fail("%s: no %q in the log", name, logText)
		}
		if failures("small") != smallBefore || !jobHealthy(p, "small") {
			r.Fail("%s: failures counted for job small too, or it is not healthy", name)
		}
		if !recover() {
			return
		}
		if err := Eventually(name+": recovery", func() bool { return hasTargets(n, k)() && jobHealthy(p, "big") && allWritten(p) }); err != nil {
			r.Fail("%v", err)
		}
		if temps, _ := TempFiles(out); len(temps) > 0 {
			r.Fail("%s: temp files left: %v", name, temps)
		}
		r.Fig("%s: old file intact, failure counted and logged, job unhealthy (the other healthy), recovered", name)
	}
	// 20,000 targets are about 700 kB: more than the tmpfs holds.
	fault("full", "no space left on device",
		func() bool { return setInput(20000, 2) },
		func() bool { return setInput(500, 3) }, 500, 3)
	fault("read-only", "read-only file system",
		func() bool {
			if err := syscall.Mount("", out, "", syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
				r.Fail("remount read-only: %v", err)
				return false
			}
			return setInput(700, 4)
		},
		func() bool {
			// No input change: the writer's own retry must recover.
			if err := syscall.Mount("", out, "", syscall.MS_REMOUNT, "size=256k,mode=0755"); err != nil {
				r.Fail("remount read-write: %v", err)
				return false
			}
			return true
		}, 700, 4)
	return r
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func diskInput(n, k int) []byte {
	var b bytes.Buffer
	b.WriteString(`[{"targets":[`)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"host-%06d.example.org:%d"`, i, 9000+k)
	}
	fmt.Fprintf(&b, `],"labels":{"v":"%d"}}]`, k)
	return b.Bytes()
}

func verifyDiskOutput(data []byte, n, k int) error {
	es, err := ParseFileSD(data)
	if err != nil {
		return err
	}
	if len(es) != 1 || len(es[0].Targets) != n || es[0].Labels["v"] != fmt.Sprint(k) {
		return fmt.Errorf("not %d targets of version %d", n, k)
	}
	return nil
}
