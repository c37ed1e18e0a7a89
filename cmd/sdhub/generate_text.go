package main

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// source is a YAML document as text, for edits by line and column from the
// positions yaml.v3 gives its nodes (1-based lines, 1-based columns counted
// in characters).
type source struct {
	data  []byte
	lines []int // the offset of each line's first byte; lines[0] is line 1
}

func newSource(data []byte) *source {
	s := &source{data: data, lines: []int{0}}
	for i, c := range data {
		if c == '\n' && i+1 < len(data) {
			s.lines = append(s.lines, i+1)
		}
	}
	return s
}

// line returns the text of line n without its newline.
func (s *source) line(n int) []byte {
	if n < 1 || n > len(s.lines) {
		return nil
	}
	return bytes.TrimSuffix(s.data[s.lines[n-1]:s.lineEnd(n)], []byte("\n"))
}

// offset returns the byte offset of line n, column col.
func (s *source) offset(n, col int) int {
	off := s.lines[n-1]
	for i := 1; i < col && off < len(s.data) && s.data[off] != '\n'; i++ {
		_, size := utf8.DecodeRune(s.data[off:])
		off += size
	}
	return off
}

// lineEnd returns the offset just past line n's newline (the end of the
// data for its last line).
func (s *source) lineEnd(n int) int {
	if n >= len(s.lines) {
		return len(s.data)
	}
	return s.lines[n]
}

// lineStart returns the offset of the start of the line holding off.
func (s *source) lineStart(off int) int {
	i, found := slices.BinarySearch(s.lines, off)
	if !found {
		i--
	}
	return s.lines[i]
}

// onlySpaceBefore reports whether nothing but spaces precedes off on its
// line.
func (s *source) onlySpaceBefore(off int) bool {
	return len(bytes.TrimLeft(s.data[s.lineStart(off):off], " ")) == 0
}

// kind tells what line n holds (blank, comment or content) and its
// indentation.
func (s *source) kind(n int) (lineKind, int) {
	l := s.line(n)
	t := bytes.TrimLeft(l, " \t")
	switch {
	case len(t) == 0:
		return blankLine, 0
	case t[0] == '#':
		return commentLine, len(l) - len(t)
	}
	return contentLine, len(l) - len(t)
}

type lineKind int

const (
	blankLine lineKind = iota
	commentLine
	contentLine
)

// lastLine returns the last line of a value that starts at line from, under
// a key indented by indent: the last line of any of its nodes, then the
// lines indented deeper than the key that follow, comments included (the
// rest of a block scalar, a commented-out item). Blank lines at its end,
// and comments at the key's indentation or less, are not part of it.
func (s *source) lastLine(value *yaml.Node, from, indent int) int {
	end := max(from, s.endLine(value))
	for n := end + 1; n <= len(s.lines); n++ {
		k, in := s.kind(n)
		if k == blankLine {
			continue
		}
		if in <= indent {
			if k == commentLine {
				continue // may be followed by more of the value
			}
			break
		}
		end = n
	}
	return end
}

// endLine returns the last line of n's own text: the line of the closing
// bracket of a flow collection (libyaml accepts it at any indentation), the
// last line of a block collection's nodes, a scalar's first line.
func (s *source) endLine(n *yaml.Node) int {
	if n.Style&yaml.FlowStyle != 0 && (n.Kind == yaml.SequenceNode || n.Kind == yaml.MappingNode) {
		if end, err := s.flowEnd(s.offset(n.Line, n.Column)); err == nil {
			i, _ := slices.BinarySearch(s.lines, end)
			return i // the line holding end-1
		}
	}
	m := n.Line
	for _, c := range n.Content {
		m = max(m, s.endLine(c))
	}
	return m
}

// dashColumn returns the 0-based column of the "-" that starts the
// sequence item whose node is at line n, column col.
func (s *source) dashColumn(n, col int) (int, bool) {
	before := string(s.data[s.lines[n-1]:s.offset(n, col)])
	trimmed := strings.TrimRight(before, " ")
	if !strings.HasSuffix(trimmed, "-") || strings.TrimLeft(trimmed, " ") != "-" {
		return 0, false
	}
	return len(trimmed) - 1, true
}

// flowEnd returns the offset just past the flow collection ("{...}" or
// "[...]") that starts at off.
func (s *source) flowEnd(off int) (int, error) {
	depth := 0
	for i := off; i < len(s.data); i++ {
		switch c := s.data[i]; c {
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				return i + 1, nil
			}
		case '"', '\'':
			// A quoted scalar: '' escapes a single quote, \ a double one.
			for i++; i < len(s.data) && s.data[i] != c; i++ {
				if c == '"' && s.data[i] == '\\' {
					i++
				}
			}
		case '#':
			if i > 0 && (s.data[i-1] == ' ' || s.data[i-1] == '\t' || s.data[i-1] == '\n') {
				for i < len(s.data) && s.data[i] != '\n' {
					i++
				}
			}
		}
	}
	return 0, fmt.Errorf("unterminated flow collection at offset %d", off)
}

// edit replaces data[start:end] by text.
type edit struct {
	start, end int
	text       string
}

// apply returns the data with edits made; they must not overlap.
func (s *source) apply(edits []edit) ([]byte, error) {
	slices.SortStableFunc(edits, func(a, b edit) int { return cmp.Compare(a.start, b.start) })
	var b bytes.Buffer
	at := 0
	for _, e := range edits {
		if e.start < at {
			return nil, fmt.Errorf("overlapping edits at offset %d", e.start)
		}
		b.Write(s.data[at:e.start])
		b.WriteString(e.text)
		at = e.end
	}
	b.Write(s.data[at:])
	return b.Bytes(), nil
}

// encode returns n as YAML indented by two spaces.
func encode(n *yaml.Node) (string, error) {
	var b strings.Builder
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(n); err != nil {
		return "", err
	}
	if err := enc.Close(); err != nil {
		return "", err
	}
	return b.String(), nil
}

// encodeAt returns n as YAML to be written at column indent (0-based) of
// a line: every line but the first is indented by indent spaces.
func encodeAt(n *yaml.Node, indent int) (string, error) {
	text, err := encode(n)
	if err != nil {
		return "", err
	}
	lines := strings.SplitAfter(text, "\n")
	for i := 1; i < len(lines); i++ {
		if strings.TrimSpace(lines[i]) != "" {
			lines[i] = strings.Repeat(" ", indent) + lines[i]
		}
	}
	return strings.Join(lines, ""), nil
}
