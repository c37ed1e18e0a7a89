package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestTrimmedBuild builds sdhub with -tags remove_all_sd, the quickest
// build the docs offer (every native mechanism, Prometheus's file, http and
// docker), and runs the example config with it until every job's file is
// written; a kubernetes_sd_configs job loads, left to Prometheus with a
// warning.
func TestTrimmedBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds sdhub once more")
	}
	bin := filepath.Join(t.TempDir(), "sdhub")
	build := exec.Command("go", "build", "-tags", "remove_all_sd", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build -tags remove_all_sd: %v\n%s", err, out)
	}

	k8s := filepath.Join(t.TempDir(), "k8s.yml")
	writeFile(t, k8s, "scrape_configs:\n  - job_name: pods\n    kubernetes_sd_configs:\n      - role: pod\n")
	out, err := exec.Command(bin, "check", "config", k8s).CombinedOutput()
	if err != nil {
		t.Fatalf("check config: %v\n%s", err, out)
	}
	if want := `kubernetes_sd_configs left to Prometheus (this build of sdhub leaves it out)`; !strings.Contains(string(out), want) {
		t.Errorf("check config of a kubernetes job in a trimmed build:\n%s\nwant a warning containing %q", out, want)
	}

	dir := t.TempDir()
	cmd := exec.Command(bin, "--config.file="+filepath.Join(repoRoot, "examples", "sdhub.yml"), "--output.dir="+dir, "--web.listen-address=127.0.0.1:0")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logDone := make(chan string)
	go func() {
		var b strings.Builder
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			b.WriteString(sc.Text() + "\n")
		}
		logDone <- b.String()
	}()
	defer func() {
		_ = cmd.Process.Signal(os.Interrupt)
		log := <-logDone
		if err := cmd.Wait(); err != nil {
			t.Errorf("trimmed sdhub: %v\n%s", err, log)
		}
	}()
	for _, job := range []string{"node", "web", "mixed"} {
		eventually(t, job+".json from the trimmed build", func() bool {
			e, ok := readOutput(t, filepath.Join(dir, job+".json"))
			return ok && len(e) > 0
		})
	}
}
