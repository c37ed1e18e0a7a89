package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/sdhub/sdhub/output"
)

// partsInput writes the input of a file_sd job: files f-<i>.json, each of
// two groups of targets on loopback (never listened on), labelled by round.
func partsInput(t *testing.T, dir string, i, round int) {
	t.Helper()
	var b strings.Builder
	b.WriteString("[")
	for g := range 2 {
		if g > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"targets": [`)
		for k := range 1 + (i+round+g)%3 {
			if k > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, `"127.0.%d.%d:%d"`, i, g*10+k, 1+round%7)
		}
		fmt.Fprintf(&b, `], "labels": {"round": "%d", "file": "f-%d", "group": "%d"}}`, round, i, g)
	}
	b.WriteString("]\n")
	writeFile(t, filepath.Join(dir, fmt.Sprintf("f-%d.json", i)), b.String())
}

// A job written in parts gives the consuming Prometheus the targets its
// native file_sd gives, label for label after relabelling, through churn
// that adds, removes and changes groups in every part, a restart of sdhub,
// and a SIGHUP whose config lowers the job's parts while the consumer's
// config still reads the old ones.
func TestPartsMatchNativePrometheus(t *testing.T) {
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in"), filepath.Join(dir, "out")
	if err := os.Mkdir(in, 0o755); err != nil {
		t.Fatal(err)
	}
	const rules = `    relabel_configs:
      - {source_labels: [__meta_filepath], regex: ".*/(f-[0-9]+)\\.json", target_label: from_file}
      - {regex: "__meta_(.+)", action: labelmap}
      - {source_labels: [__address__], regex: "127\\.0\\.[0-9]+\\.1[0-9]?:.*", action: drop}
`
	job := func(name string) string {
		return fmt.Sprintf("  - job_name: %s\n    scrape_interval: 1h\n    file_sd_configs: [{files: [%q], refresh_interval: 1h}]\n%s", name, in+"/*.json", rules)
	}
	hubCfg := filepath.Join(dir, "sdhub.yml")
	writeFile(t, hubCfg, "scrape_configs:\n"+job("files"))
	rng := rand.New(rand.NewPCG(3, 4))
	rounds := map[int]int{} // the input: file -> its round
	write := func(i, round int) { partsInput(t, in, i, round); rounds[i] = round }
	for i := range 24 {
		write(i, 0)
	}
	// expected is what the consumer keeps of the input: the first group's
	// targets but 127.0.<i>.1, as "address round".
	expected := func() []string {
		var out []string
		for i, r := range rounds {
			for k := range 1 + (i+r)%3 {
				if k != 1 {
					out = append(out, fmt.Sprintf("127.0.%d.%d:%d %d", i, k, 1+r%7, r))
				}
			}
		}
		slices.Sort(out)
		return out
	}
	layout := []string{"--output.parts=6", "--output.parts.max-entries=7"}
	var gen, stderr bytes.Buffer
	if code := runMain(append([]string{"generate", "prometheus-config", "--config.file=" + hubCfg, "--output.dir=" + out}, layout...), &gen, &stderr); code != exitOK {
		t.Fatalf("generate: exit %d: %s", code, stderr.String())
	}
	if n := strings.Count(gen.String(), output.PartsDirSuffix+"/"); n != 6 {
		t.Fatalf("the generated config reads %d parts, want 6:\n%s", n, gen.String())
	}
	// The consumer: the generated job, and the same job with Prometheus's
	// own file_sd, whose labels must be the generated one's.
	// sdhub first: it makes the parts' directories, which the consumer's
	// file_sd watches (a consumer that starts first finds them at its
	// refresh_interval).
	hub := startSdhub(t, append([]string{"--config.file=" + hubCfg, "--output.dir=" + out}, layout...)...)
	addr := startPrometheus(t, "global:\n  scrape_interval: 1h\n"+gen.String()+job("native"))
	agree := func(what string) {
		t.Helper()
		var native, via, nativeSeen []string
		want := expected()
		ok := func() bool {
			active, _ := promTargets(t, addr)
			native, via, nativeSeen = nil, nil, nil
			for _, tg := range active {
				if tg.Labels["job"] == "native" {
					nativeSeen = append(nativeSeen, tg.Labels["instance"]+" "+tg.Labels["round"])
				}
				ls := describe([]promTarget{tg}, func(p promTarget) map[string]string { return p.Labels }, "job")[0]
				ls = strings.TrimPrefix(strings.TrimPrefix(ls, "native "), "files ")
				switch tg.Labels["job"] {
				case "native":
					native = append(native, ls)
				case "files":
					via = append(via, ls)
				}
			}
			slices.Sort(native)
			slices.Sort(via)
			slices.Sort(nativeSeen)
			// Native file_sd shows the input, and sdhub's parts show what
			// native does, label for label.
			return slices.Equal(nativeSeen, want) && slices.Equal(native, via)
		}
		defer func() {
			if t.Failed() {
				t.Logf("%s: native %d targets, via sdhub %d, input %d:\nnative: %v\nsdhub:  %v\ninput:  %v", what, len(native), len(via), len(want), native, via, want)
			}
		}()
		eventually(t, what+": the consumer's targets through sdhub to be native file_sd's", ok)
		t.Logf("%s: %d targets alike", what, len(native))
	}
	agree("start")

	// Churn: groups change, files (and so groups) come and go, in every part.
	for round := 1; round <= 3; round++ {
		for range 12 {
			i := rng.IntN(30)
			if rng.IntN(4) == 0 {
				_ = os.Remove(filepath.Join(in, fmt.Sprintf("f-%d.json", i)))
				delete(rounds, i)
				continue
			}
			write(i, round)
		}
		agree(fmt.Sprintf("churn round %d", round))
	}

	// A restart of sdhub: the parts on disk stay as they are meanwhile.
	if code := hub.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("sdhub exited with %d", code)
	}
	write(3, 9)
	hub = startSdhub(t, append([]string{"--config.file=" + hubCfg, "--output.dir=" + out}, layout...)...)
	agree("after a restart")

	// A second job in the config: within 7 entries the first gets 3 parts.
	// The consumer still reads 6: parts 0 to 2 hold the job, 3 to 5 are gone.
	writeFile(t, hubCfg, "scrape_configs:\n"+job("files")+strings.Replace(job("other"), in+"/*.json", in+"/f-1.json", 1))
	if err := hub.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually(t, "part 3 removed after the SIGHUP", func() bool {
		_, err := os.Stat(output.PartPath(out, "files", 3))
		return os.IsNotExist(err)
	})
	write(5, 10)
	agree("after a SIGHUP that lowered the parts")
}
