package swarm

import (
	"testing"
	"testing/synctest"
	"time"
)

func TestDebouncer(t *testing.T) {
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
				b := newDebouncer(250*time.Millisecond, time.Second)
				defer b.stop()
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
					b.event()
				}
				if fired == 0 {
					<-b.C()
					fired = time.Since(start)
				}
				b.fired()
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

func TestBackoff(t *testing.T) {
	b := newBackoff(500*time.Millisecond, 4*time.Second)
	want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second}
	for i, w := range want {
		if got := b.NextBackOff(); got != w {
			t.Errorf("next #%d = %v, want %v", i, got, w)
		}
	}
	b.Reset()
	if got := b.NextBackOff(); got != 500*time.Millisecond {
		t.Errorf("after reset: %v", got)
	}
}
