package main

import (
	"os"
	"runtime/debug"
	"testing"
)

// TestSetGOGC: the server collects at defaultGOGC unless GOGC is set, and
// leaves an operator's GOGC to the runtime.
func TestSetGOGC(t *testing.T) {
	before := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(before) })

	t.Setenv("GOGC", "80") // restored by the test's cleanup
	if err := os.Unsetenv("GOGC"); err != nil {
		t.Fatal(err)
	}
	if got := setGOGC(); got != "50" {
		t.Errorf("setGOGC() without GOGC = %q, want %q", got, "50")
	}
	if got := debug.SetGCPercent(100); got != defaultGOGC {
		t.Errorf("GC percent without GOGC = %d, want %d", got, defaultGOGC)
	}

	t.Setenv("GOGC", "200")
	if got := setGOGC(); got != "200" {
		t.Errorf("setGOGC() with GOGC=200 = %q, want %q", got, "200")
	}
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("GC percent with GOGC set = %d, want it left alone (100)", got)
	}
}
