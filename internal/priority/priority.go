// Package priority lets the work that delivers a change sdhub already
// knows go before discovery work that can wait.
//
// On a small machine sdhub shares the CPU with whatever it watches. A
// Consul node's change, for one, is patched into the targets at once, and
// the same change then comes back from the blocking query of every service
// on the node: a thousand answers to decode, each on a goroutine of its
// own. Go's scheduler shares the CPU among runnable goroutines, so the
// output stage, one goroutine rendering and writing the job's file, got a
// small part of it and took 5-10 times its quiet time. Decoding those
// answers waits instead while an output is written (Background), and
// writing waits only for the decodes already running (Foreground).
//
// cmd/sdhub makes one Gate per hub and hands it to the output stage and,
// through the manager, to the discoverers; a nil *Gate orders nothing.
package priority

import "sync"

// Gate orders foreground work before background work. Its zero value is
// ready to use; a nil *Gate runs everything at once.
type Gate struct {
	mu      sync.Mutex
	cond    sync.Cond
	fg      int // foreground sections under way or waiting for background ones
	bg      int // background sections running
	waiting int // background sections waiting for foreground ones
	admit   int // of those, how many start before the next foreground section
}

func (g *Gate) init() {
	if g.cond.L == nil {
		g.cond.L = &g.mu
	}
}

// Foreground marks work that delivers a known change as under way, until
// the function it returns is called. It waits for the background sections
// already running, and for those the last foreground section held back:
// back-to-back foreground work does not starve background work. Background
// sections that would start meanwhile wait. Foreground sections do not
// wait for each other.
func (g *Gate) Foreground() (done func()) {
	if g == nil {
		return func() {}
	}
	g.mu.Lock()
	g.init()
	for g.admit > 0 {
		g.cond.Wait()
	}
	g.fg++
	for g.bg > 0 {
		g.cond.Wait()
	}
	g.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			g.mu.Lock()
			g.fg--
			if g.fg == 0 {
				g.admit = g.waiting
				g.cond.Broadcast()
			}
			g.mu.Unlock()
		})
	}
}

// Background runs f once no foreground section is under way or waiting.
// f must not wait for foreground work, nor Background be called within a
// foreground section: either would wait for ever.
func (g *Gate) Background(f func()) {
	if g == nil {
		f()
		return
	}
	g.mu.Lock()
	g.init()
	if g.fg > 0 {
		g.waiting++
		for g.fg > 0 {
			g.cond.Wait()
		}
		g.waiting--
		if g.admit > 0 {
			if g.admit--; g.admit == 0 {
				g.cond.Broadcast()
			}
		}
	}
	g.bg++
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.bg--
		if g.bg == 0 {
			g.cond.Broadcast()
		}
		g.mu.Unlock()
	}()
	f()
}
