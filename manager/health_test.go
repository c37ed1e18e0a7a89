package manager

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sdhub/sdhub/discovery"
)

func (h *hub) healthOf(id string) discovery.Health {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.health[id]
}

// An update keeps the *JobTargets of a job that did not change, and the
// Gen of every group that did not change.
func TestGenerations(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, Options{})
		e.apply(map[string]discovery.Configs{"a": {e.cfg("one")}, "b": {e.cfg("two")}})
		e.send("one", group("s1", "a:1"), group("s2", "a:2"))
		e.send("two", group("s", "b:1"))
		u1 := e.latest()

		e.send("one", group("s1", "a:10"))
		u2 := e.latest()
		if u2["b"] != u1["b"] {
			t.Error("job b did not change but its *JobTargets did")
		}
		if u2["a"] == u1["a"] || u2["a"].Gen == u1["a"].Gen {
			t.Error("job a changed but kept its *JobTargets or Gen")
		}
		gens := func(jt *JobTargets) map[string]uint64 {
			out := map[string]uint64{}
			for _, g := range jt.Groups {
				if g.Provider != "test/0" {
					t.Errorf("group %s has provider %q, want test/0", g.Source, g.Provider)
				}
				out[g.Source] = g.Gen
			}
			return out
		}
		g1, g2 := gens(u1["a"]), gens(u2["a"])
		if g1["s2"] != g2["s2"] {
			t.Error("unchanged group s2 got a new Gen")
		}
		if g1["s1"] == g2["s1"] {
			t.Error("changed group s1 kept its Gen")
		}

		// A reload that changes nothing keeps every job's state.
		e.apply(map[string]discovery.Configs{"a": {e.cfg("one")}, "b": {e.cfg("two")}})
		u3 := e.latest()
		if u3["a"] != u2["a"] || u3["b"] != u2["b"] {
			t.Error("a reload without changes gave the jobs new states")
		}
		// A job that starts sharing a running provider gets a state of its own.
		e.apply(map[string]discovery.Configs{"a": {e.cfg("one")}, "b": {e.cfg("two")}, "c": {e.cfg("one")}})
		u4 := e.latest()
		if u4["a"] != u3["a"] || len(u4["c"].Groups) != 2 || !u4["c"].Complete {
			t.Errorf("after adding c: a kept its state %v, c = %+v", u4["a"] == u3["a"], u4["c"])
		}
	})
}

// What a discoverer reports through Health reaches Providers, Jobs and the
// metrics; the failure series of a job start at zero and go with the job.
func TestProviderHealth(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, Options{})
		start := time.Now()
		e.apply(map[string]discovery.Configs{"a": {e.cfg("one")}, "b": {e.cfg("one")}})
		if got := testutil.ToFloat64(e.m.metrics.failures.WithLabelValues("a", "test", "test/0")); got != 0 {
			t.Errorf("failures of job a before any error = %v, want 0", got)
		}
		if n := testutil.CollectAndCount(e.m.metrics.failures); n != 2 {
			t.Errorf("%d failure series before any error, want 2 (jobs a and b at zero)", n)
		}
		js := e.m.Jobs()["a"]
		if js.Healthy || js.Delivered || !js.LastSync.IsZero() {
			t.Errorf("job a before delivery = %+v, want not healthy, not delivered, never synced", js)
		}

		e.send("one", group("s", "a:1"))
		synced := time.Now() // the updater takes it at once: fake time does not move
		e.latest()
		js = e.m.Jobs()["a"]
		if !js.Healthy || !js.LastSync.Equal(synced) {
			t.Errorf("job a after its first set = %+v, want healthy, synced at delivery", js)
		}
		if p := e.m.Providers()[0]; !p.Since.Equal(synced) {
			t.Errorf("provider after its first set: since %v, want its first sync %v", p.Since.Sub(start), synced.Sub(start))
		}

		time.Sleep(10 * time.Second) // fake time: the error comes later
		h := e.h.healthOf("one")
		h.Failed(errors.New("connection refused"))
		js = e.m.Jobs()["a"]
		if js.Healthy || !js.LastSync.Equal(synced) {
			t.Errorf("job a after an error = %+v, want unhealthy, last sync %v", js, synced.Sub(start))
		}
		p := e.m.Providers()[0]
		if !p.Failing || p.Failures != 1 || p.LastError != "connection refused" || !p.LastErrorTime.Equal(time.Now()) {
			t.Errorf("provider after an error = %+v", p)
		}
		for _, job := range []string{"a", "b"} {
			if got := testutil.ToFloat64(e.m.metrics.failures.WithLabelValues(job, "test", "test/0")); got != 1 {
				t.Errorf("failures of job %s = %v, want 1", job, got)
			}
		}
		failed := time.Now()
		time.Sleep(time.Second)
		h.Failed(errors.New("connection reset"))
		if p := e.m.Providers()[0]; !p.Since.Equal(failed) || p.Failures != 2 || !p.LastErrorTime.Equal(time.Now()) {
			t.Errorf("provider after a second error: since %v, %d failures, last at %v; want failing since the first %v",
				p.Since.Sub(start), p.Failures, p.LastErrorTime.Sub(start), failed.Sub(start))
		}
		h.Failed(errors.New("connection refused"))

		time.Sleep(10 * time.Second)
		h.Synced()
		js = e.m.Jobs()["a"]
		p = e.m.Providers()[0]
		if !js.Healthy || !js.LastSync.Equal(time.Now()) || p.Failing || p.LastError != "connection refused" {
			t.Errorf("after recovery: job %+v, provider %+v; want healthy, synced now, the last error kept as history", js, p)
		}
		recovered := time.Now()
		time.Sleep(time.Second)
		h.Synced()
		if p := e.m.Providers()[0]; !p.Since.Equal(recovered) {
			t.Errorf("provider in sync again: since %v, want the sync that ended the failures %v", p.Since.Sub(start), recovered.Sub(start))
		}

		// Job b leaves: its failure series go.
		e.apply(map[string]discovery.Configs{"a": {e.cfg("one")}})
		if n := testutil.CollectAndCount(e.m.metrics.failures); n != 1 {
			t.Errorf("%d failure series after job b left, want 1", n)
		}
		// The provider goes: all its series go.
		e.apply(map[string]discovery.Configs{"a": {e.cfg("two")}})
		if n := testutil.CollectAndCount(e.m.metrics.failures); n != 1 {
			t.Errorf("%d failure series after the provider changed, want 1 (the new one's)", n)
		}
		if got := testutil.ToFloat64(e.m.metrics.failures.WithLabelValues("a", "test", "test/1")); got != 0 {
			t.Errorf("new provider's failures = %v, want 0", got)
		}
	})
}

// The last sync of a job is the oldest of its providers'; a provider that
// closed its channel after its full set (static) is always in sync; the
// collector exports it, 0 until every provider synced.
func TestJobLastSync(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, Options{})
		e.apply(map[string]discovery.Configs{"a": {e.cfg("one"), e.cfg("static")}})
		want := func(v float64) {
			t.Helper()
			const metric = `
# HELP sdhub_job_last_sync_timestamp_seconds The oldest, over the job's providers, of the last time each reported that its output reflected its source; 0 until every provider has.
# TYPE sdhub_job_last_sync_timestamp_seconds gauge
sdhub_job_last_sync_timestamp_seconds{job="a"} %v
`
			if err := testutil.GatherAndCompare(e.reg, strings.NewReader(fmt.Sprintf(metric, v)), "sdhub_job_last_sync_timestamp_seconds"); err != nil {
				t.Error(err)
			}
		}
		want(0)
		e.send("one", group("s", "a:1"))
		e.send("static", group("s", "s:1"))
		first := time.Now()
		e.send("static", nil...) // closes its channel
		e.latest()
		want(float64(first.UnixNano()) / 1e9) // the static provider is in sync now, later than first
		time.Sleep(time.Minute)
		if got := e.m.Jobs()["a"].LastSync; !got.Equal(first) {
			t.Errorf("last sync = %v after a minute, want the dynamic provider's %v", got, first)
		}
		e.h.healthOf("one").Synced()
		if got := e.m.Jobs()["a"].LastSync; !got.Equal(time.Now()) {
			t.Errorf("last sync = %v, want now %v", got, time.Now())
		}
	})
}

// A config that cannot start is kept in its job's status with its error.
func TestConfigErrorsInJobStatus(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, Options{})
		e.apply(map[string]discovery.Configs{"a": {testConfig{ID: "bad", Fail: true, h: e.h}}})
		js := e.m.Jobs()["a"]
		if js.FailedConfigs != 1 || len(js.ConfigErrors) != 1 || js.ConfigErrors[0] != "test_sd_configs: cannot reach the test backend" || js.Healthy {
			t.Errorf("job a = %+v, want one failed config with its error, unhealthy", js)
		}
	})
}

// A spell of failures is logged once when it starts, at one level whatever
// its cause, and its end once, with how long it lasted.
func TestProviderHealthLogs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs bytes.Buffer
		e := newEnv(t, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		e.apply(map[string]discovery.Configs{"a": {e.cfg("one")}})
		h := e.h.healthOf("one")
		h.Failed(errors.New("connection refused")) // before its first set, as at start
		h.Failed(errors.New("connection refused"))
		time.Sleep(3 * time.Second)
		h.Failed(errors.New("EOF"))
		h.Synced()
		h.Synced()
		got := logs.String()
		if n := strings.Count(got, `level=WARN msg="Service discovery is failing; its last targets are kept" discovery=test config=a provider=test/0 err="connection refused" jobs=[a]`); n != 1 {
			t.Errorf("%d warnings for the spell of failures, want 1:\n%s", n, got)
		}
		if n := strings.Count(got, `level=INFO msg="Service discovery recovered" discovery=test config=a provider=test/0 failed_for=3s failures=3 jobs=[a]`); n != 1 {
			t.Errorf("%d recovery lines, want 1:\n%s", n, got)
		}
	})
}
