package web

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestDiscoveryErrors(t *testing.T) {
	errs := NewDiscoveryErrors()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	errs.now = func() time.Time { return now }
	var out bytes.Buffer
	logger := slog.New(errs.Handler(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelError})))

	d := logger.With("discovery", "file", "config", "web")
	d.Warn("cannot read target files", "err", errors.New("first"))
	now = now.Add(time.Minute)
	d.Error("cannot read target files", "err", errors.New("second")) // replaces the first
	d.Info("info is not an error", "err", errors.New("info"))
	d.Warn("no err attribute")
	logger.Error("cannot create service discovery", "err", errors.New("consul_sd_configs: bad"), "config", "web")
	logger.Error("no job", "err", errors.New("nojob"))
	d.WithGroup("g").Error("records in a group are not read", "config", "other", "err", errors.New("grouped"))
	logger.With("discovery", "consul").With("config", "api").Warn("Error watching Consul", "err", errors.New("refused"))

	var got []string
	for _, job := range []string{"web", "api", "other"} {
		for _, e := range errs.Job(job) {
			got = append(got, fmt.Sprintf("%s %s %s", e.Job, e.Time.Format("15:04"), e))
		}
	}
	want := []string{
		"web 00:01 cannot create service discovery: consul_sd_configs: bad",
		"web 00:01 file: cannot read target files: second",
		"api 00:01 consul: Error watching Consul: refused",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("errors:\n%q\nwant\n%q", got, want)
	}
	// Every record still reaches the next handler at its level.
	for _, s := range []string{"second", "consul_sd_configs: bad", "nojob"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("the log lacks %q:\n%s", s, out.String())
		}
	}
	if strings.Contains(out.String(), "level=WARN") || strings.Contains(out.String(), "level=INFO") {
		t.Errorf("records under the next handler's level were passed on:\n%s", out.String())
	}
}

// TestDiscoveryErrorsPerProvider: two providers of one mechanism in a job
// keep an error each; a shared provider's error shows for every job it
// serves; Applied forgets the providers that are gone and the manager's
// errors from before the config was applied.
func TestDiscoveryErrorsPerProvider(t *testing.T) {
	errs := NewDiscoveryErrors()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	errs.now = func() time.Time { return now }
	logger := slog.New(errs.Handler(slog.DiscardHandler))
	logger.With("discovery", "consul", "config", "api", "provider", "consul/0").Warn("Error watching Consul", "err", errors.New("dc1 refused"))
	logger.With("discovery", "consul", "config", "api", "provider", "consul/1").Warn("Error watching Consul", "err", errors.New("dc2 refused"))
	logger.Error("cannot create service discovery", "err", errors.New("consul_sd_configs: bad"), "config", "api")

	list := func(job string, providers ...string) string {
		var s []string
		for _, e := range errs.Errors(job, providers) {
			s = append(s, e.String())
		}
		return strings.Join(s, "; ")
	}
	if got, want := list("api", "consul/0", "consul/1"), "cannot create service discovery: consul_sd_configs: bad; consul/0: Error watching Consul: dc1 refused; consul/1: Error watching Consul: dc2 refused"; got != want {
		t.Errorf("api: %q\nwant %q", got, want)
	}
	// consul/0 is shared with job web, which it was not created for.
	if got, want := list("web", "consul/0"), "consul/0: Error watching Consul: dc1 refused"; got != want {
		t.Errorf("web: %q\nwant %q", got, want)
	}

	now = now.Add(time.Minute)
	errs.Applied(now, []string{"consul/1"})
	if got, want := list("api", "consul/0", "consul/1"), "consul/1: Error watching Consul: dc2 refused"; got != want {
		t.Errorf("after Applied: %q\nwant %q", got, want)
	}
}
