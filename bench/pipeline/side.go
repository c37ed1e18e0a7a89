package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/sdhub/sdhub/internal/benchproc"
	"github.com/sdhub/sdhub/internal/sdhubtest"
)

func now() int64 { return time.Now().UnixNano() }

func indexFrom(b []byte, i int, s string) int {
	j := bytes.Index(b[i:], []byte(s))
	if j < 0 {
		return -1
	}
	return i + j
}

// observer is what the parent knows of a side's output: its target count
// and when each marker was first seen in it, stamped when the side made
// that output (sdhub: the output file renamed into place; Prometheus: its
// manager's channel delivered it).
type observer struct {
	mu      sync.Mutex
	cond    *sync.Cond
	targets int
	full    int64 // when targets first reached want; 0: not yet
	want    int
	seen    map[int]int64
	err     error // the side failed
}

func newObserver(want int) *observer {
	o := &observer{want: want, seen: map[int]int64{}}
	o.cond = sync.NewCond(&o.mu)
	return o
}

func (o *observer) update(targets int, markers []int, at int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if targets >= 0 {
		o.targets = targets
		if o.full == 0 && targets == o.want {
			o.full = at
		}
	}
	for _, k := range markers {
		if _, ok := o.seen[k]; !ok {
			o.seen[k] = at
		}
	}
	o.cond.Broadcast()
}

func (o *observer) fail(err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err == nil {
		o.err = err
	}
	o.cond.Broadcast()
}

// wait waits until cond holds (checked under o.mu) or limit passes.
func (o *observer) wait(what string, limit time.Duration, cond func() bool) error {
	timer := time.AfterFunc(limit, func() {
		o.mu.Lock()
		o.cond.Broadcast()
		o.mu.Unlock()
	})
	defer timer.Stop()
	deadline := time.Now().Add(limit)
	o.mu.Lock()
	defer o.mu.Unlock()
	for !cond() {
		if o.err != nil {
			return o.err
		}
		if !time.Now().Before(deadline) {
			return fmt.Errorf("%s not seen within %v (targets %d of %d, %d markers)", what, limit, o.targets, o.want, len(o.seen))
		}
		o.cond.Wait()
	}
	return nil
}

// waitFull returns when the side first held every target.
func (o *observer) waitFull(limit time.Duration) (int64, error) {
	err := o.wait("every target", limit, func() bool { return o.full != 0 })
	return o.full, err
}

// waitMarker returns when the side first showed marker k.
func (o *observer) waitMarker(k int, limit time.Duration) (int64, error) {
	var at int64
	err := o.wait(fmt.Sprintf("change %d", k), limit, func() bool {
		var ok bool
		at, ok = o.seen[k]
		return ok
	})
	return at, err
}

func (o *observer) seenAt(k int) (int64, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	at, ok := o.seen[k]
	return at, ok
}

// side is one process under test.
type side struct {
	name    string
	kind    string // "sdhub" or "prometheus"
	cmd     *exec.Cmd
	started int64
	obs     *observer
	addr    string // sdhub's web address
	stdin   io.WriteCloser
	done    chan struct{} // closed when the process has exited
	stop    func() error
}

// startSdhub runs the sdhub binary bin on a prometheus.yml whose one job,
// "big", reads input with file_sd_configs, writing into outDir, and watches
// the job's output file there. With keep, the job's relabel_configs keep
// the targets whose rack matches it: sdhub filters the job at the hub.
func startSdhub(name, bin, dir, input string, want int, keep string) (*side, error) {
	outDir := filepath.Join(dir, "out")
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "prometheus.yml")
	job := fmt.Appendf(nil, "scrape_configs:\n  - job_name: big\n    file_sd_configs:\n      - files: [%q]\n", input)
	if keep != "" {
		job = fmt.Appendf(job, "    relabel_configs:\n      - {source_labels: [__meta_consul_metadata_rack], regex: %q, action: keep}\n", keep)
	}
	if err := os.WriteFile(cfg, job, 0o644); err != nil {
		return nil, err
	}
	s := &side{name: name, kind: "sdhub", obs: newObserver(want), done: make(chan struct{})}
	stopWatch, err := watchOutput(filepath.Join(outDir, "big.json"), s.obs)
	if err != nil {
		return nil, err
	}
	s.cmd = exec.Command(bin, "--config.file="+cfg, "--output.dir="+outDir, "--web.listen-address=127.0.0.1:0")
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		stopWatch()
		return nil, err
	}
	s.started = now()
	if err := s.cmd.Start(); err != nil {
		stopWatch()
		return nil, err
	}
	listening := make(chan string, 1)
	var logTail tail
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logTail.add(sc.Text())
			if a, ok := sdhubtest.ListenAddress(sc.Text()); ok {
				select {
				case listening <- a:
				default:
				}
			}
		}
		_ = s.cmd.Wait()
		close(s.done)
		s.obs.fail(fmt.Errorf("%s exited: %v\n%s", name, s.cmd.ProcessState, logTail.String()))
	}()
	s.stop = func() error {
		defer stopWatch()
		if !benchproc.Stop(s.cmd.Process, s.done) {
			return fmt.Errorf("%s did not stop within %s of SIGTERM", name, benchproc.StopTimeout)
		}
		if c := s.cmd.ProcessState.ExitCode(); c != 0 {
			return fmt.Errorf("%s exited with %d:\n%s", name, c, logTail.String())
		}
		return nil
	}
	select {
	case s.addr = <-listening:
		return s, nil
	case <-s.done:
		stopWatch()
		return nil, fmt.Errorf("%s exited before listening:\n%s", name, logTail.String())
	case <-time.After(time.Minute):
		_ = s.stop()
		return nil, fmt.Errorf("%s did not listen within a minute", name)
	}
}

// tail keeps the last lines of a log.
type tail struct {
	mu    sync.Mutex
	lines []string
}

func (t *tail) add(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lines = append(t.lines, line)
	if len(t.lines) > 20 {
		t.lines = t.lines[1:]
	}
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.lines, "\n")
}

// watchOutput reports each version of file to obs as it is renamed into
// place: its target count (its "targets" keys: every target of the input
// has a label set of its own, so one entry each) and its markers, stamped
// with the time of the event. Reading and counting it is this process's
// work, not sdhub's.
func watchOutput(file string, obs *observer) (stop func(), err error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	if err := w.Add(filepath.Dir(file)); err != nil {
		_ = w.Close()
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				obs.fail(fmt.Errorf("watching %s: %w", file, err))
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				if ev.Name != file || !ev.Has(fsnotify.Create) && !ev.Has(fsnotify.Write) {
					continue
				}
				at := now()
				b, err := os.ReadFile(file)
				if err != nil {
					continue // replaced again meanwhile: the next event reads it
				}
				var ks []int
				markers(b, func(k int) { ks = append(ks, k) })
				obs.update(bytes.Count(b, []byte(`"targets"`)), ks, at)
			}
		}
	}()
	return func() { _ = w.Close(); <-done }, nil
}

// metric is the value of the unlabelled sample name on sdhub's /metrics.
func (s *side) metric(name string) (float64, error) {
	resp, err := http.Get("http://" + s.addr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, fmt.Errorf("no %s in sdhub's /metrics", name)
}

// goroutines is sdhub's go_goroutines.
func (s *side) goroutines() (int, error) {
	v, err := s.metric("go_goroutines")
	return int(v), err
}

// startPrometheus runs Prometheus's discovery manager on input in a child
// process: this program again, as runChild.
func startPrometheus(input string, want int) (*side, error) {
	s := &side{name: "prometheus", kind: "prometheus", obs: newObserver(want), done: make(chan struct{})}
	s.cmd = exec.Command(os.Args[0])
	s.cmd.Env = append(os.Environ(), childEnv+"="+input)
	s.cmd.Stderr = os.Stderr
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if s.stdin, err = s.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	s.started = now()
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			// "<targets> <unix-nanos> <marker>...": one line per delivery
			f := strings.Fields(sc.Text())
			if len(f) < 2 {
				continue
			}
			targets, _ := strconv.Atoi(f[0])
			at, _ := strconv.ParseInt(f[1], 10, 64)
			var ks []int
			for _, m := range f[2:] {
				if k, err := strconv.Atoi(m); err == nil {
					ks = append(ks, k)
				}
			}
			s.obs.update(targets, ks, at)
		}
		_ = s.cmd.Wait()
		close(s.done)
		s.obs.fail(fmt.Errorf("prometheus side exited: %v", s.cmd.ProcessState))
	}()
	s.stop = func() error {
		_ = s.stdin.Close()
		select {
		case <-s.done:
		case <-time.After(30 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
			return errors.New("the prometheus side did not stop within 30s")
		}
		if c := s.cmd.ProcessState.ExitCode(); c != 0 {
			return fmt.Errorf("the prometheus side exited with %d", c)
		}
		return nil
	}
	return s, nil
}

// usage is a process's resources from /proc.
type usage struct {
	rss, peak int64 // bytes: VmRSS, VmHWM
	cpu       float64
}

func (s *side) usage() (usage, error) {
	u, err := benchproc.ReadUsage(s.cmd.Process.Pid)
	return usage{rss: u.RSS, peak: u.Peak, cpu: u.CPU}, err
}
