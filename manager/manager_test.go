package manager

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"go.uber.org/goleak"

	"github.com/sdhub/sdhub/discovery"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// hub records what the test discoverers do and feeds them groups.
type hub struct {
	mu      sync.Mutex
	runs    map[string]int // Run calls per config ID
	exits   map[string]int // Run returns per config ID
	builds  map[string]int // NewDiscoverer calls per config ID
	feeds   map[string]chan []*targetgroup.Group
	closeUp map[string]bool
	health  map[string]discovery.Health // the Health each config's discoverer was given
}

func newHub() *hub {
	return &hub{
		runs: map[string]int{}, exits: map[string]int{}, builds: map[string]int{},
		feeds: map[string]chan []*targetgroup.Group{}, closeUp: map[string]bool{},
		health: map[string]discovery.Health{},
	}
}

func (h *hub) feed(id string) chan []*targetgroup.Group {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.feeds[id] == nil {
		h.feeds[id] = make(chan []*targetgroup.Group)
	}
	return h.feeds[id]
}

func (h *hub) count(m map[string]int, id string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return m[id]
}

// testConfig is a discovery.Config; configs with equal ID and Fail are
// deeply equal (they share the *hub pointer).
type testConfig struct {
	ID   string
	Fail bool
	h    *hub
}

func (c testConfig) Name() string { return "test" }

func (c testConfig) NewDiscoverer(o discovery.Options) (discovery.Discoverer, error) {
	c.h.mu.Lock()
	c.h.builds[c.ID]++
	c.h.health[c.ID] = o.Health
	c.h.mu.Unlock()
	if c.Fail {
		return nil, errors.New("cannot reach the test backend")
	}
	return &testDiscoverer{id: c.ID, h: c.h}, nil
}

var _ discovery.Config = testConfig{}

type testDiscoverer struct {
	id string
	h  *hub
}

// Run forwards what the test feeds it; it closes up when the test asked for
// it (like Prometheus's static discoverer).
func (d *testDiscoverer) Run(ctx context.Context, up chan<- []*targetgroup.Group) {
	d.h.mu.Lock()
	d.h.runs[d.id]++
	d.h.mu.Unlock()
	defer func() {
		d.h.mu.Lock()
		d.h.exits[d.id]++
		d.h.mu.Unlock()
	}()
	feed := d.h.feed(d.id)
	for {
		select {
		case <-ctx.Done():
			return
		case tgs := <-feed:
			if tgs == nil {
				close(up)
				return
			}
			select {
			case up <- tgs:
			case <-ctx.Done():
				return
			}
		}
	}
}

func group(source string, addrs ...string) *targetgroup.Group {
	g := &targetgroup.Group{Source: source, Labels: model.LabelSet{"__meta_test_source": model.LabelValue(source)}}
	for _, a := range addrs {
		g.Targets = append(g.Targets, model.LabelSet{model.AddressLabel: model.LabelValue(a)})
	}
	return g
}

// env runs a manager inside a synctest bubble and stops it at the end.
type env struct {
	t      *testing.T
	m      *Manager
	h      *hub
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

func newEnv(t *testing.T, o Options) *env {
	t.Helper()
	e := &env{t: t, h: newHub(), reg: prometheus.NewRegistry(), done: make(chan error, 1)}
	o.Registerer = e.reg
	m, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	e.m = m
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	go func() { e.done <- m.Run(ctx) }()
	t.Cleanup(e.stop)
	return e
}

func (e *env) stop() {
	e.once.Do(func() {
		e.cancel()
		for range e.m.SyncCh() {
		}
		if err := <-e.done; err != nil {
			e.t.Errorf("Run: %v", err)
		}
	})
}

func (e *env) cfg(id string) testConfig { return testConfig{ID: id, h: e.h} }

func (e *env) apply(cfg map[string]discovery.Configs) {
	e.t.Helper()
	if err := e.m.ApplyConfig(cfg); err != nil {
		e.t.Fatalf("ApplyConfig: %v", err)
	}
}

func (e *env) send(id string, tgs ...*targetgroup.Group) {
	e.t.Helper()
	select {
	case e.h.feed(id) <- tgs:
	case <-time.After(time.Minute):
		e.t.Fatalf("discoverer %q is not running", id)
	}
}

// next returns the next update; within a bubble the minute is fake time.
func (e *env) next() Update {
	e.t.Helper()
	select {
	case u := <-e.m.SyncCh():
		return u
	case <-time.After(time.Minute):
		e.t.Fatal("no update within a minute")
		return nil
	}
}

// latest settles the bubble past a flush and returns the update then sent.
func (e *env) latest() Update {
	e.t.Helper()
	synctest.Wait()
	return e.next()
}

func addrs(jt *JobTargets) []string {
	var out []string
	for _, g := range jt.Groups {
		for _, t := range g.Targets {
			out = append(out, string(t[model.AddressLabel]))
		}
	}
	return out
}

func TestUnchangedProviderNotRestarted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, Options{})
		e.apply(map[string]discovery.Configs{"a": {e.cfg("one")}})
		e.send("one", group("s", "a:1"))
		if u := e.latest(); !u["a"].Complete {
			t.Fatalf("job a not complete: %+v", u)
		}

		// The same config (a fresh but deeply equal value) plus a new job.
		e.apply(map[string]discovery.Configs{"a": {e.cfg("one")}, "b": {e.cfg("two")}})
		// And again, with a changed config for b.
		e.apply(map[string]discovery.Configs{"a": {e.cfg("one")}, "b": {e.cfg("three")}})
		synctest.Wait()
		for id, want := range map[string][2]int{"one": {1, 0}, "two": {1, 1}, "three": {1, 0}} {
			if got := [2]int{e.h.count(e.h.runs, id), e.h.count(e.h.exits, id)}; got != want {
				t.Errorf("discoverer %q: runs, exits = %v, want %v", id, got, want)
			}
		}
		u := e.latest()
		if got := addrs(u["a"]); len(got) != 1 || got[0] != "a:1" || !u["a"].Complete {
			t.Errorf("job a after reloads = %v complete=%v, want [a:1] complete", got, u["a"].Complete)
		}
		if u["b"].Complete {
			t.Error("job b is complete before its new provider delivered")
		}
		names := []string{}
		for _, p := range e.m.Providers() {
			names = append(names, p.Name)
		}
		if fmt.Sprint(names) != "[test/0 test/2]" {
			t.Errorf("providers = %v, want [test/0 test/2]", names)
		}
	})
}

func TestRemovedJobIsAbsent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		refresh, err := discovery.NewRefreshMetrics(nil)
		if err != nil {
			t.Fatal(err)
		}
		e := newEnv(t, Options{RefreshMetrics: refresh})
		e.apply(map[string]discovery.Configs{"a": {e.cfg("one")}, "b": {e.cfg("two")}})
		refresh.Instantiate("test", "b").Failures.Inc()
		e.send("one", group("s", "a:1"))
		e.send("two", group("s", "b:1"))
		u := e.latest()
		if len(u) != 2 {
			t.Fatalf("update = %v, want jobs a and b", u)
		}
		e.apply(map[string]discovery.Configs{"a": {e.cfg("one")}})
		if n := e.h.count(e.h.exits, "two"); n != 1 {
			t.Errorf("discoverer of removed job b returned %d times, want 1 before ApplyConfig returns", n)
		}
		u = e.latest()
		if _, ok := u["b"]; ok || len(u) != 1 {
			t.Errorf("update after removing b = %v, want only a", u)
		}
		if n := testutil.CollectAndCount(e.m.metrics.discoveredTargets); n != 1 {
			t.Errorf("prometheus_sd_discovered_targets has %d series, want 1 (job b deleted)", n)
		}
	})
}

func TestRefreshSeriesDeletedWithJob(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := prometheus.NewRegistry()
		refresh, err := discovery.NewRefreshMetrics(reg)
		if err != nil {
			t.Fatal(err)
		}
		e := newEnv(t, Options{RefreshMetrics: refresh})
		e.apply(map[string]discovery.Configs{"a": {e.cfg("one")}, "b": {e.cfg("two")}})
		refresh.Instantiate("test", "a").Failures.Inc()
		refresh.Instantiate("test", "b").Failures.Inc()
		e.apply(map[string]discovery.Configs{"a": {e.cfg("one")}})
		if n, err := testutil.GatherAndCount(reg, "prometheus_sd_refresh_failures_total"); err != nil || n != 1 {
			t.Errorf("refresh failure series = %d (%v), want 1: job b's series deleted, a's kept", n, err)
		}
	})
}

func TestSharedProvider(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, Options{})
		e.apply(map[string]discovery.Configs{"a": {e.cfg("one")}, "b": {e.cfg("one")}})
		ps := e.m.Providers()
		if len(ps) != 1 || fmt.Sprint(ps[0].Jobs) != "[a b]" || ps[0].Name != "test/0" {
			t.Fatalf("providers = %+v, want one test/0 serving [a b]", ps)
		}
		e.send("one", group("s", "x:1", "x:2"))
		u := e.latest()
		for _, job := range []string{"a", "b"} {
			if got := addrs(u[job]); fmt.Sprint(got) != "[x:1 x:2]" || !u[job].Complete {
				t.Errorf("job %s = %v complete=%v, want [x:1 x:2] complete", job, got, u[job].Complete)
			}
		}
		if n := e.h.count(e.h.runs, "one"); n != 1 {
			t.Errorf("shared discoverer ran %d times, want 1", n)
		}
	})
}

func TestFailedConfigKeepsJobIncomplete(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, Options{})
		bad := testConfig{ID: "bad", Fail: true, h: e.h}
		cfg := map[string]discovery.Configs{"a": {bad, e.cfg("one")}, "b": {e.cfg("two")}}
		e.apply(cfg)
		e.send("one", group("s", "a:1"))
		e.send("two", group("s", "b:1"))
		u := e.latest()
		if u["a"].Complete || u["a"].FailedConfigs != 1 {
			t.Errorf("job a = complete %v, failed %d; want incomplete with 1 failed config", u["a"].Complete, u["a"].FailedConfigs)
		}
		if !u["b"].Complete {
			t.Error("job b is incomplete, want complete")
		}
		if got := testutil.ToFloat64(e.m.metrics.failedConfigs); got != 1 {
			t.Errorf("prometheus_sd_failed_configs = %v, want 1", got)
		}
		if n := len(e.m.Providers()); n != 2 {
			t.Errorf("%d providers, want 2: none stored for the failed config", n)
		}
		// The next ApplyConfig tries the failed config again.
		e.apply(cfg)
		if n := e.h.count(e.h.builds, "bad"); n != 2 {
			t.Errorf("failed config built %d times, want 2", n)
		}
		// Fixed: the job becomes complete once the new provider delivers.
		e.apply(map[string]discovery.Configs{"a": {e.cfg("fixed"), e.cfg("one")}, "b": {e.cfg("two")}})
		if u := e.latest(); u["a"].Complete {
			t.Error("job a complete before its new provider delivered")
		}
		e.send("fixed", group("s", "f:1"))
		u = e.latest()
		if !u["a"].Complete || fmt.Sprint(addrs(u["a"])) != "[a:1 f:1]" {
			t.Errorf("job a = %v complete=%v, want [a:1 f:1] complete", addrs(u["a"]), u["a"].Complete)
		}
		if got := testutil.ToFloat64(e.m.metrics.failedConfigs); got != 0 {
			t.Errorf("prometheus_sd_failed_configs = %v, want 0", got)
		}
	})
}

func TestNewSubscriberGetsTargetsAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, Options{})
		e.apply(map[string]discovery.Configs{"a": {e.cfg("one")}})
		e.send("one", group("s", "a:1"))
		e.latest()
		e.apply(map[string]discovery.Configs{"a": {e.cfg("one")}, "b": {e.cfg("one")}})
		// No send from the discoverer: b gets the provider's targets from the reload.
		u := e.latest()
		if got := addrs(u["b"]); fmt.Sprint(got) != "[a:1]" || !u["b"].Complete {
			t.Errorf("new subscriber b = %v complete=%v, want [a:1] complete", got, u["b"].Complete)
		}
		if n := e.h.count(e.h.runs, "one"); n != 1 {
			t.Errorf("discoverer ran %d times, want 1", n)
		}
	})
}

func TestGroupUpdates(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, Options{})
		e.apply(map[string]discovery.Configs{"a": {e.cfg("one")}, "empty": nil})
		u := e.latest()
		if jt := u["empty"]; !jt.Complete || jt.Groups == nil || len(jt.Groups) != 0 {
			t.Errorf("job without configs = %+v, want complete with an empty, non-nil list", jt)
		}
		if u["a"].Complete || u["a"].Groups == nil {
			t.Errorf("job a before delivery = %+v, want incomplete with an empty, non-nil list", u["a"])
		}
		e.send("one", group("s1", "a:1"), group("s2", "a:2"))
		if got := addrs(e.latest()["a"]); fmt.Sprint(got) != "[a:1 a:2]" {
			t.Errorf("targets = %v, want [a:1 a:2]", got)
		}
		// A changed group replaces the old one; an empty group deletes its Source.
		e.send("one", group("s1", "b:1"), group("s2"), nil)
		if got := addrs(e.latest()["a"]); fmt.Sprint(got) != "[b:1]" {
			t.Errorf("targets = %v, want [b:1]", got)
		}
		// A discoverer that closes its channel keeps its targets.
		e.send("one", nil...)
		synctest.Wait()
		e.apply(map[string]discovery.Configs{"a": {e.cfg("one")}})
		if got := addrs(e.latest()["a"]); fmt.Sprint(got) != "[b:1]" {
			t.Errorf("targets after the discoverer closed its channel = %v, want [b:1]", got)
		}
		if got := testutil.ToFloat64(e.m.metrics.discoveredTargets.WithLabelValues("a")); got != 1 {
			t.Errorf("prometheus_sd_discovered_targets{config=a} = %v, want 1", got)
		}
	})
}

func TestSenderCoalescesBursts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, Options{FlushInterval: 2 * time.Second})
		e.apply(map[string]discovery.Configs{"a": {e.cfg("one")}})
		e.send("one", group("s", "a:first"))
		start := time.Now()
		if u := e.next(); fmt.Sprint(addrs(u["a"])) != "[a:first]" {
			t.Fatalf("first update = %v, want [a:first]", u)
		}
		if d := time.Since(start); d != settleDelay {
			t.Errorf("a change after a quiet spell went out after %v, want %v", d, settleDelay)
		}
		start = time.Now()
		for i := range 10 {
			e.send("one", group("s", fmt.Sprintf("a:%d", i)))
		}
		u := e.next()
		if d := time.Since(start); d != 2*time.Second {
			t.Errorf("a burst right after an update went out after %v, want the flush interval 2s", d)
		}
		if got := addrs(u["a"]); fmt.Sprint(got) != "[a:9]" {
			t.Errorf("targets = %v, want the last state [a:9]", got)
		}
		synctest.Wait()
		select {
		case u := <-e.m.SyncCh():
			t.Errorf("a second update for one burst: %v", u)
		default:
		}
		if got := testutil.ToFloat64(e.m.metrics.sentUpdates); got != 2 {
			t.Errorf("prometheus_sd_updates_total = %v, want 2", got)
		}
		// After a quiet spell a lone change goes out after settleDelay again.
		time.Sleep(time.Minute)
		start = time.Now()
		e.send("one", group("s", "a:lone"))
		if u := e.next(); fmt.Sprint(addrs(u["a"])) != "[a:lone]" || time.Since(start) != settleDelay {
			t.Errorf("lone change: %v after %v, want [a:lone] after %v", addrs(u["a"]), time.Since(start), settleDelay)
		}
	})
}

func TestSenderKeepsNewestWhenReceiverBusy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, Options{FlushInterval: time.Second})
		e.apply(map[string]discovery.Configs{"a": {e.cfg("one")}})
		// Nobody receives for a while: every flush is delayed.
		for i := range 3 {
			e.send("one", group("s", fmt.Sprintf("a:%d", i)))
			time.Sleep(2 * time.Second) // fake time, inside the bubble
		}
		if got := testutil.ToFloat64(e.m.metrics.delayedUpdates); got != 3 {
			t.Errorf("prometheus_sd_updates_delayed_total = %v, want 3", got)
		}
		u := e.next()
		if got := addrs(u["a"]); fmt.Sprint(got) != "[a:2]" {
			t.Errorf("delivered targets = %v, want the newest [a:2]", got)
		}
		synctest.Wait()
		select {
		case u := <-e.m.SyncCh():
			t.Errorf("a stale update after the newest: %v", u)
		default:
		}
	})
}

func TestRunStops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, err := New(Options{})
		if err != nil {
			t.Fatal(err)
		}
		h := newHub()
		if err := m.ApplyConfig(map[string]discovery.Configs{"a": {testConfig{ID: "one", h: h}}}); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- m.Run(ctx) }()
		synctest.Wait()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
		if h.count(h.exits, "one") != 1 {
			t.Error("discoverer still running after Run returned")
		}
		if _, ok := <-m.SyncCh(); ok {
			t.Error("SyncCh open after Run returned")
		}
		if err := m.ApplyConfig(nil); !errors.Is(err, errStopped) {
			t.Errorf("ApplyConfig after Run = %v, want %v", err, errStopped)
		}
		if err := m.Run(context.Background()); err == nil {
			t.Error("second Run succeeded")
		}
	})
}

func TestNewRejectsNegativeFlush(t *testing.T) {
	_, err := New(Options{FlushInterval: -time.Second})
	if err == nil || err.Error() != "invalid flush interval -1s (must be 0 for the default, or positive)" {
		t.Errorf("New = %v", err)
	}
}

// TestReloadsWhileDiscoverersSend shakes the locking under -race: reloads
// that add, share and drop providers while discoverers send and the
// receiver reads. The last update must match the last config.
func TestReloadsWhileDiscoverersSend(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, Options{FlushInterval: time.Millisecond})
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for _, id := range []string{"x", "y", "z"} {
			wg.Go(func() {
				// Bounded, and paced in fake time, so the bubble's clock can move.
				for i := range 200 {
					select {
					case e.h.feed(id) <- []*targetgroup.Group{group("s", fmt.Sprintf("%s:%d", id, i))}:
					case <-ctx.Done():
						return
					}
					time.Sleep(time.Millisecond / 10)
				}
			})
		}
		var last Update
		recvDone := make(chan struct{})
		go func() {
			defer close(recvDone)
			for u := range e.m.SyncCh() {
				last = u
			}
		}()
		configs := []map[string]discovery.Configs{
			{"a": {e.cfg("x")}, "b": {e.cfg("x"), e.cfg("y")}},
			{"b": {e.cfg("y")}, "c": {e.cfg("z")}},
			{"a": {e.cfg("z")}, "b": {e.cfg("x")}, "c": {e.cfg("x")}},
		}
		for i := range 30 {
			e.apply(configs[i%len(configs)])
			time.Sleep(time.Millisecond / 2)
		}
		cancel()
		wg.Wait()
		time.Sleep(10 * time.Millisecond) // fake time: the last flush goes out
		e.cancel()                        // Run closes SyncCh: the receiver ends with the last update
		<-recvDone
		if fmt.Sprint(sortedKeys(last)) != "[a b c]" {
			t.Errorf("last update has jobs %v, want [a b c]", sortedKeys(last))
		}
		for _, job := range []string{"a", "b", "c"} {
			if !last[job].Complete || len(last[job].Groups) != 1 {
				t.Errorf("job %s = %+v, want complete with one group", job, last[job])
			}
		}
		if got := e.h.count(e.h.runs, "x") - e.h.count(e.h.exits, "x"); got != 0 {
			t.Errorf("%d discoverers of x still running after Run returned", got)
		}
	})
}
