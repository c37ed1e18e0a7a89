package output

import (
	"encoding/binary"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// A label set is held compactly, as a labels body: its pairs in name
// order, each the uvarint id of its name in its stage's table of label
// names (labelNames), then the uvarint length of its value and the value as the output's
// JSON string holds it (appendEscaped: the value itself unless it holds a
// byte JSON escapes). A name met when the table is full has id 0 and is
// written inline after it (length, bytes): the table stays bounded whatever
// the sources send. A body is the canonical key of its label set (ids
// never change while the stage lives) and about a quarter of its text,
// which is rendered, mostly by copying, when the output is written or
// served (appendRendered).

// maxNames bounds the table of label names.
const maxNames = 1 << 16

// nameInfo is a label name of the table and its text in an entry's labels
// object, up to its value.
type nameInfo struct {
	name   string
	prefix string // "\n      \"name\": "
}

// labelNames is a table of label names: a Stage's, shared by its jobs and
// their snapshots, which read their bodies against it.
type labelNames struct {
	mu    sync.Mutex
	ids   map[string]uint32
	limit int                        // maxNames; tests lower it
	tab   atomic.Pointer[[]nameInfo] // by id; id 0 is the inline name
}

func newLabelNames() *labelNames {
	n := &labelNames{ids: map[string]uint32{}, limit: maxNames}
	tab := make([]nameInfo, 1, 64)
	n.tab.Store(&tab)
	return n
}

// table returns the table as it is: every id a body holds is in it.
func (n *labelNames) table() []nameInfo { return *n.tab.Load() }

// id returns name's id, adding it to the table if there is room, or 0.
func (n *labelNames) id(name string) uint32 {
	n.mu.Lock()
	defer n.mu.Unlock()
	if id, ok := n.ids[name]; ok {
		return id
	}
	tab := *n.tab.Load()
	if len(tab) >= n.limit {
		return 0
	}
	// Readers hold shorter headers of the same array and read below their
	// length only, so appending in place is safe; the store publishes it.
	name = strings.Clone(name)
	tab = append(tab, nameInfo{name: name, prefix: string(appendString([]byte("\n      "), name)) + ": "})
	id := uint32(len(tab) - 1)
	n.ids[name] = id
	n.tab.Store(&tab)
	return id
}

// appendLabelsBody appends the labels body of pairs, sorted by name. cache
// holds the ids already looked up and is filled as it goes (nil for none).
func (n *labelNames) appendLabelsBody(b []byte, pairs []labelPair, cache map[string]uint32) []byte {
	for _, p := range pairs {
		id, ok := cache[p.name]
		if !ok {
			id = n.id(p.name)
			if id != 0 && cache != nil {
				cache[p.name] = id
			}
		}
		b = binary.AppendUvarint(b, uint64(id))
		if id == 0 {
			b = binary.AppendUvarint(b, uint64(len(p.name)))
			b = append(b, p.name...)
		}
		b = binary.AppendUvarint(b, uint64(escapedLen(p.value)))
		b = appendEscaped(b, p.value)
	}
	return b
}

// bodyReader reads the pairs of a labels body back, in order.
type bodyReader struct {
	s   string
	tab []nameInfo
}

// next returns the next pair: its name's id (0 when inline), name and
// value as encoded (escaped); ok is false at the end.
func (r *bodyReader) next() (id uint32, name, value string, ok bool) {
	if r.s == "" {
		return 0, "", "", false
	}
	v := r.uvarint()
	id = uint32(v)
	if id == 0 {
		name = r.bytes()
	} else {
		name = r.tab[id].name
	}
	return id, name, r.bytes(), true
}

func (r *bodyReader) uvarint() uint64 {
	var v uint64
	for shift := 0; ; shift += 7 {
		c := r.s[0]
		r.s = r.s[1:]
		v |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return v
		}
	}
}

func (r *bodyReader) bytes() string {
	n := r.uvarint()
	s := r.s[:n]
	r.s = r.s[n:]
	return s
}

// appendRendered appends the text of a labels body as the output holds it
// (the body of an entry's "labels" object): each pair on its own line,
// indented, "" for none. tab is the name table, loaded once per output.
func appendRendered(b []byte, body string, tab []nameInfo) []byte {
	r := bodyReader{s: body, tab: tab}
	first := true
	for {
		id, name, value, ok := r.next()
		if !ok {
			break
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		if id != 0 {
			b = append(b, tab[id].prefix...)
		} else {
			b = append(b, "\n      "...)
			b = appendString(b, name)
			b = append(b, ": "...)
		}
		b = append(b, '"')
		b = append(b, value...)
		b = append(b, '"')
	}
	if !first {
		b = append(b, "\n    "...)
	}
	return b
}

// renderedLen is the length of appendRendered's text for body.
func renderedLen(body string, tab []nameInfo) int {
	r := bodyReader{s: body, tab: tab}
	n, pairs := 0, 0
	for {
		id, name, value, ok := r.next()
		if !ok {
			break
		}
		pairs++
		if id != 0 {
			n += len(tab[id].prefix)
		} else {
			n += len("\n      ") + quotedLen(name) + len(": ")
		}
		n += len(value) + 2
	}
	if pairs > 0 {
		n += pairs - 1 + len("\n    ")
	}
	return n
}

// compareLabelsBodies orders two labels bodies as their label sets: pair by
// pair, by name then value; a prefix first.
func (n *labelNames) compareLabelsBodies(a, b string) int {
	if a == b {
		return 0
	}
	tab := n.table()
	ra, rb := bodyReader{s: a, tab: tab}, bodyReader{s: b, tab: tab}
	for {
		ia, na, va, oka := ra.next()
		ib, nb, vb, okb := rb.next()
		if !oka || !okb {
			return btoi(oka) - btoi(okb)
		}
		if ia != ib || ia == 0 {
			if c := strings.Compare(na, nb); c != 0 {
				return c
			}
		}
		if va == vb {
			continue
		}
		if strings.IndexByte(va, '\\') >= 0 || strings.IndexByte(vb, '\\') >= 0 {
			va, vb = unescape(va), unescape(vb)
		}
		if c := strings.Compare(va, vb); c != 0 {
			return c
		}
	}
}

// unescape returns the value whose encoding (appendEscaped) is v.
func unescape(v string) string {
	if strings.IndexByte(v, '\\') < 0 {
		return v
	}
	s, err := strconv.Unquote(`"` + v + `"`)
	if err != nil {
		return v
	}
	return s
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// labelsOf returns the label set of a labels body, as pairs sorted by name.
func (n *labelNames) labelsOf(body string) []LabelPair {
	var out []LabelPair
	r := bodyReader{s: body, tab: n.table()}
	for {
		_, name, v, ok := r.next()
		if !ok {
			return out
		}
		out = append(out, LabelPair{Name: name, Value: unescape(v)})
	}
}

// LabelPair is one label of an entry.
type LabelPair struct{ Name, Value string }
