package file

import (
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
)

// A large file_sd job repeats the same few label names in every group, and
// many values (a datacenter, a team, a tag list) in many groups. The
// interner makes each repeated string one allocation shared by every group
// that holds it. A label whose values do not repeat (an address, an ID) is
// noticed after the first sampleValues values and its values are then
// copied, not kept in the table. The table is rebuilt from the groups the
// discoverer holds whenever it has doubled since the last rebuild, so that
// values no group holds any more are dropped: its size stays within twice
// what the current groups need.

// sampleValues is how many values of a label the interner sees before it
// decides whether they repeat.
const sampleValues = 256

// minRebuild is the table size below which it is never rebuilt.
const minRebuild = 4096

type interner struct {
	names   map[string]*labelName
	values  map[string]string
	address *labelName // __address__, the name of the targets' strings
	live    int        // entries after the last rebuild
}

// labelName is an interned label name and what its values are like.
type labelName struct {
	s      string
	seen   int
	misses int
	unique bool // its values rarely repeat: copied, not interned
}

func newInterner() *interner {
	in := &interner{names: map[string]*labelName{}, values: map[string]string{}}
	in.address = in.name([]byte(model.AddressLabel))
	return in
}

// name returns the entry of the label name b.
func (in *interner) name(b []byte) *labelName {
	if n, ok := in.names[string(b)]; ok {
		return n
	}
	n := &labelName{s: string(b)}
	in.names[n.s] = n
	return n
}

// value returns b as a string, shared with every other group holding the
// same value unless the label's values do not repeat.
func (in *interner) value(n *labelName, b []byte) string {
	if n.unique {
		return string(b)
	}
	n.seen++
	if v, ok := in.values[string(b)]; ok {
		return v
	}
	v := string(b)
	in.values[v] = v
	n.misses++
	if n.seen >= sampleValues && n.misses*4 > n.seen*3 {
		n.unique = true
	}
	return v
}

// labels returns ls with its strings interned, in a new map with room for
// extra more labels.
func (in *interner) labels(ls model.LabelSet, extra int) model.LabelSet {
	out := make(model.LabelSet, len(ls)+extra)
	for k, v := range ls {
		n := in.name([]byte(k))
		out[model.LabelName(n.s)] = model.LabelValue(in.value(n, []byte(v)))
	}
	return out
}

// size is the number of entries in the table.
func (in *interner) size() int { return len(in.names) + len(in.values) }

// maybeRebuild rebuilds the table from the groups held, when it has
// doubled since the last rebuild. Names keep what was learnt of their
// values.
func (in *interner) maybeRebuild(held func(yield func(*targetgroup.Group) bool)) {
	if in.size() < max(2*in.live, minRebuild) {
		return
	}
	old := in.names
	in.names = make(map[string]*labelName, len(old))
	in.values = make(map[string]string, len(in.values)/2)
	keep := func(name, value string) {
		n, ok := in.names[name]
		if !ok {
			n = &labelName{s: name}
			if o, ok := old[name]; ok {
				n.unique = o.unique
			}
			in.names[name] = n
		}
		if !n.unique {
			in.values[value] = value
		}
	}
	keep(model.AddressLabel, "")
	delete(in.values, "")
	in.address = in.names[model.AddressLabel]
	for g := range held {
		for k, v := range g.Labels {
			keep(string(k), string(v))
		}
		for _, t := range g.Targets {
			for k, v := range t {
				keep(string(k), string(v))
			}
		}
	}
	in.live = in.size()
}
