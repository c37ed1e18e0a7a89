package poll

import (
	"fmt"
	"testing"
	"testing/synctest"
	"time"
)

func TestUntil(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		calls := 0
		if err := Until(time.Second, 10*time.Millisecond, "the third call", func() bool { calls++; return calls == 3 }); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took != 20*time.Millisecond {
			t.Errorf("held at the third call after %v, want 20ms", took)
		}
	})
}

func TestUntilTimesOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		err := Until(time.Second, 100*time.Millisecond, "never", func() bool { return false })
		if err == nil || err.Error() != "timed out after 1s waiting for never" {
			t.Fatalf("err = %v", err)
		}
		if took := time.Since(start); took < time.Second || took > 1100*time.Millisecond {
			t.Errorf("gave up after %v, want 1s to 1.1s", took)
		}
	})
}

// fatalTB records Fatal's message.
type fatalTB struct{ msg string }

func (f *fatalTB) Helper()           {}
func (f *fatalTB) Fatal(args ...any) { f.msg = fmt.Sprint(args...) }

func TestFatal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var f fatalTB
		Fatal(&f, 50*time.Millisecond, 10*time.Millisecond, "x", func() bool { return false })
		if f.msg != "timed out after 50ms waiting for x" {
			t.Errorf("Fatal's message %q", f.msg)
		}
		f = fatalTB{}
		Fatal(&f, 50*time.Millisecond, 10*time.Millisecond, "x", func() bool { return true })
		if f.msg != "" {
			t.Errorf("Fatal failed on a condition that holds: %q", f.msg)
		}
	})
}
