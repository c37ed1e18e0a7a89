package output

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/sdhub/sdhub/manager"
)

// TestLongJobNamesAreWritten: job names as long as the loader accepts (250
// bytes, and 100 two-byte characters that escape to 600) get file names
// short enough for their temp file, distinct from each other, and their
// files are written.
func TestLongJobNamesAreWritten(t *testing.T) {
	long := strings.Repeat("x", 250)
	jobs := []string{long, long[:249] + "y", strings.Repeat("é", 100), strings.Repeat("é", 99) + "e", strings.Repeat("a", 195), strings.Repeat("a", 196)}
	dir := t.TempDir()
	w := newWriter(t, dir)
	u := manager.Update{}
	names := map[string]string{}
	for _, job := range jobs {
		name := filepath.Base(Path(dir, job))
		if len(name) > maxFileName || !strings.HasSuffix(name, ".json") || strings.HasPrefix(name, ".") {
			t.Errorf("Path(%.20q...) = %q (%d bytes)", job, name, len(name))
		}
		if other, ok := names[name]; ok {
			t.Errorf("jobs %.20q... and %.20q... share the file %q", job, other, name)
		}
		names[name] = job
		u[job] = complete("a:1")
	}
	// 195 bytes and .json fit in maxFileName; 196 do not.
	if got := filepath.Base(Path(dir, jobs[4])); got != jobs[4]+".json" {
		t.Errorf("a 200-byte file name was shortened: %q", got)
	}
	if got := filepath.Base(Path(dir, jobs[5])); !strings.Contains(got, "~") {
		t.Errorf("a 201-byte file name was not shortened: %q", got)
	}
	apply(t, w, u)
	for name := range names {
		readFile(t, filepath.Join(dir, name))
	}
	if !w.Ready() {
		t.Error("not ready after writing every job")
	}
}
