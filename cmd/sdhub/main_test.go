package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/relabel"
	"go.uber.org/goleak"
	"gopkg.in/yaml.v3"

	"github.com/sdhub/sdhub/config"
	"github.com/sdhub/sdhub/internal/poll"
	"github.com/sdhub/sdhub/internal/sdhubtest"
)

// mainEnv makes the test binary run as sdhub: the end-to-end tests run the
// real program, as a child process, under real configs.
const mainEnv = "SDHUB_TEST_MAIN"

// relabelEnv holds relabel_configs (YAML) that the sdhub a test runs takes
// as every job's, in place of the config's (jobRelabel).
const relabelEnv = "SDHUB_TEST_RELABEL"

func TestMain(m *testing.M) {
	if os.Getenv(mainEnv) == "1" {
		if y := os.Getenv(relabelEnv); y != "" {
			var rules []*relabel.Config
			if err := yaml.Unmarshal([]byte(y), &rules); err != nil {
				fmt.Fprintf(os.Stderr, "%s: %v\n", relabelEnv, err)
				os.Exit(exitBadConfig)
			}
			jobRelabel = func(*config.Config, string) []*relabel.Config { return rules }
		}
		os.Exit(runMain(os.Args[1:], os.Stdout, os.Stderr))
	}
	goleak.VerifyTestMain(m)
}

// waitTimeout bounds every wait of the end-to-end tests.
const waitTimeout = 30 * time.Second

// eventually polls cond until it holds or waitTimeout passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	poll.Fatal(t, waitTimeout, 20*time.Millisecond, what, cond)
}

// sdhubProc is a running sdhub.
type sdhubProc struct {
	cmd  *exec.Cmd
	addr string
	done chan struct{}
	code int

	mu     sync.Mutex
	stderr bytes.Buffer
}

func (p *sdhubProc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// startSdhub runs the test binary as sdhub with args and waits until it
// listens. The process is stopped at the end of the test.
func startSdhub(t *testing.T, args ...string) *sdhubProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"--web.listen-address=127.0.0.1:0", "--log.level=debug"}, args...)...)
	cmd.Env = append(os.Environ(), mainEnv+"=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &sdhubProc{cmd: cmd, done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.stderr.WriteString(line + "\n")
			p.mu.Unlock()
			if a, ok := sdhubtest.ListenAddress(line); ok {
				select {
				case addr <- a:
				default:
				}
			}
		}
		_ = cmd.Wait()
		p.code = cmd.ProcessState.ExitCode()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(waitTimeout):
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("sdhub log:\n%s", p.log())
		}
	})
	select {
	case p.addr = <-addr:
	case <-p.done:
		t.Fatalf("sdhub exited with %d before listening:\n%s", p.code, p.log())
	case <-time.After(waitTimeout):
		t.Fatalf("sdhub did not listen within %s:\n%s", waitTimeout, p.log())
	}
	return p
}

// stop sends sig and returns the exit code.
func (p *sdhubProc) stop(t *testing.T, sig syscall.Signal) int {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
		return p.code
	case <-time.After(waitTimeout):
		t.Fatalf("sdhub did not exit within %s after %s", waitTimeout, sig)
		return -1
	}
}

func (p *sdhubProc) get(t *testing.T, path string) (int, string) {
	t.Helper()
	return httpDo(t, http.MethodGet, "http://"+p.addr+path)
}

func httpDo(t *testing.T, method, url string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// metric returns the value of the sample whose line starts with series.
func (p *sdhubProc) metric(t *testing.T, series string) string {
	t.Helper()
	_, body := p.get(t, "/metrics")
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return v
		}
	}
	return ""
}

// entry is one file_sd entry.
type entry struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
}

// readOutput parses a job's file; ok is false when it does not exist.
func readOutput(t *testing.T, path string) (entries []entry, ok bool) {
	t.Helper()
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, false
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &entries); err != nil {
		t.Fatalf("%s is not valid file_sd JSON: %v\n%s", path, err, data)
	}
	return entries, true
}

// targetsOf lists "address label=value,..." per target, for comparisons.
func targetsOf(entries []entry) []string {
	var out []string
	for _, e := range entries {
		var ls []string
		for k, v := range e.Labels {
			ls = append(ls, k+"="+v)
		}
		slices.Sort(ls)
		for _, tg := range e.Targets {
			out = append(out, tg+" "+strings.Join(ls, ","))
		}
	}
	slices.Sort(out)
	return out
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func outputIs(t *testing.T, path string, want ...string) func() bool {
	return func() bool {
		got, ok := readOutput(t, path)
		return ok && fmt.Sprint(targetsOf(got)) == fmt.Sprint(want)
	}
}
