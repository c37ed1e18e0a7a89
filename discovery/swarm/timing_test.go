package swarm

import (
	"testing"
	"time"
)

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
