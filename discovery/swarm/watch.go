package swarm

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/sdhub/sdhub/internal/debounce"
)

// watchTiming are the delays of the watch loop.
type watchTiming struct {
	// quiet: after an event, wait this long for more before refreshing.
	quiet time.Duration
	// maxDelay: refresh at most this long after the first event of a burst.
	maxDelay time.Duration
	// settle: refresh again at these delays after an event-driven refresh,
	// to catch the changes that follow an event without one of their own: a
	// task on another node goes from preparing to running, an update moves
	// on, with no event on this manager's stream.
	settle []time.Duration
	// backoffMin and backoffMax bound the wait before reopening a broken
	// events stream; it doubles on each consecutive failure.
	backoffMin, backoffMax time.Duration
}

var defaultWatchTiming = watchTiming{
	quiet:      250 * time.Millisecond,
	maxDelay:   time.Second,
	settle:     []time.Duration{500 * time.Millisecond, 2 * time.Second, 5 * time.Second, 15 * time.Second},
	backoffMin: 500 * time.Millisecond,
	backoffMax: 30 * time.Second,
}

// Run sends the full state at once, then again whenever it changes: after a
// refresh every refresh_interval, and after a burst of Docker events. A
// failed refresh sends nothing, so the last good targets stay. Run returns
// when ctx is done and never closes up.
func (d *Discovery) Run(ctx context.Context, up chan<- []*targetgroup.Group) {
	defer d.client.Close()
	triggers := make(chan struct{}, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		d.watchEvents(ctx, triggers)
	}()
	defer wg.Wait()

	var last []*targetgroup.Group
	if !d.update(ctx, up, &last) {
		return
	}
	ticker := time.NewTicker(d.interval)
	defer ticker.Stop()
	deb := debounce.New(d.watch.quiet, d.watch.maxDelay)
	defer deb.Stop()
	// settle fires the follow-up refreshes of the last event-driven one;
	// next is the index of the delay after the one pending.
	var (
		settle    <-chan time.Time
		next      int
		lastEvent time.Time
	)
	for {
		var ok bool
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			ok = d.update(ctx, up, &last)
		case <-triggers:
			deb.Event()
			continue
		case <-deb.C():
			deb.Fired()
			ok = d.update(ctx, up, &last)
			lastEvent, next, settle = time.Now(), 0, nil
			if len(d.watch.settle) > 0 {
				settle, next = time.After(d.watch.settle[0]), 1
			}
		case <-settle:
			settle = nil
			if next < len(d.watch.settle) {
				settle = time.After(time.Until(lastEvent.Add(d.watch.settle[next])))
				next++
			}
			ok = d.update(ctx, up, &last)
		}
		if !ok {
			return
		}
	}
}

// update refreshes and sends the result unless it failed or equals what
// was sent last. It returns false when ctx ended during the send.
func (d *Discovery) update(ctx context.Context, up chan<- []*targetgroup.Group, last *[]*targetgroup.Group) bool {
	tgs, err := d.instrumentedRefresh(ctx)
	if err != nil {
		if ctx.Err() == nil {
			d.logger.Error("Unable to refresh target groups", "err", err)
		}
		return true
	}
	if *last != nil && reflect.DeepEqual(*last, tgs) {
		return true
	}
	select {
	case up <- tgs:
		*last = tgs
		d.logger.Debug("Sent targets", "targets", len(tgs[0].Targets))
		return true
	case <-ctx.Done():
		return false
	}
}

// instrumentedRefresh is refresh bounded by refresh_interval (Prometheus's
// per-request timeout), with sorted targets and the refresh metrics. A
// refresh cut short because ctx ended is not counted.
func (d *Discovery) instrumentedRefresh(ctx context.Context) ([]*targetgroup.Group, error) {
	rctx, cancel := context.WithTimeout(ctx, d.interval)
	defer cancel()
	start := time.Now()
	tgs, err := d.refresh(rctx)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	d.refreshM.Observe(start, err)
	if err != nil {
		d.health.Failed(err)
		return nil, err
	}
	d.health.Synced()
	for _, tg := range tgs {
		slices.SortFunc(tg.Targets, func(a, b model.LabelSet) int { return cmp.Compare(a.String(), b.String()) })
	}
	return tgs, nil
}

// errNoAnswer is the error of an events stream that did not open in time.
var errNoAnswer = errors.New("docker events stream: no answer within refresh_interval")

// eventTypes are the Docker event types that can change the role's targets.
func (d *Discovery) eventTypes() []string {
	switch d.role {
	case "services":
		return []string{"service", "network"}
	case "nodes":
		return []string{"node"}
	default:
		return []string{"service", "node", "network", "container"}
	}
}

// watchEvents follows the engine's events stream and signals triggers on
// every relevant event and on every (re)connection, since events may have
// been missed while it was not connected. A broken stream is reopened after
// a backoff that doubles up to backoffMax and restarts after a stream that
// delivered events or lived longer than backoffMax.
func (d *Discovery) watchEvents(ctx context.Context, triggers chan<- struct{}) {
	bo := newBackoff(d.watch.backoffMin, d.watch.backoffMax)
	for {
		healthy, err := d.streamEvents(ctx, triggers)
		if ctx.Err() != nil {
			return
		}
		d.metrics.streamErrors.Inc()
		if healthy {
			bo.Reset()
		}
		wait := bo.NextBackOff()
		d.logger.Warn("Docker events stream failed; polling continues, reconnecting", "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// negotiate settles the Docker API version once, before any other call.
// The Docker client's own lazy negotiation is not safe when the events
// stream and a refresh start at the same time: it writes the version that
// concurrent calls read without its lock. After this, nothing writes it.
func (d *Discovery) negotiate(ctx context.Context) error {
	d.negotiation.Lock()
	defer d.negotiation.Unlock()
	if d.negotiated {
		return nil
	}
	ping, err := d.client.Ping(ctx)
	if err != nil {
		return err
	}
	d.client.NegotiateAPIVersionPing(ping)
	d.negotiated = true
	return nil
}

// streamEvents reads one events stream until it breaks. Opening it is bounded
// by refresh_interval. healthy reports whether the stream worked for a while.
func (d *Discovery) streamEvents(ctx context.Context, triggers chan<- struct{}) (healthy bool, err error) {
	ectx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	args := filters.NewArgs()
	for _, t := range d.eventTypes() {
		args.Add("type", t)
	}
	pctx, pcancel := context.WithTimeout(ctx, d.interval)
	err = d.negotiate(pctx)
	pcancel()
	if err != nil {
		return false, fmt.Errorf("docker events stream: %w", err)
	}
	connect := time.AfterFunc(d.interval, func() { cancel(errNoAnswer) })
	msgs, errs := d.client.Events(ectx, events.ListOptions{Filters: args})
	if !connect.Stop() {
		<-errs
		return false, context.Cause(ectx)
	}
	select {
	case err := <-errs:
		return false, err
	default:
	}
	opened := time.Now()
	d.logger.Debug("Docker events stream open", "types", d.eventTypes())
	signal(triggers)
	for {
		select {
		case msg := <-msgs:
			d.logger.Debug("Docker event", "type", msg.Type, "action", msg.Action, "id", msg.Actor.ID)
			healthy = true
			d.metrics.events.Inc()
			signal(triggers)
		case err := <-errs:
			return healthy || time.Since(opened) > d.watch.backoffMax, err
		}
	}
}

func signal(ch chan<- struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// newBackoff returns a delay that doubles from min up to max, without
// jitter.
func newBackoff(min, max time.Duration) *backoff.ExponentialBackOff {
	return &backoff.ExponentialBackOff{InitialInterval: min, Multiplier: 2, MaxInterval: max}
}
