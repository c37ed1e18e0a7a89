// Command consumer measures what a churning file_sd job costs the
// Prometheus servers that consume it, and sdhub, side by side in one run:
// the consumers reading the job's source files themselves (native), or
// reading sdhub's output through the config `sdhub generate
// prometheus-config` writes, with the job's output in one file or in
// parts (--output.parts).
//
// The job has -targets targets in -files input files, one group per
// target, labelled like consul_sd's; a change rewrites one file with one
// target's marker label set, -rate changes per second for -duration. Every
// consumer keeps only the targets whose marker is set, so that it scrapes
// nothing but the changed targets (loopback addresses nobody listens on),
// and the end-to-end latency of a change is the time from the rename of
// its input file to the last consumer's /api/v1/targets listing it among
// its active targets. The consumers are real Prometheus servers (-prometheus:
// $SDHUB_PROMETHEUS_BIN, else prometheus on PATH); sdhub is the binary
// -sdhub, or ./cmd/sdhub built here.
//
// For each side and number of consumers it prints: CPU seconds of sdhub and
// of the consumers over the changes (and the 6 s after, for Prometheus's
// discovery manager sends at most every 5 s), their total, end-to-end p50 and
// p99, the bytes sdhub wrote per change and the consumers' peak RSS.
//
//	go run ./bench/consumer
//	go run ./bench/consumer -targets 20000 -duration 10s -parts 1,4 -consumers 1
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/procfs"

	"github.com/sdhub/sdhub/internal/benchproc"
	"github.com/sdhub/sdhub/internal/benchreport"
	"github.com/sdhub/sdhub/internal/poll"
)

type benchConfig struct {
	targets, files int
	rate           float64
	duration       time.Duration
	parts          []int
	consumers      []int
	prometheus     string
	sdhub          string
	sdhubArgs      []string
	dir            string
}

func main() {
	var cfg benchConfig
	var parts, consumers string
	flag.IntVar(&cfg.targets, "targets", 100_000, "targets of the job")
	flag.IntVar(&cfg.files, "files", 100, "input files the targets are spread over")
	flag.Float64Var(&cfg.rate, "rate", 2, "changes per second")
	flag.DurationVar(&cfg.duration, "duration", 30*time.Second, "how long changes are made")
	flag.StringVar(&parts, "parts", "1,8", "sdhub sides: --output.parts of each, comma separated")
	flag.StringVar(&consumers, "consumers", "1,3", "numbers of consuming Prometheus servers, comma separated")
	flag.StringVar(&cfg.prometheus, "prometheus", os.Getenv("SDHUB_PROMETHEUS_BIN"), "the consumers' Prometheus binary (default: prometheus on PATH)")
	flag.StringVar(&cfg.sdhub, "sdhub", "", "sdhub binary (default: build ./cmd/sdhub)")
	var sdhubArgs string
	flag.StringVar(&sdhubArgs, "sdhub-args", "", "more flags for sdhub run, space separated (e.g. --output.whole-file-interval=0)")
	flag.StringVar(&cfg.dir, "dir", "", "work directory (default: a new temporary directory, removed at the end)")
	flag.Parse()
	cfg.sdhubArgs = strings.Fields(sdhubArgs)
	var err error
	if cfg.parts, err = ints(parts); err == nil {
		cfg.consumers, err = ints(consumers)
	}
	if err == nil {
		err = run(cfg, os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "consumer:", err)
		os.Exit(1)
	}
}

func ints(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("invalid number %q in %q", f, s)
		}
		out = append(out, n)
	}
	return out, nil
}

func run(cfg benchConfig, w io.Writer) error {
	if cfg.prometheus == "" {
		p, err := exec.LookPath("prometheus")
		if err != nil {
			return fmt.Errorf("no Prometheus: set -prometheus or $SDHUB_PROMETHEUS_BIN")
		}
		cfg.prometheus = p
	}
	if cfg.files < 1 || cfg.targets < cfg.files || cfg.rate <= 0 {
		return fmt.Errorf("want -targets >= -files >= 1 and -rate > 0")
	}
	dir := cfg.dir
	if dir == "" {
		d, err := os.MkdirTemp("", "sdhub-consumer-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	if cfg.sdhub == "" {
		cfg.sdhub = filepath.Join(dir, "sdhub")
		if out, err := exec.Command("go", "build", "-o", cfg.sdhub, "./cmd/sdhub").CombinedOutput(); err != nil {
			return fmt.Errorf("building sdhub: %v\n%s", err, out)
		}
	}
	if err := benchreport.New("bench/consumer", benchreport.Program("Prometheus (the consumers)", cfg.prometheus, "--version")).Write(w); err != nil {
		return err
	}
	fmt.Fprintf(w, "The job: %d targets in %d files, one group per target; %.0f changes/s for %s, each to one group.\n\n",
		cfg.targets, cfg.files, cfg.rate, cfg.duration)
	fmt.Fprintln(w, "| side | consumers | sdhub CPU | consumers' CPU | total CPU | end-to-end p50 / p99 | seen | sdhub bytes written per change | consumer peak RSS |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|")
	var errs []error
	sides := []int{0} // 0: native
	sides = append(sides, cfg.parts...)
	for _, c := range cfg.consumers {
		for _, parts := range sides {
			r, err := runSide(cfg, filepath.Join(dir, fmt.Sprintf("side-%d-%d", parts, c)), parts, c)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s, %d consumers: %w", sideName(parts), c, err))
				fmt.Fprintf(w, "| %s | %d | failed: %s |\n", sideName(parts), c, oneLine(err))
				continue
			}
			hub, per := "-", "-"
			if parts > 0 {
				hub = fmt.Sprintf("%.2f s", r.hubCPU)
				per = fmt.Sprintf("%.2f MB", r.written/float64(max(r.changes, 1))/1e6)
			}
			fmt.Fprintf(w, "| %s | %d | %s | %.2f s | %.2f s | %s / %s | %d of %d | %s | %d MiB |\n", sideName(parts), c, hub, r.promCPU,
				r.hubCPU+r.promCPU, benchproc.MsFine(benchproc.Percentile(r.lat, 0.5)), benchproc.MsFine(benchproc.Percentile(r.lat, 0.99)), len(r.lat), r.changes, per, r.peakRSS>>20)
		}
	}
	fmt.Fprintln(w)
	if len(errs) > 0 {
		return errs[0]
	}
	return nil
}

func sideName(parts int) string {
	switch parts {
	case 0:
		return "native file_sd"
	case 1:
		return "sdhub, one file"
	}
	return fmt.Sprintf("sdhub, %d parts", parts)
}

type result struct {
	hubCPU, promCPU float64
	written         float64
	changes         int
	lat             []time.Duration
	peakRSS         int
}

// input is the job's input files; a change sets one target's marker.
type input struct {
	dir   string
	files [][]string // per file, the entries' JSON
	n     int        // targets per file
}

func newInput(dir string, targets, files int) (*input, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	in := &input{dir: dir, files: make([][]string, files), n: targets / files}
	for f := range files {
		for i := range in.n {
			in.files[f] = append(in.files[f], entry(f, i, ""))
		}
		if err := in.write(f); err != nil {
			return nil, err
		}
	}
	return in, nil
}

// entry is target i of file f, consul-shaped, with marker m ("" unset).
func entry(f, i int, m string) string {
	addr := fmt.Sprintf("127.%d.%d.%d", 1+f/250, f%250, 1+i%250)
	port := 10000 + i/250
	svc := (f*1000 + i) / 10
	return fmt.Sprintf(`{"targets":["%s:%d"],"labels":{"__meta_consul_address":"%s","__meta_consul_dc":"dc1","__meta_consul_health":"passing",`+
		`"__meta_consul_node":"node-%d","__meta_consul_service":"svc-%d","__meta_consul_service_id":"svc-%d-%d-%d",`+
		`"__meta_consul_service_metadata_owner":"team-%d","__meta_consul_service_port":"%d","__meta_consul_tags":",prod,http,","bench_change":"%s"}}`,
		addr, port, addr, f, svc, svc, f, i, svc%10, port, m)
}

func (in *input) write(f int) error {
	path := filepath.Join(in.dir, fmt.Sprintf("f-%03d.json", f))
	tmp := filepath.Join(filepath.Dir(in.dir), fmt.Sprintf(".f-%03d.tmp", f)) // outside the watched directory
	if err := os.WriteFile(tmp, []byte("["+strings.Join(in.files[f], ",\n")+"]\n"), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

const keepChanged = `    relabel_configs:
      - {source_labels: [bench_change], regex: "chg-.+", action: keep}
`

func runSide(cfg benchConfig, dir string, parts, consumers int) (r result, err error) {
	in, err := newInput(filepath.Join(dir, "in"), cfg.targets, cfg.files)
	if err != nil {
		return r, err
	}
	hubCfg := filepath.Join(dir, "sdhub.yml")
	job := fmt.Sprintf("scrape_configs:\n  - job_name: big\n    scrape_interval: 1h\n    file_sd_configs: [{files: [%q]}]\n%s", in.dir+"/*.json", keepChanged)
	if err := os.WriteFile(hubCfg, []byte(job), 0o644); err != nil {
		return r, err
	}
	promCfg := "global:\n  scrape_interval: 1h\n" + job
	var hub *proc
	if parts > 0 {
		out := filepath.Join(dir, "out")
		flags := []string{"--config.file=" + hubCfg, "--output.dir=" + out, fmt.Sprintf("--output.parts=%d", parts)}
		gen, err := exec.Command(cfg.sdhub, append([]string{"generate", "prometheus-config"}, flags[:]...)...).Output()
		if err != nil {
			return r, fmt.Errorf("generate: %w", err)
		}
		promCfg = "global:\n  scrape_interval: 1h\n" + string(gen)
		addr := freeAddr()
		if hub, err = start(dir, "sdhub", cfg.sdhub, append(append(flags, "--web.listen-address="+addr), cfg.sdhubArgs...)...); err != nil {
			return r, err
		}
		defer hub.stop()
		// The consumers start once sdhub has written the job: a file_sd
		// cannot watch a directory that does not exist yet.
		if err := poll.Until(5*time.Minute, 100*time.Millisecond, "/-/ready", func() bool {
			resp, err := (&http.Client{Timeout: time.Second}).Get("http://" + addr + "/-/ready")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		}); err != nil {
			return r, fmt.Errorf("sdhub not ready: %w", err)
		}
	}
	var proms []*proc
	for i := range consumers {
		d := filepath.Join(dir, fmt.Sprintf("prom-%d", i))
		if err := os.MkdirAll(d, 0o755); err != nil {
			return r, err
		}
		if err := os.WriteFile(filepath.Join(d, "prometheus.yml"), []byte(promCfg), 0o644); err != nil {
			return r, err
		}
		addr := freeAddr()
		p, err := start(d, "prometheus", cfg.prometheus, "--config.file="+filepath.Join(d, "prometheus.yml"),
			"--storage.tsdb.path="+filepath.Join(d, "data"), "--web.listen-address="+addr, "--log.level=warn")
		if err != nil {
			return r, err
		}
		p.addr = addr
		defer p.stop()
		proms = append(proms, p)
	}
	// Complete: every consumer discovered every target.
	for _, p := range proms {
		if err := poll.Until(5*time.Minute, 100*time.Millisecond, "every target", func() bool {
			return p.metric("prometheus_sd_discovered_targets", `config="big"`) == float64(cfg.targets)
		}); err != nil {
			return r, fmt.Errorf("consumer %s never discovered %d targets", p.addr, cfg.targets)
		}
	}
	// Quiet: no file_sd read for 3 s in any consumer.
	time.Sleep(3 * time.Second)
	cpu := func() (hubCPU, promCPU float64) {
		if hub != nil {
			hubCPU = hub.cpu()
		}
		for _, p := range proms {
			promCPU += p.cpu()
		}
		return
	}
	h0, p0 := cpu()
	w0 := 0.0
	if hub != nil {
		w0 = hub.written()
	}
	var (
		mu    sync.Mutex
		made  = map[string]time.Time{}
		seen  = map[string]time.Duration{}
		ctx   context.Context
		stopc context.CancelFunc
	)
	ctx, stopc = context.WithCancel(context.Background())
	pollDone := make(chan struct{})
	go func() { // the last consumer to list a marker among its active targets
		defer close(pollDone)
		shown := make([]map[string]bool, len(proms))
		for i := range shown {
			shown[i] = map[string]bool{}
		}
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			for i, p := range proms {
				for _, m := range p.activeMarkers() {
					shown[i][m] = true
				}
			}
			now := time.Now()
			mu.Lock()
			for m, at := range made {
				if _, ok := seen[m]; ok {
					continue
				}
				all := true
				for i := range proms {
					all = all && shown[i][m]
				}
				if all {
					seen[m] = now.Sub(at)
				}
			}
			mu.Unlock()
		}
	}()
	gap := time.Duration(float64(time.Second) / cfg.rate)
	next := time.Now()
	for k := 0; time.Since(next) < cfg.duration || k == 0; k++ {
		f, i := (k*37)%cfg.files, (k*101)%in.n
		m := fmt.Sprintf("chg-%06d", k)
		in.files[f][i] = entry(f, i, m)
		if err := in.write(f); err != nil {
			stopc()
			return r, err
		}
		mu.Lock()
		made[m] = time.Now()
		mu.Unlock()
		r.changes++
		if k == int(cfg.duration.Seconds()*cfg.rate)-1 {
			break
		}
		time.Sleep(time.Until(next.Add(time.Duration(k+1) * gap)))
	}
	_ = poll.Until(6*time.Second, 100*time.Millisecond, "every change", func() bool { mu.Lock(); defer mu.Unlock(); return len(seen) == len(made) })
	stopc()
	<-pollDone
	h1, p1 := cpu()
	r.hubCPU, r.promCPU = h1-h0, p1-p0
	if hub != nil {
		r.written = hub.written() - w0
	}
	for _, d := range seen {
		r.lat = append(r.lat, d)
	}
	for _, p := range proms {
		r.peakRSS = max(r.peakRSS, p.peakRSS())
	}
	return r, nil
}

// proc is a process under test.
type proc struct {
	cmd  *exec.Cmd
	addr string
	done chan struct{}
}

func start(dir, name, bin string, args ...string) (*proc, error) {
	logf, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, err
	}
	p := &proc{cmd: exec.Command(bin, args...), done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = p.cmd.Wait(); logf.Close(); close(p.done) }()
	return p, nil
}

func (p *proc) stop() { benchproc.Stop(p.cmd.Process, p.done) }

func (p *proc) cpu() float64 { return benchproc.CPU(p.cmd.Process.Pid) }

func (p *proc) written() float64 {
	pr, err := procfs.NewProc(p.cmd.Process.Pid)
	if err != nil {
		return 0
	}
	io, err := pr.IO()
	if err != nil {
		return 0
	}
	return float64(io.WChar)
}

func (p *proc) peakRSS() int {
	u, _ := benchproc.ReadUsage(p.cmd.Process.Pid)
	return int(u.Peak)
}

// metric returns the value of the series name{match...} of p's /metrics.
func (p *proc) metric(name, match string) float64 {
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + p.addr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, name+"{") && strings.Contains(line, match) {
			v, _ := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			return v
		}
	}
	return -1
}

// activeMarkers returns the markers of p's active targets.
func (p *proc) activeMarkers() []string {
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + p.addr + "/api/v1/targets?state=active")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var r struct {
		Data struct {
			Active []struct {
				Discovered map[string]string `json:"discoveredLabels"`
			} `json:"activeTargets"`
		} `json:"data"`
	}
	if json.NewDecoder(resp.Body).Decode(&r) != nil {
		return nil
	}
	var out []string
	for _, t := range r.Data.Active {
		out = append(out, t.Discovered["bench_change"])
	}
	return out
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func oneLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}
