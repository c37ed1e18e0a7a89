package testenv

import (
	"runtime"
	"testing"
)

func TestRequireOK(t *testing.T) {
	t.Setenv(RequireEnv, "1")
	Require(t, "thing", true, "unused") // must return without stopping the test
}

func TestRequireSkipsOrFails(t *testing.T) {
	for _, tc := range []struct {
		env     string
		skipped bool
		failed  bool
	}{
		{env: "", skipped: true},
		{env: "0", skipped: true},
		{env: "1", failed: true},
	} {
		t.Run("env="+tc.env, func(t *testing.T) {
			t.Setenv(RequireEnv, tc.env)
			rec := &recorder{TB: t}
			done := make(chan struct{})
			go func() { // Skipf/Fatalf end the goroutine via runtime.Goexit
				defer close(done)
				Require(rec, "thing", false, "not installed")
			}()
			<-done
			if rec.skipped != tc.skipped || rec.failed != tc.failed {
				t.Errorf("skipped=%v failed=%v, want skipped=%v failed=%v (msg %q)",
					rec.skipped, rec.failed, tc.skipped, tc.failed, rec.msg)
			}
		})
	}
}

type recorder struct {
	testing.TB
	skipped, failed bool
	msg             string
}

func (r *recorder) Helper() {}
func (r *recorder) Skipf(format string, args ...any) {
	r.skipped = true
	r.msg = format
	runtime.Goexit()
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = true
	r.msg = format
	runtime.Goexit()
}
