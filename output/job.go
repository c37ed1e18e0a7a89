package output

import (
	"cmp"
	"maps"
	"reflect"
	"slices"
	"strings"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/sdhub/sdhub/manager"
)

// jobRender keeps one job's output incrementally. The output has one entry
// per distinct label set (an agg); each group of the job contributes targets
// to aggs (a piece). A changed group takes back its old contributions and
// adds its new ones; only the aggs it touched are encoded again, and the
// job's entries are rebuilt from the unchanged ones by reference. So a
// change costs about the size of the groups that changed, plus one pass
// over the entries' pointers.
//
// A jobRender is used by one goroutine at a time. The entries it publishes
// are immutable and shared with every snapshot that holds them.
type jobRender struct {
	job    string
	names  *labelNames // the stage's
	pieces map[groupKey]*piece
	all    aggSet // the output
	gen    uint64 // the manager's JobTargets.Gen last applied, 0 before
	epoch  uint64 // marks the pieces seen by the apply in progress

	// With filtering at the hub (filter.go): filter judges each target,
	// kept holds those the consumer's relabelling keeps, keptChanged
	// whether the last apply changed them.
	filter      *population
	kept        *aggSet
	keptChanged bool

	dropped int // targets left out because Prometheus would reject them
	// example is one dropped target of the last apply that dropped any.
	exampleAddr, exampleReason string

	scratch []labelPair       // reused per target
	key     []byte            // reused per target
	ids     map[string]uint32 // label name ids looked up (names.go)
}

type groupKey struct{ provider, source string }

// piece is what one group contributes to its job's output.
type piece struct {
	gen      uint64
	epoch    uint64
	group    *targetgroup.Group // the group as last added
	contribs []contrib          // one per target of group, in order
}

// contrib is what one target contributes: an address to an agg, or nothing
// (a is nil) when the target was dropped; with filtering, to an agg of the
// kept targets too (k), or not (nil) when the job's rules drop it.
type contrib struct {
	a, k *agg
	addr string
}

// aggSet is a set of aggs and the entries published from them.
type aggSet struct {
	aggs    map[string]*agg // by label key
	order   []*entry        // the published entries, sorted; never modified in place
	targets int             // distinct targets in order
	dirty   []*agg          // aggs touched by the apply in progress
}

func newAggSet() *aggSet { return &aggSet{aggs: map[string]*agg{}} }

// get returns the agg of the label set whose key is key, made if needed
// (keyLen: the length of its text, computed by keyLen when it is made).
func (s *aggSet) get(key []byte, keyLen func(string) int) *agg {
	a := s.aggs[string(key)] // no allocation for the lookup
	if a == nil {
		a = &agg{key: string(key)}
		a.keyLen = keyLen(a.key)
		s.aggs[a.key] = a
	}
	return a
}

// like returns the agg of s with the label set of o, an agg of another set.
func (s *aggSet) like(o *agg) *agg {
	a := s.aggs[o.key]
	if a == nil {
		a = &agg{key: o.key, keyLen: o.keyLen}
		s.aggs[a.key] = a
	}
	return a
}

func (s *aggSet) add(a *agg, addr string, n int32) {
	a.delta = append(a.delta, targetRef{addr, n})
	if !a.dirty {
		a.dirty = true
		s.dirty = append(s.dirty, a)
	}
}

// agg is one distinct label set of a job and the targets that have it.
type agg struct {
	key     string      // the label set as its entry's labels body: canonical
	keyLen  int         // the length of the body's text
	targets []targetRef // sorted by addr, merged from delta when published
	delta   []targetRef // changes not merged yet: n is +1 or -1
	pub     *entry      // the entry the published output holds; nil if none
	dirty   bool
}

// targetRef is a target address of an agg and how many groups give it.
type targetRef struct {
	addr string
	n    int32
}

func newJobRender(job string, names *labelNames, filter *FilterSpec) *jobRender {
	r := &jobRender{job: job, names: names, pieces: map[groupKey]*piece{}, all: *newAggSet(), ids: map[string]uint32{}}
	if filter != nil {
		r.filter, r.kept = newPopulation(job, filter.Settings, filter.Rules), newAggSet()
	}
	return r
}

// apply makes the output hold groups, the job's complete state, and reports
// whether the entries changed. Groups whose Provider, Source and Gen it has
// seen at the last apply are not looked at again.
func (r *jobRender) apply(groups []manager.Group) bool {
	r.epoch++
	for _, g := range groups {
		k := groupKey{g.Provider, g.Source}
		p := r.pieces[k]
		if p != nil && p.gen == g.Gen {
			p.epoch = r.epoch
			continue
		}
		if p == nil {
			p = &piece{}
			r.pieces[k] = p
		}
		r.update(p, g.Group)
		p.gen, p.epoch = g.Gen, r.epoch
	}
	if len(r.pieces) > len(groups) {
		for k, p := range r.pieces {
			if p.epoch != r.epoch {
				r.take(p)
				delete(r.pieces, k)
			}
		}
	}
	return r.publish()
}

// take withdraws a piece's contributions.
func (r *jobRender) take(p *piece) {
	for _, c := range p.contribs {
		r.withdraw(c)
	}
	p.contribs, p.group = p.contribs[:0], nil
}

// update makes p contribute group g's targets instead of its last group's.
// When g is another group with the same group labels, a target whose
// labels are the same as the last group's at its index keeps its
// contribution: a Consul node's change, one target in each of a thousand
// groups, encodes a thousand targets, not every target of those groups.
// (The last group is the one the manager sent before, and label sets are
// never changed once sent; the same group sent again with a new Gen is
// encoded again whole.)
func (r *jobRender) update(p *piece, g *targetgroup.Group) {
	old := p.group
	if old == nil || g == nil || old == g || !maps.Equal(old.Labels, g.Labels) {
		r.take(p) // nothing is kept: every target of g contributes anew
	}
	if g == nil {
		return
	}
	kept := min(len(g.Targets), len(p.contribs))
	for _, c := range p.contribs[kept:] {
		r.withdraw(c)
	}
	p.contribs = p.contribs[:kept]
	badGroup := invalidLabels(g.Labels) // "" in the common case
	for i, t := range g.Targets {
		switch {
		case i >= kept:
			p.contribs = append(p.contribs, r.contribute(t, g.Labels, badGroup))
		case !sameLabelSet(old.Targets[i], t):
			r.withdraw(p.contribs[i])
			p.contribs[i] = r.contribute(t, g.Labels, badGroup)
		}
	}
	p.group = g
}

// sameLabelSet reports whether a and b hold the same labels: the same map
// (a discoverer that changes one target of a group shares the others), or
// equal ones.
func sameLabelSet(a, b model.LabelSet) bool {
	return len(a) == len(b) && (len(a) == 0 || reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer() || maps.Equal(a, b))
}

// withdraw takes back one target's contribution.
func (r *jobRender) withdraw(c contrib) {
	if c.a == nil {
		r.dropped--
		return
	}
	r.all.add(c.a, c.addr, -1)
	if c.k != nil {
		r.kept.add(c.k, c.addr, -1)
	}
}

// contribute adds target t, of a group labelled gl (badGroup: its invalid
// label, if any), to its agg, or counts it dropped.
func (r *jobRender) contribute(t, gl model.LabelSet, badGroup string) contrib {
	if reason := targetProblem(t, gl, badGroup); reason != "" {
		r.dropped++
		r.exampleAddr, r.exampleReason = string(address(t, gl)), reason
		return contrib{}
	}
	addr := string(address(t, gl))
	a := r.all.get(r.labelKey(t, gl), r.keyLen)
	r.all.add(a, addr, 1)
	c := contrib{a: a, addr: addr}
	if r.filter != nil && r.filter.keeps(addr, t, gl) {
		c.k = r.kept.like(a)
		r.kept.add(c.k, addr, 1)
	}
	return c
}

func (r *jobRender) keyLen(key string) int { return renderedLen(key, r.names.table()) }

// labelKey encodes target t's labels, merged over its group's gl, without
// __address__, as its entry's labels body, into r.key.
func (r *jobRender) labelKey(t, gl model.LabelSet) []byte {
	pairs := r.scratch[:0]
	for n, v := range t {
		if name := outputLabelName(string(n)); n != model.AddressLabel && name != "" {
			pairs = append(pairs, labelPair{name, string(v)})
		}
	}
	for n, v := range gl {
		if n == model.AddressLabel {
			continue
		}
		if _, ok := t[n]; ok {
			continue
		}
		if name := outputLabelName(string(n)); name != "" {
			pairs = append(pairs, labelPair{name, string(v)})
		}
	}
	slices.SortFunc(pairs, func(a, b labelPair) int { return strings.Compare(a.name, b.name) })
	r.scratch = pairs
	r.key = r.names.appendLabelsBody(r.key[:0], pairs, r.ids)
	return r.key
}

// publish publishes the output and, with filtering, the kept targets. It
// reports whether the output changed.
func (r *jobRender) publish() bool {
	if r.kept != nil {
		r.keptChanged = r.kept.publish(r.names.compareEntries)
	}
	return r.all.publish(r.names.compareEntries)
}

// publish merges the touched aggs' changes, encodes the aggs whose targets
// changed and rebuilds the order. It reports whether the entries changed.
func (s *aggSet) publish(compare func(a, b *entry) int) bool {
	var gone, added []*entry
	for _, a := range s.dirty {
		a.dirty = false
		before := len(a.targets)
		a.merge()
		if a.pub != nil && sameTargets(a.pub.targets, a.targets) {
			continue
		}
		s.targets += len(a.targets) - before
		if a.pub != nil {
			gone = append(gone, a.pub)
			a.pub = nil
		}
		if len(a.targets) == 0 {
			delete(s.aggs, a.key)
			continue
		}
		a.pub = newEntry(a.key, a.keyLen, a.targets)
		added = append(added, a.pub)
	}
	clear(s.dirty)
	s.dirty = s.dirty[:0]
	if len(gone) == 0 && len(added) == 0 {
		return false
	}
	s.order = rebuildOrder(s.order, gone, added, compare)
	return true
}

// merge applies a's delta to its targets.
func (a *agg) merge() {
	if len(a.delta) == 0 {
		return
	}
	slices.SortFunc(a.delta, func(x, y targetRef) int { return strings.Compare(x.addr, y.addr) })
	out := make([]targetRef, 0, len(a.targets)+len(a.delta))
	i := 0
	for j := 0; j < len(a.delta); {
		addr := a.delta[j].addr
		var n int32
		for ; j < len(a.delta) && a.delta[j].addr == addr; j++ {
			n += a.delta[j].n
		}
		for i < len(a.targets) && a.targets[i].addr < addr {
			out = append(out, a.targets[i])
			i++
		}
		if i < len(a.targets) && a.targets[i].addr == addr {
			n += a.targets[i].n
			i++
		}
		if n > 0 {
			out = append(out, targetRef{addr, n})
		}
	}
	out = append(out, a.targets[i:]...)
	a.targets = out
	clear(a.delta)
	a.delta = a.delta[:0]
}

func sameTargets(pub []string, refs []targetRef) bool {
	if len(pub) != len(refs) {
		return false
	}
	for i, t := range pub {
		if refs[i].addr != t {
			return false
		}
	}
	return true
}

// rebuildOrder returns order without gone and with added, sorted. It never
// modifies order: a snapshot may hold it.
func rebuildOrder(order, gone, added []*entry, compareEntries func(a, b *entry) int) []*entry {
	kept := order
	if len(gone) > 0 {
		for _, e := range gone {
			e.gone = true
		}
		kept = make([]*entry, 0, len(order))
		for _, e := range order {
			if !e.gone {
				kept = append(kept, e)
			}
		}
	}
	slices.SortFunc(added, compareEntries)
	out := make([]*entry, 0, len(kept)+len(added))
	i := 0
	for _, e := range added {
		j, _ := slices.BinarySearchFunc(kept[i:], e, compareEntries)
		out = append(out, kept[i:i+j]...)
		out = append(out, e)
		i += j
	}
	return append(out, kept[i:]...)
}

// compareEntries orders entries by their first target, then by their labels,
// name by name.
func (n *labelNames) compareEntries(a, b *entry) int {
	return cmp.Or(strings.Compare(a.targets[0], b.targets[0]), n.compareLabelsBodies(a.labels, b.labels))
}
