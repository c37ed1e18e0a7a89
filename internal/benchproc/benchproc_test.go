package benchproc

import (
	"os/exec"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestPercentile(t *testing.T) {
	s := []time.Duration{5, 1, 4, 2, 3}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{0.5, 3}, {0.99, 5}, {1, 5}, {0.2, 1}, {0.21, 2}} {
		if got := Percentile(s, c.p); got != c.want {
			t.Errorf("Percentile(%v, %v) = %v, want %v", s, c.p, got, c.want)
		}
	}
	if s[0] != 5 {
		t.Errorf("Percentile sorted its argument: %v", s)
	}
	if got := Percentile(nil, 0.5); got != 0 {
		t.Errorf("Percentile(nil) = %v", got)
	}
}

func TestMs(t *testing.T) {
	for _, c := range []struct {
		d        time.Duration
		ms, fine string
	}{
		{999 * time.Millisecond, "999 ms", "999 ms"},
		{1234 * time.Millisecond, "1.23 s", "1.23 s"},
		{12345 * time.Millisecond, "12.3 s", "12.35 s"},
	} {
		if got := Ms(c.d); got != c.ms {
			t.Errorf("Ms(%v) = %q, want %q", c.d, got, c.ms)
		}
		if got := MsFine(c.d); got != c.fine {
			t.Errorf("MsFine(%v) = %q, want %q", c.d, got, c.fine)
		}
	}
}

func TestStopAndUsage(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Skipf("no sleep(1): %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	u, err := ReadUsage(cmd.Process.Pid)
	if err != nil || u.RSS <= 0 || u.Peak < u.RSS {
		t.Errorf("ReadUsage = %+v, %v", u, err)
	}
	if c := CPU(-1); c != 0 {
		t.Errorf("CPU of no process = %v, want 0", c)
	}
	if !Stop(cmd.Process, done) {
		t.Error("sleep did not stop on SIGTERM")
	}
	if cmd.ProcessState == nil {
		t.Error("Stop returned before the process was reaped")
	}
}
