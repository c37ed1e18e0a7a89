package main

import (
	"strings"
	"sync"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
)

// pred is a change's predicate on a side's targets, as words:
//
//	id <service> <service-id> [<label>=<value>]  the instance is there (with the label)
//	noid <service> <service-id>                  the instance is gone
//	svc <service>                                the service has targets
//	nosvc <service>                              the service has none
//	node <node> <label>=<value>                  every target on the node has the label
type pred struct {
	id    string
	words []string
}

const (
	labelServiceID = "__meta_consul_service_id"
	labelNode      = "__meta_consul_node"
)

func (p pred) holds(groups map[string]*targetgroup.Group) bool {
	w := p.words
	labelIs := func(g *targetgroup.Group, t model.LabelSet, kv string) bool {
		k, v, _ := strings.Cut(kv, "=")
		if got, ok := t[model.LabelName(k)]; ok {
			return string(got) == v
		}
		return string(g.Labels[model.LabelName(k)]) == v
	}
	find := func() bool {
		g := groups[w[1]]
		if g == nil {
			return false
		}
		for _, t := range g.Targets {
			if string(t[labelServiceID]) == w[2] {
				return len(w) < 4 || labelIs(g, t, w[3])
			}
		}
		return false
	}
	switch w[0] {
	case "id":
		return find()
	case "noid":
		return !find()
	case "svc":
		return groups[w[1]] != nil && len(groups[w[1]].Targets) > 0
	case "nosvc":
		return groups[w[1]] == nil || len(groups[w[1]].Targets) == 0
	case "node":
		seen := false
		for _, g := range groups {
			for _, t := range g.Targets {
				if string(t[labelNode]) != w[1] {
					continue
				}
				if !labelIs(g, t, w[2]) {
					return false
				}
				seen = true
			}
		}
		return seen
	}
	return false
}

// point is where a side is measured: its state there, by Source, and the
// predicates that have not held yet.
type point struct {
	name string
	emit func(string, ...any)

	mu         sync.Mutex
	state      map[string]*targetgroup.Group
	pending    []pred
	want       int // targets that make the state complete
	complete   bool
	onComplete func(time.Time)
}

func newPoint(name string, emit func(string, ...any)) *point {
	return &point{name: name, emit: emit, state: map[string]*targetgroup.Group{}}
}

// groups applies a discoverer's message received at at.
func (p *point) groups(tgs []*targetgroup.Group, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, g := range tgs {
		if g == nil {
			continue
		}
		if len(g.Targets) == 0 {
			delete(p.state, g.Source)
		} else {
			p.state[g.Source] = g
		}
	}
	p.check(at)
}

// all replaces the state with a manager's complete output, received now.
func (p *point) all(tgs []*targetgroup.Group) {
	at := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.state = make(map[string]*targetgroup.Group, len(tgs))
	for _, g := range tgs {
		if g != nil && len(g.Targets) > 0 {
			p.state[g.Source] = g
		}
	}
	p.check(at)
}

func (p *point) expect(pr pred) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pending = append(p.pending, pr)
	p.check(time.Now())
}

func (p *point) check(at time.Time) {
	if !p.complete && p.onComplete != nil && p.targetsLocked() >= p.want {
		p.complete = true
		p.onComplete(at)
	}
	kept := p.pending[:0]
	for _, pr := range p.pending {
		if pr.holds(p.state) {
			p.emit("seen %s %s %d", pr.id, p.name, at.UnixNano())
		} else {
			kept = append(kept, pr)
		}
	}
	p.pending = kept
}

func (p *point) targets() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.targetsLocked()
}

// targetsLocked counts the targets, without the agent's own service.
func (p *point) targetsLocked() int {
	n := 0
	for src, g := range p.state {
		if src != "consul" {
			n += len(g.Targets)
		}
	}
	return n
}
