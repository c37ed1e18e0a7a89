package main

import (
	"bytes"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sdhub/sdhub/internal/doccheck"
)

// How the commands of the docs are run.
const (
	// runHere: TestDocCommands runs it ("go run ./cmd/sdhub ARGS" as
	// runMain(ARGS), from the repository's root).
	runHere = "run here"
	// byCI: scripts/test.sh (CI) runs it, or runs exactly what it runs.
	byCI = "scripts/test.sh"
)

// docCommands lists every command of a fenced sh block in README.md and
// docs/**/*.md, with what runs it: runHere, byCI, a test ("test: ..."), or
// why nothing here does ("external: ...").
var docCommands = []struct{ cmd, how string }{
	{"go run ./cmd/sdhub --config.file=examples/sdhub.yml --output.dir=out", runHere},
	{"go run -tags remove_all_sd ./cmd/sdhub --config.file=examples/sdhub.yml --output.dir=out", "test: TestTrimmedBuild builds with -tags remove_all_sd and runs it"},
	{"go run ./cmd/sdhub check config examples/sdhub.yml examples/consul.yml", runHere},
	{"go run ./cmd/sdhub generate prometheus-config --config.file=examples/sdhub.yml --output.dir=/etc/prometheus/sd", runHere},
	{"go run ./cmd/sdhub generate prometheus-config --config.file=examples/consul.yml --output.dir=/sd --http-sd-url=http://sdhub.example:9099", runHere},
	{"go run ./cmd/sdhub generate prometheus-config --config.file=examples/consul.yml --output.dir=/sd --http-sd-url=http://sdhub.example:9099 --shards=4 --shard=0 --replicas=2", runHere},
	{"go run ./cmd/sdhub discover examples/sdhub.yml web", runHere},
	{"scripts/test.sh", byCI + " is .ci/run"},
	{"make reliability", byCI + " (its two steps: go run ./internal/reliability/cmd/reliability, make fuzz)"},
	{"make release", "test: packaging TestReleaseReproducible runs scripts/release.sh, which make release runs"},
	{"make image", "test: packaging TestImage runs scripts/image.sh, which make image runs"},
	{"go build ./cmd/sdhub", byCI + " (go vet ./... and go test build the package)"},
	{"go build -tags remove_all_sd,enable_kubernetes_sd,enable_aws_sd ./cmd/sdhub", "external: a build of several minutes for an example of tags; TestTrimmedBuild builds -tags remove_all_sd"},
	{"docker compose -f examples/docker-compose.yml up", "external: pulls the Consul and Prometheus images (the tests run without network); packaging TestImage runs the image with the compose file's command and volumes"},
	{"docker volume create sdhub-sd", "external: a named volume on the host's engine; packaging TestImage does the same with its own volume"},
	{"docker run -d --name sdhub -p 9099:9099 -v sdhub-sd:/sd -v /etc/sdhub:/etc/sdhub:ro sdhub:latest --config.file=/etc/sdhub/sdhub.yml --output.dir=/sd --config.auto-reload", "external: needs a config in the host's /etc/sdhub; packaging TestImage runs the image with the same layout"},
	{"go build -o /tmp/consul-bench ./bench/consul", "external: the Consul benchmark, 30 minutes of a shared machine (go vet builds it)"},
	{"flock /tmp/sdhub-bench.lock /tmp/consul-bench", "external: the Consul benchmark, 30 minutes"},
	{"go build -o /tmp/sdhub ./cmd/sdhub", "external: the pipeline benchmark's build (go vet builds the package)"},
	{"go build -o /tmp/pipeline ./bench/pipeline", "external: the pipeline benchmark's build (go test ./bench/pipeline builds and runs it small)"},
	{"flock /tmp/sdhub-bench.lock /tmp/pipeline -sdhub sdhub=/tmp/sdhub", "external: the pipeline benchmark, about 20 minutes; go test ./bench/pipeline runs it small"},
	{"go run ./bench/shards", "external: the shard split's figures, about 30 s; go test ./bench/shards runs it small"},
	{"go run ./bench/discoveronce", "external: the discover-once benchmark, several minutes of real Prometheus servers"},
	{"go run ./bench/hubfilter", "external: three Prometheus servers of 100,000 targets for 2 minutes; go test ./bench/hubfilter (TestSmoke) runs it at 2,000 targets"},
	{"go run ./bench/hubfilter -source consul", "external: a Consul agent of 50,000 instances and three Prometheus 3 servers (a build of minutes, not a CI dependency); TestSmokeConsul runs it at 50 x 2 where Prometheus 3 is installed"},
	{"go test -run '^$' -bench 'BenchmarkRenderJob|BenchmarkApply|BenchmarkApplyManyJobs|BenchmarkApplyNodeChange' -benchmem -count 3 ./output/", "external: benchmarks, minutes of a shared machine (go test ./output builds them)"},
	{"go test -run '^$' -bench 'Decode100k|Change100k' -benchmem ./discovery/file", "external: benchmarks, minutes of a shared machine (go test ./discovery/file builds them)"},
}

// TestDocCommands checks that every command of the docs is listed in
// docCommands, and each listed one is still in the docs; it runs the
// cheap ones.
func TestDocCommands(t *testing.T) {
	cmds, err := doccheck.Commands(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	listed := func(text string) bool {
		return slices.ContainsFunc(docCommands, func(c struct{ cmd, how string }) bool { return c.cmd == text })
	}
	for _, c := range cmds {
		if !listed(c.Text) {
			t.Errorf("%s: the command is not in docCommands: add it with what runs it, or why nothing here does", c)
		}
	}
	for _, dc := range docCommands {
		if !slices.ContainsFunc(cmds, func(c doccheck.Command) bool { return c.Text == dc.cmd }) {
			t.Errorf("docCommands lists %q, which no sh block of the docs holds any more", dc.cmd)
		}
		if dc.how == "" {
			t.Errorf("docCommands: %q says nothing of how it is run", dc.cmd)
		}
	}
	for _, dc := range docCommands {
		if dc.how != runHere {
			continue
		}
		t.Run(dc.cmd, func(t *testing.T) { runDocCommand(t, dc.cmd) })
	}
}

// runDocCommand runs "go run ./cmd/sdhub ARGS" as the docs give it, from
// the repository's root: the hub until it has written its files, any other
// command to its exit, which must be 0.
func runDocCommand(t *testing.T, cmd string) {
	args, ok := strings.CutPrefix(cmd, "go run ./cmd/sdhub ")
	if !ok {
		t.Fatalf("no way to run %q here", cmd)
	}
	var argv []string
	for _, a := range strings.Fields(args) {
		// Paths in the docs are from the repository's root.
		a = strings.Replace(a, "examples/", filepath.Join(repoRoot, "examples")+"/", 1)
		argv = append(argv, a)
	}
	if strings.HasPrefix(argv[0], "--") { // the hub
		out := t.TempDir()
		for i, a := range argv {
			if strings.HasPrefix(a, "--output.dir=") {
				argv[i] = "--output.dir=" + out
			}
		}
		startSdhub(t, argv...)
		for _, job := range []string{"node", "web", "mixed"} {
			eventually(t, job+".json", func() bool {
				e, ok := readOutput(t, filepath.Join(out, job+".json"))
				return ok && len(e) > 0
			})
		}
		return
	}
	var stdout, stderr bytes.Buffer
	if code := runMain(argv, &stdout, &stderr); code != exitOK {
		t.Fatalf("%s: exit %d\n%s%s", cmd, code, stdout.String(), stderr.String())
	}
	if stdout.Len() == 0 {
		t.Errorf("%s printed nothing", cmd)
	}
}
