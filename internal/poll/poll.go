// Package poll waits for a condition by checking it at an interval, up to
// a limit: the one wait of the tests, the reliability scenarios and the
// benchmarks for a state they can only look at, not be told of.
package poll

import (
	"fmt"
	"time"
)

// Until checks cond, then again every interval, until it holds (nil) or
// limit has passed (an error naming what it waited for).
func Until(limit, every time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(limit)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s", limit, what)
		}
		<-tick.C
	}
	return nil
}

// TB is the part of testing.TB that Fatal uses.
type TB interface {
	Helper()
	Fatal(args ...any)
}

// Fatal is Until for a test: it fails t with Until's error.
func Fatal(t TB, limit, every time.Duration, what string, cond func() bool) {
	t.Helper()
	if err := Until(limit, every, what, cond); err != nil {
		t.Fatal(err)
	}
}
