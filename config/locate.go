package config

import (
	"reflect"
	"strings"

	"github.com/prometheus/common/promslog"
	promconfig "github.com/prometheus/prometheus/config"
	promdiscovery "github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	yamlv2 "go.yaml.in/yaml/v2"
	"gopkg.in/yaml.v3"

	"github.com/sdhub/sdhub/discovery/promsd"
)

// Prometheus's decoder gives a line only to its own type errors; the errors
// of the config types' validation (a bad regex, an unknown relabel action, a
// bad duration, a timeout longer than the interval) carry none. locate finds
// the line: the file's sections and list items are loaded one at a time, in
// context (with the global section), to find the one that fails; within
// it, the values are decoded one at a time into the Go types Prometheus's
// config gives them, down to the deepest one that fails. A piece that fails
// with the very message of the whole file is preferred over one that fails
// otherwise.

// locateInFile returns the line of the part of the file that fails with
// msg, or 0.
func (v *promView) locateInFile(msg string) int {
	if v.root == nil {
		return 0
	}
	global, hasGlobal := mapValue(v.root, "global")
	load := func(key string, val *yaml.Node) error {
		m := &yaml.Node{Kind: yaml.MappingNode}
		if hasGlobal && key != "global" {
			m.Content = append(m.Content, str("global"), global)
		}
		m.Content = append(m.Content, str(key), val)
		text, err := encode(m)
		if err != nil {
			return err
		}
		_, err = promconfig.Load(string(text), promslog.NewNopLogger())
		return err
	}
	top := reflect.TypeFor[promconfig.Config]()
	var cands []candidate
	for i := 0; i+1 < len(v.root.Content); i += 2 {
		key, val := v.root.Content[i].Value, v.root.Content[i+1]
		t, ok := fieldType(top, key)
		if !ok {
			continue
		}
		if deref(t).Kind() == reflect.Slice && val.Kind == yaml.SequenceNode {
			for _, item := range val.Content {
				if err := load(key, &yaml.Node{Kind: yaml.SequenceNode, Content: []*yaml.Node{item}}); err != nil {
					cands = append(cands, candidate{item, deref(t).Elem(), err})
				}
			}
			continue
		}
		if err := load(key, val); err != nil {
			c := candidate{val, t, err}
			if key == "global" {
				cands = append([]candidate{c}, cands...) // every other piece is loaded with it
				continue
			}
			cands = append(cands, c)
		}
	}
	if n := pick(cands, msg); n != nil {
		return n.Line
	}
	return 0
}

// locateInScrapeFile returns the line of the scrape config of a
// scrape_config_files file that fails with msg, or 0.
func (v *promView) locateInScrapeFile(global promconfig.GlobalConfig, msg string) int {
	if v.root == nil {
		return 0
	}
	jobs, ok := mapValue(v.root, "scrape_configs")
	if !ok || jobs.Kind != yaml.SequenceNode {
		return 0
	}
	t := reflect.TypeFor[*promconfig.ScrapeConfig]()
	var cands []candidate
	for _, item := range jobs.Content {
		err := decodeAs(item, t)
		if err == nil {
			var sc promconfig.ScrapeConfig
			if err = decodeInto(item, &sc); err == nil {
				err = sc.Validate(global)
			}
		}
		if err != nil {
			cands = append(cands, candidate{item, t, err})
		}
	}
	if n := pick(cands, msg); n != nil {
		return n.Line
	}
	return 0
}

// candidate is a part of the file that fails on its own.
type candidate struct {
	n   *yaml.Node
	t   reflect.Type
	err error
}

// pick descends into the candidate that fails with msg, or else the first.
func pick(cands []candidate, msg string) *yaml.Node {
	if len(cands) == 0 {
		return nil
	}
	c := cands[0]
	for _, x := range cands {
		if x.err.Error() == msg {
			c = x
			break
		}
	}
	return descend(c.n, c.t, msg)
}

// descend returns the deepest node under n, a value of Go type t, whose
// decoding fails: n itself when every part of it decodes.
func descend(n *yaml.Node, t reflect.Type, msg string) *yaml.Node {
	var cands []candidate
	for _, c := range children(n, t) {
		if err := decodeAs(c.n, c.t); err != nil {
			cands = append(cands, candidate{c.n, c.t, err})
		}
	}
	if d := pick(cands, msg); d != nil {
		return d
	}
	return named(n, msg)
}

// named returns the value in mapping n that msg quotes, as a check of the
// whole mapping names the value it rejects ("unknown Kubernetes SD role
// \"pods\""), or n when msg quotes none or several.
func named(n *yaml.Node, msg string) *yaml.Node {
	if n.Kind != yaml.MappingNode {
		return n
	}
	var found *yaml.Node
	for i := 1; i < len(n.Content); i += 2 {
		v := n.Content[i]
		if v.Kind != yaml.ScalarNode || len(v.Value) < 2 || !containsWord(msg, v.Value) {
			continue
		}
		if found != nil {
			return n
		}
		found = v
	}
	if found == nil {
		return n
	}
	return found
}

// containsWord reports whether w occurs in s with no letter, digit or
// underscore right before or after it.
func containsWord(s, w string) bool {
	word := func(b byte) bool {
		return b == '_' || '0' <= b && b <= '9' || 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z'
	}
	for i := 0; ; {
		j := strings.Index(s[i:], w)
		if j < 0 {
			return false
		}
		j += i
		end := j + len(w)
		if (j == 0 || !word(s[j-1])) && (end == len(s) || !word(s[end])) {
			return true
		}
		i = j + 1
	}
}

// children are the values within n and their Go types: the fields of a
// struct, the items of a list, the values of a map.
func children(n *yaml.Node, t reflect.Type) []candidate {
	t = deref(t)
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	var out []candidate
	switch {
	case t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if ft, ok := fieldType(t, n.Content[i].Value); ok {
				out = append(out, candidate{n: n.Content[i+1], t: ft})
			}
		}
	case t.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode:
		for _, c := range n.Content {
			out = append(out, candidate{n: c, t: t.Elem()})
		}
	case t.Kind() == reflect.Map && n.Kind == yaml.MappingNode:
		for i := 1; i < len(n.Content); i += 2 {
			out = append(out, candidate{n: n.Content[i], t: t.Elem()})
		}
	}
	return out
}

var configsType = reflect.TypeFor[promdiscovery.Configs]()

// fieldType is the Go type of the value of key in struct t, as
// go.yaml.in/yaml/v2 maps it: yaml tags, inlined structs, and for structs
// with inlined SD configs (scrape and Alertmanager configs) the
// `<name>_sd_configs` and static_configs keys of Prometheus's registry.
func fieldType(t reflect.Type, key string) (reflect.Type, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Type == configsType {
			if key == "static_configs" {
				return reflect.TypeFor[[]*targetgroup.Group](), true
			}
			if name, ok := strings.CutSuffix(key, "_sd_configs"); ok {
				if et, ok := promsd.Registered()[name]; ok {
					return reflect.SliceOf(et), true
				}
			}
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") {
			if ft := deref(f.Type); ft.Kind() == reflect.Struct {
				if r, ok := fieldType(ft, key); ok {
					return r, true
				}
			}
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		if name == key {
			return f.Type, true
		}
	}
	return nil, false
}

func deref(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

// decodeAs decodes n strictly, as Prometheus's loader would, into a new
// value of type t.
func decodeAs(n *yaml.Node, t reflect.Type) error {
	return decodeInto(n, reflect.New(t).Interface())
}

func decodeInto(n *yaml.Node, out any) error {
	text, err := encode(n)
	if err != nil {
		return err
	}
	return yamlv2.UnmarshalStrict(text, out)
}
