// Package benchproc holds what the bench/ programs share besides their
// header (internal/benchreport): the percentiles and durations of their
// tables, and stopping and reading the processes they start.
package benchproc

import (
	"fmt"
	"os"
	"slices"
	"syscall"
	"time"

	"github.com/prometheus/procfs"
)

// Percentile is the nearest-rank p-quantile of s (0 < p ≤ 1), 0 for none;
// s is left as it is.
func Percentile(s []time.Duration, p float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	s = slices.Sorted(slices.Values(s))
	i := int(float64(len(s))*p+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// Ms formats d for a table: whole milliseconds under a second, then
// seconds with two decimals, and with one from 10 s.
func Ms(d time.Duration) string {
	if d >= 10*time.Second {
		return fmt.Sprintf("%.1f s", d.Seconds())
	}
	return MsFine(d)
}

// MsFine is Ms with two decimals of a second from 10 s too.
func MsFine(d time.Duration) string {
	if d >= time.Second {
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
	return fmt.Sprintf("%d ms", d.Milliseconds())
}

// StopTimeout is how long Stop waits after SIGTERM.
const StopTimeout = 30 * time.Second

// Stop sends p SIGTERM and waits for done, closed once p is reaped; after
// StopTimeout it kills p, waits, and reports false.
func Stop(p *os.Process, done <-chan struct{}) bool {
	_ = p.Signal(syscall.SIGTERM)
	select {
	case <-done:
		return true
	case <-time.After(StopTimeout):
		_ = p.Kill()
		<-done
		return false
	}
}

// Usage is a process's resources from /proc.
type Usage struct {
	RSS, Peak int64   // bytes: VmRSS, VmHWM
	CPU       float64 // seconds, user and system
}

// ReadUsage reads pid's Usage.
func ReadUsage(pid int) (Usage, error) {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return Usage{}, err
	}
	st, err := p.NewStatus()
	if err != nil {
		return Usage{}, err
	}
	stat, err := p.Stat()
	if err != nil {
		return Usage{}, err
	}
	return Usage{RSS: int64(st.VmRSS), Peak: int64(st.VmHWM), CPU: stat.CPUTime()}, nil
}

// CPU is the CPU time pid has used, in seconds; 0 when /proc cannot say.
func CPU(pid int) float64 {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return 0
	}
	stat, err := p.Stat()
	if err != nil {
		return 0
	}
	return stat.CPUTime()
}
