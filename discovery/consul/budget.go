package consul

import "time"

// changeBudget spaces the change-driven reads of one service: a token
// bucket of changeBurst reads, refilled at changeBurst per
// refresh_interval, with reads at least a spacing apart. A change after a
// quiet spell, and a burst of changes, are read at once (one spacing
// apart); a service that keeps changing is read changeBurst times per
// refresh_interval.
type changeBudget struct {
	last   time.Time // the last read
	tokens float64   // as of last, after that read
}

// changeBurst is how many change-driven reads of one service may follow
// each other, at least a spacing apart, before refresh_interval paces
// them.
const changeBurst = 10

func (b *changeBudget) tokensAt(now time.Time, interval time.Duration) float64 {
	if b.last.IsZero() {
		return changeBurst
	}
	return min(changeBurst, b.tokens+float64(now.Sub(b.last))*changeBurst/float64(interval))
}

// due is the earliest time of the next change-driven read.
func (b *changeBudget) due(now time.Time, spacing, interval time.Duration) time.Time {
	if b.last.IsZero() {
		return now
	}
	at := b.last.Add(spacing)
	if b.tokensAt(now, interval) < 1 {
		if refill := b.last.Add(time.Duration((1 - b.tokens) * float64(interval) / changeBurst)); refill.After(at) {
			at = refill
		}
	}
	if at.Before(now) {
		return now
	}
	return at
}

// take records a change-driven read at now.
func (b *changeBudget) take(now time.Time, interval time.Duration) {
	b.tokens, b.last = max(b.tokensAt(now, interval)-1, 0), now
}
