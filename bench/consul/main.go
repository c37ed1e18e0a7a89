// Command consul-bench compares sdhub's consul discovery with Prometheus's
// own (its discovery manager running its consul SD, what the custom-sd
// adapter wraps), side by side in one run, over plain HTTP and over HTTPS.
//
// It starts one real Consul agent with HTTP and HTTPS listeners and its
// connection limit raised out of Prometheus's way (-agent-limit), and fills
// it with a catalog of N services of M instances. For each protocol it then
// runs each side in turn, in a child process (this binary re-executed with
// -side), so that the agent's CPU time in a window is that side's cost and
// the two sides do not compete for the machine's cores. Of each side it
// measures:
//
//   - the time to a complete target set;
//   - the requests it sends while idle (-idle), and during the changes;
//   - a steady stream of changes (-rate per second for -duration), of
//     every kind in turn (see kinds in changes.go), each to a service or
//     node no earlier change touched: for each, the time from the API call
//     returning to the change being in the side's output, and in its
//     discoverer's output;
//   - the agent's CPU seconds while idle and during the changes, the side's
//     peak TCP connections to the agent, CPU seconds and peak RSS.
//
// sdhub's output is its job's file: its discovery manager at the default
// flush interval, whose updates the output stage applies (renders and
// writes) as Stage.Run does. Prometheus's is its discovery manager's
// channel, which sends at most every 5 s.
//
//	go run ./bench/consul                  # 5000x10, 2 changes/s for 60 s, http then https
//	go run ./bench/consul -size 2000x5 -protos https
//
// The Consul binary is found as the tests find it: $SDHUB_CONSUL_BIN,
// consul on PATH, or the cache of scripts/deps/consul.sh.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sdhub/sdhub/internal/benchproc"
	"github.com/sdhub/sdhub/internal/benchreport"
	"github.com/sdhub/sdhub/internal/consulagent"
)

type benchConfig struct {
	n, m             int
	rate             float64
	duration, idle   time.Duration
	settle, complete time.Duration
	agentLimit       int
	nodes            int
	protos, sides    []string
	seed             uint64
	profile          string
	parts            int
}

func main() {
	var (
		a          sideArgs
		size       = flag.String("size", "5000x10", "catalog size, services x instances")
		nodes      = flag.Int("nodes", 50, "nodes the instances are spread over (50: a catalog-sync shape; 2500: a VM fleet's)")
		rate       = flag.Float64("rate", 2, "changes per second")
		duration   = flag.Duration("duration", 60*time.Second, "how long changes are made")
		idle       = flag.Duration("idle", 330*time.Second, "the idle window, once a side is complete: long enough for sdhub's blocking queries (5 minutes, plus Consul's jitter of up to 1/16) to return once, and Prometheus's (2 minutes, each after a 30 s tick) twice")
		settle     = flag.Duration("settle", 60*time.Second, "how long after the last change the sides may take to show every change")
		complete   = flag.Duration("peer-timeout", 2*time.Minute, "how long a side may take to complete")
		agentLimit = flag.Int("agent-limit", 15000, "http_max_conns_per_client of the agent, raised out of Prometheus's way (sdhub stays under Consul's default, 200)")
		protos     = flag.String("protos", "http,https", "protocols to run, in turn")
		sides      = flag.String("sides", "sdhub,prometheus", "sides to run: sdhub (its defaults), sdhub-plain (max_connections: 16, which over HTTP/1.1 leaves no connection for a stream per service: the catalog-wide watch alone), sdhub:list=<duration> (sdhub with --consul.service-list-interval), prometheus")
		seed       = flag.Uint64("seed", 1, "seed of the changes")
	)
	flag.StringVar(&a.side, "side", "", "internal: run one side and report on stdout")
	flag.StringVar(&a.proto, "proto", "http", "internal: the side's protocol")
	flag.StringVar(&a.server, "server", "", "internal: the side's agent address")
	flag.StringVar(&a.caFile, "ca", "", "internal: the CA of the agent's certificate")
	flag.IntVar(&a.want, "want", 0, "internal: the targets of a complete state")
	flag.IntVar(&a.parts, "parts", 16, "the parts of sdhub's output of the job, as sdhub run's --output.parts (its default: 16); 1 writes the job as one file")
	flag.StringVar(&a.profile, "profile", "", "write a CPU profile of each side into this directory, and one of the agent over each side's window of changes")
	flag.Parse()
	if a.side != "" {
		if err := runSide(a); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	cfg := benchConfig{profile: a.profile, parts: a.parts, rate: *rate, duration: *duration, idle: *idle, settle: *settle, complete: *complete,
		agentLimit: *agentLimit, nodes: *nodes, protos: strings.Split(*protos, ","), sides: strings.Split(*sides, ","), seed: *seed}
	if _, err := fmt.Sscanf(*size, "%dx%d", &cfg.n, &cfg.m); err != nil || cfg.n <= 0 || cfg.m <= 0 {
		fmt.Fprintf(os.Stderr, "consul-bench: invalid size %q (want NxM, e.g. 5000x10)\n", *size)
		os.Exit(2)
	}
	if err := run(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "consul-bench:", err)
		os.Exit(1)
	}
}

// agent is one side's Consul agent and the catalog written to it.
type agent struct {
	*consulagent.Agent
	cat *catalog
}

func (a *agent) cpu() float64 { return benchproc.CPU(a.PID()) }

func run(cfg benchConfig) error {
	bin, ok, why := consulagent.Binary()
	if !ok {
		return fmt.Errorf("no consul binary: %s", why)
	}
	header := benchreport.New("bench/consul", benchreport.Program("Consul", bin, "version"), benchreport.Module("github.com/prometheus/prometheus"))
	if err := header.Write(os.Stdout); err != nil {
		return err
	}
	ctx := context.Background()
	ca, err := consulagent.Start(ctx, bin, consulagent.Options{TLS: true, MaxConnsPerClient: cfg.agentLimit, Debug: cfg.profile != ""})
	if err != nil {
		return err
	}
	defer ca.Close()
	cat, err := newCatalog(ca.Addr(), cfg.n, cfg.m, cfg.nodes)
	if err != nil {
		return err
	}
	a := &agent{Agent: ca, cat: cat}
	start := time.Now()
	if err := cat.fill(ctx); err != nil {
		return fmt.Errorf("filling the catalog: %w", err)
	}
	fmt.Printf("consul %s; %d services x %d instances = %d targets on %d nodes, one check per instance but on every tenth service; filled in %v\n",
		consulagent.Version, cfg.n, cfg.m, cfg.n*cfg.m, cfg.nodes, time.Since(start).Round(time.Second))
	fmt.Printf("one agent, http_max_conns_per_client %d (Consul's default is 200); the sides run one after the other\n", cfg.agentLimit)
	fmt.Printf("sdhub's sides write the job as sdhub run does: %d parts (--output.parts), the whole file at most every 5 s\n", cfg.parts)
	<-time.After(10 * time.Second) // the agent settles after the fill
	if err := requestCosts(a); err != nil {
		return err
	}
	m := newCatalogModel(cat, cfg.seed)
	for _, proto := range cfg.protos {
		r := &result{proto: proto, made: map[string]map[int]time.Time{}, changes: map[string][]change{},
			idle: map[string]*phase{}, churn: map[string]*phase{}}
		for _, side := range cfg.sides {
			if err := r.runSide(cfg, side, a, m); err != nil {
				return err
			}
		}
		r.print(cfg)
	}
	return nil
}

// phase is a window of a run: its bounds, and the agent's CPU seconds then.
type phase struct {
	from, to       time.Time
	cpuFrom, cpuTo float64
}

func (p *phase) begin(a *agent) { p.from, p.cpuFrom = time.Now(), a.cpu() }
func (p *phase) end(a *agent)   { p.to, p.cpuTo = time.Now(), a.cpu() }

// result is what one protocol's run measured, side by side.
type result struct {
	proto       string
	children    []*child
	made        map[string]map[int]time.Time // side -> change -> when the agent had it
	changes     map[string][]change          // side -> the changes made while it ran
	idle, churn map[string]*phase
}

// runSide runs one side on its own: it starts it, waits for it to
// complete, measures it idle, makes the changes and waits for them.
func (r *result) runSide(cfg benchConfig, side string, a *agent, m *catalogModel) error {
	args := sideArgs{side: side, proto: r.proto, server: a.Addr(), caFile: a.CAFile(), want: m.instances(), profile: cfg.profile, parts: cfg.parts}
	port := a.HTTPPort()
	if r.proto == "https" {
		args.server, port = a.HTTPSAddr(), a.HTTPSPort()
	}
	c, err := startChild(args, port)
	if err != nil {
		return err
	}
	defer c.stop()
	r.children = append(r.children, c)
	r.made[side] = map[int]time.Time{}
	idle, churn := &phase{}, &phase{}
	r.idle[side], r.churn[side] = idle, churn
	c.waitComplete(time.Now().Add(cfg.complete))

	<-time.After(5 * time.Second) // let the start-up settle before the idle window
	idle.begin(a)
	<-time.After(cfg.idle)
	idle.end(a)

	churn.begin(a)
	stopProfile := profileAgent(cfg, a, side+"-"+r.proto)
	defer stopProfile()
	m.newRun()
	total := int(cfg.rate * cfg.duration.Seconds())
	tick := time.NewTicker(time.Duration(float64(time.Second) / cfg.rate))
	var mu sync.Mutex
	var wg sync.WaitGroup
	var ids []string
	for i := range total {
		if i > 0 {
			<-tick.C
		}
		ch := m.next()
		r.changes[side] = append(r.changes[side], ch)
		ids = append(ids, strconv.Itoa(ch.id))
		wg.Go(func() {
			if err := a.cat.txn(context.Background(), ch.ops); err != nil {
				fmt.Fprintf(os.Stderr, "consul-bench: change %d (%s): %v\n", ch.id, kinds[ch.kind], err)
				return
			}
			at := time.Now()
			mu.Lock()
			r.made[side][ch.id] = at
			mu.Unlock()
			c.expect(ch.id, ch.expect)
		})
	}
	tick.Stop()
	wg.Wait()
	last := time.Now()
	// The window of the changes ends a few seconds after the last one;
	// the side may take longer to show them all.
	<-time.After(churnTail)
	churn.end(a)
	stopProfile()
	c.waitSeen(ids, last.Add(cfg.settle))
	c.stop()
	return nil
}

// churnTail is how long after the last change the window of the changes
// lasts.
const churnTail = 5 * time.Second

// profileAgent starts a CPU profile of the agent over the window of the
// changes (its /debug/pprof, enable_debug) when cfg.profile is set, and
// returns what ends it and writes <profile>/agent-<name>.cpu.pprof.
func profileAgent(cfg benchConfig, a *agent, name string) func() {
	if cfg.profile == "" {
		return func() {}
	}
	secs := int((cfg.duration + churnTail).Seconds())
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", a.Addr(), secs))
		if err != nil {
			fmt.Fprintln(os.Stderr, "consul-bench: agent profile:", err)
			return
		}
		defer func() { _ = resp.Body.Close() }()
		f, err := os.Create(filepath.Join(cfg.profile, "agent-"+name+".cpu.pprof"))
		if err != nil {
			fmt.Fprintln(os.Stderr, "consul-bench: agent profile:", err)
			return
		}
		defer func() { _ = f.Close() }()
		if _, err := io.Copy(f, resp.Body); err != nil {
			fmt.Fprintln(os.Stderr, "consul-bench: agent profile:", err)
		}
	}()
	return sync.OnceFunc(func() { <-done })
}
