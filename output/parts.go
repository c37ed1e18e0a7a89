package output

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/cespare/xxhash/v2"

	"github.com/sdhub/sdhub/manager"
)

// A job's output can be written as several parts, each a file in a
// directory of its own that the consuming Prometheus reads through a
// file_sd_configs entry of its own (`sdhub generate prometheus-config`
// writes them). Prometheus's file_sd reads every file of an entry again on
// any event in the directories it watches; with one file, every change of
// a large job costs each consumer a read of the whole job. With parts, a
// change costs the part it falls in, and the parts it does not touch are
// neither written by sdhub nor read by the consumer.
//
// A group belongs to one part, by a hash of its source, and never moves
// while the number of parts stays: the consumer sees each group's targets
// in one part, changed as a whole or not at all, as native SD hands it
// groups. A target that two groups give is in the part of each (as native
// SD gives it twice); the consumer's scrape pool keeps one.
//
// The job's whole output stays what it was: the http_sd endpoint, its
// shards, the pages and `sdhub discover` read the parts merged, in the
// order a job of one part has, and the job's file of one part,
// `<dir>/<job>.json`, is still written for consumers whose config reads it,
// at most every Options.WholeFileInterval.

// PartsDirSuffix ends the name of the directory of a job's parts:
// `<dir>/<job>.parts/<i>/targets.json` for part i.
const (
	PartsDirSuffix = ".parts"
	partFileName   = "targets.json"
)

// PartPath is the file of part i of job's output in dir.
func PartPath(dir, job string, i int) string {
	return filepath.Join(dir, partsDirName(job), strconv.Itoa(i), partFileName)
}

func partsDirName(job string) string {
	return strings.TrimSuffix(fileName(job), ".json") + PartsDirSuffix
}

// isPartName reports whether name, relative to the output directory, is
// the name of a part's file: `<x>.parts/<i>/targets.json`, x a job file's
// name without .json and i a part's number.
func isPartName(name string) bool {
	c := strings.Split(name, string(filepath.Separator))
	if len(c) != 3 || c[2] != partFileName || !strings.HasSuffix(c[0], PartsDirSuffix) ||
		len(c[0]) == len(PartsDirSuffix) || strings.HasPrefix(c[0], ".") {
		return false
	}
	i, err := strconv.Atoi(c[1])
	return err == nil && i >= 0 && i < MaxParts && strconv.Itoa(i) == c[1]
}

// partOf is the part of a group with source src in a job of n parts.
func partOf(src string, n int) int {
	if n <= 1 {
		return 0
	}
	return int(xxhash.Sum64String(src) % uint64(n))
}

// MaxParts bounds a job's parts: each is an inotify instance and a
// discoverer in every consumer.
const MaxParts = 64

// Layout is how many parts each job's output is written in.
type Layout struct {
	// Parts is the number of parts of a job that has a service discovery
	// mechanism other than static_configs; 0 or 1 writes every job as one
	// file.
	Parts int
	// MaxEntries bounds the file_sd_configs entries the consumer of every
	// job needs: Parts is lowered, for every job alike, until the jobs'
	// parts fit (each entry is an inotify instance; Linux allows 128 per
	// user by default). 0 means no bound.
	MaxEntries int
	// Jobs sets the parts of single jobs, over the rule above.
	Jobs map[string]int
}

// Validate checks the layout's numbers.
func (l Layout) Validate() error {
	if l.Parts < 0 || l.Parts > MaxParts {
		return fmt.Errorf("invalid number of parts %d (from 1 to %d)", l.Parts, MaxParts)
	}
	for job, n := range l.Jobs {
		if n < 1 || n > MaxParts {
			return fmt.Errorf("invalid number of parts %d for job %q (from 1 to %d)", n, job, MaxParts)
		}
	}
	return nil
}

// Plan returns the parts of each job, given which jobs discover more than
// static_configs (splittable). Jobs not in the result have one part.
func (l Layout) Plan(splittable map[string]bool) map[string]int {
	parts := max(l.Parts, 1)
	n := 0
	for job, ok := range splittable {
		if _, set := l.Jobs[job]; ok && !set {
			n++
		}
	}
	if l.MaxEntries > 0 && n > 0 {
		budget := l.MaxEntries - (len(splittable) - n) // one entry per other job
		for _, k := range l.Jobs {
			budget -= k - 1
		}
		parts = max(1, min(parts, budget/n))
	}
	out := map[string]int{}
	for job, ok := range splittable {
		k, set := l.Jobs[job]
		if !set {
			if !ok {
				continue
			}
			k = parts
		}
		if k > 1 {
			out[job] = k
		}
	}
	return out
}

// jobState is one job's render: a jobRender per part.
type jobState struct {
	gen     uint64     // the manager's JobTargets.Gen last applied, 0 before
	filter  *jobFilter // nil: not filtered at the hub
	parts   []*jobRender
	buckets [][]manager.Group // reused per apply
	changed []bool            // per part, by the last apply
}

func newJobState(job string, parts int, names *labelNames, f *jobFilter) *jobState {
	st := &jobState{parts: make([]*jobRender, parts), buckets: make([][]manager.Group, parts), changed: make([]bool, parts)}
	st.filter = f
	for i := range st.parts {
		var spec *FilterSpec
		if f != nil {
			spec = &f.spec
		}
		st.parts[i] = newJobRender(job, names, spec)
	}
	return st
}

// apply makes the parts hold groups and reports whether any changed; which
// did is in st.changed.
func (st *jobState) apply(groups []manager.Group) bool {
	if len(st.parts) == 1 {
		st.changed[0] = st.parts[0].apply(groups)
		return st.changed[0]
	}
	for i := range st.buckets {
		clear(st.buckets[i])
		st.buckets[i] = st.buckets[i][:0]
	}
	for _, g := range groups {
		i := partOf(g.Source, len(st.parts))
		st.buckets[i] = append(st.buckets[i], g)
	}
	any := false
	for i, r := range st.parts {
		st.changed[i] = r.apply(st.buckets[i])
		any = any || st.changed[i]
	}
	return any
}

// dropped sums the parts' dropped targets; example is one of them.
func (st *jobState) dropped() (n int, exampleAddr, exampleReason string) {
	for _, r := range st.parts {
		n += r.dropped
		if r.exampleAddr != "" {
			exampleAddr, exampleReason = r.exampleAddr, r.exampleReason
		}
	}
	return n, exampleAddr, exampleReason
}

// merged is the entries of a job of several parts, merged in the order of
// a job of one part, when first asked for.
type merged struct {
	once    sync.Once
	parts   []*Snapshot
	names   *labelNames // orders the entries
	entries []*entry
}

func (m *merged) get() []*entry {
	m.once.Do(func() {
		lists := make([][]*entry, 0, len(m.parts))
		for _, p := range m.parts {
			if len(p.entries) > 0 {
				lists = append(lists, p.entries)
			}
		}
		m.entries = mergeEntries(lists, m.names.compareEntries)
	})
	return m.entries
}

// mergeEntries merges lists of entries sorted by compare into one,
// pairwise.
func mergeEntries(lists [][]*entry, compare func(a, b *entry) int) []*entry {
	switch len(lists) {
	case 0:
		return nil
	case 1:
		return lists[0]
	}
	for len(lists) > 1 {
		next := lists[:0:0]
		for i := 0; i < len(lists); i += 2 {
			if i+1 == len(lists) {
				next = append(next, lists[i])
				continue
			}
			next = append(next, merge2(lists[i], lists[i+1], compare))
		}
		lists = next
	}
	return lists[0]
}

func merge2(a, b []*entry, compare func(a, b *entry) int) []*entry {
	out := make([]*entry, 0, len(a)+len(b))
	for len(a) > 0 && len(b) > 0 {
		if compare(b[0], a[0]) < 0 {
			out = append(out, b[0])
			b = b[1:]
		} else {
			out = append(out, a[0])
			a = a[1:]
		}
	}
	out = append(out, a...)
	return append(out, b...)
}
