// Command consul-bench compares sdhub's consul discovery with Prometheus's
// own (its discovery manager running its consul SD, what the custom-sd
// adapter wraps), side by side in one run, over plain HTTP and over HTTPS.
//
// It starts two real Consul agents with HTTP and HTTPS listeners, fills
// both with the same catalog of N services of M instances, and points
// sdhub at one with Consul's default connection limit and Prometheus at the
// other with the limit raised out of its way (-agent-limit), so that each
// agent's CPU time is one side's cost. For each protocol it then runs both
// sides, each in a child process (this binary re-executed with -side), and
// measures:
//
//   - the time to a complete target set;
//   - the requests each side sends while idle (-idle), and during the
//     changes;
//   - a steady stream of changes (-rate per second for -duration), of
//     every kind in turn (see kinds in changes.go), made to both agents at
//     once: for each, the time from the API call returning on a side's
//     agent to the change being in the side's output, and in its
//     discoverer's output;
//   - each agent's CPU seconds while idle and during the changes, each
//     side's peak TCP connections to its agent, CPU seconds and peak RSS.
//
// Each side is measured at its discoverer's channel and at its discovery
// manager's output: sdhub's manager at its default flush interval
// (startHub in side.go), Prometheus's with its own throttle (5 s at most).
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
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/procfs"

	"github.com/sdhub/sdhub/internal/consulagent"
)

type benchConfig struct {
	n, m             int
	rate             float64
	duration, idle   time.Duration
	settle, complete time.Duration
	agentLimit       int
	protos, sides    []string
	seed             uint64
	profile          string
}

func main() {
	var (
		a          sideArgs
		size       = flag.String("size", "5000x10", "catalog size, services x instances")
		rate       = flag.Float64("rate", 2, "changes per second")
		duration   = flag.Duration("duration", 60*time.Second, "how long changes are made")
		idle       = flag.Duration("idle", 130*time.Second, "the idle window, once every side is complete (Prometheus's blocking queries return after 2 minutes)")
		settle     = flag.Duration("settle", 60*time.Second, "how long after the last change the sides may take to show every change")
		complete   = flag.Duration("peer-timeout", 2*time.Minute, "how long a side may take to complete")
		agentLimit = flag.Int("agent-limit", 15000, "http_max_conns_per_client of Prometheus's agent (sdhub's keeps Consul's default, 200)")
		protos     = flag.String("protos", "http,https", "protocols to run, in turn")
		sides      = flag.String("sides", "sdhub,prometheus", "sides to run")
		seed       = flag.Uint64("seed", 1, "seed of the changes")
	)
	flag.StringVar(&a.side, "side", "", "internal: run one side and report on stdout")
	flag.StringVar(&a.proto, "proto", "http", "internal: the side's protocol")
	flag.StringVar(&a.server, "server", "", "internal: the side's agent address")
	flag.StringVar(&a.caFile, "ca", "", "internal: the CA of the agent's certificate")
	flag.IntVar(&a.want, "want", 0, "internal: the targets of a complete state")
	flag.StringVar(&a.profile, "profile", "", "write a CPU profile of each side into this directory")
	flag.Parse()
	if a.side != "" {
		if err := runSide(a); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	cfg := benchConfig{profile: a.profile, rate: *rate, duration: *duration, idle: *idle, settle: *settle, complete: *complete,
		agentLimit: *agentLimit, protos: strings.Split(*protos, ","), sides: strings.Split(*sides, ","), seed: *seed}
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

func (a *agent) cpu() float64 {
	p, err := procfs.NewProc(a.PID())
	if err != nil {
		return 0
	}
	st, err := p.Stat()
	if err != nil {
		return 0
	}
	return st.CPUTime()
}

func run(cfg benchConfig) error {
	bin, ok, why := consulagent.Binary()
	if !ok {
		return fmt.Errorf("no consul binary: %s", why)
	}
	ctx := context.Background()
	agents := map[string]*agent{}
	for _, side := range cfg.sides {
		opts := consulagent.Options{TLS: true}
		if side == "prometheus" {
			opts.MaxConnsPerClient = cfg.agentLimit
		}
		a, err := consulagent.Start(ctx, bin, opts)
		if err != nil {
			return err
		}
		defer a.Close()
		cat, err := newCatalog(a.Addr(), cfg.n, cfg.m)
		if err != nil {
			return err
		}
		agents[side] = &agent{Agent: a, cat: cat}
	}
	start := time.Now()
	if err := each(cfg.sides, func(side string) error { return agents[side].cat.fill(ctx) }); err != nil {
		return fmt.Errorf("filling the catalog: %w", err)
	}
	fmt.Printf("consul %s; %d services x %d instances = %d targets, one check per instance but on every tenth service; filled in %v\n",
		consulagent.Version, cfg.n, cfg.m, cfg.n*cfg.m, time.Since(start).Round(time.Second))
	fmt.Printf("sdhub's agent: http_max_conns_per_client 200 (default); Prometheus's: %d\n", cfg.agentLimit)
	<-time.After(10 * time.Second) // the agents settle after the fill
	if err := requestCosts(agents[cfg.sides[0]]); err != nil {
		return err
	}
	m := newCatalogModel(agents[cfg.sides[0]].cat, cfg.seed)
	want := cfg.n * cfg.m
	for _, proto := range cfg.protos {
		r, err := runProto(cfg, proto, agents, m, want)
		if err != nil {
			return err
		}
		r.print(cfg)
		want = m.instances()
	}
	return nil
}

// each runs f for every side at once and returns the first error.
func each(sides []string, f func(side string) error) error {
	errs := make([]error, len(sides))
	var wg sync.WaitGroup
	for i, s := range sides {
		wg.Go(func() { errs[i] = f(s) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// phase is a window of a run: its bounds, and the agents' CPU seconds then.
type phase struct {
	from, to       time.Time
	cpuFrom, cpuTo map[string]float64
}

func (p *phase) begin(agents map[string]*agent) {
	p.from, p.cpuFrom = time.Now(), map[string]float64{}
	for s, a := range agents {
		p.cpuFrom[s] = a.cpu()
	}
}

func (p *phase) end(agents map[string]*agent) {
	p.to, p.cpuTo = time.Now(), map[string]float64{}
	for s, a := range agents {
		p.cpuTo[s] = a.cpu()
	}
}

// result is what one protocol's run measured.
type result struct {
	proto         string
	children      []*child
	made          map[string]map[int]time.Time // side -> change -> when its agent had it
	changes       []change
	start         phase // from the start to every side complete
	idle, churn   phase
	startComplete map[string]time.Duration
}

func runProto(cfg benchConfig, proto string, agents map[string]*agent, m *catalogModel, want int) (*result, error) {
	r := &result{proto: proto, made: map[string]map[int]time.Time{}}
	r.start.begin(agents)
	for _, side := range cfg.sides {
		a := agents[side]
		args := sideArgs{side: side, proto: proto, server: a.Addr(), caFile: a.CAFile(), want: want, profile: cfg.profile}
		port := a.HTTPPort()
		if proto == "https" {
			args.server, port = a.HTTPSAddr(), a.HTTPSPort()
		}
		c, err := startChild(args, port)
		if err != nil {
			return nil, err
		}
		defer c.stop()
		r.children = append(r.children, c)
		r.made[side] = map[int]time.Time{}
	}
	deadline := time.Now().Add(cfg.complete)
	for _, c := range r.children {
		c.waitComplete(deadline)
	}
	r.start.end(agents)

	<-time.After(5 * time.Second) // let the start-up settle before the idle window
	r.idle.begin(agents)
	<-time.After(cfg.idle)
	r.idle.end(agents)

	r.churn.begin(agents)
	total := int(cfg.rate * cfg.duration.Seconds())
	tick := time.NewTicker(time.Duration(float64(time.Second) / cfg.rate))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range total {
		if i > 0 {
			<-tick.C
		}
		ch := m.next()
		r.changes = append(r.changes, ch)
		for _, c := range r.children {
			wg.Go(func() {
				if err := agents[c.side].cat.txn(context.Background(), ch.ops); err != nil {
					fmt.Fprintf(os.Stderr, "consul-bench: change %d (%s) on %s's agent: %v\n", ch.id, kinds[ch.kind], c.side, err)
					return
				}
				at := time.Now()
				mu.Lock()
				r.made[c.side][ch.id] = at
				mu.Unlock()
				c.expect(ch.id, ch.expect)
			})
		}
	}
	tick.Stop()
	wg.Wait()
	last := time.Now()
	// The window of the changes ends a few seconds after the last one;
	// the sides may take longer to show them all.
	<-time.After(churnTail)
	r.churn.end(agents)
	for _, c := range r.children {
		c.waitSeen(total, last.Add(cfg.settle))
	}
	for _, c := range r.children {
		c.stop()
	}
	return r, nil
}

// churnTail is how long after the last change the window of the changes
// lasts.
const churnTail = 5 * time.Second
