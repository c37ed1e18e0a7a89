package config

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/common/promslog"
	promconfig "github.com/prometheus/prometheus/config"
	yamlv2 "go.yaml.in/yaml/v2"
	"gopkg.in/yaml.v3"
)

// The whole file is validated by Prometheus's own config package, as
// Prometheus and promtool validate it: every section, every relabel rule,
// every duration, every SD block. What Prometheus's loader cannot know is
// taken out of its view of the file first: sdhub's own keys in the native
// mechanisms' blocks (extensions), the keys of Prometheus 2.x that 3.x
// renamed (legacyScrapeKeys) and the blocks of mechanisms this build leaves
// out (leftOutKeys). Its errors keep Prometheus's text, with the file and
// the line in front: the line Prometheus's YAML decoder names, or else the
// line of the deepest part of the file that fails on its own (locate.go).

// promView is a config file as Prometheus's loader reads it.
type promView struct {
	filename string
	root     *yaml.Node  // the file's top mapping, sdhub's own keys removed; lines are the file's
	text     []byte      // what Prometheus's loader reads
	lines    map[int]int // line of text -> line of the file; nil when text is the file
}

// newPromView parses data, the content of filename, for Prometheus's
// loader. root is nil for an empty file.
func newPromView(data []byte, filename string) (*promView, error) {
	v := &promView{filename: filename, text: data}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fileError(filename, err) // sdhub's own pass has read the file already: not seen in practice
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return v, nil
	}
	v.root = doc.Content[0]
	if !stripForPrometheus(v.root) {
		return v, nil
	}
	text, err := yaml.Marshal(&doc)
	if err != nil {
		return nil, fileError(filename, err)
	}
	var again yaml.Node
	if err := yaml.Unmarshal(text, &again); err != nil {
		return nil, fileError(filename, err)
	}
	v.text = text
	v.lines = map[int]int{}
	mapLines(again.Content[0], v.root, v.lines)
	return v, nil
}

// stripForPrometheus removes from root what Prometheus's loader would
// reject but sdhub accepts, and reports whether it removed anything.
func stripForPrometheus(root *yaml.Node) bool {
	stripped := false
	drop := func(m *yaml.Node, keep func(k string) bool) {
		if m.Kind != yaml.MappingNode {
			return
		}
		var content []*yaml.Node
		for i := 0; i+1 < len(m.Content); i += 2 {
			if keep(m.Content[i].Value) {
				content = append(content, m.Content[i], m.Content[i+1])
			} else {
				stripped = true
			}
		}
		m.Content = content
	}
	leftOut := leftOutKeys()
	known := func(k string) bool { return !slices.Contains(leftOut, k) }
	if jobs, ok := mapValue(root, "scrape_configs"); ok && jobs.Kind == yaml.SequenceNode {
		for _, job := range jobs.Content {
			drop(job, func(k string) bool { return known(k) && !slices.Contains(legacyScrapeKeys, k) })
			if job.Kind != yaml.MappingNode {
				continue
			}
			for key, ext := range extensions {
				list, ok := mapValue(job, key)
				if !ok || list.Kind != yaml.SequenceNode {
					continue
				}
				for _, item := range list.Content {
					drop(item, func(k string) bool { return !slices.Contains(ext, k) })
				}
			}
		}
	}
	if alerting, ok := mapValue(root, "alerting"); ok {
		if ams, ok := mapValue(alerting, "alertmanagers"); ok && ams.Kind == yaml.SequenceNode {
			for _, am := range ams.Content {
				drop(am, known)
			}
		}
	}
	return stripped
}

// mapLines walks two trees of the same shape and maps each line of the
// first to the line of the second.
func mapLines(a, b *yaml.Node, lines map[int]int) {
	if _, ok := lines[a.Line]; !ok {
		lines[a.Line] = b.Line
	}
	if len(a.Content) != len(b.Content) {
		return
	}
	for i := range a.Content {
		mapLines(a.Content[i], b.Content[i], lines)
	}
}

// fileLine is the file's line of line n of the text Prometheus read.
func (v *promView) fileLine(n int) int {
	if v.lines == nil {
		return n
	}
	for ; n > 0; n-- {
		if l, ok := v.lines[n]; ok {
			return l
		}
	}
	return 0
}

// load runs Prometheus's loader on the file.
func (v *promView) load() (*promconfig.Config, error) {
	cfg, err := promconfig.Load(string(v.text), promslog.NewNopLogger())
	if err != nil {
		return nil, v.error(err, v.locateInFile)
	}
	return cfg, nil
}

// loadScrapeFile reads a scrape_config_files file as Prometheus does: its
// scrape configs decoded strictly, then validated against the main file's
// global section.
func (v *promView) loadScrapeFile(global promconfig.GlobalConfig) ([]*promconfig.ScrapeConfig, error) {
	var sc promconfig.ScrapeConfigs
	if err := yamlv2.UnmarshalStrict(v.text, &sc); err != nil {
		return nil, v.error(err, func(msg string) int { return v.locateInScrapeFile(global, msg) })
	}
	for i, s := range sc.ScrapeConfigs {
		if err := s.Validate(global); err != nil {
			return nil, v.error(err, func(string) int { return v.itemLine("scrape_configs", i) })
		}
	}
	return sc.ScrapeConfigs, nil
}

// v2Line matches the "line N: " of go.yaml.in/yaml/v2's messages.
var v2Line = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// error gives a Prometheus loader error the file and line: the lines yaml
// names in a type error (one per problem, as Prometheus lists them), or
// else the line locate finds.
func (v *promView) error(err error, locate func(msg string) int) error {
	var te *yamlv2.TypeError
	if errors.As(err, &te) {
		msgs := make([]string, 0, len(te.Errors))
		for _, e := range te.Errors {
			msgs = append(msgs, v.at(e))
		}
		return &Error{Msg: strings.Join(msgs, "\n"), Err: err}
	}
	if m := v2Line.FindStringSubmatch(err.Error()); m != nil {
		return &Error{Msg: v.at(err.Error()), Err: err}
	}
	if line := locate(err.Error()); line > 0 {
		return &Error{Msg: fmt.Sprintf("%s:%d: %s", v.filename, line, err), Err: err}
	}
	return &Error{Msg: fmt.Sprintf("%s: %s", v.filename, err), Err: err}
}

// at places a yaml message "line N: msg" at the file's line.
func (v *promView) at(msg string) string {
	m := v2Line.FindStringSubmatch(msg)
	if m == nil {
		return fmt.Sprintf("%s: %s", v.filename, strings.TrimPrefix(msg, "yaml: "))
	}
	n, _ := strconv.Atoi(m[1])
	if l := v.fileLine(n); l > 0 {
		return fmt.Sprintf("%s:%d: %s", v.filename, l, m[2])
	}
	return fmt.Sprintf("%s: %s", v.filename, m[2])
}

// itemLine is the line of the i-th item of the sequence under key.
func (v *promView) itemLine(key string, i int) int {
	if v.root == nil {
		return 0
	}
	return itemLine(v.root, key, i)
}

func str(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s} }

// encode is n as YAML text.
func encode(n *yaml.Node) ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	if err := enc.Encode(n); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
