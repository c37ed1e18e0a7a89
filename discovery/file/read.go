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
	sources []string             // Source of each index so far, reused by later reads
	path    model.LabelValue     // the file name, shared by every group's __meta_filepath
	mtime   float64              // seconds
}

// reader reads files into groups, reusing what the previous good read of
// a file decoded: a file whose content is unchanged is not decoded again,
// and in a changed JSON file only the elements whose bytes changed are.
type reader struct {
	in  *interner
	dec groupDecoder
}

func newReader() *reader {
	in := newInterner()
	return &reader{in: in, dec: groupDecoder{in: in}}
}

// read reads file name. prev is its last good read, or nil. It returns
// prev itself when the content is unchanged (only the mtime updated), or a
// new state whose groups are prev's wherever their content is the same.
func (r *reader) read(name string, prev *fileState) (*fileState, error) {
	content, mtime, err := readAll(name)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = fmt.Errorf("%s: %w", pe.Op, pe.Err)
		}
		return nil, fmt.Errorf("read %q: %w", name, err)
	}
	st, err := r.decode(name, content, prev)
	if err != nil {
		return nil, fmt.Errorf("read %q: %w", name, err)
	}
	st.mtime = mtime
	return st, nil
}

// decode is read on the content of file name.
func (r *reader) decode(name string, content []byte, prev *fileState) (*fileState, error) {
	sum := xxhash.Sum64(content)
	if prev != nil && prev.sum == sum {
		return prev, nil
	}
	st := &fileState{sum: sum}
	if prev != nil {
		st.sources, st.path = prev.sources, prev.path
	} else {
		st.path = model.LabelValue(r.in.value(r.in.name([]byte(filepathLabel)), []byte(name)))
	}
	var err error
	switch ext := strings.ToLower(filepath.Ext(name)); ext {
	case ".json":
		err = r.decodeJSON(name, content, prev, st)
	case ".yml", ".yaml":
		err = r.decodeYAML(name, content, prev, st)
	default:
		err = fmt.Errorf("unknown file extension %q (one of: .json, .yml, .yaml)", ext)
	}
	if err != nil {
		return nil, err
	}
	return st, nil
}

// readAll reads the whole file into a buffer of its size, and its mtime.
func readAll(name string) ([]byte, float64, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	buf := bytes.NewBuffer(make([]byte, 0, info.Size()+bytes.MinRead))
	if _, err := buf.ReadFrom(f); err != nil {
		return nil, 0, err
	}
	return buf.Bytes(), float64(info.ModTime().Unix()), nil
}

// decodeJSON fills st from content. An element whose bytes a group of
// prev was decoded from keeps that group (the same pointer at the same
// index); the others are decoded. Whatever the hand-written decoder does not
// take is decoded by encoding/json, as Prometheus does (see decode.go).
func (r *reader) decodeJSON(name string, content []byte, prev *fileState, st *fileState) error {
	spans, err := split(content)
	if err != nil {
		return r.fallback(name, content, st)
	}
	st.groups = make([]*targetgroup.Group, len(spans))
	st.sums = make([]uint64, len(spans))
	st.makeSources(name, len(spans))
	var (
		byHash map[uint64]*targetgroup.Group // prev's groups by bytes, built at the 8th miss
		misses int
	)
	for i, sp := range spans {
		b := content[sp.start:sp.end]
		h := xxhash.Sum64(b)
		st.sums[i] = h
		if prev != nil && i < len(prev.sums) && prev.sums[i] == h {
			st.groups[i] = prev.groups[i]
			continue
		}
		if prev != nil && prev.sums != nil {
			if misses++; misses == 8 {
				byHash = make(map[uint64]*targetgroup.Group, len(prev.sums))
				for j, ph := range prev.sums {
					byHash[ph] = prev.groups[j]
				}
			}
			if pg, ok := byHash[h]; ok { // moved: same content, new Source
				st.groups[i] = &targetgroup.Group{Targets: pg.Targets, Labels: pg.Labels, Source: st.source(name, i)}
				continue
			}
		}
		if string(b) == "null" { // Prometheus rejects the file
			return r.fallback(name, content, st)
		}
		g, err := r.dec.decodeGroup(b)
		if errors.Is(err, errUnusual) {
			g = &targetgroup.Group{}
			err = g.UnmarshalJSON(b)
			if err == nil {
				g.Labels = r.in.labels(g.Labels, 1)
				for j, t := range g.Targets {
					g.Targets[j] = r.in.labels(t, 0)
				}
			}
		}
		if err != nil { // Prometheus rejects the file: take its error
			return r.fallback(name, content, st)
		}
		if g.Labels == nil {
			g.Labels = make(model.LabelSet, 1)
		}
		g.Labels[filepathLabel] = st.path
		g.Source = st.source(name, i)
		st.groups[i] = g
	}
	return nil
}

// fallback decodes content with encoding/json, as Prometheus does, for its
// groups or its error.
func (r *reader) fallback(name string, content []byte, st *fileState) error {
	groups, err := decodeAll(content)
	if err != nil {
		return err
	}
	st.sums = nil
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
func (r *reader) decodeYAML(name string, content []byte, prev *fileState, st *fileState) error {
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
// it, made once per index.
func (st *fileState) source(name string, i int) string {
	st.makeSources(name, i+1)
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
