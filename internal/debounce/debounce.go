// Package debounce gathers a burst of events into one action: the action is
// due once no event came for a quiet time, and at the latest a maximum time
// after the burst's first event.
package debounce

import "time"

// Timer debounces events for one goroutine's select loop:
//
//	case <-t.C():
//		t.Fired()
//		// act
//
// It is not safe for concurrent use.
type Timer struct {
	quiet, max time.Duration
	timer      *time.Timer
	first      time.Time
	armed      bool
}

// New returns a Timer with no burst under way: due quiet after the last
// event of a burst, but no later than max after its first.
func New(quiet, max time.Duration) *Timer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &Timer{quiet: quiet, max: max, timer: t}
}

// Event records an event: it starts a burst, or extends the one under way.
func (t *Timer) Event() {
	now := time.Now()
	if !t.armed {
		t.first, t.armed = now, true
	}
	due := now.Add(t.quiet)
	if limit := t.first.Add(t.max); due.After(limit) {
		due = limit
	}
	t.timer.Reset(due.Sub(now))
}

// C is the channel that receives when the burst's action is due; nil while
// no burst is under way.
func (t *Timer) C() <-chan time.Time {
	if !t.armed {
		return nil
	}
	return t.timer.C
}

// Fired ends the burst whose value C delivered: the next Event starts a new
// one.
func (t *Timer) Fired() { t.armed = false }

// Stop releases the timer.
func (t *Timer) Stop() { t.timer.Stop() }
