package output

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
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

	"github.com/sdhub/sdhub/internal/managertest"
	"github.com/sdhub/sdhub/internal/priority"
	"github.com/sdhub/sdhub/internal/testlog"
	"github.com/sdhub/sdhub/manager"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func newWriter(t *testing.T, dir string) *Stage {
	t.Helper()
	w, err := New(dir, Options{Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func complete(addrs ...string) *manager.JobTargets {
	g := &targetgroup.Group{Source: "s", Labels: model.LabelSet{"__meta_test": "yes"}}
	for _, a := range addrs {
		g.Targets = append(g.Targets, model.LabelSet{model.AddressLabel: model.LabelValue(a)})
	}
	return managertest.NewJob(true, managertest.NewGroup("p", g))
}

func incomplete() *manager.JobTargets { return managertest.NewJob(false) }

func apply(t *testing.T, w *Stage, u manager.Update) {
	t.Helper()
	if err := w.Apply(u); err != nil {
		t.Fatalf("Apply: %v", err)
	}
}

// groupsOf returns the job's groups without their keys.
func groupsOf(jt *manager.JobTargets) []*targetgroup.Group {
	out := make([]*targetgroup.Group, len(jt.Groups))
	for i, g := range jt.Groups {
		out[i] = g.Group
	}
	return out
}

func mustRender(t *testing.T, jt *manager.JobTargets) []byte {
	t.Helper()
	return Render(groupsOf(jt))
}

// snap returns job's snapshot, failing when there is none.
func snap(t *testing.T, w *Stage, job string) *Snapshot {
	t.Helper()
	s := w.Job(job)
	if s == nil {
		t.Fatalf("no snapshot of job %q", job)
	}
	return s
}

func ready(w *Stage) float64 { return testutil.ToFloat64(w.metrics.ready) }

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
		if e.Name() == StagingDir {
			continue
		}
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
	u := manager.Update{"node": complete("b:1", "a:1"), "empty": managertest.NewJob(true)}
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
	if !w.Ready() || ready(w) != 1 {
		t.Error("not ready after every job was written")
	}
	if s := snap(t, w, "node"); s.Targets != 2 || s.File.Written.IsZero() || !s.OnDisk() || s.Waiting || !s.Serving() ||
		!bytes.Equal(s.Bytes(), readFile(t, Path(dir, "node"))) || s.Size != len(s.Bytes()) {
		t.Errorf("snapshot of node = %+v", s)
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
	noTornReads(t, w, 1000, func(i int) *manager.JobTargets {
		// Versions of different sizes, so a torn read would show.
		var addrs []string
		for j := range 1 + i%50 {
			addrs = append(addrs, fmt.Sprintf("10.0.%d.%d:9100", i, j))
		}
		return complete(addrs...)
	})
	if names := listDir(t, dir); !slices.Equal(names, []string{ManifestName, "node.json"}) {
		t.Errorf("dir = %v, want only the manifest and node.json", names)
	}
}

// noTornReads writes the versions of job "node" that version makes, one
// after the other, while a reader reads the file as fast as it can: every
// read must be one of the versions, whole.
func noTornReads(t *testing.T, w *Stage, versions int, version func(int) *manager.JobTargets) {
	t.Helper()
	dir := w.files.dir
	updates := make([]manager.Update, versions)
	valid := map[string]bool{}
	for i := range versions {
		updates[i] = manager.Update{"node": version(i)}
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
			if valid[string(b)] {
				continue
			}
			var groups []*targetgroup.Group
			if err := json.Unmarshal(b, &groups); err != nil {
				r.err = fmt.Errorf("read %d does not parse: %w\n%.2000s", r.reads, err, b)
			} else {
				r.err = fmt.Errorf("read %d is not a written version:\n%.2000s", r.reads, b)
			}
			return
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
	if got := testutil.ToFloat64(w.metrics.writes.WithLabelValues("node")); got != float64(versions) {
		t.Errorf("writes = %v, want %d", got, versions)
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
	if ready(w) != 0 {
		t.Error("sdhub_output_ready is 1 while a job waits for its first full set")
	}
	if s := snap(t, w, "node"); !s.Waiting || s.Serving() {
		t.Errorf("snapshot = %+v, want node waiting, not serving", s)
	}
	apply(t, w, manager.Update{"node": complete("new:1")})
	if got := readFile(t, path); !bytes.Equal(got, mustRender(t, complete("new:1"))) {
		t.Errorf("file once complete = %s", got)
	}
	if ready(w) != 1 {
		t.Error("sdhub_output_ready is 0 once the job was written")
	}
	// Incomplete again (a reload): the last complete output stays, served.
	apply(t, w, manager.Update{"node": incomplete()})
	if s := snap(t, w, "node"); !s.Waiting || !s.Serving() || !bytes.Equal(s.Bytes(), mustRender(t, complete("new:1"))) {
		t.Errorf("snapshot after the job became incomplete = %+v, want its last complete output, waiting", s)
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
	// As many jobs as before, one of them new: b2 is written, a's file goes.
	apply(t, w, manager.Update{"b2": complete("b2:1")})
	if want := []string{ManifestName, "b2.json", "foreign.json"}; !slices.Equal(listDir(t, dir), want) {
		t.Errorf("dir after a job replaced another = %v, want %v", listDir(t, dir), want)
	}
	apply(t, w, manager.Update{"a": complete("a:1")})
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
		t.Errorf("sdhub_output_files_removed_total = %v, want 1 (this run's removal)", got)
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
	stale := []string{".node.json.tmp-12345", "." + ManifestName + ".tmp-9", ".node.json.spare"}
	if err := os.Mkdir(filepath.Join(dir, StagingDir), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"node.json.tmp-123", "anything"} {
		if err := os.WriteFile(filepath.Join(dir, StagingDir, name), []byte("partial"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	kept := []string{".other.tmp-1", ".node.json.tmp-abc", "node.json.tmp-1", "x.json", "node.json.spare", ".other.spare"}
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
	if ready(w) != 1 {
		t.Error("not ready although the file on disk is identical")
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
	if ready(w) != 0 {
		t.Error("ready although a file failed to write")
	}
	if bad, good := snap(t, w, "bad"), snap(t, w, "good"); bad.File.Err == nil || bad.OnDisk() || good.File.Err != nil || !good.OnDisk() {
		t.Errorf("files = %+v and %+v, want an error for bad only", bad.File, good.File)
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
	before := snap(t, w, "good").File
	if err := w.Apply(manager.Update{"good": complete("g:2", "g:3")}); err == nil {
		t.Error("Apply succeeded although good.json is a directory")
	}
	// What the file holds stays told apart from what is pending.
	if s := snap(t, w, "good"); s.Targets != 2 || s.File.Targets != 1 || s.File.Gen != before.Gen || s.File.Gen == s.Gen {
		t.Errorf("good after the failed write: %d targets of gen %d, file %+v; want 2 pending, the file at 1 target of gen %d",
			s.Targets, s.Gen, s.File, before.Gen)
	}
	if ready(w) != 0 || snap(t, w, "good").OnDisk() {
		t.Error("ready although the last write of job good failed")
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

// eventually waits up to 10 s for cond, polling it.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// runStage runs w until the test ends.
func runStage(t *testing.T, w *Stage) chan<- manager.Update {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	updates := make(chan manager.Update)
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, updates) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	})
	return updates
}

func TestRunRetriesFailedWrites(t *testing.T) {
	dir := t.TempDir()
	blocker := Path(dir, "node")
	if err := os.Mkdir(blocker, 0o755); err != nil {
		t.Fatal(err)
	}
	w := newWriter(t, dir)
	runStage(t, w) <- manager.Update{"node": complete("a:1")}
	eventually(t, "the failed write", func() bool { s := w.Job("node"); return s != nil && s.File.Err != nil })
	if err := os.Remove(blocker); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the retry", func() bool { return snap(t, w, "node").OnDisk() })
	if got := readFile(t, Path(dir, "node")); !bytes.Equal(got, snap(t, w, "node").Bytes()) {
		t.Errorf("file after the retry = %s", got)
	}
}

// The stage holds its files true: a file someone removes, truncates or
// edits, and the whole directory, are put back, each counted as a repair
// and logged once.
func TestRunPutsFilesBack(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	var logs testlog.Buffer
	w, err := New(dir, Options{Registerer: prometheus.NewRegistry(), VerifyInterval: time.Hour,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	u := manager.Update{"a": complete("a:1"), "b": complete("b:1")}
	want := map[string][]byte{"a": mustRender(t, u["a"]), "b": mustRender(t, u["b"])}
	runStage(t, w) <- u
	holds := func(job string) func() bool {
		return func() bool {
			got, err := os.ReadFile(Path(dir, job))
			return err == nil && bytes.Equal(got, want[job])
		}
	}
	eventually(t, "the first write", holds("b"))
	repairs := func(job string) float64 { return testutil.ToFloat64(w.metrics.repairs.WithLabelValues(job)) }

	for i, damage := range []struct {
		name string
		do   func(path string) error
	}{
		{"removed", os.Remove},
		{"truncated", func(p string) error { return os.Truncate(p, 3) }},
		{"edited in place", func(p string) error { return os.WriteFile(p, []byte("[]\n"), 0o644) }},
		{"replaced", func(p string) error {
			if err := os.WriteFile(p+".new", []byte("garbage"), 0o644); err != nil {
				return err
			}
			return os.Rename(p+".new", p)
		}},
	} {
		if err := damage.do(Path(dir, "a")); err != nil {
			t.Fatal(err)
		}
		eventually(t, "job a's file "+damage.name+" to be put back", holds("a"))
		eventually(t, "the repair count", func() bool { return repairs("a") == float64(i+1) })
	}
	if n := strings.Count(logs.String(), "putting it back"); n != 4 {
		t.Errorf("%d log lines about putting a file back, want 4:\n%s", n, logs.String())
	}
	if repairs("b") != 0 {
		t.Errorf("job b's file was repaired %v times, want 0", repairs("b"))
	}

	// The whole directory.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	eventually(t, "both files back after the directory went", func() bool { return holds("a")() && holds("b")() })
	if files, err := loadManifest(dir); err != nil || len(files) != 2 {
		t.Errorf("manifest after the directory came back = %v, %v; want both files", files, err)
	}
	if n := strings.Count(logs.String(), "output directory was removed"); n != 1 {
		t.Errorf("%d log lines about the directory, want 1:\n%s", n, logs.String())
	}
	// Watched again: a file removed now is put back too.
	if err := os.Remove(Path(dir, "b")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "job b's file back in the new directory", holds("b"))
}

// The periodic check finds what the watch does not see: here, no watch
// events reach it at all (the stage is not Run; Check is what Run calls
// every VerifyInterval).
func TestCheckPutsFilesBack(t *testing.T) {
	dir := t.TempDir()
	w := newWriter(t, dir)
	apply(t, w, manager.Update{"a": complete("a:1")})
	want := readFile(t, Path(dir, "a"))
	if err := w.Check(); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(w.metrics.repairs.WithLabelValues("a")); got != 0 {
		t.Fatalf("an untouched file counted %v repairs", got)
	}
	if err := os.WriteFile(Path(dir, "a"), []byte("[]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := w.Check(); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, Path(dir, "a")); !bytes.Equal(got, want) {
		t.Errorf("file after Check = %s, want it put back", got)
	}
	// Touched with the same content: nothing to repair.
	now := time.Now().Add(time.Minute)
	if err := os.Chtimes(Path(dir, "a"), now, now); err != nil {
		t.Fatal(err)
	}
	if err := w.Check(); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(w.metrics.repairs.WithLabelValues("a")); got != 1 {
		t.Errorf("repairs = %v, want 1 (a touch with the same bytes is not one)", got)
	}
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

// TestSameGenerationsNotRendered: a job whose JobTargets has the Gen of
// the last apply is not looked at again, and a group with the Gen it had is
// not rendered again (the manager never modifies a group it shares). The
// test breaks that contract on purpose: it edits a group in place, and the
// output must not follow; a new Gen is rendered again.
func TestSameGenerationsNotRendered(t *testing.T) {
	dir := t.TempDir()
	w := newWriter(t, dir)
	g := &targetgroup.Group{Source: "s", Targets: []model.LabelSet{{model.AddressLabel: "a:1"}}}
	grp := managertest.NewGroup("p", g)
	jt := managertest.NewJob(true, grp)
	apply(t, w, manager.Update{"node": jt})
	want := readFile(t, Path(dir, "node"))
	g.Targets[0] = model.LabelSet{model.AddressLabel: "b:1"}
	apply(t, w, manager.Update{"node": jt})
	apply(t, w, manager.Update{"node": managertest.NewJob(true, grp)})
	if got := readFile(t, Path(dir, "node")); !bytes.Equal(got, want) {
		t.Fatalf("a group of the same generation was rendered again:\n%s", got)
	}
	apply(t, w, manager.Update{"node": managertest.NewJob(true, managertest.NewGroup("p", g))})
	if got := readFile(t, Path(dir, "node")); !bytes.Contains(got, []byte(`"b:1"`)) {
		t.Fatalf("a new generation was not written:\n%s", got)
	}
}

// Writing a job's file goes before discovery work that can wait (package
// priority): Apply waits only for the background work already running.
func TestApplyIsForeground(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := &priority.Gate{}
		w, err := New(t.TempDir(), Options{Registerer: prometheus.NewRegistry(), Priority: gate})
		if err != nil {
			t.Fatal(err)
		}
		release := make(chan struct{})
		go gate.Background(func() { <-release })
		synctest.Wait()
		applied := make(chan error)
		go func() { applied <- w.Apply(manager.Update{"node": complete("a:1")}) }()
		synctest.Wait()
		select {
		case <-applied:
			t.Fatal("Apply ran while background work was running")
		default:
		}
		close(release)
		if err := <-applied; err != nil {
			t.Fatal(err)
		}
	})
}
