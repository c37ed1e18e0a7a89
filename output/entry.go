package output

import (
	"cmp"
	"strconv"
	"strings"
)

// entry is one entry of a job's file_sd output, immutable once made: its
// targets and its label set, encoded. Its text is head, then labels, then
// entryTail:
//
//	{
//	  "targets": [
//	    "a:1"
//	  ],
//	  "labels": {
//	    "__meta_x": "y"
//	  }
//	}
//
// labels is the body of the "labels" object (labelsBody), which is also the
// canonical key of the label set.
type entry struct {
	targets []string // sorted, unique
	labels  string
	head    []byte
	gone    bool // taken out of the order: set only by the job's renderer
}

const (
	entryHead = "  {\n    \"targets\": [\n"
	entryMid  = "    ],\n    \"labels\": {"
	entryTail = "}\n  }"
)

func newEntry(labels string, refs []targetRef) *entry {
	e := &entry{labels: labels, targets: make([]string, len(refs))}
	size := len(entryHead) + len(entryMid)
	for i, t := range refs {
		e.targets[i] = t.addr
		size += len(t.addr) + 10
	}
	e.head = appendEntryHead(make([]byte, 0, size), e.targets)
	return e
}

// appendEntryHead appends the text of an entry up to its labels body.
func appendEntryHead(b []byte, targets []string) []byte {
	b = append(b, entryHead...)
	for j, t := range targets {
		b = append(b, "      "...)
		b = appendString(b, t)
		if j < len(targets)-1 {
			b = append(b, ',')
		}
		b = append(b, '\n')
	}
	return append(b, entryMid...)
}

// size is the length of the entry's text.
func (e *entry) size() int { return len(e.head) + len(e.labels) + len(entryTail) }

// appendLabelsBody appends the body of an entry's "labels" object for pairs,
// sorted by name: each pair on its own line, indented, "" for none.
func appendLabelsBody(b []byte, pairs []labelPair) []byte {
	for j, p := range pairs {
		b = append(b, "\n      "...)
		b = appendString(b, p.name)
		b = append(b, ": "...)
		b = appendString(b, p.value)
		if j < len(pairs)-1 {
			b = append(b, ',')
		}
	}
	if len(pairs) > 0 {
		b = append(b, "\n    "...)
	}
	return b
}

// labelsReader reads the pairs of a labels body back, in order.
type labelsReader struct{ s string }

// next returns the next pair, as encoded (quoted); ok is false at the end.
func (r *labelsReader) next() (name, value string, ok bool) {
	s := strings.TrimPrefix(r.s, ",")
	s = strings.TrimLeft(s, "\n ")
	if s == "" {
		return "", "", false
	}
	name, s = quoted(s)
	s = strings.TrimPrefix(s, ": ")
	value, s = quoted(s)
	r.s = s
	return name, value, true
}

// quoted splits s, which starts with a JSON string, after that string.
func quoted(s string) (string, string) {
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return s[:i+1], s[i+1:]
		}
	}
	return s, ""
}

// unquote decodes a JSON string as appendString encodes it.
func unquote(q string) string {
	if !strings.Contains(q, `\`) {
		return q[1 : len(q)-1]
	}
	s, err := strconv.Unquote(q)
	if err != nil {
		return q[1 : len(q)-1]
	}
	return s
}

// compareLabelsBodies orders two labels bodies as their label sets: pair by
// pair, by name then value; a prefix first. Names are plain label names;
// values are decoded only when one holds an escape.
func compareLabelsBodies(a, b string) int {
	if a == b {
		return 0
	}
	// The bodies share every byte before i, so at i both are at the same
	// place: in the same name or value at the same offset, or between
	// them. When neither byte is one of the structure's (or a quote) and
	// no escape came before, both are in a name or value whose decoded
	// bytes so far are equal, and these bytes, as they are, order the two
	// sets.
	i := 0
	for n := min(len(a), len(b)); i < n && a[i] == b[i]; i++ {
	}
	if i < len(a) && i < len(b) && bodyPlain(a[i]) && bodyPlain(b[i]) && strings.IndexByte(a[:i], '\\') < 0 {
		return cmp.Compare(a[i], b[i])
	}
	ra, rb := labelsReader{a}, labelsReader{b}
	for {
		na, va, oka := ra.next()
		nb, vb, okb := rb.next()
		if !oka || !okb {
			return cmp.Compare(btoi(oka), btoi(okb))
		}
		if c := cmp.Or(strings.Compare(unquote(na), unquote(nb)), strings.Compare(unquote(va), unquote(vb))); c != 0 {
			return c
		}
	}
}

// bodyPlain reports whether c, in a labels body, can only be a byte of a
// name or value as it is: not a quote, an escape or a byte of the
// structure between pairs.
func bodyPlain(c byte) bool {
	switch c {
	case '"', '\\', '\n', ' ', ',', ':':
		return false
	}
	return true
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// labelsOf returns the label set of a labels body, as pairs sorted by name.
func labelsOf(body string) []LabelPair {
	var out []LabelPair
	r := labelsReader{body}
	for {
		n, v, ok := r.next()
		if !ok {
			return out
		}
		out = append(out, LabelPair{Name: unquote(n), Value: unquote(v)})
	}
}

// LabelPair is one label of an entry.
type LabelPair struct{ Name, Value string }
