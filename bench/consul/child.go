package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sdhub/sdhub/internal/consulagent"
)

// child is one side's process, seen from the parent: what it reported.
type child struct {
	side string
	cmd  *exec.Cmd
	inMu sync.Mutex
	in   io.WriteCloser
	t0   time.Time
	port int // the agent port it talks to, for counting its connections

	mu       sync.Mutex
	cond     *sync.Cond
	complete time.Time
	seen     map[string]map[string]time.Time // point -> change id -> when it held
	stats    []stat
	final    string
	peak     int
	done     chan struct{}
	stopOnce sync.Once
}

// stat is one of a child's per-second reports.
type stat struct {
	at       time.Time
	requests float64
	cpu      float64
}

func startChild(a sideArgs, port int) (*child, error) {
	c := &child{side: a.side, port: port, seen: map[string]map[string]time.Time{"d": {}, "o": {}}, done: make(chan struct{})}
	c.cond = sync.NewCond(&c.mu)
	cmd := exec.Command(os.Args[0], "-side", a.side, "-proto", a.proto, "-server", a.server, "-ca", a.caFile, "-want", strconv.Itoa(a.want), "-profile", a.profile, "-parts", strconv.Itoa(a.parts))
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	c.t0 = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c.cmd, c.in = cmd, in
	go c.read(out)
	go c.sample()
	return c, nil
}

func (c *child) read(out io.Reader) {
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		at := func(s string) time.Time { return time.Unix(0, int64(atoi(s))) }
		c.mu.Lock()
		switch {
		case f[0] == "complete":
			c.complete = at(f[1])
		case f[0] == "seen" && len(f) == 4:
			if _, ok := c.seen[f[2]][f[1]]; !ok {
				c.seen[f[2]][f[1]] = at(f[3])
			}
		case f[0] == "stat" && len(f) == 4:
			r, _ := strconv.ParseFloat(f[1], 64)
			cpu, _ := strconv.ParseFloat(f[2], 64)
			c.stats = append(c.stats, stat{at: at(f[3]), requests: r, cpu: cpu})
		case f[0] == "final":
			c.final = strings.Join(f[1:], " ")
		}
		c.cond.Broadcast()
		c.mu.Unlock()
	}
	c.mu.Lock()
	close(c.done)
	c.cond.Broadcast()
	c.mu.Unlock()
}

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
		if n, err := consulagent.Established(c.cmd.Process.Pid, c.port); err == nil {
			c.mu.Lock()
			c.peak = max(c.peak, n)
			c.mu.Unlock()
		}
	}
}

// expect tells the child about a change.
func (c *child) expect(id int, p string) {
	c.inMu.Lock()
	defer c.inMu.Unlock()
	fmt.Fprintf(c.in, "expect %d %s\n", id, p)
}

// waitUntil waits for cond (checked under c.mu) until deadline.
func (c *child) waitUntil(deadline time.Time, cond func() bool) bool {
	timer := time.AfterFunc(time.Until(deadline), func() {
		c.mu.Lock()
		c.cond.Broadcast()
		c.mu.Unlock()
	})
	defer timer.Stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-c.done:
			return cond()
		default:
		}
		c.cond.Wait()
	}
	return true
}

func (c *child) waitComplete(deadline time.Time) bool {
	return c.waitUntil(deadline, func() bool { return !c.complete.IsZero() })
}

// waitSeen waits until the child saw every change of ids at its output.
func (c *child) waitSeen(ids []string, deadline time.Time) bool {
	return c.waitUntil(deadline, func() bool {
		for _, id := range ids {
			if _, ok := c.seen["o"][id]; !ok {
				return false
			}
		}
		return true
	})
}

// at returns the child's last report at or before t.
func (c *child) at(t time.Time) stat {
	c.mu.Lock()
	defer c.mu.Unlock()
	var s stat
	for _, st := range c.stats {
		if st.at.After(t) {
			break
		}
		s = st
	}
	return s
}

func (c *child) stop() {
	c.stopOnce.Do(func() {
		c.inMu.Lock()
		_ = c.in.Close()
		c.inMu.Unlock()
		<-c.done
		_ = c.cmd.Wait()
	})
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
