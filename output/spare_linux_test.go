package output

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/sdhub/sdhub/internal/managertest"
	"github.com/sdhub/sdhub/internal/testenv"
	"github.com/sdhub/sdhub/manager"
)

// bigJob is a version of a job whose file is over spareMinSize: n targets,
// each an entry with a long label, v telling the versions apart.
func bigJob(v, n int) *manager.JobTargets {
	g := &targetgroup.Group{Source: "s"}
	pad := strings.Repeat("x", 250)
	for i := range n {
		g.Targets = append(g.Targets, model.LabelSet{
			model.AddressLabel: model.LabelValue(fmt.Sprintf("10.%d.%d.%d:9100", v%256, i/256, i%256)),
			"__meta_pad":       model.LabelValue(fmt.Sprint(i, pad)),
		})
	}
	return managertest.NewJob(true, managertest.NewGroup("p", g))
}

// newSpareWriter is newWriter on a directory whose file system has spares.
func newSpareWriter(t *testing.T) (*Stage, string) {
	t.Helper()
	dir := t.TempDir()
	testenv.Require(t, "a local file system for the output's spares", sparesSupported(dir),
		"the temp directory's file system is not one spares are used on")
	return newWriter(t, dir), dir
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return info.Sys().(*syscall.Stat_t).Ino
}

// applyBig writes version v of the big job "node" and checks the file.
func applyBig(t *testing.T, w *Stage, path string, v int) []byte {
	t.Helper()
	jt := bigJob(v, 4000)
	apply(t, w, manager.Update{"node": jt})
	want := mustRender(t, jt)
	if len(want) < spareMinSize {
		t.Fatalf("version %d is %d bytes, under spareMinSize", v, len(want))
	}
	if got := readFile(t, path); !bytes.Equal(got, want) {
		t.Fatalf("after version %d the file holds %d bytes, want the version's %d", v, len(got), len(want))
	}
	return want
}

func TestSpareWrittenOver(t *testing.T) {
	w, dir := newSpareWriter(t)
	path, spare := Path(dir, "node"), filepath.Join(dir, spareName("node.json"))
	applyBig(t, w, path, 1)
	first := inode(t, path)
	if _, err := os.Stat(spare); !os.IsNotExist(err) {
		t.Fatalf("a spare after the first write: %v", err)
	}
	v2 := applyBig(t, w, path, 2)
	second := inode(t, path)
	if got := inode(t, spare); got != first {
		t.Fatalf("the spare is inode %d, want the replaced file's %d", got, first)
	}
	applyBig(t, w, path, 3)
	if got := inode(t, path); got != first {
		t.Errorf("the third version is in inode %d, want the spare's %d", got, first)
	}
	if got := inode(t, spare); got != second {
		t.Errorf("the spare is inode %d, want the replaced file's %d", got, second)
	}
	if got := readFile(t, spare); !bytes.Equal(got, v2) {
		t.Errorf("the spare holds %d bytes, want version 2's %d", len(got), len(v2))
	}
	if w.files.overwrites != 1 {
		t.Errorf("%d writes over the spare, want 1", w.files.overwrites)
	}
	// A version under the size drops the spare.
	apply(t, w, manager.Update{"node": complete("a:1")})
	if names := listDir(t, dir); !slices.Equal(names, []string{ManifestName, "node.json"}) {
		t.Errorf("dir = %v, want only the manifest and node.json", names)
	}
}

func TestSpareNotWrittenOverWhileOpen(t *testing.T) {
	w, dir := newSpareWriter(t)
	path := Path(dir, "node")
	v1 := applyBig(t, w, path, 1)
	first := inode(t, path)
	reader, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	applyBig(t, w, path, 2) // version 1's file, still open, is the spare now
	applyBig(t, w, path, 3)
	if got := inode(t, path); got == first {
		t.Fatal("version 3 was written over a file a reader has open")
	}
	var got bytes.Buffer
	if _, err := got.ReadFrom(reader); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), v1) {
		t.Errorf("the reader read %d bytes, not version 1's %d", got.Len(), len(v1))
	}
	// The file version 3 replaced is nobody's: it is the spare now.
	applyBig(t, w, path, 4)
	if w.files.overwrites != 1 {
		t.Errorf("%d writes over the spare, want 1 (version 4's)", w.files.overwrites)
	}
}

func TestSpareNotWrittenOverWhenLinked(t *testing.T) {
	w, dir := newSpareWriter(t)
	path := Path(dir, "node")
	v1 := applyBig(t, w, path, 1)
	kept := filepath.Join(t.TempDir(), "kept.json")
	if err := os.Link(path, kept); err != nil {
		testenv.Require(t, "a hard link to the output file", false, err.Error())
	}
	applyBig(t, w, path, 2)
	applyBig(t, w, path, 3)
	if got := readFile(t, kept); !bytes.Equal(got, v1) {
		t.Errorf("the hard link holds %d bytes, not version 1's %d", len(got), len(v1))
	}
	if w.files.overwrites != 0 {
		t.Errorf("%d writes over the spare, want 0", w.files.overwrites)
	}
}

func TestSpareRemovedWithJob(t *testing.T) {
	w, dir := newSpareWriter(t)
	path := Path(dir, "node")
	applyBig(t, w, path, 1)
	applyBig(t, w, path, 2)
	if names := listDir(t, dir); !slices.Contains(names, spareName("node.json")) {
		t.Fatalf("dir = %v, want a spare", names)
	}
	apply(t, w, manager.Update{})
	if names := listDir(t, dir); !slices.Equal(names, []string{ManifestName}) {
		t.Errorf("dir = %v, want only the manifest", names)
	}
}

func TestNoTornReadsOverSpares(t *testing.T) {
	w, _ := newSpareWriter(t)
	const versions = 40
	noTornReads(t, w, versions, func(i int) *manager.JobTargets { return bigJob(i, 4000+i*20) })
	if w.files.overwrites == 0 {
		t.Errorf("no write over a spare in %d versions", versions)
	}
	t.Logf("%d of %d writes over a spare", w.files.overwrites, versions)
	if names := listDir(t, w.files.dir); !slices.Equal(names, []string{spareName("node.json"), ManifestName, "node.json"}) {
		t.Errorf("dir = %v, want the manifest, node.json and its spare", names)
	}
}

// A symlink where the job's file or its spare goes is never written
// through: its target stays as it was, and the link goes.
func TestSpareNotThroughSymlink(t *testing.T) {
	w, dir := newSpareWriter(t)
	path, spare := Path(dir, "node"), filepath.Join(dir, spareName("node.json"))
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("not sdhub's"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, path); err != nil {
		t.Fatal(err)
	}
	applyBig(t, w, path, 1) // the link at the job's path becomes no spare
	if _, err := os.Lstat(spare); !os.IsNotExist(err) {
		t.Fatalf("a spare after replacing a symlink: %v", err)
	}
	applyBig(t, w, path, 2)
	if err := os.Remove(spare); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, spare); err != nil {
		t.Fatal(err)
	}
	applyBig(t, w, path, 3) // over the spare, a symlink now: a new file instead
	if got := readFile(t, victim); string(got) != "not sdhub's" {
		t.Errorf("the symlink's target holds %.40q", got)
	}
	if info, err := os.Stat(victim); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("the symlink's target: %v, %v", info, err)
	}
	if w.files.overwrites != 0 {
		t.Errorf("%d writes over the spare, want 0", w.files.overwrites)
	}
	for _, name := range listDir(t, dir) {
		if info, err := os.Lstat(filepath.Join(dir, name)); err != nil || !info.Mode().IsRegular() {
			t.Errorf("%s in the output directory: %v, %v", name, info, err)
		}
	}
}
