package web

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/sdhub/sdhub/config"
	"github.com/sdhub/sdhub/manager"
	"github.com/sdhub/sdhub/output"
)

func group(source string, labels model.LabelSet, addrs ...string) *targetgroup.Group {
	g := &targetgroup.Group{Source: source, Labels: labels}
	for _, a := range addrs {
		g.Targets = append(g.Targets, model.LabelSet{model.AddressLabel: model.LabelValue(a), "instance_label": model.LabelValue("x" + a)})
	}
	return g
}

type apiErr struct {
	Status, ErrorType, Error string
}

func TestHTTPSD(t *testing.T) {
	store := NewTargets()
	h := NewHandler(Options{Gatherer: prometheus.NewRegistry(), Targets: store})
	web := []*targetgroup.Group{
		group("a", model.LabelSet{"env": "prod"}, "10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"),
		group("b", nil, "10.0.1.1:80", "10.0.1.2:80", "10.0.1.3:80", "10.0.1.4:80"),
	}
	want, err := output.Render(web)
	if err != nil {
		t.Fatal(err)
	}

	check := func(path string, code int, errType string) string {
		t.Helper()
		gotCode, ct, body := do(t, h, http.MethodGet, path)
		if gotCode != code || ct != "application/json" {
			t.Fatalf("GET %s = %d %q, want %d application/json\n%s", path, gotCode, ct, code, body)
		}
		if code != http.StatusOK {
			var e apiErr
			if err := json.Unmarshal([]byte(body), &e); err != nil || e.Status != "error" || e.ErrorType != errType || e.Error == "" {
				t.Fatalf("GET %s: want a JSON error of type %s, got %q (%v)", path, errType, body, err)
			}
		}
		return body
	}

	// Before the first update: 503 for every job.
	check("/api/v1/sd/web", http.StatusServiceUnavailable, "unavailable")

	store.Apply(manager.Update{
		"web":   {Groups: web, Complete: true},
		"empty": {Groups: []*targetgroup.Group{}, Complete: true},
		"slow":  {Groups: []*targetgroup.Group{group("c", nil, "10.0.2.1:80")}},
	})
	if got := check("/api/v1/sd/web", http.StatusOK, ""); got != string(want) {
		t.Errorf("GET /api/v1/sd/web = %s, want the job's file %s", got, want)
	}
	if got := check("/api/v1/sd/empty", http.StatusOK, ""); got != "[]\n" {
		t.Errorf("a job without targets = %q, want []", got)
	}
	check("/api/v1/sd/slow", http.StatusServiceUnavailable, "unavailable")
	body := check("/api/v1/sd/nope", http.StatusNotFound, "not_found")
	if want := `{"status":"error","errorType":"not_found","error":"job \"nope\" is not served by sdhub"}` + "\n"; body != want {
		t.Errorf("unknown job: %s, want %s", body, want)
	}

	// Shards: together the whole job, each target once.
	var all []string
	for s := range 3 {
		var entries []struct {
			Targets []string          `json:"targets"`
			Labels  map[string]string `json:"labels"`
		}
		body := check(fmt.Sprintf("/api/v1/sd/web?shard=%d&shards=3", s), http.StatusOK, "")
		if err := json.Unmarshal([]byte(body), &entries); err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			for _, tg := range e.Targets {
				all = append(all, tg+" "+e.Labels["instance_label"]+" "+e.Labels["env"])
			}
		}
	}
	slices.Sort(all)
	wantAll := []string{
		"10.0.0.1:80 x10.0.0.1:80 prod", "10.0.0.2:80 x10.0.0.2:80 prod", "10.0.0.3:80 x10.0.0.3:80 prod",
		"10.0.1.1:80 x10.0.1.1:80 ", "10.0.1.2:80 x10.0.1.2:80 ", "10.0.1.3:80 x10.0.1.3:80 ", "10.0.1.4:80 x10.0.1.4:80 ",
	}
	if !slices.Equal(all, wantAll) {
		t.Errorf("the 3 shards hold\n%q\nwant every target once\n%q", all, wantAll)
	}
	if got := check("/api/v1/sd/web?shard=0&shards=1", http.StatusOK, ""); got != string(want) {
		t.Errorf("one shard = %s, want the whole job", got)
	}
	for q, msg := range map[string]string{
		"?shard=1":            "shard and shards go together: ?shard=I&shards=N with 0 <= I < N",
		"?shards=2":           "shard and shards go together: ?shard=I&shards=N with 0 <= I < N",
		"?shard=2&shards=2":   "invalid shard 2 (must be from 0 to shards-1 = 1)",
		"?shard=0&shards=0":   "invalid shards 0 (must be at least 1)",
		"?shard=a&shards=2":   `invalid shard "a" (must be an integer from 0 to shards-1)`,
		"?shard=0&shards=two": `invalid shards "two" (must be an integer of at least 1)`,
	} {
		var e apiErr
		if err := json.Unmarshal([]byte(check("/api/v1/sd/web"+q, http.StatusBadRequest, "bad_data")), &e); err != nil || e.Error != msg {
			t.Errorf("%s: error %q, want %q", q, e.Error, msg)
		}
	}

	// A reload leaves web waiting for a new provider: the last complete
	// state is still served, as the job's file still holds it. A job that
	// leaves the config is gone.
	store.Apply(manager.Update{"web": {Groups: web[:1]}})
	if got := check("/api/v1/sd/web", http.StatusOK, ""); got != string(want) {
		t.Errorf("while waiting after a reload: %s, want the last complete state %s", got, want)
	}
	check("/api/v1/sd/empty", http.StatusNotFound, "not_found")
	store.Apply(manager.Update{"web": {Groups: web[:1], Complete: true}})
	want1, _ := output.Render(web[:1])
	if got := check("/api/v1/sd/web", http.StatusOK, ""); got != string(want1) {
		t.Errorf("after the new complete state: %s, want %s", got, want1)
	}
}

// TestTargetsLastUpdate checks that the last update time moves only when
// the job's targets change.
func TestTargetsLastUpdate(t *testing.T) {
	store := NewTargets()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	store.now = func() time.Time { return now }
	g := []*targetgroup.Group{group("a", nil, "a:1")}
	updated := func() time.Time { _, st := store.job("j"); return st.updated }

	store.Apply(manager.Update{"j": {Groups: g}})
	if !updated().IsZero() {
		t.Errorf("updated at %s before the first complete state", updated())
	}
	store.Apply(manager.Update{"j": {Groups: g, Complete: true}})
	first := now
	if updated() != first {
		t.Errorf("updated = %s, want %s", updated(), first)
	}
	now = now.Add(time.Minute)
	// The same targets in new groups: no change.
	store.Apply(manager.Update{"j": {Groups: []*targetgroup.Group{group("a", nil, "a:1")}, Complete: true}})
	if updated() != first {
		t.Errorf("same targets: updated = %s, want %s", updated(), first)
	}
	store.Apply(manager.Update{"j": {Groups: []*targetgroup.Group{group("a", nil, "a:2")}, Complete: true}})
	if updated() != now {
		t.Errorf("changed targets: updated = %s, want %s", updated(), now)
	}
}

// TestTargetsRun checks the tee between the manager and the writer: every
// update is recorded at once, and a busy writer gets the newest.
func TestTargetsRun(t *testing.T) {
	store := NewTargets()
	in, out := make(chan manager.Update), make(chan manager.Update)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- store.Run(ctx, in, out) }()

	u := func(addr string) manager.Update {
		return manager.Update{"j": {Groups: []*targetgroup.Group{group("a", nil, addr)}, Complete: true}}
	}
	timeout := time.After(10 * time.Second)
	for _, a := range []string{"a:1", "a:2", "a:3"} {
		select {
		case in <- u(a): // accepted while nobody reads out
		case <-timeout:
			t.Fatal("Run did not take an update while the writer was busy")
		}
	}
	select {
	case got := <-out:
		if a := got["j"].Groups[0].Targets[0][model.AddressLabel]; a != "a:3" {
			t.Errorf("the writer got %s, want the newest a:3", a)
		}
	case <-timeout:
		t.Fatal("the writer got nothing")
	}
	// Run applies an update before it offers it: the store has a:3 too.
	if _, st := store.job("j"); string(st.groups[0].Targets[0][model.AddressLabel]) != "a:3" {
		t.Errorf("store holds %v, want a:3", st.groups[0].Targets)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v", err)
	}
}

// TestHTTPSDBeforeFirstUpdate: before the manager's first state, a job of
// the running config answers 503 and any other job 404.
func TestHTTPSDBeforeFirstUpdate(t *testing.T) {
	cfg, err := config.Load([]byte("scrape_configs:\n  - job_name: web\n    static_configs:\n      - targets: [\"127.0.0.1:80\"]\n"), "sdhub.yml")
	if err != nil {
		t.Fatal(err)
	}
	h := NewHandler(Options{Gatherer: prometheus.NewRegistry(), Targets: NewTargets(), Config: func() *config.Config { return cfg }})
	for path, want := range map[string]int{"/api/v1/sd/web": http.StatusServiceUnavailable, "/api/v1/sd/nope": http.StatusNotFound} {
		if code, _, body := do(t, h, http.MethodGet, path); code != want {
			t.Errorf("GET %s = %d, want %d: %s", path, code, want, body)
		}
	}
}
