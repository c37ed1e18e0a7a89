// Command hubfilter measures filtering at the hub (issue 19): what a
// consuming Prometheus saves when sdhub serves it only the targets its
// job's relabel_configs keep, and what it costs sdhub, side by side in one
// run.
//
// The job's targets come from -source:
//
//   - file (the default): -targets targets labelled like consul_sd's (one
//     service per -targets/-services targets, on 2,000 nodes), in -files
//     file_sd input files, one group per target.
//   - consul: a real Consul agent on loopback (package consulagent; the
//     binary from $SDHUB_CONSUL_BIN, consul on PATH or the cache of
//     scripts/deps/consul.sh), its http_max_conns_per_client raised to
//     15,000 out of the way of Prometheus's consul_sd (a blocking query per
//     service), its catalog filled through the transaction endpoint
//     (package consulfill) with -services (default 5,000) services of
//     -instances instances on 50 external nodes, each instance with
//     service metadata, tags and a passing check; the job reads it with
//     consul_sd_configs. The consul source needs Prometheus 3 (Debian's
//     2.42 has no consul_sd).
//
// Either way the targets are at loopback addresses nobody listens on, and
// the job's relabel_configs keep the fraction -keep of them (a keep on the
// tag "scrape") and label the rest. Each side is a real Prometheus
// (-prometheus; by default, with the file source $SDHUB_PROMETHEUS_BIN,
// else prometheus on PATH; with the consul source $SDHUB_PROMETHEUS3_BIN,
// else the binary scripts/deps/prometheus3.sh caches) with its own
// storage: "native" runs the job's discovery itself (reads the input
// files, or queries the agent); "sdhub, filtered" reads sdhub's http_sd
// endpoint through the config `sdhub generate prometheus-config
// --http-sd-url` prints (its URL names the digest of the job's rules: sdhub
// serves only the kept targets); "sdhub, unfiltered" the same with
// --no-output.hub-filter (no digest: every target). One sdhub (-sdhub, or
// ./cmd/sdhub built here) runs the same prometheus.yml as native and
// serves both sdhub sides.
//
// It prints each side's RSS -settle after its start, its active and
// dropped targets and sdhub's RSS (with the consul source also the agent's,
// and the connections native and sdhub hold to it); whether the active
// targets of each sdhub side are those of native, label for label (it
// exits 1 when not); the filtered side's RSS over native's; the kept
// targets in -shards bounded-load shards; and, with the file source only,
// in process, the output stage's time and CPU per change of one group with
// the job filtered and not (-changes changes to a job of -services
// groups).
//
//	go run ./bench/hubfilter
//	go run ./bench/hubfilter -targets 5000 -files 10 -settle 20s -changes 50
//	go run ./bench/hubfilter -source consul
//	go run ./bench/hubfilter -source consul -services 500 -instances 4 -settle 30s
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/sdhub/sdhub/internal/benchproc"
	"github.com/sdhub/sdhub/internal/benchreport"
	"github.com/sdhub/sdhub/internal/consulagent"
	"github.com/sdhub/sdhub/internal/poll"
)

type benchConfig struct {
	source                   string
	targets, files, services int
	instances                int
	keep                     float64
	settle                   time.Duration
	serial                   bool
	changes, shards          int
	prometheus, sdhub, dir   string
	consul                   string // the consul source's agent binary
}

func main() {
	var cfg benchConfig
	flag.StringVar(&cfg.source, "source", "file", "where the job's targets come from: file (file_sd input files) or consul (a real Consul agent)")
	flag.IntVar(&cfg.targets, "targets", 100_000, "targets of the job (file source)")
	flag.IntVar(&cfg.files, "files", 100, "file_sd input files the targets are spread over (file source)")
	flag.IntVar(&cfg.services, "services", 0, "consul services: with the file source those the targets belong to, the groups of the in-process job (default 1000); with the consul source the catalog's (default 5000)")
	flag.IntVar(&cfg.instances, "instances", 10, "instances of each service (consul source)")
	flag.Float64Var(&cfg.keep, "keep", 0.05, "fraction of the targets the job's relabel_configs keep")
	flag.DurationVar(&cfg.settle, "settle", 2*time.Minute, "how long after its start each Prometheus's RSS is read")
	flag.BoolVar(&cfg.serial, "serial", false, "run the sides one after another (default: together)")
	flag.IntVar(&cfg.changes, "changes", 200, "changes of one group timed in the in-process stage, with filtering and without (file source)")
	flag.IntVar(&cfg.shards, "shards", 4, "bounded-load shards the kept targets are split into")
	flag.StringVar(&cfg.prometheus, "prometheus", "", "Prometheus binary of the sides (default: with the file source $SDHUB_PROMETHEUS_BIN, else prometheus on PATH; "+
		"with the consul source $SDHUB_PROMETHEUS3_BIN, else the binary scripts/deps/prometheus3.sh caches)")
	flag.StringVar(&cfg.sdhub, "sdhub", "", "sdhub binary (default: build ./cmd/sdhub)")
	flag.StringVar(&cfg.dir, "dir", "", "work directory (default: a new temporary directory, removed at the end)")
	flag.Parse()
	if err := run(cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "hubfilter:", err)
		os.Exit(1)
	}
}

// resolve fills in the defaults that depend on the source, finds the
// binaries and checks the sizes.
func (cfg *benchConfig) resolve() error {
	switch cfg.source {
	case "", "file":
		cfg.source = "file"
		if cfg.services == 0 {
			cfg.services = 1000
		}
		if cfg.prometheus == "" {
			cfg.prometheus = os.Getenv("SDHUB_PROMETHEUS_BIN")
		}
		if cfg.prometheus == "" {
			p, err := exec.LookPath("prometheus")
			if err != nil {
				return fmt.Errorf("no Prometheus: set -prometheus or $SDHUB_PROMETHEUS_BIN")
			}
			cfg.prometheus = p
		}
		if cfg.files < 1 || cfg.targets < cfg.files || cfg.services < 1 || cfg.services > cfg.targets || cfg.changes < 1 {
			return fmt.Errorf("want -targets >= -files >= 1, -targets >= -services >= 1 and -changes >= 1")
		}
	case "consul":
		if cfg.services == 0 {
			cfg.services = 5000
		}
		if cfg.prometheus == "" {
			p, err := prometheus3()
			if err != nil {
				return err
			}
			cfg.prometheus = p
		}
		bin, ok, why := consulagent.Binary()
		if !ok {
			return fmt.Errorf("no consul binary: %s", why)
		}
		cfg.consul = bin
		if cfg.services < 1 || cfg.services > maxConsulServices || cfg.instances < 1 || cfg.instances > consulNodes {
			return fmt.Errorf("want 1 <= -services <= %d and 1 <= -instances <= %d (the nodes)", maxConsulServices, consulNodes)
		}
	default:
		return fmt.Errorf("invalid -source %q (one of: file, consul)", cfg.source)
	}
	if cfg.keep <= 0 || cfg.keep > 1 || cfg.shards < 2 {
		return fmt.Errorf("want 0 < -keep <= 1 and -shards >= 2")
	}
	return nil
}

// side is one consuming Prometheus and what was measured of it.
type side struct {
	name   string
	config string
	served int // the targets its discovery gets

	p               *proc
	discoveredAfter time.Duration
	rssAt           time.Duration // since its start
	usage           benchproc.Usage
	active          []string
	dropped         int // the dropped targets /api/v1/targets lists
	droppedCount    int // its droppedTargetCounts (Prometheus 2.43 and later), -1 when absent
	agentConns      int // its TCP connections to the consul source's agent at the RSS reading
}

func run(cfg benchConfig, w io.Writer) (err error) {
	if err := cfg.resolve(); err != nil {
		return err
	}
	dir := cfg.dir
	if dir == "" {
		d, err := os.MkdirTemp("", "sdhub-hubfilter-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	} else if dir, err = filepath.Abs(dir); err != nil {
		return err
	}
	if cfg.sdhub == "" {
		cfg.sdhub = filepath.Join(dir, "sdhub")
		if out, err := exec.Command("go", "build", "-o", cfg.sdhub, "github.com/sdhub/sdhub/cmd/sdhub").CombinedOutput(); err != nil {
			return fmt.Errorf("building sdhub: %v\n%s", err, out)
		}
	}
	defer client.CloseIdleConnections()
	defer headClient.CloseIdleConnections()
	prom := benchreport.Program("Prometheus (the sides)", cfg.prometheus, "--version")
	tools := []benchreport.Tool{prom}
	if cfg.source == "consul" {
		if strings.Contains(prom.Version, "version  (") { // a build of the module, as scripts/deps/prometheus3.sh makes, has no version stamp
			prom.Version = filepath.Base(cfg.prometheus) + " (a build of the module: no version stamp)"
		}
		tools = []benchreport.Tool{prom, benchreport.Program("Consul", cfg.consul, "version")}
	}
	header := benchreport.New("bench/hubfilter", append(tools, benchreport.Module("github.com/prometheus/prometheus"))...)
	if err := header.Write(w); err != nil {
		return err
	}

	var j *job
	if cfg.source == "consul" {
		j, err = consulJob(cfg, dir)
	} else {
		j, err = fileJob(cfg, dir)
	}
	if err != nil {
		return err
	}
	defer j.close()
	kept, promYML := j.kept, j.promYML
	hubCfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(hubCfg, []byte(promYML), 0o644); err != nil {
		return err
	}
	hubAddr, err := freeAddr()
	if err != nil {
		return err
	}
	hubDir, outDir := filepath.Join(dir, "sdhub-run"), filepath.Join(dir, "sdhub-out")
	if err := os.MkdirAll(hubDir, 0o755); err != nil {
		return err
	}
	generate := func(more ...string) (string, error) {
		args := append([]string{"generate", "prometheus-config", "--config.file=" + hubCfg, "--output.dir=" + outDir, "--http-sd-url=http://" + hubAddr}, more...)
		cmd := exec.Command(cfg.sdhub, args...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("sdhub generate prometheus-config %v: %w\n%s", more, err, stderr.String())
		}
		return string(out), nil
	}
	filteredYML, err := generate()
	if err != nil {
		return err
	}
	unfilteredYML, err := generate("--no-output.hub-filter")
	if err != nil {
		return err
	}
	m := regexp.MustCompile(`/api/v1/sd/` + jobName + `\?rules=([0-9a-f]+)`).FindStringSubmatch(filteredYML)
	if m == nil {
		return fmt.Errorf("the generated config names no digest in the job's http_sd URL:\n%s", filteredYML)
	}
	digest := m[1]
	if regexp.MustCompile(`rules=`).MatchString(unfilteredYML) {
		return fmt.Errorf("the config generated with --no-output.hub-filter names a digest:\n%s", unfilteredYML)
	}

	mode := "together: sdhub first, then, once it serves the job, the three Prometheus servers at once"
	if cfg.serial {
		mode = "one after another (native, sdhub filtered, sdhub unfiltered), each stopped before the next starts; sdhub runs throughout"
	}
	fmt.Fprintf(w, "The job: %s; its relabel_configs keep the targets tagged \"scrape\": %d (%.1f%%). "+
		"scrape_interval 5m, scrape_timeout 10s, on loopback addresses nobody listens on. sdhub's digest of the job's rules: %s.\n\n",
		j.about, kept, 100*float64(kept)/float64(j.targets), digest)
	sidesRun := "the sides run"
	if j.method != "" {
		sidesRun = j.method + " The sides run"
	}
	fmt.Fprintf(w, "Method: %s %s. Each side's RSS (VmRSS) and CPU are read %s after its start, once its discovery has every target it is served; "+
		"then its /api/v1/targets. sdhub's RSS is read once, after the sides'.\n\n", sidesRun, mode, cfg.settle)

	hub, err := start(hubDir, "sdhub.log", "sdhub", hubAddr, cfg.sdhub, "run", "--config.file="+hubCfg, "--output.dir="+outDir,
		"--web.listen-address="+hubAddr, "--log.level=warn")
	if err != nil {
		return err
	}
	defer hub.stop()
	hubStart := time.Now()
	if err := poll.Until(5*time.Minute, 100*time.Millisecond, "sdhub serving the job", func() bool {
		return hub.exited() == nil && head("http://"+hubAddr+"/api/v1/sd/"+jobName+"?rules="+digest) == http.StatusOK
	}); err != nil {
		return errors.Join(err, hub.exited())
	}
	hubReady := time.Since(hubStart)

	sides := []*side{
		{name: "native", config: promYML, served: j.targets},
		{name: "sdhub, filtered", config: filteredYML, served: kept},
		{name: "sdhub, unfiltered", config: unfilteredYML, served: j.targets},
	}
	defer func() {
		for _, s := range sides {
			if s.p != nil {
				s.p.stop()
			}
		}
	}()
	startSide := func(i int, s *side) error {
		p, err := startPrometheus(cfg.prometheus, filepath.Join(dir, fmt.Sprintf("prom-%d", i)), s.name, s.config)
		s.p = p
		return err
	}
	if cfg.serial {
		for i, s := range sides {
			if err := startSide(i, s); err != nil {
				return err
			}
			if err := discover([]*side{s}, cfg.settle); err != nil {
				return err
			}
			if err := s.settle(cfg.settle, j.agent); err != nil {
				return err
			}
			if err := s.targets(kept); err != nil {
				return err
			}
			s.p.stop()
		}
	} else {
		for i, s := range sides {
			if err := startSide(i, s); err != nil {
				return err
			}
		}
		if err := discover(sides, cfg.settle); err != nil {
			return err
		}
		for _, s := range sides {
			if err := s.settle(cfg.settle, j.agent); err != nil {
				return err
			}
		}
		for _, s := range sides {
			if err := s.targets(kept); err != nil {
				return err
			}
		}
	}
	hubUsage, err := benchproc.ReadUsage(hub.cmd.Process.Pid)
	if err != nil {
		return fmt.Errorf("sdhub's usage: %w", err)
	}

	fmt.Fprintf(w, "### The consuming Prometheus, %s after its start\n\n", cfg.settle)
	fmt.Fprintln(w, "| side | targets served | discovered after | RSS | CPU by then | active targets | dropped targets |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	for _, s := range sides {
		at := ""
		if s.rssAt > cfg.settle+time.Second { // discovery took longer than -settle
			at = " at " + benchproc.Ms(s.rssAt)
		}
		dropped := fmt.Sprint(s.dropped)
		if s.droppedCount >= 0 && s.droppedCount != s.dropped {
			dropped += fmt.Sprintf(" (counted: %d)", s.droppedCount)
		}
		fmt.Fprintf(w, "| %s | %d | %s | %d MiB%s | %.1f s | %d | %s |\n", s.name, s.served, benchproc.Ms(s.discoveredAfter),
			s.usage.RSS>>20, at, s.usage.CPU, len(s.active), dropped)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "- sdhub: RSS %d MiB (peak %d MiB) with the job's output and its kept view, both sdhub sides served; it served the job %s after its start.\n",
		hubUsage.RSS>>20, hubUsage.Peak>>20, benchproc.Ms(hubReady))
	if j.agent != nil {
		if err := writeAgent(w, j.agent, hub, sides); err != nil {
			return err
		}
	}
	if sides[0].droppedCount >= 0 { // Prometheus 2.43 and later: keep_dropped_targets
		all := "the list holds every dropped target (keep_dropped_targets unset: no limit)"
		for _, s := range sides {
			if s.dropped != s.droppedCount {
				all = "the list is cut short (keep_dropped_targets)"
			}
		}
		fmt.Fprintf(w, "- dropped targets: /api/v1/targets?state=dropped lists %d, %d and %d (native, sdhub filtered, sdhub unfiltered), its droppedTargetCounts of the job says %d, %d and %d: %s\n",
			sides[0].dropped, sides[1].dropped, sides[2].dropped, sides[0].droppedCount, sides[1].droppedCount, sides[2].droppedCount, all)
	}
	var diffErr error
	for _, s := range sides[1:] {
		d := firstDifference(sides[0].active, s.active, sides[0].name, s.name)
		if d == "" {
			fmt.Fprintf(w, "- active targets, native and %s: identical (%d label sets)\n", s.name, len(s.active))
			continue
		}
		fmt.Fprintf(w, "- active targets, native and %s: differ: %s\n", s.name, d)
		diffErr = errors.Join(diffErr, fmt.Errorf("the active targets of native and %s differ: %s", s.name, d))
	}
	if len(sides[0].active) > 0 {
		fmt.Fprintf(w, "- an active target's labels: `%s`\n", sides[0].active[0])
	}
	if len(sides[0].active) != kept {
		diffErr = errors.Join(diffErr, fmt.Errorf("native has %d active targets, the rules keep %d", len(sides[0].active), kept))
	}
	fmt.Fprintf(w, "- RSS of sdhub, filtered / native: %.2fx (target: at most 0.5x); sdhub, unfiltered / native: %.2fx\n\n",
		float64(sides[1].usage.RSS)/float64(sides[0].usage.RSS), float64(sides[2].usage.RSS)/float64(sides[0].usage.RSS))

	if err := writeShards(w, hubAddr, digest, cfg.shards, kept, j.targets); err != nil {
		return errors.Join(diffErr, err)
	}
	hub.stop()
	for _, s := range sides {
		s.p.stop()
	}

	if j.pop == nil {
		fmt.Fprintf(w, "The in-process part (the output stage's cost per change of one group) is run with -source file only: it times package output on groups made in process, whatever the source.\n")
		return diffErr
	}
	if err := writeStage(w, *j.pop, j.rules, cfg.changes); err != nil {
		return errors.Join(diffErr, err)
	}
	return diffErr
}

// discover waits until the discovery of every side has every target it
// is served, and notes when each got there.
func discover(sides []*side, settle time.Duration) error {
	limit := max(settle, 5*time.Minute)
	err := poll.Until(limit, 500*time.Millisecond, "every side's discovery of every target", func() bool {
		all := true
		for _, s := range sides {
			if s.discoveredAfter == 0 && s.p.exited() == nil && s.p.discovered() == s.served {
				s.discoveredAfter = time.Since(s.p.started)
			}
			all = all && (s.discoveredAfter != 0 || s.p.exited() != nil)
		}
		return all
	})
	for _, s := range sides {
		if e := s.p.exited(); e != nil {
			return e
		}
		if s.discoveredAfter == 0 {
			return fmt.Errorf("%s: %w (it has %d of %d)", s.name, err, s.p.discovered(), s.served)
		}
	}
	return nil
}

// settle reads s's usage settle after its start, and its connections to
// agent when there is one.
func (s *side) settle(settle time.Duration, agent *consulagent.Agent) error {
	time.Sleep(time.Until(s.p.started.Add(settle))) // the time of the measurement, not a wait for a state
	u, err := benchproc.ReadUsage(s.p.cmd.Process.Pid)
	if err != nil {
		return fmt.Errorf("%s's usage: %w", s.name, err)
	}
	s.usage, s.rssAt = u, time.Since(s.p.started)
	if agent != nil {
		if s.agentConns, err = consulagent.Established(s.p.cmd.Process.Pid, agent.HTTPPort()); err != nil {
			return fmt.Errorf("%s's connections to the agent: %w", s.name, err)
		}
	}
	return nil
}

// targets reads s's targets from /api/v1/targets: its active ones once they
// number kept (or after a minute, as they are then), and its dropped ones.
func (s *side) targets(kept int) error {
	var err error
	_ = poll.Until(time.Minute, 500*time.Millisecond, s.name+"'s active targets", func() bool {
		s.active, err = s.p.active()
		return err == nil && len(s.active) == kept
	})
	if err != nil {
		return fmt.Errorf("%s's active targets: %w", s.name, err)
	}
	if s.dropped, s.droppedCount, err = s.p.dropped(); err != nil {
		return fmt.Errorf("%s's dropped targets: %w", s.name, err)
	}
	return nil
}

// writeShards prints the kept targets of each of n bounded-load shards of
// the job as sdhub serves them.
func writeShards(w io.Writer, hubAddr, digest string, n, kept, targets int) error {
	base := "http://" + hubAddr + "/api/v1/sd/" + jobName
	whole, err := countSD(base)
	if err != nil {
		return err
	}
	all, err := countSD(base + "?rules=" + digest)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "### The kept targets in %d shards (?rules=%s&shard=I&shards=%d&strategy=bounded-load)\n\n", n, digest, n)
	fmt.Fprintf(w, "sdhub's http_sd serves %d targets with the digest, %d without (the rules keep %d of %d).\n\n", all, whole, kept, targets)
	fmt.Fprintln(w, "| shard | targets |")
	fmt.Fprintln(w, "|---|---|")
	var counts []int
	sum, largest := 0, 0
	for i := range n {
		q := url.Values{"rules": {digest}, "shard": {fmt.Sprint(i)}, "shards": {fmt.Sprint(n)}, "strategy": {"bounded-load"}}
		c, err := countSD(base + "?" + q.Encode())
		if err != nil {
			return err
		}
		counts = append(counts, c)
		sum, largest = sum+c, max(largest, c)
		fmt.Fprintf(w, "| %d | %d |\n", i, c)
	}
	avg := float64(sum) / float64(n)
	fmt.Fprintf(w, "\n- mean %.1f targets, largest shard %.3fx the mean (target: within 1.1x); %d targets in all shards of %d kept\n\n", avg, float64(largest)/avg, sum, all)
	return nil
}

// countSD returns the number of targets an http_sd URL serves.
func countSD(u string) (int, error) {
	resp, err := client.Get(u)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	var groups []struct {
		Targets []string `json:"targets"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&groups); err != nil {
		return 0, fmt.Errorf("GET %s: %w", u, err)
	}
	n := 0
	for _, g := range groups {
		n += len(g.Targets)
	}
	return n, nil
}

var headClient = &http.Client{Timeout: 5 * time.Second}

// head returns the status of a HEAD request to u, 0 on an error.
func head(u string) int {
	resp, err := headClient.Head(u)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}
