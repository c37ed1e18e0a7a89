package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/sdhub/sdhub/internal/benchproc"
)

// proc is a Prometheus or sdhub process of the benchmark.
type proc struct {
	cmd  *exec.Cmd
	addr string
	done chan struct{}
	log  string
}

// dropAll keeps every target out of scraping: the benchmark measures
// discovery only. Dropped targets stay on Prometheus's service-discovery
// page with their discovered labels.
const dropAll = `    relabel_configs:
      - source_labels: [__address__]
        regex: .+
        action: drop
`

// startFleet starts n Prometheus servers; sd(i) is the service discovery
// of server i's job.
func startFleet(bin, dir string, n int, sd func(i int) string) ([]*proc, error) {
	var fleet []*proc
	for i := range n {
		d := filepath.Join(dir, fmt.Sprint(i))
		if err := os.MkdirAll(d, 0o755); err != nil {
			stopAll(fleet)
			return nil, err
		}
		cfg := "global:\n  scrape_interval: 1h\nscrape_configs:\n  - job_name: " + job + "\n    " + sd(i) + dropAll
		p, err := start(d, cfg, func(cfgFile, addr string) *exec.Cmd {
			return exec.Command(bin, "--config.file="+cfgFile, "--storage.tsdb.path="+filepath.Join(d, "data"),
				"--web.listen-address="+addr, "--log.level=warn")
		})
		if err != nil {
			stopAll(fleet)
			return nil, fmt.Errorf("Prometheus %d: %w", i, err)
		}
		fleet = append(fleet, p)
	}
	return fleet, nil
}

func startSdhub(bin, dir, cfg string) (*proc, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	p, err := start(dir, cfg, func(cfgFile, addr string) *exec.Cmd {
		return exec.Command(bin, "--config.file="+cfgFile, "--output.dir="+filepath.Join(dir, "out"), "--web.listen-address="+addr)
	})
	if err != nil {
		return nil, fmt.Errorf("sdhub: %w", err)
	}
	return p, nil
}

// start writes cfg to dir and starts the command, logging to dir, and
// waits until it answers /-/ready.
func start(dir, cfg string, command func(cfgFile, addr string) *exec.Cmd) (*proc, error) {
	cfgFile := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	log, err := os.Create(filepath.Join(dir, "log"))
	if err != nil {
		return nil, err
	}
	defer log.Close()
	p := &proc{cmd: command(cfgFile, addr), addr: addr, done: make(chan struct{}), log: log.Name()}
	p.cmd.Stdout, p.cmd.Stderr = log, log
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	deadline := time.Now().Add(time.Minute)
	for {
		select {
		case <-p.done:
			out, _ := os.ReadFile(p.log)
			return nil, fmt.Errorf("exited at start:\n%s", out)
		case <-time.After(100 * time.Millisecond):
		}
		if code, _ := get("http://" + addr + "/-/healthy"); code == http.StatusOK {
			return p, nil
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("not healthy after a minute")
		}
	}
}

func get(url string) (int, []byte) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// discovered returns the targets the server's job discovered: the
// discovered labels of its (dropped) targets, __meta_url aside (http_sd's
// own label), one sorted line each.
func (p *proc) discovered(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	code, body := get("http://" + p.addr + "/api/v1/targets?state=dropped")
	if code != http.StatusOK {
		return nil, fmt.Errorf("/api/v1/targets: status %d", code)
	}
	var r struct {
		Data struct {
			Dropped []struct {
				DiscoveredLabels map[string]string `json:"discoveredLabels"`
			} `json:"droppedTargets"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, err
	}
	var out []string
	for _, t := range r.Data.Dropped {
		var pairs []string
		for k, v := range t.DiscoveredLabels {
			if k != "__meta_url" {
				pairs = append(pairs, k+"="+v)
			}
		}
		sort.Strings(pairs)
		out = append(out, strings.Join(pairs, ","))
	}
	slices.Sort(out)
	return out, nil
}

func (p *proc) stop() { benchproc.Stop(p.cmd.Process, p.done) }

func stopAll(ps []*proc) {
	for _, p := range ps {
		p.stop()
	}
}
