package output

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/sdhub/sdhub/internal/managertest"
	"github.com/sdhub/sdhub/manager"
)

// consumerEvents counts the events a watch of dir delivers that make
// Prometheus's file_sd read its files again (every event with a name but a
// chmod, discovery/file's Run), from now until the sentinel file written
// after do returns shows up: inotify keeps a watch's events in order.
func consumerEvents(t *testing.T, dir string, do func()) (n int, names []string) {
	t.Helper()
	w, err := fsnotify.NewWatcher()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Add(dir); err != nil {
		t.Fatal(err)
	}
	do()
	sentinel := filepath.Join(dir, "sentinel")
	if err := os.WriteFile(sentinel, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(sentinel)
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev := <-w.Events:
			if ev.Name == sentinel {
				return n, names
			}
			if ev.Name != "" && ev.Op^fsnotify.Chmod != 0 {
				n++
				names = append(names, ev.String())
			}
		case err := <-w.Errors:
			t.Fatal(err)
		case <-timeout:
			t.Fatal("no event for the sentinel file within 10 s")
		}
	}
}

// A consumer watching the output directory sees one event per write of a
// job's file, however large: Prometheus's file_sd reads every file of the
// job again on each.
func TestOneConsumerEventPerWrite(t *testing.T) {
	dir := t.TempDir()
	w := newWriter(t, dir)
	job := func(v int) manager.Update {
		g := &targetgroup.Group{Source: "s"}
		for i := range 20_000 { // about 2 MB: many write calls
			g.Targets = append(g.Targets, model.LabelSet{
				model.AddressLabel: model.LabelValue(fmt.Sprintf("10.0.%d.%d:9100", i/250, i%250)),
				"__meta_version":   model.LabelValue(fmt.Sprint(v)),
				"__meta_i":         model.LabelValue(fmt.Sprint(i)),
			})
		}
		return manager.Update{"big": managertest.NewJob(true, managertest.NewGroup("p", g))}
	}
	apply(t, w, job(0))
	for v := 1; v <= 3; v++ {
		n, names := consumerEvents(t, dir, func() { apply(t, w, job(v)) })
		if n != 1 {
			t.Errorf("write %d: the consumer's watch saw %d events, want 1: %v", v, n, names)
		}
	}
	if info, err := os.Stat(Path(dir, "big")); err != nil || info.Size() < 1<<20 {
		t.Fatalf("big.json: %v, %v; want a file over 1 MiB", info, err)
	}
	if left, err := os.ReadDir(filepath.Join(dir, StagingDir)); err != nil || len(left) > 0 {
		t.Errorf("staging directory after the writes: %v left, err %v", left, err)
	}
}
