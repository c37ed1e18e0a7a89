// Package reliability holds sdhub's reliability and security scenarios:
// SIGKILL during large writes, a full or read-only output directory, reload
// storms, hostile input, secrets, and the writer's cost. Each scenario runs
// the real sdhub binary (built once with `go build`) or the real writer and
// returns a Result: runs, failures and the figures it measured. The tests
// of this package run them at sizes bounded for CI; cmd/reliability runs
// them at full size and prints the table (`make reliability`).
package reliability

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/procfs"

	"github.com/sdhub/sdhub/internal/poll"
	"github.com/sdhub/sdhub/internal/sdhubtest"
)

// WaitTimeout bounds every wait of the scenarios.
const WaitTimeout = 30 * time.Second

// Build compiles sdhub into dir and returns the binary's path. root is the
// module's root directory ("" finds it from the working directory).
func Build(ctx context.Context, root, dir string) (string, error) {
	if root == "" {
		var err error
		if root, err = ModuleRoot(); err != nil {
			return "", err
		}
	}
	return sdhubtest.Build(ctx, root, dir)
}

// ModuleRoot walks up from the working directory to the directory of go.mod.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// Proc is a running sdhub.
type Proc struct {
	cmd  *exec.Cmd
	Addr string // host:port of the web server
	done chan struct{}

	mu    sync.Mutex
	log   strings.Builder
	lines map[string]int // count of log lines per msg we wait for
}

// Start runs bin with args (plus a free listen address and debug logs) and
// waits until it listens.
func Start(bin string, args ...string) (*Proc, error) {
	cmd := exec.Command(bin, append([]string{"--web.listen-address=127.0.0.1:0", "--log.level=debug"}, args...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	p := &Proc{cmd: cmd, done: make(chan struct{}), lines: map[string]int{}}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.log.WriteString(line + "\n")
			if m := msgRE.FindStringSubmatch(line); m != nil {
				p.lines[strings.Trim(m[1], `"`)]++
			}
			p.mu.Unlock()
			if a, ok := sdhubtest.ListenAddress(line); ok {
				select {
				case addr <- a:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		_ = cmd.Wait()
		close(p.done)
	}()
	select {
	case p.Addr = <-addr:
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("sdhub exited before listening:\n%s", p.Log())
	case <-time.After(WaitTimeout):
		p.Kill()
		return nil, fmt.Errorf("sdhub did not listen within %s:\n%s", WaitTimeout, p.Log())
	}
}

var msgRE = regexp.MustCompile(`msg=("[^"]*"|\S+)`)

// Pid is the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Log is everything the process wrote to stderr so far.
func (p *Proc) Log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// Count is how many log lines so far had the message msg.
func (p *Proc) Count(msg string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lines[msg]
}

// Kill sends SIGKILL and waits for the process to be gone.
func (p *Proc) Kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Stop sends SIGTERM and waits, then SIGKILL after WaitTimeout.
func (p *Proc) Stop() error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if c := p.cmd.ProcessState.ExitCode(); c != 0 {
			return fmt.Errorf("sdhub exited with %d", c)
		}
		return nil
	case <-time.After(WaitTimeout):
		p.Kill()
		return errors.New("sdhub did not stop within the timeout after SIGTERM")
	}
}

// Signal sends sig.
func (p *Proc) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// client is shared so that keep-alive connections are reused: the fd count
// of the server is then stable.
var client = &http.Client{Timeout: WaitTimeout}

// Do makes a request to the process and returns the status and body.
func (p *Proc) Do(method, path string) (int, string, error) {
	req, err := http.NewRequest(method, "http://"+p.Addr+path, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// Metric returns the value of the sample whose line starts with series.
func (p *Proc) Metric(series string) (float64, error) {
	_, body, err := p.Do(http.MethodGet, "/metrics")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, fmt.Errorf("no sample %s", series)
}

// MetricSum returns the sum of every sample of the metric name.
func (p *Proc) MetricSum(name string) (float64, error) {
	_, body, err := p.Do(http.MethodGet, "/metrics")
	if err != nil {
		return 0, err
	}
	sum := 0.0
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, name+" ") && !strings.HasPrefix(line, name+"{") {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, err
		}
		sum += v
	}
	return sum, nil
}

// FDs counts the process's open file descriptors.
func (p *Proc) FDs() (int, error) {
	fs, err := procfs.NewProc(p.Pid())
	if err != nil {
		return 0, err
	}
	return fs.FileDescriptorsLen()
}

// RSS returns the process's resident set size and its peak, in bytes.
func (p *Proc) RSS() (rss, peak int64, err error) {
	fs, err := procfs.NewProc(p.Pid())
	if err != nil {
		return 0, 0, err
	}
	st, err := fs.NewStatus()
	if err != nil {
		return 0, 0, err
	}
	return int64(st.VmRSS), int64(st.VmHWM), nil
}

// Eventually polls cond every 10 ms until it holds or WaitTimeout passes.
func Eventually(what string, cond func() bool) error {
	return poll.Until(WaitTimeout, 10*time.Millisecond, what, cond)
}

// WriteFileAtomic replaces path with data by a rename.
func WriteFileAtomic(path string, data []byte) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".in-tmp")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
