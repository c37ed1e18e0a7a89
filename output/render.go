package output

import (
	"strconv"
	"unicode/utf8"
)

// A job's output is its groups in the file_sd JSON format Prometheus reads,
// with the same bytes for the same targets whatever the order of groups,
// targets or labels:
//
//   - every target's labels are its group's labels merged under its own
//     (the target's win), as Prometheus merges them; `__address__` goes in
//     `targets` ("" when the target has none) and nothing else is added; a
//     source's __meta_filepath and __meta_url are carried under sdhub's own
//     names (outputLabelName);
//   - targets with the same remaining label set form one entry, whose
//     `labels` is always present (`{}` when empty);
//   - targets in an entry are sorted and unique, entries are sorted by
//     their first target, then by their labels;
//   - the JSON is indented by two spaces, without HTML escaping, and ends in
//     a newline; no targets at all is `[]`;
//   - a target Prometheus would reject is left out (validate.go).
//
// The stage renders a job incrementally (jobRender); the tests' Render
// renders groups from scratch, the same way.

type labelPair struct{ name, value string }

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
	return append(appendEscaped(append(b, '"'), s), '"')
}

// escapedLen is the length of appendEscaped's encoding of s.
func escapedLen(s string) int {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= utf8.RuneSelf || !plain[c] {
			return len(appendEscaped(nil, s))
		}
	}
	return len(s)
}

// appendEscaped appends the inside of appendString's JSON string for s. It
// holds a backslash exactly when it is not s itself.
func appendEscaped(b []byte, s string) []byte {
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
	return append(b, s[start:]...)
}
