package output

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/sdhub/sdhub/internal/managertest"
	"github.com/sdhub/sdhub/manager"
)

// targetsIn returns the targets of a file_sd file as "address labels"
// strings, one per target, in no particular order.
func targetsIn(t *testing.T, path string) []string {
	t.Helper()
	var groups []struct {
		Targets []string          `json:"targets"`
		Labels  map[string]string `json:"labels"`
	}
	if err := json.Unmarshal(readFile(t, path), &groups); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var out []string
	for _, g := range groups {
		l, _ := json.Marshal(g.Labels) // sorted keys
		for _, a := range g.Targets {
			out = append(out, a+" "+string(l))
		}
	}
	return out
}

// partsUnion returns the targets of every part file of job, sorted.
func partsUnion(t *testing.T, dir, job string, parts int) []string {
	t.Helper()
	var all []string
	for i := range parts {
		all = append(all, targetsIn(t, PartPath(dir, job, i))...)
	}
	slices.Sort(all)
	return all
}

// randomJob is a job's groups: sources g-<i>, each of a few targets that no
// other group has, with labels that change by round.
type randomJob struct {
	groups map[string]*targetgroup.Group
	gens   map[string]uint64
	next   uint64
}

func (j *randomJob) set(src string, round, n int) {
	g := &targetgroup.Group{Source: src, Labels: model.LabelSet{"__meta_group": model.LabelValue(src)}}
	for i := range n {
		g.Targets = append(g.Targets, model.LabelSet{
			model.AddressLabel: model.LabelValue(fmt.Sprintf("%s-%d:80", src, i)),
			"__meta_round":     model.LabelValue(fmt.Sprint(round)),
		})
	}
	j.next++
	j.groups[src], j.gens[src] = g, j.next
}

func (j *randomJob) update() *manager.JobTargets {
	var gs []manager.Group
	for _, src := range slices.Sorted(func(yield func(string) bool) {
		for k := range j.groups {
			if !yield(k) {
				return
			}
		}
	}) {
		gs = append(gs, manager.Group{Group: j.groups[src], Provider: "p", Gen: j.gens[src]})
	}
	return managertest.NewJob(true, gs...)
}

// The union of a job's parts is the job at every write: each target in
// exactly one part, none lost, whatever groups come, change and go; the
// job's whole output (http_sd, pages) is what a job of one part gives; a
// change of one group rewrites one part.
func TestPartsUnionIsJob(t *testing.T) {
	const parts = 5
	dir := t.TempDir()
	w, err := New(dir, Options{Registerer: prometheus.NewRegistry(), WholeFileInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.SetLayout(map[string]int{"big": parts}); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	j := &randomJob{groups: map[string]*targetgroup.Group{}, gens: map[string]uint64{}}
	for i := range 40 {
		j.set(fmt.Sprintf("g-%d", i), 0, 1+rng.IntN(4))
	}
	for round := 1; round <= 200; round++ {
		changed := 0
		switch op := rng.IntN(10); {
		case op < 5: // change one group
			j.set(fmt.Sprintf("g-%d", rng.IntN(60)), round, 1+rng.IntN(4))
			changed = 1
		case op < 7: // remove one
			for src := range j.groups {
				delete(j.groups, src)
				break
			}
			changed = 1
		case op < 9: // change several
			for range 1 + rng.IntN(8) {
				j.set(fmt.Sprintf("g-%d", rng.IntN(60)), round, 1+rng.IntN(4))
			}
		default: // unchanged
		}
		writes := testutil.ToFloat64(w.metrics.writes.WithLabelValues("big"))
		jt := j.update()
		apply(t, w, manager.Update{"big": jt})
		want := targetsIn(t, writeTemp(t, Render(groupsOf(jt))))
		slices.Sort(want)
		if got := partsUnion(t, dir, "big", parts); !slices.Equal(got, want) {
			t.Fatalf("round %d: the parts hold %d targets, want the job's %d:\n got %v\nwant %v", round, len(got), len(want), got, want)
		}
		s := snap(t, w, "big")
		if got, want := s.Bytes(), Render(groupsOf(jt)); string(got) != string(want) {
			t.Fatalf("round %d: the job's whole output differs from a job of one part", round)
		}
		if s.Targets != len(want) || s.Size != len(Render(groupsOf(jt))) {
			t.Fatalf("round %d: Targets %d, Size %d; want %d, %d", round, s.Targets, s.Size, len(want), len(Render(groupsOf(jt))))
		}
		if n := testutil.ToFloat64(w.metrics.writes.WithLabelValues("big")) - writes; changed == 1 && n > 1 {
			t.Fatalf("round %d: one group's change wrote %v files, want at most 1", round, n)
		}
	}
}

func writeTemp(t *testing.T, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "want.json")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// A job's number of parts can change while sdhub runs, and across a
// restart: the new parts are written, the parts it no longer has and
// their directories removed, the whole file kept while it is wanted.
func TestLayoutChanges(t *testing.T) {
	dir := t.TempDir()
	newStage := func() *Stage {
		w, err := New(dir, Options{Registerer: prometheus.NewRegistry(), WholeFileInterval: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	j := &randomJob{groups: map[string]*targetgroup.Group{}, gens: map[string]uint64{}}
	for i := range 30 {
		j.set(fmt.Sprintf("g-%d", i), 0, 3)
	}
	jt := j.update()
	want := targetsIn(t, writeTemp(t, Render(groupsOf(jt))))
	slices.Sort(want)
	w := newStage()
	apply(t, w, manager.Update{"big": jt})
	for _, parts := range []int{4, 2, 7} {
		if err := w.SetLayout(map[string]int{"big": parts}); err != nil {
			t.Fatal(err)
		}
		if got := partsUnion(t, dir, "big", parts); !slices.Equal(got, want) {
			t.Fatalf("%d parts: the parts hold %v, want %v", parts, got, want)
		}
		entries, err := os.ReadDir(filepath.Join(dir, partsDirName("big")))
		if err != nil || len(entries) != parts {
			t.Fatalf("%d parts: %s holds %v (err %v), want %d directories", parts, partsDirName("big"), entries, err, parts)
		}
		if got := targetsIn(t, Path(dir, "big")); len(got) != len(want) {
			t.Fatalf("%d parts: the whole file holds %d targets, want %d", parts, len(got), len(want))
		}
	}
	// A restart with fewer parts: the manifest lists the old ones.
	w = newStage()
	if err := w.SetLayout(map[string]int{"big": 3}); err != nil {
		t.Fatal(err)
	}
	apply(t, w, manager.Update{"big": jt})
	if got := partsUnion(t, dir, "big", 3); !slices.Equal(got, want) {
		t.Fatalf("after a restart with 3 parts: %v, want %v", got, want)
	}
	for i := 3; i < 7; i++ {
		if _, err := os.Stat(filepath.Dir(PartPath(dir, "big", i))); !os.IsNotExist(err) {
			t.Errorf("part %d's directory: %v, want it removed", i, err)
		}
	}
	// Back to one file: the parts' directory goes.
	if err := w.SetLayout(nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, partsDirName("big"))); !os.IsNotExist(err) {
		t.Errorf("%s: %v, want it removed", partsDirName("big"), err)
	}
	if got := targetsIn(t, Path(dir, "big")); len(got) != len(want) {
		t.Fatalf("one file: %d targets, want %d", len(got), len(want))
	}
	// A job of parts that leaves before it wrote any: the directories
	// SetLayout made for it go with it.
	if err := w.SetLayout(map[string]int{"big": 2, "brief": 4}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Dir(PartPath(dir, "brief", 3))); err != nil {
		t.Fatalf("SetLayout made no directory for a part: %v", err)
	}
	if err := w.SetLayout(map[string]int{"big": 2}); err != nil {
		t.Fatal(err)
	}
	apply(t, w, manager.Update{"big": jt})
	if _, err := os.Stat(filepath.Join(dir, partsDirName("brief"))); !os.IsNotExist(err) {
		t.Errorf("%s of a job that left unwritten: %v, want it removed", partsDirName("brief"), err)
	}
}

// The whole file of a job of parts is written at most every
// WholeFileInterval; with no interval it is left out.
func TestWholeFileInterval(t *testing.T) {
	dir := t.TempDir()
	now := time.Unix(1_000_000, 0)
	w, err := New(dir, Options{Registerer: prometheus.NewRegistry(), WholeFileInterval: 10 * time.Second, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.SetLayout(map[string]int{"big": 3}); err != nil {
		t.Fatal(err)
	}
	j := &randomJob{groups: map[string]*targetgroup.Group{}, gens: map[string]uint64{}}
	for i := range 10 {
		j.set(fmt.Sprintf("g-%d", i), 0, 2)
	}
	apply(t, w, manager.Update{"big": j.update()})
	first := readFile(t, Path(dir, "big"))
	now = now.Add(time.Second)
	j.set("g-1", 1, 2)
	jt := j.update()
	apply(t, w, manager.Update{"big": jt})
	if got := readFile(t, Path(dir, "big")); string(got) != string(first) {
		t.Fatal("the whole file was written again within its interval")
	}
	if due := w.wholeDue(); !due.Equal(now.Add(9 * time.Second)) {
		t.Fatalf("whole file due at %v, want %v", due, now.Add(9*time.Second))
	}
	now = now.Add(9 * time.Second)
	if err := w.Check(); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, Path(dir, "big")); string(got) != string(Render(groupsOf(jt))) {
		t.Fatal("the whole file was not written once due")
	}
	if !w.wholeDue().IsZero() {
		t.Fatalf("whole file still due at %v", w.wholeDue())
	}

	w2, err := New(t.TempDir(), Options{Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	if err := w2.SetLayout(map[string]int{"big": 3}); err != nil {
		t.Fatal(err)
	}
	apply(t, w2, manager.Update{"big": jt})
	if _, err := os.Stat(Path(w2.files.dir, "big")); !os.IsNotExist(err) {
		t.Fatalf("without an interval the whole file exists: %v", err)
	}
}

func TestLayoutPlan(t *testing.T) {
	splittable := map[string]bool{"consul": true, "k8s": true, "static": false}
	for _, c := range []struct {
		name string
		l    Layout
		want map[string]int
	}{
		{"one part", Layout{Parts: 1}, map[string]int{}},
		{"eight", Layout{Parts: 8}, map[string]int{"consul": 8, "k8s": 8}},
		{"bounded", Layout{Parts: 8, MaxEntries: 11}, map[string]int{"consul": 5, "k8s": 5}},
		{"too many jobs", Layout{Parts: 8, MaxEntries: 2}, map[string]int{}},
		{"per job", Layout{Parts: 8, MaxEntries: 12, Jobs: map[string]int{"k8s": 1, "static": 2}}, map[string]int{"consul": 8, "static": 2}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := c.l.Plan(splittable); !mapsEqual(got, c.want) {
				t.Errorf("Plan = %v, want %v", got, c.want)
			}
		})
	}
	if err := (Layout{Parts: 65}).Validate(); err == nil || err.Error() != "invalid number of parts 65 (from 1 to 64)" {
		t.Errorf("Validate(65) = %v", err)
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestIsPartName(t *testing.T) {
	for name, want := range map[string]bool{
		"big.parts/0/targets.json":   true,
		"big.parts/63/targets.json":  true,
		"big.parts/64/targets.json":  false,
		"big.parts/01/targets.json":  false,
		".x.parts/0/targets.json":    false,
		".parts/0/targets.json":      false,
		"big.parts/0/other.json":     false,
		"../x.parts/0/targets.json":  false,
		"a/big.parts/0/targets.json": false,
		"big.json":                   false,
	} {
		if got := isPartName(name); got != want {
			t.Errorf("isPartName(%q) = %v, want %v", name, got, want)
		}
	}
}

// A part's file that someone removes or edits is put back by the check.
func TestPartsPutBack(t *testing.T) {
	dir := t.TempDir()
	w := newWriter(t, dir)
	if err := w.SetLayout(map[string]int{"big": 3}); err != nil {
		t.Fatal(err)
	}
	j := &randomJob{groups: map[string]*targetgroup.Group{}, gens: map[string]uint64{}}
	for i := range 12 {
		j.set(fmt.Sprintf("g-%d", i), 0, 2)
	}
	apply(t, w, manager.Update{"big": j.update()})
	want := [3][]byte{}
	for i := range 3 {
		want[i] = readFile(t, PartPath(dir, "big", i))
	}
	if err := os.Remove(PartPath(dir, "big", 0)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(PartPath(dir, "big", 2), []byte("[]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := w.Check(); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if got := readFile(t, PartPath(dir, "big", i)); string(got) != string(want[i]) {
			t.Errorf("part %d not put back:\n%s", i, got)
		}
	}
	if n := testutil.ToFloat64(w.metrics.repairs.WithLabelValues("big")); n != 2 {
		t.Errorf("repairs = %v, want 2", n)
	}
}

// A restart keeps a job's parts while the job has no complete state (its
// sources have not answered yet), then removes the parts it no longer has.
func TestRestartKeepsPartsUntilComplete(t *testing.T) {
	dir := t.TempDir()
	j := &randomJob{groups: map[string]*targetgroup.Group{}, gens: map[string]uint64{}}
	for i := range 20 {
		j.set(fmt.Sprintf("g-%d", i), 0, 2)
	}
	jt := j.update()
	w := newWriter(t, dir)
	if err := w.SetLayout(map[string]int{"big": 4}); err != nil {
		t.Fatal(err)
	}
	apply(t, w, manager.Update{"big": jt})
	want := partsUnion(t, dir, "big", 4)

	w = newWriter(t, dir) // a restart, now with 2 parts
	if err := w.SetLayout(map[string]int{"big": 2}); err != nil {
		t.Fatal(err)
	}
	apply(t, w, manager.Update{"big": incomplete()})
	if got := partsUnion(t, dir, "big", 4); !slices.Equal(got, want) {
		t.Fatalf("while the job waits, its 4 parts hold %v, want %v", got, want)
	}
	apply(t, w, manager.Update{"big": jt})
	if got := partsUnion(t, dir, "big", 2); !slices.Equal(got, want) {
		t.Fatalf("once complete, its 2 parts hold %v, want %v", got, want)
	}
	for i := 2; i < 4; i++ {
		if _, err := os.Stat(PartPath(dir, "big", i)); !os.IsNotExist(err) {
			t.Errorf("part %d: %v, want it removed", i, err)
		}
	}
}
