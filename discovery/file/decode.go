package file

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"math/bits"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
)

// The JSON input is decoded by hand, in two steps, for speed and memory
// rather than through encoding/json's reflection and model.LabelSet's
// UnmarshalJSON (which decodes every group's bytes twice more):
//
//   - window.elements (stream.go) checks the whole file's syntax as
//     encoding/json's scanner does and yields the bytes of each element of
//     the top-level array, so that an element whose bytes did not change
//     since the last read can keep its decoded group;
//   - decodeGroup decodes one element in the plain shape file_sd files have:
//     an object with at most one "targets" (null or a list of strings) and at
//     most one "labels" (null or an object of strings), label names valid as
//     model.LabelName decides. Strings are unquoted as encoding/json does
//     (escapes, surrogate pairs, U+FFFD for invalid UTF-8).
//
// Whatever else a file holds goes to Prometheus's own decoding, so that what
// is accepted and every error text are exactly Prometheus's: an element of
// another shape that is still valid JSON (keys in another case, escaped
// keys, a key twice, null in a list, a number) is decoded by
// targetgroup.Group.UnmarshalJSON, as encoding/json would call it; a file
// with a syntax error, a non-array top level, a nested depth past
// maxDepth, a null element or an element Prometheus rejects is decoded
// whole by encoding/json into []*targetgroup.Group, which gives its error.
// The differential tests (FuzzReadFile, FuzzReadJSONAfter,
// TestDecodeJSONRandom) hold the two to the same result.

// maxDepth bounds the nesting the scanner follows itself; deeper files are
// left to encoding/json (whose own limit is 10,000).
const maxDepth = 512

// errSyntax marks input the scanner cannot take; the caller decodes it with
// encoding/json instead, which gives the error (or, past maxDepth, the
// groups).
var errSyntax = errors.New("json syntax")

// scanner walks JSON bytes; every method leaves pos after what it read.
type scanner struct {
	b   []byte
	pos int
}

func (s *scanner) ws() {
	for s.pos < len(s.b) {
		switch s.b[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// byte consumes c if it is next.
func (s *scanner) byte(c byte) bool {
	if s.pos < len(s.b) && s.b[s.pos] == c {
		s.pos++
		return true
	}
	return false
}

// literal consumes lit if it is next.
func (s *scanner) literal(lit string) bool {
	if len(s.b)-s.pos >= len(lit) && string(s.b[s.pos:s.pos+len(lit)]) == lit {
		s.pos += len(lit)
		return true
	}
	return false
}

// value skips one JSON value (no leading white space), checking its syntax.
func (s *scanner) value(depth int) bool {
	if s.pos >= len(s.b) || depth > maxDepth {
		return false
	}
	switch c := s.b[s.pos]; {
	case c == '{':
		s.pos++
		s.ws()
		if s.byte('}') {
			return true
		}
		for {
			s.ws()
			if !s.str() {
				return false
			}
			s.ws()
			if !s.byte(':') {
				return false
			}
			s.ws()
			if !s.value(depth + 1) {
				return false
			}
			s.ws()
			if s.byte(',') {
				continue
			}
			return s.byte('}')
		}
	case c == '[':
		s.pos++
		s.ws()
		if s.byte(']') {
			return true
		}
		for {
			s.ws()
			if !s.value(depth + 1) {
				return false
			}
			s.ws()
			if s.byte(',') {
				continue
			}
			return s.byte(']')
		}
	case c == '"':
		return s.str()
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '-' || c >= '0' && c <= '9':
		return s.number()
	}
	return false
}

// str skips a string, checking its escapes and that it holds no control
// character. Bytes past ASCII are not checked: encoding/json's scanner
// takes any, and unquoting replaces invalid UTF-8.
func (s *scanner) str() bool {
	if !s.byte('"') {
		return false
	}
	for s.pos < len(s.b) {
		s.pos += plainRun(s.b[s.pos:])
		if s.pos >= len(s.b) {
			return false
		}
		c := s.b[s.pos]
		switch {
		case c == '"':
			s.pos++
			return true
		case c < 0x20:
			return false
		case c == '\\':
			if s.pos+1 >= len(s.b) {
				return false
			}
			switch s.b[s.pos+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.pos += 2
			case 'u':
				if hex4(s.b[s.pos+2:]) < 0 {
					return false
				}
				s.pos += 6
			default:
				return false
			}
		default:
			s.pos++
		}
	}
	return false
}

// plainRun is the length of b's prefix free of '"', '\\' and control
// characters: the part of a string that needs no attention. It looks at
// eight bytes at a time.
func plainRun(b []byte) int {
	const (
		ones = 0x0101010101010101
		high = 0x8080808080808080
	)
	i := 0
	for ; i+8 <= len(b); i += 8 {
		w := binary.LittleEndian.Uint64(b[i:])
		q, bs := w^('"'*ones), w^('\\'*ones)
		// A byte of w below 0x20, or of q or bs zero, sets its high bit
		// here; a match also sets some bits above it, never below, so the
		// lowest high bit set is the first match.
		if m := ((w-0x20*ones)&^w | (q-ones)&^q | (bs-ones)&^bs) & high; m != 0 {
			return i + bits.TrailingZeros64(m)/8
		}
	}
	for ; i < len(b); i++ {
		if c := b[i]; c == '"' || c == '\\' || c < 0x20 {
			break
		}
	}
	return i
}

// number skips a number as JSON's grammar has it.
func (s *scanner) number() bool {
	s.byte('-')
	switch {
	case s.byte('0'):
	case s.pos < len(s.b) && s.b[s.pos] >= '1' && s.b[s.pos] <= '9':
		s.digits()
	default:
		return false
	}
	if s.byte('.') && !s.digits() {
		return false
	}
	if s.byte('e') || s.byte('E') {
		if !s.byte('+') {
			s.byte('-')
		}
		if !s.digits() {
			return false
		}
	}
	return true
}

// digits skips one or more digits; false when there is none.
func (s *scanner) digits() bool {
	start := s.pos
	for s.pos < len(s.b) && s.b[s.pos] >= '0' && s.b[s.pos] <= '9' {
		s.pos++
	}
	return s.pos > start
}

// hex4 is the value of the four hex digits b starts with, or -1.
func hex4(b []byte) rune {
	if len(b) < 4 {
		return -1
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r<<4 | rune(c)
	}
	return r
}

// groupDecoder decodes elements the scanner has checked. Its strings come from
// in; scratch is reused for unquoting.
type groupDecoder struct {
	in      *interner
	scratch []byte
	hint    int      // labels of the last group, to size the next one's map
	local   []string // the group's values not interned so far (see value)
}

// errUnusual marks an element valid as JSON but not in the plain shape;
// the caller decodes it with targetgroup.Group.UnmarshalJSON.
var errUnusual = errors.New("unusual group")

// parts are the xxhashes of an element's "targets" and "labels" values
// (their bytes), zero where not known.
type parts struct{ targets, labels uint64 }

// decodeGroup decodes one element into a group without Source, with
// errUnusual for an element to leave to targetgroup.Group.UnmarshalJSON,
// or with another error where Prometheus would fail (the caller gets
// Prometheus's text from encoding/json). prev is the group decoded before
// from the element at the same index, whose parts were prevParts, or nil:
// a "targets" or "labels" value whose bytes have not changed takes prev's
// Targets or Labels rather than a copy. Labels are returned without
// __meta_filepath unless they are prev's, which hold it already (shared is
// true).
func (d *groupDecoder) decodeGroup(b []byte, prev *targetgroup.Group, prevParts parts) (g *targetgroup.Group, ps parts, shared bool, err error) {
	s := scanner{b: b}
	if !s.byte('{') {
		return nil, ps, false, errUnusual // null, or another type Prometheus rejects
	}
	d.local = d.local[:0]
	var targets, labels bool // seen
	g = &targetgroup.Group{}
	// unchanged skips a value whose bytes hash to want (not zero) and
	// returns true, or returns false at its start; h is its hash.
	unchanged := func(want uint64, h *uint64) bool {
		start := s.pos
		if !s.value(2) {
			return false
		}
		*h = xxhash.Sum64(s.b[start:s.pos])
		if prev != nil && want != 0 && *h == want {
			return true
		}
		s.pos = start
		return false
	}
	s.ws()
	if !s.byte('}') {
		for {
			s.ws()
			key, ok := s.plainKey()
			if !ok {
				return nil, ps, false, errUnusual
			}
			s.ws()
			if !s.byte(':') {
				return nil, ps, false, errUnusual
			}
			s.ws()
			switch {
			case string(key) == "targets" && !targets:
				targets = true
				if unchanged(prevParts.targets, &ps.targets) {
					g.Targets = prev.Targets
				} else {
					g.Targets, err = d.targets(&s)
				}
			case string(key) == "labels" && !labels:
				labels = true
				if unchanged(prevParts.labels, &ps.labels) {
					g.Labels, shared = prev.Labels, true
				} else {
					g.Labels, err = d.labels(&s)
				}
			default: // another key, another case, or a key twice
				return nil, ps, false, errUnusual
			}
			if err != nil {
				return nil, ps, false, err
			}
			s.ws()
			if s.byte(',') {
				continue
			}
			if s.byte('}') {
				break
			}
			return nil, ps, false, errUnusual
		}
	}
	if g.Targets == nil {
		g.Targets = []model.LabelSet{}
	}
	return g, ps, shared, nil
}

// plainKey reads an object key without escapes.
func (s *scanner) plainKey() ([]byte, bool) {
	if !s.byte('"') {
		return nil, false
	}
	start := s.pos
	s.pos += plainRun(s.b[s.pos:])
	if !s.byte('"') {
		return nil, false
	}
	return s.b[start : s.pos-1], true
}

// targets reads null or a list of strings, each a target of one label,
// __address__.
func (d *groupDecoder) targets(s *scanner) ([]model.LabelSet, error) {
	if s.literal("null") {
		return nil, nil
	}
	if !s.byte('[') {
		return nil, errUnusual
	}
	out := []model.LabelSet{}
	s.ws()
	if s.byte(']') {
		return out, nil
	}
	for {
		s.ws()
		addr, ok := d.str(s)
		if !ok {
			return nil, errUnusual
		}
		out = append(out, model.LabelSet{model.AddressLabel: model.LabelValue(d.value(d.in.address, addr))})
		s.ws()
		if s.byte(',') {
			continue
		}
		if s.byte(']') {
			return out, nil
		}
		return nil, errUnusual
	}
}

// errLabelName marks a label name Prometheus refuses.
var errLabelName = errors.New("invalid label name")

// labels reads null or an object of strings. The map has room for
// __meta_filepath, which the caller adds.
func (d *groupDecoder) labels(s *scanner) (model.LabelSet, error) {
	if s.literal("null") {
		return nil, nil
	}
	if !s.byte('{') {
		return nil, errUnusual
	}
	out := make(model.LabelSet, d.hint+1)
	s.ws()
	if s.byte('}') {
		d.hint = 0
		return out, nil
	}
	for {
		s.ws()
		b, ok := d.str(s)
		if !ok {
			return nil, errUnusual
		}
		name := d.in.name(b)
		if !model.LabelName(name.s).IsValid() {
			return nil, errLabelName
		}
		s.ws()
		if !s.byte(':') {
			return nil, errUnusual
		}
		s.ws()
		if b, ok = d.str(s); !ok {
			return nil, errUnusual // null or another type
		}
		out[model.LabelName(name.s)] = model.LabelValue(d.value(name, b))
		s.ws()
		if s.byte(',') {
			continue
		}
		if s.byte('}') {
			d.hint = len(out)
			return out, nil
		}
		return nil, errUnusual
	}
}

// value is the interned value b of label n. A value of a label whose
// values do not repeat across groups is copied, but once per group: a
// group often holds one address in several labels.
func (d *groupDecoder) value(n *labelName, b []byte) string {
	if !n.unique {
		return d.in.value(n, b)
	}
	for _, v := range d.local {
		if v == string(b) {
			return v
		}
	}
	v := string(b)
	if len(d.local) < 8 {
		d.local = append(d.local, v)
	}
	return v
}

// str reads a string, unquoted as encoding/json does. The bytes are the
// input's own or d.scratch's: valid until the next call.
func (d *groupDecoder) str(s *scanner) ([]byte, bool) {
	if !s.byte('"') {
		return nil, false
	}
	start := s.pos
	esc := false
	for {
		s.pos += plainRun(s.b[s.pos:])
		if s.pos >= len(s.b) {
			return nil, false
		}
		if c := s.b[s.pos]; c == '"' {
			break
		} else if c == '\\' {
			esc = true
			s.pos++ // an escaped quote does not end the string
		}
		s.pos++ // a control character: the scanner has refused it already
	}
	raw := s.b[start:s.pos]
	s.pos++
	if !esc && utf8.Valid(raw) {
		return raw, true
	}
	d.scratch = unquote(d.scratch[:0], raw)
	return d.scratch, true
}

// unquote appends the string whose checked, quoted body is raw to dst, as
// encoding/json decodes it: escapes resolved, a surrogate pair joined, a
// lone surrogate and each byte of invalid UTF-8 made U+FFFD.
func unquote(dst, raw []byte) []byte {
	for i := 0; i < len(raw); {
		c := raw[i]
		switch {
		case c == '\\':
			switch e := raw[i+1]; e {
			case 'b':
				dst = append(dst, '\b')
			case 'f':
				dst = append(dst, '\f')
			case 'n':
				dst = append(dst, '\n')
			case 'r':
				dst = append(dst, '\r')
			case 't':
				dst = append(dst, '\t')
			case 'u':
				r := hex4(raw[i+2:])
				i += 6
				if utf16.IsSurrogate(r) {
					if len(raw)-i >= 6 && raw[i] == '\\' && raw[i+1] == 'u' {
						if pair := utf16.DecodeRune(r, hex4(raw[i+2:])); pair != utf8.RuneError {
							dst = utf8.AppendRune(dst, pair)
							i += 6
							continue
						}
					}
					r = utf8.RuneError
				}
				dst = utf8.AppendRune(dst, r)
				continue
			default: // '"', '\\', '/'
				dst = append(dst, e)
			}
			i += 2
		case c < utf8.RuneSelf:
			dst = append(dst, c)
			i++
		default:
			r, n := utf8.DecodeRune(raw[i:])
			if r == utf8.RuneError && n == 1 {
				dst = utf8.AppendRune(dst, utf8.RuneError)
			} else {
				dst = append(dst, raw[i:i+n]...)
			}
			i += n
		}
	}
	return dst
}

// decodeAll decodes a whole file with encoding/json into
// []*targetgroup.Group, as Prometheus does: the reference for every input
// the hand-written path does not take, and the source of every error text.
func decodeAll(b []byte) ([]*targetgroup.Group, error) {
	var groups []*targetgroup.Group
	if err := json.Unmarshal(b, &groups); err != nil {
		return nil, err
	}
	for _, g := range groups {
		if g == nil {
			return nil, errors.New("nil target group item found")
		}
	}
	return groups, nil
}
