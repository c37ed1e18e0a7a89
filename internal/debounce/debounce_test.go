package debounce

import (
	"testing"
	"testing/synctest"
	"time"
)

func TestTimer(t *testing.T) {
	for _, tc := range []struct {
		name   string
		events []time.Duration // offsets of events from the start
		fire   time.Duration   // when the refresh must fire
	}{
		{name: "single event fires after quiet", events: []time.Duration{0}, fire: 250 * time.Millisecond},
		{name: "burst extends the quiet period", events: []time.Duration{0, 100 * time.Millisecond, 200 * time.Millisecond}, fire: 450 * time.Millisecond},
		{name: "steady stream capped by maxDelay", events: steady(0, 100*time.Millisecond, 30), fire: time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := New(250*time.Millisecond, time.Second)
				defer b.Stop()
				if b.C() != nil {
					t.Fatal("armed before any event")
				}
				start := time.Now()
				var fired time.Duration
				for _, at := range tc.events {
					time.Sleep(time.Until(start.Add(at)))
					select {
					case <-b.C():
						fired = time.Since(start)
					default:
					}
					if fired != 0 {
						break
					}
					b.Event()
				}
				if fired == 0 {
					<-b.C()
					fired = time.Since(start)
				}
				b.Fired()
				if fired != tc.fire {
					t.Errorf("fired at %v, want %v", fired, tc.fire)
				}
				if b.C() != nil {
					t.Error("still armed after firing")
				}
			})
		})
	}
}

func steady(from, every time.Duration, n int) []time.Duration {
	var out []time.Duration
	for i := range n {
		out = append(out, from+time.Duration(i)*every)
	}
	return out
}
