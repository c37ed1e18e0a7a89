package web

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/sdhub/sdhub/config"
	"github.com/sdhub/sdhub/internal/managertest"
	"github.com/sdhub/sdhub/internal/outputtest"
	"github.com/sdhub/sdhub/manager"
	"github.com/sdhub/sdhub/output"
	"github.com/sdhub/sdhub/shard"
)

func group(source string, labels model.LabelSet, addrs ...string) *targetgroup.Group {
	g := &targetgroup.Group{Source: source, Labels: labels}
	for _, a := range addrs {
		g.Targets = append(g.Targets, model.LabelSet{model.AddressLabel: model.LabelValue(a), "instance_label": model.LabelValue("x" + a)})
	}
	return g
}

// job wraps groups as a job's state from one provider.
func job(complete bool, groups ...*targetgroup.Group) *manager.JobTargets {
	gs := make([]manager.Group, len(groups))
	for i, g := range groups {
		gs[i] = managertest.NewGroup("p", g)
	}
	return managertest.NewJob(complete, gs...)
}

// newStage returns an output stage that writes no files.
func newStage(t *testing.T) *output.Stage {
	t.Helper()
	s, err := output.New("", output.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func apply(t *testing.T, s *output.Stage, u manager.Update) {
	t.Helper()
	if err := s.Apply(u); err != nil {
		t.Fatal(err)
	}
}

type apiErr struct {
	Status, ErrorType, Error string
}

func TestHTTPSD(t *testing.T) {
	store := newStage(t)
	h := NewHandler(Options{Gatherer: prometheus.NewRegistry(), Outputs: store})
	web := []*targetgroup.Group{
		group("a", model.LabelSet{"env": "prod"}, "10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"),
		group("b", nil, "10.0.1.1:80", "10.0.1.2:80", "10.0.1.3:80", "10.0.1.4:80"),
	}
	want := outputtest.Render(web)

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

	apply(t, store, manager.Update{
		"web":   job(true, web...),
		"empty": job(true),
		"slow":  job(false, group("c", nil, "10.0.2.1:80")),
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
	// Replicas: each target in exactly 2 of 3 shards, by either strategy.
	for _, strategy := range []string{"", "&strategy=bounded-load", "&strategy=bounded-load&weight_label=env"} {
		in := map[string]int{}
		for s := range 3 {
			var entries []struct {
				Targets []string `json:"targets"`
			}
			body := check(fmt.Sprintf("/api/v1/sd/web?shard=%d&shards=3&replicas=2%s", s, strategy), http.StatusOK, "")
			if err := json.Unmarshal([]byte(body), &entries); err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				for _, tg := range e.Targets {
					in[tg]++
				}
			}
		}
		if len(in) != len(wantAll) {
			t.Errorf("replicas=2%s: the shards hold %d targets, want %d", strategy, len(in), len(wantAll))
		}
		for tg, n := range in {
			if n != 2 {
				t.Errorf("replicas=2%s: %s in %d shards, want 2", strategy, tg, n)
			}
		}
	}
	for q, msg := range map[string]string{
		"?shard=1":                         "shard and shards go together: ?shard=I&shards=N with 0 <= I < N",
		"?shards=2":                        "shard and shards go together: ?shard=I&shards=N with 0 <= I < N",
		"?shard=2&shards=2":                "invalid shard 2 (must be from 0 to shards-1 = 1)",
		"?shard=0&shards=0":                "invalid shards 0 (must be at least 1)",
		"?shard=a&shards=2":                `invalid shard "a" (must be an integer from 0 to shards-1)`,
		"?shard=0&shards=two":              `invalid shards "two" (must be an integer of at least 1)`,
		"?replicas=2":                      "replicas goes with shard and shards: ?shard=I&shards=N&replicas=...",
		"?shard=0&shards=2&replicas=x":     `invalid replicas "x" (must be an integer from 1 to shards = 2)`,
		"?shard=0&shards=2&replicas=3":     shard.ValidateReplicas(3, 2).Error(),
		"?shard=0&shards=2&weight_label=w": "weight_label needs strategy=bounded-load: a rendezvous split places each target by its address alone",
		"?shard=0&shards=2&strategy=bounded-load&weight_label=a-b": `invalid weight_label "a-b" (a label name: [a-zA-Z_][a-zA-Z0-9_]*)`,
	} {
		var e apiErr
		if err := json.Unmarshal([]byte(check("/api/v1/sd/web"+q, http.StatusBadRequest, "bad_data")), &e); err != nil || e.Error != msg {
			t.Errorf("%s: error %q, want %q", q, e.Error, msg)
		}
	}

	// A reload leaves web waiting for a new provider: the last complete
	// state is still served, as the job's file still holds it. A job that
	// leaves the config is gone.
	apply(t, store, manager.Update{"web": job(false, web[:1]...)})
	if got := check("/api/v1/sd/web", http.StatusOK, ""); got != string(want) {
		t.Errorf("while waiting after a reload: %s, want the last complete state %s", got, want)
	}
	check("/api/v1/sd/empty", http.StatusNotFound, "not_found")
	apply(t, store, manager.Update{"web": job(true, web[:1]...)})
	want1 := outputtest.Render(web[:1])
	if got := check("/api/v1/sd/web", http.StatusOK, ""); got != string(want1) {
		t.Errorf("after the new complete state: %s, want %s", got, want1)
	}
}

// TestHTTPSDBeforeFirstUpdate: before the manager's first state, a job of
// the running config answers 503 and any other job 404.
func TestHTTPSDBeforeFirstUpdate(t *testing.T) {
	cfg, err := config.Load([]byte("scrape_configs:\n  - job_name: web\n    static_configs:\n      - targets: [\"127.0.0.1:80\"]\n"), "sdhub.yml")
	if err != nil {
		t.Fatal(err)
	}
	h := NewHandler(Options{Gatherer: prometheus.NewRegistry(), Outputs: newStage(t), Config: func() *config.Config { return cfg }})
	for path, want := range map[string]int{"/api/v1/sd/web": http.StatusServiceUnavailable, "/api/v1/sd/nope": http.StatusNotFound} {
		if code, _, body := do(t, h, http.MethodGet, path); code != want {
			t.Errorf("GET %s = %d, want %d: %s", path, code, want, body)
		}
	}
}
