package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// input is a file_sd JSON file of n targets, one group per target, each
// with 12 labels shaped like consul_sd's: the address in three of them and
// an ID unique to the target, the others shared by many targets. The last
// label, bench_change, is the change marker: "----------" until a change k
// sets it to "chg-" and k in six digits. A change only rewrites bytes in
// place (a port, a health value, a marker, each of fixed width), so that
// making one costs a write of the file, not its rendering.
type input struct {
	path string
	b    []byte
	// byte offsets in b of each target's port in "targets", its health
	// value and its marker value
	port, health, mark []int
}

const (
	markerUnset = "----------"
	markerWidth = len(markerUnset)
)

// marker is change k's marker value.
func marker(k int) string { return fmt.Sprintf("chg-%06d", k) }

// markerPrefix starts every set marker in a file, quoted.
const markerPrefix = `"chg-`

func newInput(path string, n int) *input {
	in := &input{path: path, b: make([]byte, 0, n*470), port: make([]int, n), health: make([]int, n), mark: make([]int, n)}
	b := append(in.b, '[')
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		addr := fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
		svc := i / 50
		b = fmt.Appendf(b, `{"targets":["%s:`, addr)
		in.port[i] = len(b)
		b = fmt.Appendf(b, `8080"],"labels":{"__meta_consul_address":"%s","__meta_consul_dc":"dc1","__meta_consul_health":"`, addr)
		in.health[i] = len(b)
		b = fmt.Appendf(b, `passing","__meta_consul_metadata_rack":"r%d","__meta_consul_node":"node-%d",`+
			`"__meta_consul_service":"svc-%d","__meta_consul_service_address":"%s","__meta_consul_service_id":"svc-%d-%d",`+
			`"__meta_consul_service_metadata_owner":"team-%d","__meta_consul_service_port":"8080","__meta_consul_tags":",prod,http,",`+
			`"bench_change":"`, i%7, i%97, svc, addr, svc, i, svc%10)
		in.mark[i] = len(b)
		b = append(b, markerUnset+`"}}`...)
	}
	in.b = append(b, "]\n"...)
	return in
}

// setLabels is change k of target i's labels: its health and its marker.
func (in *input) setLabels(i, k int) {
	health := "warning"
	if string(in.b[in.health[i]:in.health[i]+7]) == health {
		health = "passing"
	}
	copy(in.b[in.health[i]:], health)
	in.setMarker(i, k)
}

// setTarget is change k of target i's address: its port, 8080 or 9090 in
// turn, and its marker.
func (in *input) setTarget(i, k int) {
	in.togglePort(i)
	in.setMarker(i, k)
}

// setAll is change k of every target: every port, and target 0's marker.
func (in *input) setAll(k int) {
	for i := range in.port {
		in.togglePort(i)
	}
	in.setMarker(0, k)
}

func (in *input) togglePort(i int) {
	port := "9090"
	if string(in.b[in.port[i]:in.port[i]+4]) == port {
		port = "8080"
	}
	copy(in.b[in.port[i]:], port)
}

func (in *input) setMarker(i, k int) { copy(in.b[in.mark[i]:], marker(k)) }

// write replaces the file atomically, as a well-behaved writer of file_sd
// input does: a temp file that matches no glob, then a rename. It returns
// the time of the rename: when the change is made.
func (in *input) write() (int64, error) {
	tmp := filepath.Join(filepath.Dir(in.path), "."+filepath.Base(in.path)+".tmp")
	if err := os.WriteFile(tmp, in.b, 0o644); err != nil {
		return 0, err
	}
	at := now()
	if err := os.Rename(tmp, in.path); err != nil {
		return 0, err
	}
	return at, nil
}

// markers calls seen with every marker set in b, a file holding inputs'
// labels (sdhub's output, or an input).
func markers(b []byte, seen func(k int)) {
	for i := 0; ; {
		j := indexFrom(b, i, markerPrefix)
		if j < 0 {
			return
		}
		start := j + 1 + len("chg-")
		end := start + markerWidth - len("chg-")
		if end <= len(b) {
			if k, err := strconv.Atoi(string(b[start:end])); err == nil {
				seen(k)
			}
		}
		i = j + 1
	}
}

// setUp writes an input of n targets as dir/in/name and starts a side on
// it; the input is returned once made, even if what follows failed.
func setUp(dir, name string, n int, start func(input string) (*side, error)) (*input, *side, error) {
	if err := os.MkdirAll(filepath.Join(dir, "in"), 0o755); err != nil {
		return nil, nil, err
	}
	in := newInput(filepath.Join(dir, "in", name), n)
	if _, err := in.write(); err != nil {
		return in, nil, err
	}
	s, err := start(in.path)
	return in, s, err
}

// keepFirst sets *err to f's error unless *err holds one already: a
// result keeps its first failure.
func keepFirst(err *error, f func() error) {
	if e := f(); e != nil && *err == nil {
		*err = e
	}
}
