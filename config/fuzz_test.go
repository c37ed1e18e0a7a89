package config_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sdhub/sdhub/config"
	"github.com/sdhub/sdhub/output"
)

// FuzzLoad feeds the loader arbitrary files. It must never panic; every
// rejection names the file (and, from the YAML decoder, the line); every
// accepted config has job names that pass ValidateJobName and whose output
// file stays in the output directory. The seeds are the loader's own
// testdata plus the committed corpus in testdata/fuzz/FuzzLoad.
//
//	go test -run '^$' -fuzz '^FuzzLoad$' -fuzztime 10s ./config
func FuzzLoad(f *testing.F) {
	seeds, err := filepath.Glob(filepath.Join("testdata", "*.yml"))
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range seeds {
		data, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		"scrape_configs:\n  - job_name: ../../etc/cron.d/x\n    static_configs:\n      - targets: [a:1]\n",
		"scrape_configs:\n  - job_name: \"a\\x00b\"\n",
		"scrape_configs:\n  - job_name: x\n    consul_sd_configs:\n      - token: s3cret\n        server: \"http://u:p@h:1\"\n",
		// An alias bomb: a loader that expands it would hang.
		"a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\n" +
			"d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\nscrape_configs: [*e]\n",
		"scrape_configs:\n  - job_name: x\n    static_configs:\n      - targets: [\"a/b:1\", \"\\xff:1\"]\n        labels: {\"a.b\": \"\\n\"}\n",
	} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	filename := filepath.Join(dir, "fuzz.yml")
	f.Fuzz(func(t *testing.T, data []byte) {
		// scrape_config_files globs read files: keep them to the (empty)
		// temp directory, never /dev or /proc.
		if bytes.Contains(data, []byte("scrape_config_files")) && bytes.ContainsAny(data, `/\.`) {
			t.Skip()
		}
		tm := time.AfterFunc(10*time.Second, func() { panic(fmt.Sprintf("config.Load hangs on %q", data)) })
		defer tm.Stop()
		cfg, err := config.Load(data, filename)
		if err != nil {
			msg := err.Error()
			if !strings.HasPrefix(msg, filename) {
				t.Fatalf("error does not name the file: %q", msg)
			}
			if strings.TrimSpace(strings.TrimPrefix(msg, filename)) == ":" {
				t.Fatalf("error says nothing: %q", msg)
			}
			return
		}
		out := filepath.Join(dir, "out")
		for job := range cfg.Jobs() {
			if err := config.ValidateJobName(job); err != nil {
				t.Fatalf("loaded job %q that ValidateJobName rejects: %v", job, err)
			}
			if p := output.Path(out, job); filepath.Dir(p) != out {
				t.Fatalf("job %q writes outside the output directory: %s", job, p)
			}
		}
	})
}
