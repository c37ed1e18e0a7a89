package output

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
)

// Render returns groups in the file_sd JSON format Prometheus reads, with
// the same bytes for the same targets whatever the order of groups, targets
// or labels:
//
//   - every target's labels are its group's labels merged under its own
//     (the target's win), as Prometheus merges them; `__address__` goes in
//     `targets` ("" when the target has none) and nothing else is added;
//   - targets with the same remaining label set form one entry, whose
//     `labels` is always present (`{}` when empty);
//   - targets in an entry are sorted and unique, entries are sorted by
//     their first target, then by their labels;
//   - the JSON is indented by two spaces, without HTML escaping, and ends in
//     a newline; no targets at all is `[]`.
//
// Prometheus rejects a whole file_sd file if one label name is invalid, so
// Render fails on an empty or non-UTF-8 label name rather than produce it.
func Render(groups []*targetgroup.Group) ([]byte, error) {
	b, _, err := render(groups)
	return b, err
}

type labelPair struct{ name, value string }

type entry struct {
	key     string // the canonical form of labels: length-prefixed names and values
	labels  []labelPair
	targets []string
}

// compareLabels orders label sets pair by pair (name, then value); a prefix
// comes first.
func compareLabels(a, b []labelPair) int {
	for i := range min(len(a), len(b)) {
		if c := cmp.Or(strings.Compare(a[i].name, b[i].name), strings.Compare(a[i].value, b[i].value)); c != 0 {
			return c
		}
	}
	return cmp.Compare(len(a), len(b))
}

// render returns the file and the number of distinct targets in it.
func render(groups []*targetgroup.Group) ([]byte, int, error) {
	byKey := map[string]*entry{}
	var (
		pairs []labelPair
		key   []byte
	)
	for _, g := range groups {
		if g == nil {
			continue
		}
		for _, t := range g.Targets {
			pairs = pairs[:0]
			addr := string(g.Labels[model.AddressLabel])
			for n, v := range t {
				if n == model.AddressLabel {
					addr = string(v)
					continue
				}
				pairs = append(pairs, labelPair{outputLabelName(string(n)), string(v)})
			}
			for n, v := range g.Labels {
				if n == model.AddressLabel {
					continue
				}
				if _, ok := t[n]; !ok {
					pairs = append(pairs, labelPair{outputLabelName(string(n)), string(v)})
				}
			}
			slices.SortFunc(pairs, func(a, b labelPair) int { return strings.Compare(a.name, b.name) })
			key = key[:0]
			for _, p := range pairs {
				if !model.UTF8Validation.IsValidLabelName(p.name) {
					return nil, 0, fmt.Errorf("invalid label name %q in target %q of group %q", p.name, addr, g.Source)
				}
				// Length prefixes, not separators: a value may hold any byte.
				key = binary.AppendUvarint(key, uint64(len(p.name)))
				key = append(key, p.name...)
				key = binary.AppendUvarint(key, uint64(len(p.value)))
				key = append(key, p.value...)
			}
			e := byKey[string(key)] // no allocation for the lookup
			if e == nil {
				e = &entry{key: string(key), labels: slices.Clone(pairs)}
				byKey[e.key] = e
			}
			e.targets = append(e.targets, addr)
		}
	}

	entries := make([]*entry, 0, len(byKey))
	n, size := 0, 3
	for _, e := range byKey {
		slices.Sort(e.targets)
		e.targets = slices.Compact(e.targets)
		n += len(e.targets)
		// The size without escapes: the entry's frame, each label's
		// indentation, quotes and separators, each target's.
		size += 48 + len(e.key) + 12*len(e.labels)
		for _, t := range e.targets {
			size += len(t) + 10
		}
		entries = append(entries, e)
	}
	slices.SortFunc(entries, func(a, b *entry) int {
		return cmp.Or(strings.Compare(a.targets[0], b.targets[0]), compareLabels(a.labels, b.labels))
	})
	return encode(make([]byte, 0, size), entries), n, nil
}

// encode appends entries as json.Encoder would with SetIndent("", "  ") and
// SetEscapeHTML(false), trailing newline included.
func encode(b []byte, entries []*entry) []byte {
	if len(entries) == 0 {
		return append(b, "[]\n"...)
	}
	b = append(b, "[\n"...)
	for i, e := range entries {
		b = append(b, "  {\n    \"targets\": [\n"...)
		for j, t := range e.targets {
			b = append(b, "      "...)
			b = appendString(b, t)
			if j < len(e.targets)-1 {
				b = append(b, ',')
			}
			b = append(b, '\n')
		}
		b = append(b, "    ],\n    \"labels\": {"...)
		for j, p := range e.labels {
			b = append(b, "\n      "...)
			b = appendString(b, p.name)
			b = append(b, ": "...)
			b = appendString(b, p.value)
			if j < len(e.labels)-1 {
				b = append(b, ',')
			}
		}
		if len(e.labels) > 0 {
			b = append(b, "\n    "...)
		}
		b = append(b, "}\n  }"...)
		if i < len(entries)-1 {
			b = append(b, ',')
		}
		b = append(b, '\n')
	}
	return append(b, "]\n"...)
}

// plain marks the ASCII bytes a JSON string holds as they are.
var plain = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// appendString appends s as a JSON string the way encoding/json does without
// HTML escaping: invalid UTF-8 becomes U+FFFD, control characters and
// U+2028/U+2029 are escaped.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if plain[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, `\u00`...)
				b = append(b, "0123456789abcdef"[c>>4], "0123456789abcdef"[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, `\u202`...)
			b = strconv.AppendInt(b, int64(r&0xf), 16)
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
