// The plain watch's work queue: which service the workers read next, and
// when (change budgets, the sweep, retries after a failure).

package consul

import (
	"maps"
	"slices"
	"time"
)

// markDirty has the plain watch re-read a service that changed: at once,
// unless its change budget holds the read back (see changeBudget). A service
// with a stream of its own is left to it.
func (w *watcher) markDirty(name string) {
	if !w.watched[name] || w.isStreamed(name) || w.awaiting[name] {
		return
	}
	j := job{jobService, name}
	if w.inflight[j] {
		w.redo[name] = true
		return
	}
	if w.queued[j] || w.failures[j] != nil {
		return // a read is coming anyway
	}
	now := time.Now()
	if due := w.budget(name).due(now, w.d.detectFloor, w.d.floor); due.After(now) {
		w.schedule(j, due)
		return
	}
	w.enqueue(j, false)
}

func (w *watcher) budget(name string) *changeBudget {
	b := w.budgets[name]
	if b == nil {
		b = &changeBudget{}
		w.budgets[name] = b
	}
	return b
}

func (w *watcher) enqueue(j job, low bool) {
	if w.queued[j] || w.inflight[j] {
		return
	}
	delete(w.scheduled, j)
	w.queued[j] = true
	if low {
		w.low = append(w.low, j)
	} else {
		w.prio = append(w.prio, j)
	}
}

func (w *watcher) schedule(j job, at time.Time) {
	if cur, ok := w.scheduled[j]; ok && !at.Before(cur) {
		return
	}
	w.scheduled[j] = at
	if w.nextDue.IsZero() || at.Before(w.nextDue) {
		w.nextDue = at
	}
}

// sweep re-reads every service the plain watch covers, at most once per
// refresh_interval: after an index went backwards (Consul lost its state,
// or another cluster answers at the address).
func (w *watcher) sweep() {
	now := time.Now()
	if !w.lastSweep.IsZero() && now.Sub(w.lastSweep) < w.d.floor {
		w.schedule(job{kind: jobSweep}, w.lastSweep.Add(w.d.floor))
		return
	}
	w.lastSweep = now
	for _, name := range slices.Sorted(maps.Keys(w.watched)) {
		if !w.isStreamed(name) && !w.awaiting[name] {
			w.enqueue(job{jobService, name}, true)
		}
	}
}

// jobSweep is a scheduled sweep, never queued.
const jobSweep jobKind = 255

// peek returns the next queued job: change-driven ones before the sweep.
func (w *watcher) peek() (job, bool) {
	for len(w.prio) > 0 && !w.queued[w.prio[0]] {
		w.prio = w.prio[1:]
	}
	if len(w.prio) > 0 {
		return w.prio[0], true
	}
	for len(w.low) > 0 && !w.queued[w.low[0]] {
		w.low = w.low[1:]
	}
	if len(w.low) > 0 {
		return w.low[0], true
	}
	return job{}, false
}

func (w *watcher) dispatched(j job) {
	if len(w.prio) > 0 && w.prio[0] == j {
		w.prio = w.prio[1:]
	} else {
		w.low = w.low[1:]
	}
	delete(w.queued, j)
	w.inflight[j] = true
	if j.kind == jobService {
		w.budget(j.name).take(time.Now(), w.d.floor)
	}
}

// fail records a failed job and schedules its retry with backoff.
func (w *watcher) fail(j job, err error, msg string, args ...any) {
	w.d.failed(err)
	b := w.failures[j]
	if b == nil {
		b = w.d.newBackoff()
		w.failures[j] = b
		w.d.logger.Warn(msg, append(args, "err", err)...)
	} else {
		w.d.logger.Debug(msg, append(args, "err", err)...)
	}
	w.schedule(j, time.Now().Add(b.NextBackOff()))
}

// untilDue is how long until the next scheduled job or probe round.
func (w *watcher) untilDue(now time.Time) time.Duration {
	next := time.Hour
	if !w.nextDue.IsZero() {
		next = min(next, w.nextDue.Sub(now))
	}
	if w.plain != nil && !w.plain.round.at.IsZero() {
		next = min(next, w.plain.round.at.Sub(now))
	}
	return max(next, 0)
}

func (w *watcher) promoteDue(now time.Time) {
	if w.plain != nil && !w.plain.round.at.IsZero() && !w.plain.round.at.After(now) {
		w.startRound()
	}
	if w.nextDue.IsZero() || w.nextDue.After(now) {
		return
	}
	w.nextDue = time.Time{}
	for j, at := range w.scheduled {
		if at.After(now) {
			if w.nextDue.IsZero() || at.Before(w.nextDue) {
				w.nextDue = at
			}
			continue
		}
		delete(w.scheduled, j)
		switch {
		case j.kind == jobSweep:
			w.lastSweep = time.Time{}
			w.sweep()
		case j.kind == jobService && (!w.watched[j.name] || w.isStreamed(j.name)):
			delete(w.failures, j)
		default:
			w.enqueue(j, false)
		}
	}
}
