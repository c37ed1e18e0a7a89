package benchreport

import (
	"os/exec"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestWrite(t *testing.T) {
	h := Header{
		Title: "bench/x", Time: time.Date(2026, 12, 2, 16, 35, 0, 0, time.UTC), Commit: "6134c03",
		Cores: 2, Memory: "23.4 GiB", CPU: "AMD EPYC", Go: "go1.26.8",
		Tools: []Tool{{"Consul", "1.20.6"}}, Command: Command([]string{"/tmp/consul-bench", "-protos", "https", "-size", "a b"}),
	}
	var b strings.Builder
	if err := h.Write(&b); err != nil {
		t.Fatal(err)
	}
	want := "## bench/x, 2026-12-02 16:35 UTC\n\n" +
		"- commit: 6134c03\n" +
		"- machine: 2 cores, 23.4 GiB memory, AMD EPYC\n" +
		"- versions: Go go1.26.8, Consul 1.20.6\n" +
		"- command: `/tmp/consul-bench -protos https -size 'a b'`\n\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

func TestCommand(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"go", "run", "./bench/pipeline", "-sdhub", "sdhub=/tmp/sdhub"}, "go run ./bench/pipeline -sdhub sdhub=/tmp/sdhub"},
		{[]string{"x", ""}, "x ''"},
		{[]string{"x", "it's"}, `x 'it'\''s'`},
		{[]string{"x", "$HOME"}, "x '$HOME'"},
	} {
		if got := Command(c.args); got != c.want {
			t.Errorf("Command(%q) = %s, want %s", c.args, got, c.want)
		}
	}
}

// TestNew reads this machine: the commit of this checkout, its cores and
// memory.
func TestNew(t *testing.T) {
	h := New("t", Module("github.com/prometheus/prometheus"))
	if h.Cores != runtime.NumCPU() {
		t.Errorf("cores %d, want %d", h.Cores, runtime.NumCPU())
	}
	if !regexp.MustCompile(`^\d+\.\d GiB$`).MatchString(h.Memory) {
		t.Errorf("memory %q, want GiB", h.Memory)
	}
	out, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skipf("no git checkout: %v", err)
	}
	if c := strings.TrimSuffix(h.Commit, "+dirty"); c != strings.TrimSpace(string(out)) {
		t.Errorf("commit %q, want %s", h.Commit, out)
	}
}

func TestProgramUnknown(t *testing.T) {
	if got := Program("none", "/nonexistent/bin", "--version"); got.Version != "unknown" {
		t.Errorf("version of a missing program: %q, want unknown", got.Version)
	}
}

func TestCommandLine(t *testing.T) {
	args := []string{"/tmp/consul-bench", "-protos", "https"}
	if got := commandLine(args); !slices.Equal(got, args) {
		t.Errorf("commandLine(%q) = %q, want it unchanged", args, got)
	}
}
