package reliability

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// HostileOptions configure the hostile-values scenario.
type HostileOptions struct {
	Bin string
	Dir string
	// Prometheus is a Prometheus 2.x binary that reads the outputs; empty
	// leaves that check out (a figure says so).
	Prometheus string
}

// hostileJobNames are accepted by the loader, as Prometheus accepts them:
// each output file must land directly in the output directory.
var hostileJobNames = []string{"a..b", "x:y", "ünï cödé", "100%", "CON", "a%2F..%2Fb", "\u2028",
	"../../etc/cron.d/x", ".sdhub-manifest", "serviceMonitor/monitoring/node-exporter/0",
	strings.Repeat("x", 250), strings.Repeat("é", 100)}

// Hostile checks that no job name writes outside the output directory (the
// loader accepts every name Prometheus accepts, `../../etc/cron.d/x`
// included; output file names escape them), and
// that a file_sd source's hostile values (targets with "/" or empty,
// newlines, a 1 MiB value, a label name Prometheus 2.x rejects) never
// produce a file Prometheus rejects: the target with the bad label name is
// dropped and counted, the rest of the job is written, and a real
// Prometheus reads it. The targets with "/" or empty stay: Prometheus
// hands them to the consuming job's relabelling, as with native SD.
func Hostile(ctx context.Context, o HostileOptions) (r Result) {
	r = Result{Scenario: "hostile values"}
	defer r.timed(time.Now())
	ps, err := makeDirs(o.Dir)
	if r.failOn(err) {
		return r
	}
	out := ps.out

	// 1. Odd names the loader accepts, and a file_sd job with hostile values.
	input := filepath.Join(ps.in, "hostile.json")
	huge := strings.Repeat("h", 1<<20)
	groups := []map[string]any{
		{"targets": []string{"good-1:9100", "good-2:9100"}, "labels": map[string]string{"env": "prod"}},
		{"targets": []string{"nl:1"}, "labels": map[string]string{"msg": "line1\nline2\t\"q\"\\ \u2028"}},
		{"targets": []string{"huge:1"}, "labels": map[string]string{"big": huge}},
		{"targets": []string{"slash:1/metrics", ""}},
		{"targets": []string{"dotted:1"}, "labels": map[string]string{"a.b": "v"}},
		{"targets": []string{"[::1]:9100"}},
	}
	data, err := json.Marshal(groups)
	if r.failOn(err) || r.failOn(WriteFileAtomic(input, data)) {
		return r
	}
	var cfg strings.Builder
	cfg.WriteString("scrape_configs:\n")
	fmt.Fprintf(&cfg, "  - job_name: hostile\n    file_sd_configs:\n      - files: [%q]\n", input)
	for i, j := range hostileJobNames { // distinct targets: Prometheus merges equal ones
		fmt.Fprintf(&cfg, "  - job_name: %q\n    static_configs:\n      - targets: [\"t%d:1\"]\n", j, i)
	}
	if r.failOn(ps.writeConfig(cfg.String())) {
		return r
	}
	r.Runs++
	p, err := ps.start(o.Bin, fastFlush)
	if r.failOn(err) {
		return r
	}
	defer r.stop(p, 0)
	if r.failOn(Eventually("every file written", func() bool { return allWritten(p) })) {
		return r
	}
	wantTargets := []string{"", "[::1]:9100", "good-1:9100", "good-2:9100", "huge:1", "nl:1", "slash:1/metrics"}
	file, err := os.ReadFile(filepath.Join(out, "hostile.json"))
	if r.failOn(err) {
		return r
	}
	entries, err := ParseFileSD(file)
	if err != nil {
		r.Fail("hostile.json: %v", err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Targets...)
	}
	slices.Sort(got)
	if !slices.Equal(got, wantTargets) {
		r.Fail("hostile.json holds %v, want %v", got, wantTargets)
	}
	if v, err := p.Metric(`sdhub_output_dropped_targets{job="hostile"}`); err != nil || v != 1 {
		r.Fail("sdhub_output_dropped_targets{job=\"hostile\"} = %v (%v), want 1", v, err)
	}
	files, _ := os.ReadDir(out)
	outside, err := OutsideFiles(o.Dir, out, input, ps.cfg)
	if err != nil || len(outside) > 0 {
		r.Fail("files outside the output directory: %v (%v)", outside, err)
	}
	r.Fig("output files %d, all in the output dir", len(files))
	r.Fig("hostile targets dropped and counted 1, kept %d", len(got))
	if len(p.Log()) > 1<<20 {
		r.Fail("the 1 MiB value reached the log (%d bytes of log)", len(p.Log()))
	}

	// 2. A real Prometheus reads every output file.
	if o.Prometheus == "" {
		r.Fig("prometheus check skipped (no binary)")
		return r
	}
	r.Runs++
	seen, plog, err := prometheusTargets(ctx, o.Prometheus, o.Dir, out, len(wantTargets)+len(hostileJobNames))
	if err != nil {
		r.Fail("prometheus: %v\n%s", err, tail(plog, 2000))
		return r
	}
	if strings.Contains(plog, "Error reading file") { // Prometheus's file_sd on a file it rejects
		r.Fail("prometheus rejected a file:\n%s", tail(plog, 2000))
	}
	r.Fig("prometheus read %d targets from %d files, no file rejected", seen, len(files)-1)
	return r
}

// prometheusTargets runs Prometheus on every *.json in out and waits until
// it reports want targets; it returns how many it saw and its log. Its job
// drops every target by relabelling, so none is scraped (the addresses are
// made up) and each shows among the dropped targets, those whose address
// Prometheus would refuse after relabelling included.
func prometheusTargets(ctx context.Context, bin, dir, out string, want int) (int, string, error) {
	pdir := filepath.Join(dir, "prometheus")
	if err := os.MkdirAll(pdir, 0o755); err != nil {
		return 0, "", err
	}
	cfg := filepath.Join(pdir, "prometheus.yml")
	text := fmt.Sprintf("global:\n  scrape_interval: 1h\nscrape_configs:\n  - job_name: sdhub\n    file_sd_configs:\n      - files: [%q]\n"+
		"    relabel_configs:\n      - source_labels: [__address__]\n        regex: \".*\"\n        action: drop\n", filepath.Join(out, "*.json"))
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		return 0, "", err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, "", err
	}
	addr := l.Addr().String()
	l.Close()
	logPath := filepath.Join(pdir, "prometheus.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return 0, "", err
	}
	defer logf.Close()
	cmd := exec.CommandContext(ctx, bin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(pdir, "data"), "--web.listen-address="+addr)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return 0, "", err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(WaitTimeout):
			_ = cmd.Process.Kill()
			<-done
		}
	}()
	readLog := func() string { b, _ := os.ReadFile(logPath); return string(b) }
	n := 0
	err = Eventually(fmt.Sprintf("prometheus to discover %d targets", want), func() bool {
		select {
		case <-done:
			return true
		default:
		}
		resp, err := client.Get("http://" + addr + "/api/v1/targets?state=any")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var body struct {
			Data struct {
				Active  []json.RawMessage `json:"activeTargets"`
				Dropped []json.RawMessage `json:"droppedTargets"`
			} `json:"data"`
		}
		if json.NewDecoder(resp.Body).Decode(&body) != nil {
			return false
		}
		n = len(body.Data.Active) + len(body.Data.Dropped)
		return n >= want
	})
	select {
	case <-done:
		return n, readLog(), fmt.Errorf("prometheus exited")
	default:
	}
	return n, readLog(), err
}
