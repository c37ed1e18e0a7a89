package file

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
)

// FuzzReadFile feeds the file_sd input parser arbitrary files, as JSON and
// as YAML. It must never panic; every rejection names the file; every
// accepted group is non-nil, has its Source and __meta_filepath, and only
// valid label names, since the writer would otherwise refuse the job. The
// committed corpus is in testdata/fuzz/FuzzReadFile.
//
//	go test -run '^$' -fuzz '^FuzzReadFile$' -fuzztime 10s ./discovery/file
func FuzzReadFile(f *testing.F) {
	for _, s := range []string{
		`[{"targets":["a:1","b:2"],"labels":{"env":"prod"}}]`,
		`[{"targets":[],"labels":{}}]`,
		`[]`,
		`[null]`,
		`[{"targets":["a:1"],"labels":{"a.b":"x"}}]`,
		`[{"targets":["a:1"],"labels":{"":"x"}}]`,
		`[{"targets":["a:1"],"labels":{"x":"\xff\xfe"}}]`,
		`[{"targets":["a/b:1"],"extra":1}]`,
		"- targets: [a:1]\n  labels: {env: prod}\n",
		"- targets: [a:1]\n  labels: {\"\\xff\": v}\n",
		"- targets: &a [a:1]\n- targets: *a\n",
		"",
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte, yml bool) {
		name := filepath.Join(dir, "in.json")
		if yml {
			name = filepath.Join(dir, "in.yml")
		}
		if err := os.WriteFile(name, data, 0o644); err != nil {
			t.Fatal(err)
		}
		tm := time.AfterFunc(10*time.Second, func() { panic(fmt.Sprintf("readFile hangs on %q", data)) })
		defer tm.Stop()
		groups, _, err := readFile(name)
		if err != nil {
			if !strings.HasPrefix(err.Error(), fmt.Sprintf("read %q: ", name)) {
				t.Fatalf("error does not name the file: %q", err)
			}
			return
		}
		for i, g := range groups {
			if g == nil {
				t.Fatalf("group %d is nil", i)
			}
			if g.Source != source(name, i) || g.Labels[filepathLabel] != model.LabelValue(name) {
				t.Fatalf("group %d: source %q, labels %v", i, g.Source, g.Labels)
			}
			for n := range g.Labels {
				if !model.UTF8Validation.IsValidLabelName(string(n)) {
					t.Fatalf("group %d: invalid label name %q accepted", i, n)
				}
			}
			for _, tg := range g.Targets {
				for n := range tg {
					if !model.UTF8Validation.IsValidLabelName(string(n)) {
						t.Fatalf("group %d: invalid target label name %q accepted", i, n)
					}
				}
			}
		}
	})
}
