package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sdhub/sdhub/internal/benchproc"
)

// proc is a process the benchmark started.
type proc struct {
	name    string
	cmd     *exec.Cmd
	addr    string
	log     string
	started time.Time
	done    chan struct{}
	once    sync.Once
}

// start runs bin in dir, its output in dir/log. The process is killed if
// the benchmark dies without stopping it.
func start(dir, log, name, addr, bin string, args ...string) (*proc, error) {
	log = filepath.Join(dir, log)
	logf, err := os.Create(log)
	if err != nil {
		return nil, err
	}
	p := &proc{name: name, addr: addr, log: log, cmd: exec.Command(bin, args...), done: make(chan struct{})}
	p.cmd.Dir = dir
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p.started = time.Now()
	go func() { _ = p.cmd.Wait(); logf.Close(); close(p.done) }()
	return p, nil
}

// stop stops p, once.
func (p *proc) stop() { p.once.Do(func() { benchproc.Stop(p.cmd.Process, p.done) }) }

// exited reports whether p is gone, with the end of its log.
func (p *proc) exited() error {
	select {
	case <-p.done:
		log, _ := os.ReadFile(p.log)
		if len(log) > 2000 {
			log = log[len(log)-2000:]
		}
		return fmt.Errorf("%s exited (%v):\n%s", p.name, p.cmd.ProcessState, log)
	default:
		return nil
	}
}

// startPrometheus runs Prometheus in dir on config.
func startPrometheus(bin, dir, name, config string) (*proc, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		return nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	return start(dir, "prometheus.log", name, addr, bin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
}

var client = &http.Client{Timeout: 2 * time.Minute}

// get returns the body of p's path, an error unless the status is 200.
func (p *proc) get(path string) ([]byte, error) {
	resp, err := client.Get("http://" + p.addr + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return b, nil
}

// metric returns the value of the series name{match...} of p's /metrics,
// -1 when it has none.
func (p *proc) metric(name, match string) float64 {
	b, err := p.get("/metrics")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, name+"{") && strings.Contains(line, match) {
			v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			if err == nil {
				return v
			}
		}
	}
	return -1
}

// discovered is the number of targets p's discovery manager has of the job.
func (p *proc) discovered() int {
	return int(p.metric("prometheus_sd_discovered_targets", `config="`+jobName+`"`))
}

// active returns the labels of p's active targets of the job, each as one
// string, sorted.
func (p *proc) active() ([]string, error) {
	b, err := p.get("/api/v1/targets?state=active")
	if err != nil {
		return nil, err
	}
	var r struct {
		Data struct {
			Active []struct {
				Labels map[string]string `json:"labels"`
				Pool   string            `json:"scrapePool"`
			} `json:"activeTargets"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("decoding %s's active targets: %w", p.addr, err)
	}
	out := make([]string, 0, len(r.Data.Active))
	for _, t := range r.Data.Active {
		if t.Pool == jobName {
			out = append(out, labelString(t.Labels))
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil // a set
}

// dropped returns the number of p's dropped targets of the job that
// /api/v1/targets lists, and that its droppedTargetCounts says (-1 when it
// has none: Prometheus before 2.43).
func (p *proc) dropped() (listed, counted int, err error) {
	resp, err := client.Get("http://" + p.addr + "/api/v1/targets?state=dropped")
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	var r struct {
		Data struct {
			Dropped []struct {
				Discovered struct {
					Job string `json:"job"`
				} `json:"discoveredLabels"`
				Pool string `json:"scrapePool"`
			} `json:"droppedTargets"`
			Counts map[string]int `json:"droppedTargetCounts"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return 0, 0, fmt.Errorf("decoding %s's dropped targets: %w", p.addr, err)
	}
	for _, t := range r.Data.Dropped {
		if t.Pool == jobName || (t.Pool == "" && t.Discovered.Job == jobName) {
			listed++
		}
	}
	counted = -1
	if r.Data.Counts != nil {
		counted = r.Data.Counts[jobName]
	}
	return listed, counted, nil
}

// labelString writes a label set as {a="x", b="y"}, sorted by name.
func labelString(ls map[string]string) string {
	names := make([]string, 0, len(ls))
	for n := range ls {
		names = append(names, n)
	}
	slices.Sort(names)
	var b strings.Builder
	b.WriteByte('{')
	for i, n := range names {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s=%q", n, ls[n])
	}
	b.WriteByte('}')
	return b.String()
}

// firstDifference compares two sorted sets; "" when they are equal.
func firstDifference(a, b []string, aName, bName string) string {
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || (i < len(a) && a[i] < b[j]):
			return fmt.Sprintf("%s has %s, %s does not", aName, a[i], bName)
		case i == len(a) || b[j] < a[i]:
			return fmt.Sprintf("%s has %s, %s does not", bName, b[j], aName)
		}
		i, j = i+1, j+1
	}
	return ""
}

// freeAddr returns a loopback address nobody listens on now.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
