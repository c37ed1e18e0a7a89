package output

import (
	"bufio"
	"bytes"
	"io"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/sdhub/sdhub/shard"
)

// Snapshot is one job's output as the stage published it: the entries its
// file holds (or will hold once written), whose bytes WriteTo renders, what
// is known of them and of the file. It is immutable; the stage publishes a
// new one for every change.
type Snapshot struct {
	Job string
	// Gen numbers the content: two snapshots of a job with the same Gen
	// have the same bytes. 0 means the job has had no complete state since
	// sdhub started: there is nothing to serve yet.
	Gen uint64
	// Targets is the number of distinct targets in the output, Dropped the
	// number of the job's targets left out because Prometheus would reject
	// them.
	Targets, Dropped int
	// Size is the length of the output in bytes.
	Size int
	// Changed is when the content last changed (zero before the first).
	Changed time.Time
	// Waiting is true while the job's discovery state is incomplete (a
	// provider has not delivered its first full set, or a config failed to
	// start): the snapshot keeps the job's last complete output, if any.
	Waiting       bool
	FailedConfigs int
	// File is what sdhub knows of the job's file.
	File FileState
	// Parts are the snapshots of the job's parts (parts.go), nil when the
	// job is written as one file. Each has its own Gen and File; Part is
	// the part's number.
	Parts []*Snapshot
	Part  int

	// Filter is the job's filtering at the hub (filter.go); nil when its
	// output is not filtered.
	Filter *FilterState

	entries []*entry // of a job of several parts: in merged
	// Of a filtered job: filtered tells whether this is the job's kept
	// view, alt is its other view (whose alt is nil), which holds only
	// content (entries, parts, Gen, counts).
	filtered bool
	alt      *Snapshot
	// spec is the filter of a job's kept view: a weight label may be one
	// its rules set.
	spec   *FilterSpec
	merged *merged
	names  *labelNames // the table the entries' labels bodies use
	shards *shardCache
}

// FilterState is what a job's snapshot knows of its filtering at the hub.
type FilterState struct {
	// Digest names the rules the kept targets were chosen with
	// (FilterDigest).
	Digest string
	// Files is true when the job's files hold only the kept targets.
	Files bool
	// Kept is the number of targets the job's relabel_configs keep,
	// DroppedAtHub the number they drop: left out of the kept view.
	Kept, DroppedAtHub int
}

func (f *FilterState) dropped() int {
	if f == nil {
		return 0
	}
	return f.DroppedAtHub
}

// Whole returns the job's whole output, every target discovered: s unless s
// is the kept view of a job whose files hold only its kept targets.
func (s *Snapshot) Whole() *Snapshot {
	if s.filtered && s.alt != nil {
		return s.alt
	}
	return s
}

// Kept returns the job's kept view: its output without the targets the
// job's relabel_configs drop; s itself when the job is not filtered.
func (s *Snapshot) Kept() *Snapshot {
	if !s.filtered && s.alt != nil {
		return s.alt
	}
	return s
}

// list is the output's entries.
func (s *Snapshot) list() []*entry {
	if s.merged != nil {
		return s.merged.get()
	}
	return s.entries
}

// FileState is what sdhub knows of a job's file.
type FileState struct {
	// Path is the file; "" when the stage writes no files.
	Path string
	// Gen is the Gen of the content the file holds: 0 when sdhub has not
	// written it, or found it to hold the current content, since it started.
	Gen uint64
	// Targets is the number of targets in the content the file holds
	// (the Targets of the snapshot of Gen); meaningless when Gen is 0.
	Targets int
	// Written is when sdhub last wrote the file (zero: never, in this process).
	Written time.Time
	// Err is the error of the last attempt to write the file, nil if it
	// succeeded; ErrTime when it happened.
	Err     error
	ErrTime time.Time
}

// Serving reports whether the snapshot has content: the job had a complete
// state since sdhub started.
func (s *Snapshot) Serving() bool { return s.Gen != 0 }

// OnDisk reports whether the job's file holds the snapshot's content (always
// true when the stage writes no files).
// A job of parts is on disk when every part is (its whole file may lag
// by Options.WholeFileInterval).
func (s *Snapshot) OnDisk() bool {
	if s.Parts != nil {
		for _, p := range s.Parts {
			if !p.OnDisk() {
				return false
			}
		}
		return true
	}
	return s.File.Path == "" || (s.File.Gen == s.Gen && s.File.Err == nil)
}

// WriteTo writes the output: the file_sd JSON of the job's targets.
func (s *Snapshot) WriteTo(w io.Writer) (int64, error) {
	cw := &countingWriter{w: w}
	var out stringWriter = cw
	var buf *bufio.Writer
	switch w.(type) {
	case *bytes.Buffer, *bufio.Writer:
	default:
		buf = bufio.NewWriterSize(cw, 64<<10)
		out = buf
	}
	err := s.write(out)
	if buf != nil && err == nil {
		err = buf.Flush()
	}
	return cw.n, err
}

// writeBuffered writes the output to a file, through a buffer large enough
// to keep the write calls few.
func (s *Snapshot) writeBuffered(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 256<<10)
	if _, err := s.WriteTo(bw); err != nil {
		return err
	}
	return bw.Flush()
}

type stringWriter interface {
	io.Writer
	io.StringWriter
}

func (s *Snapshot) write(w stringWriter) error {
	entries := s.list()
	if len(entries) == 0 {
		_, err := w.WriteString("[]\n")
		return err
	}
	if _, err := w.WriteString("[\n"); err != nil {
		return err
	}
	tab := s.names.table()
	var text []byte
	for i, e := range entries {
		text = appendEntryHead(text[:0], e.targets)
		text = appendRendered(text, e.labels, tab)
		text = append(text, entryTail...)
		if i < len(entries)-1 {
			text = append(text, ",\n"...)
		} else {
			text = append(text, "\n]\n"...)
		}
		if _, err := w.Write(text); err != nil {
			return err
		}
	}
	return nil
}

// Bytes returns the output.
func (s *Snapshot) Bytes() []byte {
	var b bytes.Buffer
	b.Grow(s.Size)
	_, _ = s.WriteTo(&b)
	return b.Bytes()
}

// Entry is one entry of the output.
type Entry struct {
	Targets []string
	Labels  []LabelPair // sorted by name
}

// Entries returns the output's entries, in order.
func (s *Snapshot) Entries() []Entry {
	entries := s.list()
	out := make([]Entry, len(entries))
	for i, e := range entries {
		out[i] = Entry{Targets: e.targets, Labels: s.names.labelsOf(e.labels)}
	}
	return out
}

// ShardSpec is one consumer's share of a job's targets (package shard).
type ShardSpec struct {
	// Shard is the consumer's shard, 0 <= Shard < Shards.
	Shard, Shards int
	// Replicas is how many shards each target is in; 0 is 1.
	Replicas int
	// Strategy is how targets are split; "" is shard.Rendezvous.
	Strategy shard.Strategy
	// WeightLabel, with shard.BoundedLoad, names the discovered label
	// whose value is a target's weight: a positive number, 1 when the
	// label is missing or holds anything else. A target listed with
	// several label sets weighs the largest of them.
	WeightLabel string
}

func (sp ShardSpec) normal() ShardSpec {
	sp.Replicas = max(sp.Replicas, 1)
	if sp.Strategy == "" {
		sp.Strategy = shard.Rendezvous
	}
	return sp
}

// Shard returns the part of the output in shard sp: the same entries with
// only that shard's targets, entries left without targets out, in the
// output's order. Its Gen is the snapshot's; it has no File. Shards are
// computed once per snapshot and spec.
//
// With shard.Rendezvous each target's shards are its own (shard.Top on the
// job and its address); with shard.BoundedLoad they are computed over the
// job's distinct addresses (shard.Assign), once per snapshot.
func (s *Snapshot) Shard(sp ShardSpec) *Snapshot {
	sp = sp.normal()
	if sp.Shards <= 1 {
		return s
	}
	return s.shards.get(sp, func() *Snapshot {
		in := s.inShard(sp)
		part := &Snapshot{Job: s.Job, Gen: s.Gen, Changed: s.Changed, Waiting: s.Waiting, FailedConfigs: s.FailedConfigs, names: s.names}
		for _, e := range s.list() {
			var kept []string
			for j, t := range e.targets {
				in := in(t)
				switch {
				case in && kept != nil:
					kept = append(kept, t)
				case !in && kept == nil:
					kept = append(make([]string, 0, len(e.targets)), e.targets[:j]...)
				}
			}
			switch {
			case kept == nil:
				part.entries = append(part.entries, e)
			case len(kept) > 0:
				refs := make([]targetRef, len(kept))
				for j, t := range kept {
					refs[j] = targetRef{addr: t, n: 1}
				}
				part.entries = append(part.entries, newEntry(e.labels, e.labelsLen(), refs))
			}
		}
		// A shard can take an entry's first target away, and so its place.
		if !slices.IsSortedFunc(part.entries, s.names.compareEntries) {
			slices.SortFunc(part.entries, s.names.compareEntries)
		}
		part.count()
		return part
	})
}

// inShard returns whether a target's address is in shard sp.
func (s *Snapshot) inShard(sp ShardSpec) func(addr string) bool {
	if sp.Strategy == shard.Rendezvous {
		if sp.Replicas == 1 {
			return func(addr string) bool { return shard.Of(s.Job, addr, sp.Shards) == sp.Shard }
		}
		return func(addr string) bool {
			return slices.Contains(shard.Top(s.Job, addr, sp.Shards, sp.Replicas), sp.Shard)
		}
	}
	split := s.shards.split(sp, func() map[string][]int {
		weight := map[string]float64{}
		var pop *population
		if s.spec != nil && sp.WeightLabel != "" {
			pop = newPopulation(s.Job, s.spec.Settings, s.spec.Rules)
		}
		for _, e := range s.list() {
			w := 1.0
			var ls []LabelPair
			if sp.WeightLabel != "" {
				ls = s.names.labelsOf(e.labels)
				for _, l := range ls {
					if l.Name == sp.WeightLabel {
						w = weightOf(l.Value)
						break
					}
				}
			}
			for _, t := range e.targets {
				tw := w
				if pop != nil {
					// A label the job's rules set wins over the discovered one.
					if v := pop.target(t, ls).Labels.Get(sp.WeightLabel); v != "" {
						tw = weightOf(v)
					}
				}
				weight[t] = max(weight[t], tw)
			}
		}
		keys := make([]string, 0, len(weight))
		for k := range weight {
			keys = append(keys, k)
		}
		weights := make([]float64, len(keys))
		for i, k := range keys {
			weights[i] = weight[k]
		}
		m := make(map[string][]int, len(keys))
		for i, shards := range shard.Assign(s.Job, keys, weights, sp.Shards, sp.Replicas, sp.Strategy) {
			m[keys[i]] = shards
		}
		return m
	})
	return func(addr string) bool { return slices.Contains(split[addr], sp.Shard) }
}

// weightOf is a target's weight from a label's value: a positive number,
// else 1.
func weightOf(v string) float64 {
	if w, err := strconv.ParseFloat(v, 64); err == nil && w > 0 && !math.IsInf(w, 0) {
		return w
	}
	return 1
}

// count sets Targets and Size from the entries, or from the parts' (each
// counted already) without merging them.
func (s *Snapshot) count() {
	n, size := 0, 0
	s.Targets = 0
	if s.merged != nil {
		for _, p := range s.Parts {
			s.Targets += p.Targets
			if len(p.entries) > 0 {
				n += len(p.entries)
				size += p.Size - len("[\n") - 2*(len(p.entries)-1) - len("\n]\n")
			}
		}
	} else {
		n = len(s.entries)
		for _, e := range s.entries {
			s.Targets += len(e.targets)
			size += int(e.size)
		}
	}
	s.Size = len("[]\n")
	if n > 0 {
		// "[\n", the entries joined by ",\n", "\n]\n".
		s.Size = len("[\n") + 2*(n-1) + len("\n]\n") + size
	}
}

// shardCache keeps the shards of one snapshot that were asked for, and the
// splits they were taken from (for every shard of one split alike).
type shardCache struct {
	mu     sync.Mutex
	m      map[ShardSpec]*Snapshot
	splits map[ShardSpec]map[string][]int // Shard 0
}

// split returns the split of spec sp, whatever its Shard, computed by
// make once. It is called from get's make, with c.mu held.
func (c *shardCache) split(sp ShardSpec, make func() map[string][]int) map[string][]int {
	sp.Shard = 0
	if m, ok := c.splits[sp]; ok {
		return m
	}
	if c.splits == nil || len(c.splits) >= maxShardsCached {
		c.splits = map[ShardSpec]map[string][]int{}
	}
	m := make()
	c.splits[sp] = m
	return m
}

// maxShardsCached bounds the shards kept per snapshot: consumers use a few
// shard counts at a time.
const maxShardsCached = 64

func (c *shardCache) get(k ShardSpec, make func() *Snapshot) *Snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.m[k]; ok {
		return s
	}
	if c.m == nil || len(c.m) >= maxShardsCached {
		c.m = map[ShardSpec]*Snapshot{}
	}
	s := make()
	c.m[k] = s
	return s
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func (c *countingWriter) WriteString(s string) (int, error) {
	n, err := io.WriteString(c.w, s)
	c.n += int64(n)
	return n, err
}
