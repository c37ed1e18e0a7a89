package output

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"go.uber.org/goleak"

	"github.com/sdhub/sdhub/manager"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func newWriter(t *testing.T, dir string) *Writer {
	t.Helper()
	w, err := New(dir, Options{Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func complete(addrs ...string) manager.JobTargets {
	g := &targetgroup.Group{Source: "s", Labels: model.LabelSet{"__meta_test": "yes"}}
	for _, a := range addrs {
		g.Targets = append(g.Targets, model.LabelSet{model.AddressLabel: model.LabelValue(a)})
	}
	return manager.JobTargets{Groups: []*targetgroup.Group{g}, Complete: true}
}

func incomplete() manager.JobTargets {
	return manager.JobTargets{Groups: []*targetgroup.Group{}}
}

func apply(t *testing.T, w *Writer, u manager.Update) {
	t.Helper()
	if err := w.Apply(u); err != nil {
		t.Fatalf("Apply: %v", err)
	}
}

func mustRender(t *testing.T, jt manager.JobTargets) []byte {
	t.Helper()
	b, err := Render(jt.Groups)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// listDir returns the names in dir, sorted.
func listDir(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestWritesJobFiles(t *testing.T) {
	dir := t.TempDir()
	w := newWriter(t, dir)
	if w.Ready() {
		t.Error("Ready before any update")
	}
	u := manager.Update{"node": complete("b:1", "a:1"), "empty": {Groups: []*targetgroup.Group{}, Complete: true}}
	apply(t, w, u)
	if got := readFile(t, Path(dir, "node")); !bytes.Equal(got, mustRender(t, u["node"])) {
		t.Errorf("node file = %s", got)
	}
	if got := readFile(t, Path(dir, "empty")); string(got) != "[]\n" {
		t.Errorf("empty job file = %q, want \"[]\\n\"", got)
	}
	fi, err := os.Stat(Path(dir, "node"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("mode = %v, want 0644", fi.Mode().Perm())
	}
	if want := []string{ManifestName, "empty.json", "node.json"}; !slices.Equal(listDir(t, dir), want) {
		t.Errorf("dir = %v, want %v", listDir(t, dir), want)
	}
	if !w.Ready() {
		t.Error("not Ready after every job was written")
	}
	js := w.Jobs()
	if len(js) != 2 || js[1].Job != "node" || js[1].Targets != 2 || js[1].LastWrite.IsZero() || !js[1].UpToDate || js[1].Waiting {
		t.Errorf("Jobs = %+v", js)
	}
	if got := testutil.ToFloat64(w.metrics.writes.WithLabelValues("node")); got != 1 {
		t.Errorf("sdhub_output_writes_total{job=node} = %v, want 1", got)
	}
}

// TestNoTornReads writes 1,000 versions of a file while another goroutine
// reads it in a loop: every read must parse and equal a written version.
func TestNoTornReads(t *testing.T) {
	dir := t.TempDir()
	w := newWriter(t, dir)
	const versions = 1000
	updates := make([]manager.Update, versions)
	valid := map[string]bool{}
	for i := range versions {
		// Versions of different sizes, so a torn read would show.
		var addrs []string
		for j := range 1 + i%50 {
			addrs = append(addrs, fmt.Sprintf("10.0.%d.%d:9100", i, j))
		}
		updates[i] = manager.Update{"node": complete(addrs...)}
		valid[string(mustRender(t, updates[i]["node"]))] = true
	}

	path := Path(dir, "node")
	done := make(chan struct{})
	type result struct {
		reads int
		err   error
	}
	res := make(chan result, 1)
	go func() {
		r := result{}
		defer func() { res <- r }()
		for {
			select {
			case <-done:
				return
			default:
			}
			b, err := os.ReadFile(path)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				r.err = err
				return
			}
			r.reads++
			var groups []*targetgroup.Group
			if err := json.Unmarshal(b, &groups); err != nil {
				r.err = fmt.Errorf("read %d does not parse: %w\n%s", r.reads, err, b)
				return
			}
			if !valid[string(b)] {
				r.err = fmt.Errorf("read %d is not a written version:\n%s", r.reads, b)
				return
			}
		}
	}()
	for _, u := range updates {
		apply(t, w, u)
	}
	close(done)
	r := <-res
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.reads == 0 {
		t.Fatal("the reader never read the file")
	}
	t.Logf("%d reads during %d writes", r.reads, versions)
	if got := testutil.ToFloat64(w.metrics.writes.WithLabelValues("node")); got != versions {
		t.Errorf("writes = %v, want %d", got, versions)
	}
	if names := listDir(t, dir); !slices.Equal(names, []string{ManifestName, "node.json"}) {
		t.Errorf("dir = %v, want only the manifest and node.json", names)
	}
}

func TestIncompleteJobKeepsExistingFile(t *testing.T) {
	dir := t.TempDir()
	old := []byte("[\n  {\"targets\": [\"old:1\"], \"labels\": {}}\n]\n")
	path := Path(dir, "node")
	if err := os.WriteFile(path, old, 0o644); err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-time.Hour).Truncate(time.Second)
	if err := os.Chtimes(path, past, past); err != nil {
		t.Fatal(err)
	}
	// The previous run wrote it: it is in the manifest.
	if err := saveManifest(dir, map[string]struct{}{"node.json": {}}); err != nil {
		t.Fatal(err)
	}
	w := newWriter(t, dir)
	for range 3 {
		apply(t, w, manager.Update{"node": incomplete()})
	}
	if got := readFile(t, path); !bytes.Equal(got, old) {
		t.Errorf("file of an incomplete job changed to %s", got)
	}
	if fi, err := os.Stat(path); err != nil || !fi.ModTime().Equal(past) {
		t.Errorf("file of an incomplete job touched: %v, %v", fi.ModTime(), err)
	}
	if w.Ready() {
		t.Error("Ready while a job waits for its first full set")
	}
	if js := w.Jobs(); len(js) != 1 || !js[0].Waiting || js[0].UpToDate {
		t.Errorf("Jobs = %+v, want node waiting", js)
	}
	apply(t, w, manager.Update{"node": complete("new:1")})
	if got := readFile(t, path); !bytes.Equal(got, mustRender(t, complete("new:1"))) {
		t.Errorf("file once complete = %s", got)
	}
	if !w.Ready() {
		t.Error("not Ready once the job was written")
	}
}

func TestManifest(t *testing.T) {
	dir := t.TempDir()
	foreign := filepath.Join(dir, "foreign.json")
	if err := os.WriteFile(foreign, []byte("[]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w := newWriter(t, dir)
	apply(t, w, manager.Update{"a": complete("a:1"), "b": complete("b:1")})
	// Job b leaves the config: its file goes, the foreign file stays.
	apply(t, w, manager.Update{"a": complete("a:1")})
	if want := []string{ManifestName, "a.json", "foreign.json"}; !slices.Equal(listDir(t, dir), want) {
		t.Errorf("dir = %v, want %v", listDir(t, dir), want)
	}
	// A restart whose config lost job a as well: the manifest says a.json is sdhub's.
	w = newWriter(t, dir)
	apply(t, w, manager.Update{"c": complete("c:1")})
	if want := []string{ManifestName, "c.json", "foreign.json"}; !slices.Equal(listDir(t, dir), want) {
		t.Errorf("dir after restart = %v, want %v", listDir(t, dir), want)
	}
	if got := readFile(t, foreign); string(got) != "[]\n" {
		t.Errorf("foreign file changed: %q", got)
	}
	files, err := loadManifest(dir)
	if err != nil || len(files) != 1 {
		t.Errorf("manifest = %v, %v; want only c.json", files, err)
	}
	if got := testutil.ToFloat64(w.metrics.removed); got != 1 {
		t.Errorf("sdhub_output_files_removed_total = %v, want 1", got)
	}
}

func TestCorruptManifestDeletesNothing(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, ManifestName), []byte(`{"version":1,"files":["x.json"`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "x.json"), []byte("[]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	w := newWriter(t, dir)
	apply(t, w, manager.Update{"a": complete("a:1")})
	if want := []string{ManifestName, "a.json", "x.json"}; !slices.Equal(listDir(t, dir), want) {
		t.Errorf("dir = %v, want %v", listDir(t, dir), want)
	}
}

func TestStaleTempFilesRemoved(t *testing.T) {
	dir := t.TempDir()
	stale := []string{".node.json.tmp-12345", "." + ManifestName + ".tmp-9"}
	kept := []string{".other.tmp-1", ".node.json.tmp-abc", "node.json.tmp-1", "x.json"}
	for _, name := range append(slices.Clone(stale), kept...) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("partial"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	newWriter(t, dir)
	want := slices.Sorted(slices.Values(kept))
	if got := listDir(t, dir); !slices.Equal(got, want) {
		t.Errorf("dir after New = %v, want %v", got, want)
	}
}

func TestUnchangedBytesNotRewritten(t *testing.T) {
	dir := t.TempDir()
	path := Path(dir, "node")
	w := newWriter(t, dir)
	u := manager.Update{"node": complete("a:1", "b:1")}
	apply(t, w, u)
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	// The same targets in another order, then a restart with the same state.
	apply(t, w, manager.Update{"node": complete("b:1", "a:1")})
	w = newWriter(t, dir)
	apply(t, w, u)
	after, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(before, after) || !before.ModTime().Equal(after.ModTime()) {
		t.Errorf("file rewritten: inode/mtime %v/%v -> %v/%v",
			before.Sys().(*syscall.Stat_t).Ino, before.ModTime(), after.Sys().(*syscall.Stat_t).Ino, after.ModTime())
	}
	if !w.Ready() {
		t.Error("not Ready although the file on disk is identical")
	}
	if got := testutil.ToFloat64(w.metrics.unchanged.WithLabelValues("node")); got != 1 {
		t.Errorf("sdhub_output_unchanged_total = %v, want 1", got)
	}
	if got := testutil.ToFloat64(w.metrics.writes.WithLabelValues("node")); got != 0 {
		t.Errorf("sdhub_output_writes_total after restart = %v, want 0", got)
	}
}

func TestWriteFailure(t *testing.T) {
	dir := t.TempDir()
	// A directory where the file should go: the rename fails.
	if err := os.Mkdir(Path(dir, "bad"), 0o755); err != nil {
		t.Fatal(err)
	}
	w := newWriter(t, dir)
	err := w.Apply(manager.Update{"bad": complete("a:1"), "good": complete("g:1")})
	if err == nil || !strings.HasPrefix(err.Error(), `job "bad": rename `) {
		t.Errorf("Apply = %v, want a rename error for job bad", err)
	}
	if want := []string{ManifestName, "bad.json", "good.json"}; !slices.Equal(listDir(t, dir), want) {
		t.Errorf("dir = %v, want %v (no temp file left)", listDir(t, dir), want)
	}
	if w.Ready() {
		t.Error("Ready although a file failed to write")
	}
	if js := w.Jobs(); js[0].LastError == nil || js[1].LastError != nil {
		t.Errorf("Jobs = %+v, want an error for bad only", js)
	}
	if got := testutil.ToFloat64(w.metrics.failures.WithLabelValues("bad")); got != 1 {
		t.Errorf("sdhub_output_write_failures_total{job=bad} = %v, want 1", got)
	}
	// A job that was up to date and then fails to write is not up to date.
	if err := os.Remove(Path(dir, "good")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(Path(dir, "good"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := w.Apply(manager.Update{"good": complete("g:2")}); err == nil {
		t.Error("Apply succeeded although good.json is a directory")
	}
	if w.Ready() {
		t.Error("Ready although the last write of job good failed")
	}
	if err := os.Remove(Path(dir, "good")); err != nil {
		t.Fatal(err)
	}
	// Removing the job deletes its series.
	apply(t, w, manager.Update{"good": complete("g:1")})
	if n := testutil.CollectAndCount(w.metrics.failures); n != 1 {
		t.Errorf("failure series after job bad left = %d, want 1 (job good's)", n)
	}
}

func TestRunRetriesFailedWrites(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		blocker := Path(dir, "node")
		if err := os.Mkdir(blocker, 0o755); err != nil {
			t.Fatal(err)
		}
		w := newWriter(t, dir)
		ctx, cancel := context.WithCancel(context.Background())
		updates := make(chan manager.Update)
		done := make(chan error, 1)
		go func() { done <- w.Run(ctx, updates) }()
		updates <- manager.Update{"node": complete("a:1")}
		synctest.Wait()
		if w.Ready() {
			t.Fatal("Ready although the write failed")
		}
		if err := os.Remove(blocker); err != nil {
			t.Fatal(err)
		}
		time.Sleep(minRetry) // fake time: the retry fires
		synctest.Wait()
		if !w.Ready() {
			t.Error("not Ready after the retry")
		}
		close(updates)
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
		cancel()
	})
}

func TestPath(t *testing.T) {
	for _, tc := range []struct{ job, want string }{
		{"node", "node.json"},
		{"node-exporter_2.x", "node-exporter_2.x.json"},
		{"a/b", "a%2Fb.json"},
		{"../up", "%2E.%2Fup.json"},
		{".hidden", "%2Ehidden.json"},
		{"space and:colon", "space%20and%3Acolon.json"},
		{"a%2Fb", "a%252Fb.json"},
		{"日本", "%E6%97%A5%E6%9C%AC.json"},
	} {
		t.Run(tc.job, func(t *testing.T) {
			if got := Path("out", tc.job); got != filepath.Join("out", tc.want) {
				t.Errorf("Path(%q) = %q, want %q", tc.job, got, filepath.Join("out", tc.want))
			}
		})
	}
}

// BenchmarkApply measures one changed job written end to end: render,
// compare, temp file, fsync, rename, directory fsync.
func BenchmarkApply(b *testing.B) {
	for _, n := range []int{10_000, 50_000, 100_000} {
		b.Run(fmt.Sprintf("targets=%d", n), func(b *testing.B) {
			dir := b.TempDir()
			w, err := New(dir, Options{})
			if err != nil {
				b.Fatal(err)
			}
			groups := consulLike(n)
			other := consulLike(n + 1)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				g := groups
				if i%2 == 1 {
					g = other
				}
				i++
				if err := w.Apply(manager.Update{"big": {Groups: g, Complete: true}}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestSameGroupsNotRendered: a job whose groups are the same pointers as at
// its last write is not rendered again (the manager never modifies a group
// it shares). The test breaks that contract on purpose: it edits a group in
// place, and the file must not follow; new groups are rendered again.
func TestSameGroupsNotRendered(t *testing.T) {
	dir := t.TempDir()
	w := newWriter(t, dir)
	g := &targetgroup.Group{Source: "s", Targets: []model.LabelSet{{model.AddressLabel: "a:1"}}}
	apply(t, w, manager.Update{"node": {Groups: []*targetgroup.Group{g}, Complete: true}})
	want := readFile(t, Path(dir, "node"))
	g.Targets[0] = model.LabelSet{model.AddressLabel: "b:1"}
	apply(t, w, manager.Update{"node": {Groups: []*targetgroup.Group{g}, Complete: true}})
	if got := readFile(t, Path(dir, "node")); !bytes.Equal(got, want) {
		t.Fatalf("the same groups were rendered again:\n%s", got)
	}
	fresh := &targetgroup.Group{Source: "s", Targets: []model.LabelSet{{model.AddressLabel: "b:1"}}}
	apply(t, w, manager.Update{"node": {Groups: []*targetgroup.Group{fresh}, Complete: true}})
	if got := readFile(t, Path(dir, "node")); !bytes.Contains(got, []byte(`"b:1"`)) {
		t.Fatalf("new groups not written:\n%s", got)
	}
}

// BenchmarkApplyManyJobs applies updates to 50 jobs of 2,000 targets where
// one job changes each time, as the manager sends them: every job's state,
// the unchanged ones with the same groups.
func BenchmarkApplyManyJobs(b *testing.B) {
	dir := b.TempDir()
	w, err := New(dir, Options{})
	if err != nil {
		b.Fatal(err)
	}
	u := manager.Update{}
	for j := range 50 {
		u[fmt.Sprintf("job-%d", j)] = manager.JobTargets{Groups: consulLike(2000), Complete: true}
	}
	alt := consulLike(2001)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		job := fmt.Sprintf("job-%d", i%50)
		old := u[job]
		u[job] = manager.JobTargets{Groups: alt, Complete: true}
		if err := w.Apply(u); err != nil {
			b.Fatal(err)
		}
		u[job] = old
		i++
	}
}
