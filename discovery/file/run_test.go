package file

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/sdhub/sdhub/discovery"
	"github.com/sdhub/sdhub/internal/poll"
	"github.com/sdhub/sdhub/internal/testlog"
)

// wait bounds every wait on a discoverer.
const wait = 10 * time.Second

// runner runs a Discovery and keeps the state a manager would build from
// its messages: groups by Source, a group without targets deleting one.
type runner struct {
	t      *testing.T
	d      *Discovery
	m      *Metrics
	reg    *prometheus.Registry
	health *health
	up     chan []*targetgroup.Group
	state  map[string]*targetgroup.Group
	cancel context.CancelFunc
	done   chan struct{}
}

func startRun(t *testing.T, interval time.Duration, patterns ...string) *runner {
	t.Helper()
	return startRunLogged(t, nil, interval, patterns...)
}

func startRunLogged(t *testing.T, logger *slog.Logger, interval time.Duration, patterns ...string) *runner {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	h := &health{}
	d, err := NewDiscovery(&SDConfig{Files: patterns, RefreshInterval: model.Duration(interval)}, discovery.Options{Metrics: m, Logger: logger, Health: h})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	r := &runner{t: t, d: d, m: m, reg: reg, health: h, up: make(chan []*targetgroup.Group), state: map[string]*targetgroup.Group{}, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		d.Run(ctx, r.up)
	}()
	t.Cleanup(r.stop)
	return r
}

// stop cancels Run and waits for it to return.
func (r *runner) stop() {
	r.t.Helper()
	r.cancel()
	select {
	case <-r.done:
	case <-time.After(wait):
		r.t.Fatalf("Run did not return within %v of cancel", wait)
	}
}

// next waits for the next message and applies it to the state.
func (r *runner) next() []*targetgroup.Group {
	r.t.Helper()
	select {
	case msg := <-r.up:
		for _, g := range msg {
			if len(g.Targets) == 0 {
				delete(r.state, g.Source)
			} else {
				r.state[g.Source] = g
			}
		}
		return msg
	case <-time.After(wait):
		r.t.Fatalf("no message within %v; state:\n%s", wait, strings.Join(r.flat(), "\n"))
		return nil
	}
}

// until takes messages until the state is want and returns them.
func (r *runner) until(want []string) [][]*targetgroup.Group {
	r.t.Helper()
	var msgs [][]*targetgroup.Group
	deadline := time.Now().Add(wait)
	for !slices.Equal(r.flat(), want) {
		if time.Now().After(deadline) {
			r.t.Fatalf("state:\n%s\nwant:\n%s", strings.Join(r.flat(), "\n"), strings.Join(want, "\n"))
		}
		msgs = append(msgs, r.next())
	}
	return msgs
}

func (r *runner) flat() []string {
	var gs []*targetgroup.Group
	for _, g := range r.state {
		gs = append(gs, g)
	}
	return flat(gs)
}

// scans is how many refreshes the discoverer has run.
func (r *runner) scans() uint64 {
	r.t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		r.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "prometheus_sd_file_scan_duration_seconds" {
			return mf.GetMetric()[0].GetSummary().GetSampleCount()
		}
	}
	r.t.Fatal("no scan duration metric")
	return 0
}

// group renders one flat line for a target of file name.
func group(name string, i int, addr string, labels ...string) string {
	ls := model.LabelSet{model.AddressLabel: model.LabelValue(addr), filepathLabel: model.LabelValue(name)}
	for j := 0; j+1 < len(labels); j += 2 {
		ls[model.LabelName(labels[j])] = model.LabelValue(labels[j+1])
	}
	return source(name, i) + " " + ls.String()
}

func sorted(s ...string) []string { return slices.Sorted(slices.Values(s)) }

func TestRunWatch(t *testing.T) {
	dir := t.TempDir()
	a, b, c := filepath.Join(dir, "a.json"), filepath.Join(dir, "b.yml"), filepath.Join(dir, "c.json")
	writeFile(t, a, `[{"targets": ["a0:1"], "labels": {"env": "prod"}}, {"targets": ["a1:1"]}]`)
	writeFile(t, b, "- targets: [b0:1]\n")
	if err := os.WriteFile(filepath.Join(dir, "ignored.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := startRun(t, time.Hour, filepath.Join(dir, "*.json"), filepath.Join(dir, "*.yml"))

	// The first message is the full state.
	first := r.next()
	want := sorted(group(a, 0, "a0:1", "env", "prod"), group(a, 1, "a1:1"), group(b, 0, "b0:1"))
	if got := flat(first); !slices.Equal(got, want) {
		t.Fatalf("first message:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	t.Run("atomic replace sends the changed group, after one refresh", func(t *testing.T) {
		before := r.scans()
		start := time.Now()
		writeFile(t, a, `[{"targets": ["a0:1"], "labels": {"env": "prod"}}, {"targets": ["a1:2"]}]`)
		msg := r.next()
		t.Logf("write to message: %v", time.Since(start))
		if got, want := flat(msg), []string{group(a, 1, "a1:2")}; !slices.Equal(got, want) {
			t.Fatalf("message %q, want %q", got, want)
		}
		// Temp file created, written and renamed: one burst, one refresh.
		if n := r.scans() - before; n != 1 {
			t.Fatalf("%d refreshes for one atomic replace, want 1", n)
		}
	})

	t.Run("write in place is read once complete", func(t *testing.T) {
		errs := testutil.ToFloat64(r.m.readErrors)
		if err := os.WriteFile(b, []byte("- targets: [b0:2]\n  labels: {zone: z1}\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		r.until(sorted(group(a, 0, "a0:1", "env", "prod"), group(a, 1, "a1:2"), group(b, 0, "b0:2", "zone", "z1")))
		if n := testutil.ToFloat64(r.m.readErrors); n != errs {
			t.Fatalf("read errors went from %v to %v: a half-written file was read", errs, n)
		}
	})

	t.Run("garbage keeps the last good targets", func(t *testing.T) {
		writeFile(t, a, "garbage")
		writeFile(t, b, "- targets: [b0:3]\n")
		msgs := r.until(sorted(group(a, 0, "a0:1", "env", "prod"), group(a, 1, "a1:2"), group(b, 0, "b0:3")))
		for _, m := range msgs {
			for _, g := range m {
				if strings.HasPrefix(g.Source, a) {
					t.Fatalf("a message carried a group of the broken file: %q", flat(m))
				}
			}
		}
		if n := testutil.ToFloat64(r.m.readErrors); n < 1 {
			t.Fatalf("read errors = %v, want at least 1", n)
		}
	})

	t.Run("delete drops the targets", func(t *testing.T) {
		rm(t, a)
		msg := r.next()
		if got, want := flat(msg), []string{a + ":0 -", a + ":1 -"}; !slices.Equal(got, want) {
			t.Fatalf("message %q, want %q", got, want)
		}
	})

	t.Run("new file matching the glob", func(t *testing.T) {
		writeFile(t, c, `[{"targets": ["c0:1", "c1:1"]}]`)
		msg := r.next()
		if got, want := flat(msg), sorted(group(c, 0, "c0:1"), group(c, 0, "c1:1")); !slices.Equal(got, want) {
			t.Fatalf("message %q, want %q", got, want)
		}
	})

	t.Run("file emptied", func(t *testing.T) {
		writeFile(t, c, `[]`)
		msg := r.next()
		if got, want := flat(msg), []string{c + ":0 -"}; !slices.Equal(got, want) {
			t.Fatalf("message %q, want %q", got, want)
		}
		if got, want := r.flat(), []string{group(b, 0, "b0:3")}; !slices.Equal(got, want) {
			t.Fatalf("state %q, want %q", got, want)
		}
	})
}

// TestRunResync changes a file behind a symlink, in a directory no watch
// covers: only the refresh_interval resync can see it.
func TestRunResync(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	real := filepath.Join(outside, "real.json")
	link := filepath.Join(dir, "link.json")
	writeFile(t, real, `[{"targets": ["r:1"]}]`)
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	r := startRun(t, 200*time.Millisecond, filepath.Join(dir, "*.json"))
	if got, want := flat(r.next()), []string{group(link, 0, "r:1")}; !slices.Equal(got, want) {
		t.Fatalf("first message %q, want %q", got, want)
	}
	writeFile(t, real, `[{"targets": ["r:2"]}]`)
	if got, want := flat(r.next()), []string{group(link, 0, "r:2")}; !slices.Equal(got, want) {
		t.Fatalf("message %q, want %q", got, want)
	}
}

// TestRunMissingDirectory starts before the directory exists: the watch
// fails once (counted once), the resync finds the files, and the watch is
// added again.
func TestRunMissingDirectory(t *testing.T) {
	sub := filepath.Join(t.TempDir(), "sub")
	f := filepath.Join(sub, "x.json")
	var logs testlog.Buffer
	r := startRunLogged(t, slog.New(slog.NewTextHandler(&logs, nil)), 100*time.Millisecond, filepath.Join(sub, "*.json"))
	if msg := r.next(); len(msg) != 0 {
		t.Fatalf("first message %q, want none", flat(msg))
	}
	if got, want := r.health.take(), []string{`failed: watch directory "` + sub + `": no such file or directory`, "synced"}; !slices.Equal(got, want) {
		t.Fatalf("health reports %q, want %q", got, want)
	}
	if n := testutil.ToFloat64(r.m.watcherErrors); n != 1 {
		t.Fatalf("watcher errors = %v, want 1", n)
	}
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, f, `[{"targets": ["x:1"]}]`)
	r.until([]string{group(f, 0, "x:1")})
	if n := testutil.ToFloat64(r.m.watcherErrors); n != 1 {
		t.Fatalf("watcher errors = %v, want still 1", n)
	}
	// The watch is added before the read that found the file.
	if got := logs.String(); strings.Count(got, "msg=\"cannot watch directory") != 1 || !strings.Contains(got, `msg="watching directory again" dir=`+sub) {
		t.Fatalf("logs:\n%s", got)
	}
}

func TestRunCancel(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "x.json")
	writeFile(t, f, `[{"targets": ["x:1"]}]`)

	t.Run("blocked on the first send", func(t *testing.T) {
		r := startRun(t, time.Hour, filepath.Join(dir, "*.json"))
		r.stop()
	})
	t.Run("refresh pending", func(t *testing.T) {
		r := startRun(t, time.Hour, filepath.Join(dir, "*.json"))
		r.next()
		writeFile(t, f, `[{"targets": ["x:2"]}]`)
		r.stop()
	})
	t.Run("blocked on a later send", func(t *testing.T) {
		r := startRun(t, time.Hour, filepath.Join(dir, "*.json"))
		r.next()
		writeFile(t, f, `[{"targets": ["x:3"]}]`)
		eventually(t, "two scans", func() bool { return r.scans() >= 2 })
		r.stop()
	})
}

func TestMtimeMetric(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "x.json")
	writeFile(t, f, `[{"targets": ["x:1"]}]`)
	mtime := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := os.Chtimes(f, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	r := startRun(t, time.Hour, filepath.Join(dir, "*.json"))
	r.next()
	want := `
# HELP prometheus_sd_file_mtime_seconds Timestamp (mtime) of files read by FileSD. Timestamp is set at read time.
# TYPE prometheus_sd_file_mtime_seconds gauge
prometheus_sd_file_mtime_seconds{filename="` + f + `"} 1.767323045e+09
`
	if err := testutil.GatherAndCompare(r.reg, strings.NewReader(want), "prometheus_sd_file_mtime_seconds"); err != nil {
		t.Fatal(err)
	}
	rm(t, f)
	r.next()
	if n, err := testutil.GatherAndCount(r.reg, "prometheus_sd_file_mtime_seconds"); err != nil || n != 0 {
		t.Fatalf("%d mtime series (err %v) after the file was deleted, want 0", n, err)
	}
	writeFile(t, f, `[{"targets": ["x:1"]}]`)
	r.next()
	r.stop()
	if n, err := testutil.GatherAndCount(r.reg, "prometheus_sd_file_mtime_seconds"); err != nil || n != 0 {
		t.Fatalf("%d mtime series (err %v) after Run returned, want 0", n, err)
	}
}

func TestMetricsRegistration(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := Mechanism.NewMetrics(reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Mechanism.NewMetrics(reg, nil); err == nil {
		t.Fatal("registering the file SD metrics twice succeeded")
	}
	m.Unregister()
	m2, err := Mechanism.NewMetrics(reg, nil)
	if err != nil {
		t.Fatalf("after Unregister: %v", err)
	}
	want := []string{
		"prometheus_sd_file_read_errors_total",
		"prometheus_sd_file_scan_duration_seconds",
		"prometheus_sd_file_watcher_errors_total",
	}
	n, err := testutil.GatherAndCount(reg, want...)
	if err != nil || n != len(want) {
		t.Fatalf("%d of %v gathered (err %v)", n, want, err)
	}
	if _, err := NewDiscovery(&SDConfig{Files: []string{"x.json"}, RefreshInterval: DefaultSDConfig.RefreshInterval}, discovery.Options{Metrics: m2}); err != nil {
		t.Fatal(err)
	}
}

// eventually waits until cond holds, checking every few milliseconds, for at most wait.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	poll.Fatal(t, wait, 5*time.Millisecond, what, cond)
}

// health records what a discoverer reports.
type health struct {
	mu     sync.Mutex
	events []string // "synced", or "failed: <err>"
}

func (h *health) Failed(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.events = append(h.events, "failed: "+err.Error())
}

func (h *health) Synced() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.events = append(h.events, "synced")
}

// take returns the events so far and forgets them.
func (h *health) take() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	e := h.events
	h.events = nil
	return e
}

func TestRefreshHealth(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.json"), filepath.Join(dir, "b.yml")
	var h health
	m, _ := NewMetrics(nil)
	d, err := NewDiscovery(&SDConfig{Files: []string{filepath.Join(dir, "*.json"), filepath.Join(dir, "*.yml")}, RefreshInterval: model.Duration(time.Minute)},
		discovery.Options{Metrics: m, Health: &h})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []struct {
		name   string
		change func()
		want   []string
	}{
		{"no file yet", func() {}, []string{"synced"}},
		{"good files", func() {
			writeFile(t, a, `[{"targets":["a:1"]}]`)
			writeFile(t, b, "- targets: [b:1]\n")
		}, []string{"synced"}},
		{"one broken", func() { writeFile(t, a, `[{"targets":["a:1"]},`) },
			[]string{`failed: read "` + a + `": unexpected end of JSON input`}},
		{"both broken", func() { writeFile(t, b, "- targets: [b:1]\n  x: 1\n") },
			[]string{"failed: " + `read "` + a + `": unexpected end of JSON input` + "\n" +
				`read "` + b + "\": yaml: unmarshal errors:\n  line 2: field x not found in type struct { Targets []string \"yaml:\\\"targets\\\"\"; Labels model.LabelSet \"yaml:\\\"labels\\\"\" }"}},
		{"unreadable", func() {
			rm(t, b)
			if err := os.Mkdir(b, 0o755); err != nil { // matches the glob, cannot be read as a file
				t.Fatal(err)
			}
		}, []string{"failed: " + `read "` + a + `": unexpected end of JSON input` + "\n" + `read "` + b + `": read: is a directory`}},
		{"fixed", func() {
			rm(t, b)
			writeFile(t, a, `[{"targets":["a:2"]}]`)
		}, []string{"synced"}},
	} {
		s.change()
		_, _ = d.refresh(t.Context())
		if got := h.take(); !slices.Equal(got, s.want) {
			t.Fatalf("%s: health reports\n%q\nwant\n%q", s.name, got, s.want)
		}
	}
}

// TestRunUnchangedFile rewrites a file with the same content, then changes
// another: the next message holds the other file's change only.
func TestRunUnchangedFile(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.json"), filepath.Join(dir, "b.json")
	content := `[{"targets": ["a0:1"], "labels": {"env": "prod"}}, {"targets": ["a1:1"]}]`
	writeFile(t, a, content)
	writeFile(t, b, `[{"targets": ["b0:1"]}]`)
	r := startRun(t, time.Hour, filepath.Join(dir, "*.json"))
	r.next()
	before := r.scans()
	writeFile(t, a, content)
	eventually(t, "another scan", func() bool { return r.scans() > before })
	writeFile(t, b, `[{"targets": ["b0:2"]}]`)
	if got, want := flat(r.next()), []string{group(b, 0, "b0:2")}; !slices.Equal(got, want) {
		t.Fatalf("message %q, want %q", got, want)
	}
}

// TestScanChanged checks what a refresh decodes and reports as changed: a
// file rewritten with the same content is not decoded again and reports
// nothing; in a changed file only the changed group is new.
func TestScanChanged(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.json"), filepath.Join(dir, "b.yml")
	d, _ := newTestDiscovery(t, nil, time.Minute, filepath.Join(dir, "*.json"), filepath.Join(dir, "*.yml"))
	ac := `[{"targets":["a0:1"]},{"targets":["a1:1"]},{"targets":["a2:1"]}]`
	bc := "- targets: [b0:1]\n- targets: [b1:1]\n"
	writeFile(t, a, ac)
	writeFile(t, b, bc)
	scan := func() []string {
		t.Helper()
		_, changed, err := d.scan(t.Context(), false)
		if err != nil {
			t.Fatal(err)
		}
		return flat(changed)
	}
	if got := scan(); len(got) != 5 {
		t.Fatalf("first scan: changed %q, want every group", got)
	}
	sa, sb := d.files[a], d.files[b]

	writeFile(t, a, ac)
	writeFile(t, b, bc)
	if got := scan(); len(got) != 0 {
		t.Fatalf("same content: changed %q", got)
	}
	if d.files[a] != sa || d.files[b] != sb {
		t.Fatal("a file with the same content was decoded again")
	}

	writeFile(t, a, `[{"targets":["a0:1"]},{"targets":["a1:2"]},{"targets":["a2:1"]}]`)
	writeFile(t, b, "- targets: [b0:1]\n- targets: [b1:2]\n")
	if got, want := scan(), sorted(group(a, 1, "a1:2"), group(b, 1, "b1:2")); !slices.Equal(got, want) {
		t.Fatalf("one group changed in each file: changed %q, want %q", got, want)
	}
	for i, g := range d.files[a].groups {
		if (g == sa.groups[i]) != (i != 1) {
			t.Fatalf("a's group %d: reused %v", i, g == sa.groups[i])
		}
	}
	if d.files[b].groups[0] != sb.groups[0] {
		t.Fatal("b's unchanged group was replaced")
	}
}
