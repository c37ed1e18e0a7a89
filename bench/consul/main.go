// Command consul-bench compares sdhub's consul discovery with Prometheus's
// own (its discovery manager running its consul SD, what the custom-sd
// adapter wraps) on one real Consul agent filled with N services of M
// instances. Each side runs in a child process (this binary re-executed
// with -side) so that its connections, RSS and CPU time are its own.
// sdhub's side is its whole pipeline, manager and writer, measured at the
// file it writes, which this process watches and reads, so that reading it
// costs the side nothing; Prometheus's side is measured at its manager's
// output.
//
// Health changes start as soon as sdhub's side is complete, while the other
// sides are still given -peer-timeout to complete.
//
//	go run ./bench/consul                       # 2000x5 then 5000x10, default agent
//	go run ./bench/consul -sizes 5000x10 -agent-limit 100000
//
// The Consul binary is found as the tests find it: $SDHUB_CONSUL_BIN,
// consul on PATH, or the cache of scripts/deps/consul.sh.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sdhub/sdhub/internal/consulagent"
)

func main() {
	var (
		side        = flag.String("side", "", "internal: run one side against -server and report on stdout")
		server      = flag.String("server", "", "internal: the agent address for -side")
		outDir      = flag.String("out", "", "internal: the output directory of -side sdhub")
		sizes       = flag.String("sizes", "2000x5,5000x10", "catalog sizes to run, each services x instances, comma separated; each gets a fresh agent")
		changes     = flag.Int("changes", 30, "health changes to time, made from when the sdhub side is complete")
		agentLimit  = flag.Int("agent-limit", 0, "the agent's http_max_conns_per_client (0: Consul's default, 200)")
		sides       = flag.String("sides", "sdhub,prometheus", "sides to run, comma separated")
		peerTimeout = flag.Duration("peer-timeout", 2*time.Minute, "how long to wait for a side to complete or see a change")
	)
	flag.Parse()
	if *side != "" {
		if err := runSide(*side, *server, *outDir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	for _, size := range strings.Split(*sizes, ",") {
		cfg := benchConfig{changes: *changes, agentLimit: *agentLimit, sides: strings.Split(*sides, ","), timeout: *peerTimeout}
		if _, err := fmt.Sscanf(size, "%dx%d", &cfg.n, &cfg.m); err != nil || cfg.n <= 0 || cfg.m <= 0 {
			fmt.Fprintf(os.Stderr, "consul-bench: invalid size %q (want NxM, e.g. 2000x5)\n", size)
			os.Exit(2)
		}
		if err := run(cfg); err != nil {
			fmt.Fprintln(os.Stderr, "consul-bench:", err)
			os.Exit(1)
		}
	}
}

type benchConfig struct {
	n, m, changes, agentLimit int
	sides                     []string
	timeout                   time.Duration
}

func run(cfg benchConfig) error {
	bin, ok, why := consulagent.Binary()
	if !ok {
		return fmt.Errorf("no consul binary: %s", why)
	}
	ctx := context.Background()
	// Consul limits connections per client IP; every process here is on
	// this host, so Prometheus's side connects over [::1] and sdhub's (and
	// the catalog writer) over 127.0.0.1, each a client of its own, as two
	// hosts would be.
	agent, err := consulagent.Start(ctx, bin, consulagent.Options{MaxConnsPerClient: cfg.agentLimit, IPv6: true})
	if err != nil {
		return err
	}
	defer agent.Close()
	cat, err := newCatalog(agent.Addr(), cfg.n, cfg.m)
	if err != nil {
		return err
	}
	start := time.Now()
	if err := cat.fill(ctx); err != nil {
		return fmt.Errorf("filling the catalog: %w", err)
	}
	limit := "200 (default)"
	if cfg.agentLimit > 0 {
		limit = fmt.Sprint(cfg.agentLimit)
	}
	fmt.Printf("consul %s, http_max_conns_per_client %s: %d services x %d instances = %d targets, filled in %v\n",
		consulagent.Version, limit, cfg.n, cfg.m, cfg.n*cfg.m, time.Since(start).Round(time.Millisecond))

	want := cfg.n * cfg.m
	wantTargets = want
	var children []*child
	t0 := time.Now()
	for _, s := range cfg.sides {
		addr := agent.Addr()
		if s == "prometheus" {
			addr = agent.Addr6()
		}
		c, err := startChild(s, addr, agent.HTTPPort(), t0)
		if err != nil {
			return err
		}
		defer c.stop()
		children = append(children, c)
	}
	// Every side gets cfg.timeout to complete, waited for in the background.
	// The changes start as soon as the sdhub side is complete (without it,
	// the first side), so that they time what a user gets right after sdhub
	// has started; the other sides go on completing, or not, meanwhile.
	waited := make(chan *child, len(children))
	for _, c := range children {
		go func() {
			c.waitTargets(want, cfg.timeout)
			waited <- c
		}()
	}
	lead := sdhubChild(children)
	pending := len(children)
	for pending > 0 {
		c := <-waited
		pending--
		if lead == nil || c == lead {
			break
		}
	}

	// Changes: instance 0 of a different service turns critical each time;
	// the k-th change is seen when a side has k critical targets. A random
	// gap of up to 500 ms separates a change from the previous one being
	// seen by every side that is keeping up.
	for k := 1; k <= cfg.changes && k <= cfg.n; k++ {
		at := time.Now()
		if err := cat.setHealth(ctx, k-1, 0, "critical"); err != nil {
			return fmt.Errorf("change %d: %w", k, err)
		}
		for _, c := range children {
			c.changeMade(k, at)
		}
		for _, c := range children {
			if c.isComplete() { // a side not complete yet is not waited for
				c.waitCritical(k, cfg.timeout/4)
			}
		}
		sleep(time.Duration(rand.N(int64(500 * time.Millisecond))))
	}
	for _, c := range children {
		c.waitCritical(min(cfg.changes, cfg.n), cfg.timeout/4)
	}
	for ; pending > 0; pending-- { // the sides still within their time to complete
		<-waited
	}
	for _, c := range children {
		c.stop()
	}
	fmt.Printf("total run %v\n", time.Since(t0).Round(time.Second))
	printTable(cfg, children)
	return nil
}

func sleep(d time.Duration) { <-time.After(d) }

// sdhubChild is the sdhub side, or nil when it is not run.
func sdhubChild(children []*child) *child {
	for _, c := range children {
		if c.side == "sdhub" {
			return c
		}
	}
	return nil
}

// child is one side's process and what it reported.
type child struct {
	side string
	cmd  *exec.Cmd
	in   io.WriteCloser
	t0   time.Time
	port int

	mu       sync.Mutex
	cond     *sync.Cond
	targets  int
	complete time.Duration // 0: never
	critical int
	seen     map[int]time.Time // critical count -> when first reached
	made     map[int]time.Time // change k -> when made
	final    string
	peak     int
	done     chan struct{}
	stopOnce sync.Once

	dir       string        // sdhub's output directory; "" for other sides
	stopWatch chan struct{} // closed to stop watching dir
}

func startChild(side, server string, port int, t0 time.Time) (*child, error) {
	c := &child{side: side, t0: t0, port: port, seen: map[int]time.Time{}, made: map[int]time.Time{}, done: make(chan struct{}), stopWatch: make(chan struct{})}
	c.cond = sync.NewCond(&c.mu)
	args := []string{"-side", side, "-server", server}
	if side == "sdhub" {
		// sdhub writes the job's file here; this process watches it.
		dir, err := os.MkdirTemp("", "sdhub-bench-")
		if err != nil {
			return nil, err
		}
		c.dir = dir
		ready := make(chan error, 1)
		go watchFile(dir, c, ready, c.stopWatch)
		if err := <-ready; err != nil {
			_ = os.RemoveAll(dir)
			return nil, err
		}
		args = append(args, "-out", dir)
	}
	cmd := exec.Command(os.Args[0], args...)
	c.cmd = cmd
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c.in = in
	go c.read(out)
	go c.sample()
	return c, nil
}

func (c *child) read(out io.Reader) {
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 2 {
			c.handle(f)
		}
	}
	c.mu.Lock()
	close(c.done)
	c.cond.Broadcast()
	c.mu.Unlock()
}

// handle records one line of the child's report.
func (c *child) handle(f []string) {
	at := func() time.Time { return time.Unix(0, int64(atoi(f[2]))) }
	switch f[0] {
	case "targets":
		c.counted(atoi(f[1]), -1, at())
	case "critical":
		c.counted(-1, atoi(f[1]), at())
	case "final":
		c.mu.Lock()
		c.final = strings.Join(f[1:], " ")
		c.cond.Broadcast()
		c.mu.Unlock()
	}
}

// counted records the side's target and critical counts at time at (-1:
// not counted this time): from its report lines, or for sdhub's side from
// its file.
func (c *child) counted(targets, critical int, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if targets >= 0 {
		c.targets = targets
		if c.complete == 0 && c.targets >= c.wantLocked() {
			c.complete = at.Sub(c.t0)
		}
	}
	if critical >= 0 {
		c.critical = critical
		for k := 1; k <= c.critical; k++ {
			if _, ok := c.seen[k]; !ok {
				c.seen[k] = at
			}
		}
	}
	c.cond.Broadcast()
}

var wantTargets int

func (c *child) wantLocked() int { return wantTargets }

// sample records the most connections the child holds to the agent.
func (c *child) sample() {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
		}
		if n, err := connections(c.cmd.Process.Pid, c.port); err == nil {
			c.mu.Lock()
			c.peak = max(c.peak, n)
			c.mu.Unlock()
		}
	}
}

func (c *child) waitTargets(want int, limit time.Duration) {
	c.waitUntil(limit, func() bool { return c.targets >= want })
}

func (c *child) waitCritical(k int, limit time.Duration) {
	c.waitUntil(limit, func() bool { return c.critical >= k })
}

func (c *child) isComplete() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.complete > 0
}

func (c *child) changeMade(k int, at time.Time) {
	c.mu.Lock()
	c.made[k] = at
	c.mu.Unlock()
}

// waitUntil waits for cond (checked under c.mu) at most limit.
func (c *child) waitUntil(limit time.Duration, cond func() bool) {
	timer := time.AfterFunc(limit, func() {
		c.mu.Lock()
		c.cond.Broadcast()
		c.mu.Unlock()
	})
	defer timer.Stop()
	deadline := time.Now().Add(limit)
	c.mu.Lock()
	defer c.mu.Unlock()
	for !cond() && time.Now().Before(deadline) {
		select {
		case <-c.done:
			return
		default:
		}
		c.cond.Wait()
	}
}

func (c *child) stop() {
	c.stopOnce.Do(func() {
		_ = c.in.Close()
		<-c.done
		_ = c.cmd.Wait()
		close(c.stopWatch)
		if c.dir != "" {
			_ = os.RemoveAll(c.dir)
		}
	})
}

// latencies are the propagation times of the changes the side saw.
func (c *child) latencies() (lat []time.Duration, missed int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, at := range c.made {
		seen, ok := c.seen[k]
		if !ok {
			missed++
			continue
		}
		lat = append(lat, max(seen.Sub(at), 0))
	}
	slices.Sort(lat)
	return lat, missed
}

func percentile(s []time.Duration, p float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	i := int(float64(len(s))*p+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func printTable(cfg benchConfig, children []*child) {
	fmt.Println()
	fmt.Println("| side | targets found | time to complete | change p50 | change p99 | changes seen | peak connections | peak RSS | CPU | RPC failures |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|")
	for _, c := range children {
		var targets, critical, rssKiB int
		var failures, cpu float64
		_, _ = fmt.Sscanf(c.final, "%d %d %g %d %g", &targets, &critical, &failures, &rssKiB, &cpu)
		c.mu.Lock()
		targets = c.targets // what the side last reported, or sdhub's file held
		c.mu.Unlock()
		lat, missed := c.latencies()
		complete := "never"
		if c.complete > 0 {
			complete = c.complete.Round(10 * time.Millisecond).String()
		}
		p50, p99 := "-", "-"
		if len(lat) > 0 {
			p50 = percentile(lat, 0.5).Round(time.Millisecond).String()
			p99 = percentile(lat, 0.99).Round(time.Millisecond).String()
		}
		fmt.Printf("| %s | %d of %d | %s | %s | %s | %d of %d | %d | %d MiB | %.1f s | %.0f |\n",
			c.side, targets, cfg.n*cfg.m, complete, p50, p99, len(lat), len(lat)+missed, c.peak, rssKiB/1024, cpu, failures)
	}
}
