package file

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"gopkg.in/yaml.v3"
)

// fileState is what a discoverer keeps of a file's last good read.
type fileState struct {
	sum     uint64               // xxhash of the whole content
	groups  []*targetgroup.Group // with Source and __meta_filepath
	sums    []uint64             // xxhash of each group's JSON bytes; nil when not known
	parts   []parts              // xxhashes of each group's "targets" and "labels" bytes; nil when not known
	sources []string             // Source of each index so far, reused by later reads
	path    model.LabelValue     // the file name, shared by every group's __meta_filepath
	mtime   float64              // seconds
}

// reader reads files into groups, reusing what the previous good read of
// a file decoded: a file whose content is unchanged is not decoded again,
// and in a changed JSON file only the elements whose bytes changed are.
type reader struct {
	in     *interner
	dec    groupDecoder
	window int    // the initial size of buf
	buf    []byte // the window a JSON file is read through, kept for the next read
}

func newReader() *reader {
	in := newInterner()
	return &reader{in: in, dec: groupDecoder{in: in}, window: defaultWindow}
}

// read reads file name. prev is its last good read, or nil. It returns
// prev itself when the content is unchanged (only the mtime updated), or a
// new state whose groups are prev's wherever their content is the same.
func (r *reader) read(name string, prev *fileState) (*fileState, error) {
	fail := func(err error) (*fileState, error) {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = fmt.Errorf("%s: %w", pe.Op, pe.Err)
		}
		return nil, fmt.Errorf("read %q: %w", name, err)
	}
	f, err := os.Open(name)
	if err != nil {
		return fail(err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return fail(err)
	}
	st, err := r.decodeFrom(name, f, prev, func() ([]byte, error) { return os.ReadFile(name) })
	if err != nil {
		return fail(err)
	}
	st.mtime = float64(info.ModTime().Unix())
	return st, nil
}

// decode is read on content.
func (r *reader) decode(name string, content []byte, prev *fileState) (*fileState, error) {
	return r.decodeFrom(name, bytes.NewReader(content), prev, func() ([]byte, error) { return content, nil })
}

// decodeFrom is read on the content rd reads; whole returns it all again,
// for the paths that need it at once.
func (r *reader) decodeFrom(name string, rd io.ReadSeeker, prev *fileState, whole func() ([]byte, error)) (*fileState, error) {
	ext := strings.ToLower(filepath.Ext(name))
	if ext != ".json" && ext != ".yml" && ext != ".yaml" {
		return nil, fmt.Errorf("unknown file extension %q (one of: .json, .yml, .yaml)", ext)
	}
	if prev != nil { // first only hash it: an unchanged file is not decoded
		sum := xxhash.New()
		if _, err := io.CopyBuffer(sum, rd, make([]byte, 64<<10)); err != nil {
			return nil, err
		}
		if sum.Sum64() == prev.sum {
			return prev, nil
		}
		if _, err := rd.Seek(0, io.SeekStart); err != nil {
			return nil, err
		}
	}
	st := &fileState{}
	if prev != nil {
		st.sources, st.path = prev.sources, prev.path
	} else {
		st.path = model.LabelValue(r.in.value(r.in.name([]byte(filepathLabel)), []byte(name)))
	}
	var err error
	if ext == ".json" {
		err = r.decodeJSON(name, rd, prev, st, whole)
	} else {
		err = r.decodeYAML(name, rd, prev, st)
	}
	if err != nil {
		return nil, err
	}
	if prev != nil && st.sum == prev.sum { // changed back while it was read
		return prev, nil
	}
	return st, nil
}

// decodeJSON fills st from the file rd reads. An element whose bytes a
// group of prev was decoded from keeps that group (the same pointer at the
// same index); the others are decoded, reusing prev's targets or labels at
// the same index when their bytes are unchanged. Whatever the hand-written
// decoder does not take is decoded by encoding/json, as Prometheus does
// (see decode.go), from whole.
func (r *reader) decodeJSON(name string, rd io.Reader, prev, st *fileState, whole func() ([]byte, error)) error {
	if prev != nil {
		st.groups = make([]*targetgroup.Group, 0, len(prev.groups))
		st.sums = make([]uint64, 0, len(prev.groups))
		st.parts = make([]parts, 0, len(prev.groups))
	}
	if cap(r.buf) == 0 || cap(r.buf) > 4*r.window { // keep the window, unless an element grew it much
		r.buf = make([]byte, r.window)
	}
	w := window{rd: rd, buf: r.buf[:cap(r.buf)], sum: xxhash.New()}
	defer func() { r.buf = w.buf }()
	var (
		byHash map[uint64]int // index of prev's groups by bytes, built at the 8th miss
		misses int
		failed bool // Prometheus rejects the file
	)
	err := w.elements(func(b []byte) bool {
		i := len(st.groups)
		h := xxhash.Sum64(b)
		var (
			pg *targetgroup.Group // prev's group at i
			pp parts
		)
		if prev != nil && i < len(prev.sums) {
			if prev.sums[i] == h {
				st.add(prev.groups[i], h, prev.parts[i])
				return true
			}
			pg, pp = prev.groups[i], prev.parts[i]
		}
		if prev != nil && prev.sums != nil {
			if misses++; misses == 8 {
				byHash = make(map[uint64]int, len(prev.sums))
				for j, ph := range prev.sums {
					byHash[ph] = j
				}
			}
			if j, ok := byHash[h]; ok { // moved: same content, new Source
				moved := prev.groups[j]
				st.add(&targetgroup.Group{Targets: moved.Targets, Labels: moved.Labels, Source: st.source(name, i)}, h, prev.parts[j])
				return true
			}
		}
		if string(b) == "null" {
			failed = true
			return false
		}
		g, ps, shared, err := r.dec.decodeGroup(b, pg, pp)
		if errors.Is(err, errUnusual) {
			g, ps, shared = &targetgroup.Group{}, parts{}, false
			err = g.UnmarshalJSON(b)
			if err == nil {
				g.Labels = r.in.labels(g.Labels, 1)
				for j, t := range g.Targets {
					g.Targets[j] = r.in.labels(t, 0)
				}
			}
		}
		if err != nil {
			failed = true
			return false
		}
		if !shared {
			if g.Labels == nil {
				g.Labels = make(model.LabelSet, 1)
			}
			g.Labels[filepathLabel] = st.path
		}
		g.Source = st.source(name, i)
		st.add(g, h, ps)
		return true
	})
	switch {
	case errors.Is(err, errSyntax) || failed:
		content, err := whole()
		if err != nil {
			return err
		}
		st.sum = xxhash.Sum64(content)
		return r.fallback(name, content, st)
	case err != nil:
		return err
	}
	st.sum = w.sum.Sum64()
	return nil
}

// add appends group g, whose element's bytes hash to h and its parts to
// ps, to st.
func (st *fileState) add(g *targetgroup.Group, h uint64, ps parts) {
	st.groups = append(st.groups, g)
	st.sums = append(st.sums, h)
	st.parts = append(st.parts, ps)
}

// fallback decodes content with encoding/json, as Prometheus does, for its
// groups or its error. Reused groups are dropped: they need not be what
// content holds.
func (r *reader) fallback(name string, content []byte, st *fileState) error {
	groups, err := decodeAll(content)
	if err != nil {
		return err
	}
	st.sums, st.parts = nil, nil
	r.adopt(name, groups, st)
	return nil
}

// adopt makes groups decoded by a library st's groups: strings interned,
// Source and __meta_filepath set.
func (r *reader) adopt(name string, groups []*targetgroup.Group, st *fileState) {
	st.groups = groups
	st.makeSources(name, len(groups))
	for i, g := range groups {
		g.Labels = r.in.labels(g.Labels, 1)
		g.Labels[filepathLabel] = st.path
		for j, t := range g.Targets {
			g.Targets[j] = r.in.labels(t, 0)
		}
		g.Source = st.source(name, i)
	}
}

// decodeYAML decodes the first document strictly (unknown keys are errors);
// an empty file is an empty list, as it is for Prometheus. A group equal to
// prev's at its index is prev's.
func (r *reader) decodeYAML(name string, rd io.Reader, prev, st *fileState) error {
	content, err := io.ReadAll(rd)
	if err != nil {
		return err
	}
	st.sum = xxhash.Sum64(content)
	var groups []*targetgroup.Group
	dec := yaml.NewDecoder(bytes.NewReader(content))
	dec.KnownFields(true)
	if err := dec.Decode(&groups); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if slices.Contains(groups, nil) {
		return errors.New("nil target group item found")
	}
	r.adopt(name, groups, st)
	if prev != nil {
		for i, g := range st.groups {
			if i < len(prev.groups) && groupEqual(g, prev.groups[i]) {
				st.groups[i] = prev.groups[i]
			}
		}
	}
	return nil
}

// source is the Source of the i-th group of file name, as Prometheus names
// it, made once per index, a quarter more than there are at a time.
func (st *fileState) source(name string, i int) string {
	if i >= len(st.sources) {
		st.makeSources(name, max(i+1, len(st.sources)*5/4, 1024))
	}
	return st.sources[i]
}

// makeSources makes the sources of the first n indexes, those missing
// together as parts of one string.
func (st *fileState) makeSources(name string, n int) {
	from := len(st.sources)
	if n <= from {
		return
	}
	var (
		sb   strings.Builder
		num  []byte
		ends = make([]int, 0, n-from)
	)
	sb.Grow((len(name) + 8) * (n - from))
	for j := from; j < n; j++ {
		sb.WriteString(name)
		sb.WriteByte(':')
		num = strconv.AppendInt(num[:0], int64(j), 10)
		sb.Write(num)
		ends = append(ends, sb.Len())
	}
	all, start := sb.String(), 0
	for _, end := range ends {
		st.sources = append(st.sources, all[start:end])
		start = end
	}
}

// groupEqual reports whether a and b have the same Source, targets and labels.
func groupEqual(a, b *targetgroup.Group) bool {
	if a == b {
		return true
	}
	if a.Source != b.Source || len(a.Targets) != len(b.Targets) || !maps.Equal(a.Labels, b.Labels) {
		return false
	}
	for i := range a.Targets {
		if !maps.Equal(a.Targets[i], b.Targets[i]) {
			return false
		}
	}
	return true
}
