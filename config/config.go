// Package config loads sdhub's configuration: a prometheus.yml. The whole
// file is validated by Prometheus's own config package, as Prometheus and
// promtool validate it (prometheus.go), with file and line in every error.
// The service-discovery blocks of the mechanisms sdhub implements itself
// (Native) are decoded strictly into sdhub's types, with Prometheus's
// defaults and validation; those of every other mechanism are Prometheus's
// own config values, run by Prometheus's discoverers (discovery/promsd).
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"

	"github.com/prometheus/common/model"
	promconfig "github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/model/relabel"
	"gopkg.in/yaml.v3"

	"github.com/sdhub/sdhub/discovery"
	"github.com/sdhub/sdhub/discovery/promsd"
	"github.com/sdhub/sdhub/discovery/static"
)

// Config is a loaded configuration.
type Config struct {
	// ScrapeConfigs are the jobs sdhub serves: those with at least one
	// mechanism sdhub runs, in file order.
	ScrapeConfigs []*ScrapeConfig
	// Skipped are the other jobs of the file, left to Prometheus: their
	// Unsupported mechanisms (a build that leaves them out), or none at all.
	Skipped []*ScrapeConfig
	// Warnings name the jobs and mechanisms left to Prometheus, job names
	// whose output files are one file where case is ignored, and what the
	// mechanisms find in their configs taken together
	// (discovery.Mechanism.Warnings).
	Warnings []string
	// Filename is the file the config was loaded from.
	Filename string
}

// ScrapeConfig is the part of one scrape config that sdhub uses.
type ScrapeConfig struct {
	JobName                 string
	ServiceDiscoveryConfigs discovery.Configs
	// Unsupported lists the `*_sd_configs` keys of the job that sdhub leaves
	// to Prometheus: mechanisms this build leaves out.
	Unsupported []string
	// Prometheus is the job as Prometheus's config package loaded it: the
	// global section's defaults applied, relative paths resolved against
	// its file's directory. Read it, do not change it.
	Prometheus *promconfig.ScrapeConfig
}

// RelabelConfigs are the job's relabel_configs, parsed and validated by
// Prometheus: what the consuming Prometheus applies to the job's targets.
func (sc *ScrapeConfig) RelabelConfigs() []*relabel.Config {
	if sc.Prometheus == nil {
		return nil
	}
	return sc.Prometheus.RelabelConfigs
}

// Splittable maps each job's name to whether it has a mechanism other than
// static_configs: a job whose output can grow with a catalog, and be
// written in parts (output.Layout).
func (c *Config) Splittable() map[string]bool {
	out := make(map[string]bool, len(c.ScrapeConfigs))
	for _, sc := range c.ScrapeConfigs {
		out[sc.JobName] = false
		for _, d := range sc.ServiceDiscoveryConfigs {
			if d.Name() != "static" {
				out[sc.JobName] = true
			}
		}
	}
	return out
}

// Jobs maps each job name to its SD configs, the input of the manager.
func (c *Config) Jobs() map[string]discovery.Configs {
	jobs := make(map[string]discovery.Configs, len(c.ScrapeConfigs))
	for _, sc := range c.ScrapeConfigs {
		jobs[sc.JobName] = sc.ServiceDiscoveryConfigs
	}
	return jobs
}

// topLevelKeys are the top-level keys of prometheus.yml that sdhub's own
// pass leaves to Prometheus's loader; scrape_configs and
// scrape_config_files are read.
var topLevelKeys = []string{
	"global", "runtime", "alerting", "rule_files", "storage", "tracing", "remote_write", "remote_read", "otlp",
}

// scrapeKeys are the keys of a Prometheus scrape config that do not concern
// discovery, including the inlined HTTP client settings; legacyScrapeKeys
// are accepted too.
var scrapeKeys = []string{
	"honor_labels", "honor_timestamps", "track_timestamps_staleness", "params", "scrape_interval",
	"scrape_timeout", "scrape_protocols", "fallback_scrape_protocol", "scrape_native_histograms",
	"always_scrape_classic_histograms", "convert_classic_histograms_to_nhcb", "scrape_failure_log_file",
	"metrics_path", "scheme", "enable_compression", "body_size_limit", "sample_limit", "target_limit",
	"label_limit", "label_name_length_limit", "label_value_length_limit", "native_histogram_bucket_limit",
	"native_histogram_min_bucket_factor", "keep_dropped_targets", "metric_name_validation_scheme",
	"metric_name_escaping_scheme", "extra_scrape_metrics", "relabel_configs", "metric_relabel_configs",
	// HTTP client settings, inlined.
	"basic_auth", "authorization", "oauth2", "bearer_token", "bearer_token_file", "tls_config",
	"follow_redirects", "enable_http2", "http_headers", "proxy_url", "no_proxy", "proxy_from_environment",
	"proxy_connect_header",
}

// legacyScrapeKeys are the scrape config keys of Prometheus 2.x that 3.x
// renamed (scrape_classic_histograms, 2.45 to 2.55, is 3.x's
// always_scrape_classic_histograms), so that a 2.x prometheus.yml loads.
var legacyScrapeKeys = []string{"scrape_classic_histograms"}

// LoadFile reads and parses the config file at filename.
func LoadFile(filename string) (*Config, error) {
	data, err := os.ReadFile(filename)
	if err != nil {
		return nil, err
	}
	return Load(data, filename)
}

// Load parses data, the content of filename. Relative paths resolve against
// filename's directory. Errors name the file and line.
func Load(data []byte, filename string) (*Config, error) {
	dir := filepath.Dir(filename)
	top, err := decodeFile(data, filename, topLevelSchema)
	if err != nil {
		return nil, err
	}
	raw := top.scrapeConfigs(filename)
	type scrapeFile struct {
		name string
		data []byte
		raw  []rawScrapeConfig
	}
	var files []scrapeFile
	for _, pattern := range top.scrapeConfigFiles {
		if !filepath.IsAbs(pattern) {
			pattern = filepath.Join(dir, pattern)
		}
		names, err := filepath.Glob(pattern)
		if err != nil {
			return nil, fmt.Errorf("%s: invalid scrape_config_files pattern %q: %w", filename, pattern, err)
		}
		for _, f := range names {
			data, err := os.ReadFile(f)
			if err != nil {
				return nil, err
			}
			sub, err := decodeFile(data, f, scrapeFileSchema)
			if err != nil {
				return nil, err
			}
			files = append(files, scrapeFile{name: f, data: data, raw: sub.scrapeConfigs(f)})
		}
	}
	all := slices.Clone(raw)
	for _, f := range files {
		all = append(all, f.raw...)
	}
	if err := checkJobNames(all); err != nil {
		return nil, err
	}

	// Prometheus's own validation of each file, and its view of each job.
	view, err := newPromView(data, filename)
	if err != nil {
		return nil, err
	}
	prom, err := view.load()
	if err != nil {
		return nil, err
	}
	attach(raw, prom.ScrapeConfigs, dir)
	for _, f := range files {
		view, err := newPromView(f.data, f.name)
		if err != nil {
			return nil, err
		}
		scs, err := view.loadScrapeFile(prom.GlobalConfig)
		if err != nil {
			return nil, err
		}
		attach(f.raw, scs, filepath.Dir(f.name))
	}

	cfg := &Config{Filename: filename}
	cfg.build(all)
	return cfg, nil
}

// attach gives each job of raw its scrape config as Prometheus loaded it
// (from scs), with relative paths resolved against dir, and the SD configs
// sdhub runs with Prometheus's code.
func attach(raw []rawScrapeConfig, scs []*promconfig.ScrapeConfig, dir string) {
	byName := make(map[string]*promconfig.ScrapeConfig, len(scs))
	for _, sc := range scs {
		byName[sc.JobName] = sc
	}
	for _, r := range raw {
		psc := byName[r.sc.JobName]
		if psc == nil {
			continue // not seen in practice: both loaders read the same jobs
		}
		psc.SetDirectory(dir)
		r.sc.Prometheus = psc
		var adapted discovery.Configs
		for _, c := range psc.ServiceDiscoveryConfigs {
			if name := c.Name(); name != "static" && !isNative(name) && served(name) {
				adapted = append(adapted, promsd.Wrap(c))
			}
		}
		if len(adapted) == 0 {
			continue
		}
		// Before the static config, which stays last as in Prometheus.
		cs := r.sc.ServiceDiscoveryConfigs
		at := len(cs)
		if at > 0 {
			if _, ok := cs[at-1].(static.SDConfig); ok {
				at--
			}
		}
		r.sc.ServiceDiscoveryConfigs = slices.Insert(cs, at, adapted...)
	}
}

// rawScrapeConfig is one decoded scrape config and where it came from.
type rawScrapeConfig struct {
	sc       *ScrapeConfig
	filename string
	line     int
}

// checkJobNames rejects a job name used twice, as Prometheus does.
func checkJobNames(raw []rawScrapeConfig) error {
	seen := map[string]rawScrapeConfig{}
	for _, r := range raw {
		name := r.sc.JobName
		if prev, ok := seen[name]; ok {
			return fmt.Errorf("%s:%d: found multiple scrape configs with job name %q (first at %s:%d)",
				r.filename, r.line, name, prev.filename, prev.line)
		}
		seen[name] = r
	}
	return nil
}

// build keeps the jobs sdhub serves and gathers the warnings.
func (c *Config) build(raw []rawScrapeConfig) {
	folded := map[string]rawScrapeConfig{}
	for _, r := range raw {
		name := r.sc.JobName
		if len(r.sc.Unsupported) > 0 {
			c.Warnings = append(c.Warnings, fmt.Sprintf("job %q: %s left to Prometheus (this build of sdhub leaves %s out)",
				name, strings.Join(r.sc.Unsupported, ", "), plural(len(r.sc.Unsupported), "it", "them")))
		}
		if len(r.sc.ServiceDiscoveryConfigs) == 0 {
			if len(r.sc.Unsupported) == 0 {
				c.Warnings = append(c.Warnings, fmt.Sprintf("job %q: no service discovery configs, skipped", name))
			}
			c.Skipped = append(c.Skipped, r.sc)
			continue
		}
		// Prometheus accepts job names that differ only in case; their
		// output files are one file where case is ignored (see CheckOutputDir).
		key := strings.ToLower(name)
		if prev, ok := folded[key]; ok {
			c.Warnings = append(c.Warnings, fmt.Sprintf("jobs %q (%s:%d) and %q (%s:%d) differ only in case: their output files are one file on a file system that ignores case, where sdhub refuses to start",
				prev.sc.JobName, prev.filename, prev.line, name, r.filename, r.line))
		} else {
			folded[key] = r
		}
		c.ScrapeConfigs = append(c.ScrapeConfigs, r.sc)
		c.Warnings = append(c.Warnings, consumerLabelWarnings(r)...)
	}
	for _, m := range Mechanisms {
		if m.Warnings == nil {
			continue
		}
		var configs []discovery.Config
		for _, sc := range c.ScrapeConfigs {
			for _, d := range sc.ServiceDiscoveryConfigs {
				if d.Name() == m.Name {
					configs = append(configs, d)
				}
			}
		}
		c.Warnings = append(c.Warnings, m.Warnings(configs)...)
	}
}

// consumerLabels are the labels that the consuming Prometheus sets itself
// on what it reads from sdhub: file_sd's __meta_filepath is sdhub's output
// file and http_sd's __meta_url sdhub's endpoint, where native SD gives the
// source's. sdhub's output carries the source's values under its own names
// (output.FilepathLabel, output.URLLabel).
var consumerLabels = []model.LabelName{"__meta_filepath", "__meta_url"}

// consumerLabelWarnings names each relabel rule of r's job that reads a
// consumer label: without the rules `sdhub generate prometheus-config`
// puts first in the consuming job, such a rule means something else there.
func consumerLabelWarnings(r rawScrapeConfig) []string {
	var warnings []string
	for i, rc := range r.sc.RelabelConfigs() {
		var read []string
		for _, l := range consumerLabels {
			reads := slices.Contains(rc.SourceLabels, l)
			switch rc.Action {
			case relabel.LabelMap, relabel.LabelDrop, relabel.LabelKeep:
				reads = reads || rc.Regex.MatchString(string(l))
			}
			if reads {
				read = append(read, string(l))
			}
		}
		if len(read) > 0 {
			warnings = append(warnings, fmt.Sprintf("job %q (%s:%d): relabel_configs[%d] (action %s) reads %s, which the consuming Prometheus sets itself: keep the relabel rules `sdhub generate prometheus-config` puts first in the consuming job, which give the rule the value native service discovery gives",
				r.sc.JobName, r.filename, r.line, i, rc.Action, strings.Join(read, " and ")))
		}
	}
	return warnings
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// ValidateJobName reports whether Prometheus accepts name as a job name:
// any name but the empty one. Every such name is also an output file name:
// output.Path escapes the bytes a file name cannot hold.
func ValidateJobName(name string) error {
	if name == "" {
		return errors.New("job_name is empty")
	}
	return nil
}

// schema is the set of keys a YAML mapping may hold.
type schema struct {
	what    string // for error text: "top level", "scrape config"
	read    []string
	ignored []string
}

var (
	topLevelSchema   = schema{what: "the top level", read: []string{"scrape_configs", "scrape_config_files"}, ignored: topLevelKeys}
	scrapeFileSchema = schema{what: "a scrape config file", read: []string{"scrape_configs"}}
)

// parsedFile is a decoded config file's parts that sdhub reads.
type parsedFile struct {
	scrape            []*scrapeNode
	scrapeConfigFiles []string
}

func (f *parsedFile) scrapeConfigs(filename string) []rawScrapeConfig {
	dir := filepath.Dir(filename)
	out := make([]rawScrapeConfig, 0, len(f.scrape))
	for _, s := range f.scrape {
		for _, c := range s.sc.ServiceDiscoveryConfigs {
			if d, ok := c.(interface{ SetDirectory(string) }); ok {
				d.SetDirectory(dir)
			}
		}
		out = append(out, rawScrapeConfig{sc: s.sc, filename: filename, line: s.line})
	}
	return out
}

// decodeFile decodes one YAML file strictly against s.
func decodeFile(data []byte, filename string, s schema) (*parsedFile, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return &parsedFile{}, nil // an empty file is an empty config, as in Prometheus
		}
		return nil, fileError(filename, err)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return &parsedFile{}, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, fileError(filename, &discovery.LineError{Line: root.Line, Err: fmt.Errorf("%s must be a mapping", s.what)})
	}
	if err := checkKeys(root, s.what, s.read, s.ignored); err != nil {
		return nil, fileError(filename, err)
	}
	out := &parsedFile{}
	type top struct {
		ScrapeConfigs     []*scrapeNode `yaml:"scrape_configs"`
		ScrapeConfigFiles []string      `yaml:"scrape_config_files"`
	}
	var t top
	// Re-decode from the bytes with a strict decoder: yaml.v3 applies
	// KnownFields only to a Decoder, not to Node.Decode.
	strict := yaml.NewDecoder(bytes.NewReader(data))
	strict.KnownFields(true)
	if err := strict.Decode(&struct {
		*top `yaml:",inline"`
		Rest map[string]yaml.Node `yaml:",inline"`
	}{top: &t}); err != nil {
		return nil, fileError(filename, err)
	}
	for i, sc := range t.ScrapeConfigs {
		if sc == nil {
			return nil, fileError(filename, &discovery.LineError{Line: itemLine(root, "scrape_configs", i), Err: errors.New("empty or null scrape config section")})
		}
	}
	out.scrape = t.ScrapeConfigs
	out.scrapeConfigFiles = t.ScrapeConfigFiles
	return out, nil
}

// checkKeys rejects keys of mapping n outside read and ignored.
func checkKeys(n *yaml.Node, what string, read, ignored []string) error {
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if !slices.Contains(read, k.Value) && !slices.Contains(ignored, k.Value) {
			return &discovery.LineError{Line: k.Line, Err: fmt.Errorf("unknown field %q in %s", k.Value, what)}
		}
	}
	return nil
}

// itemLine is the line of the i-th item of the sequence under key in mapping n.
func itemLine(n *yaml.Node, key string, i int) int {
	for j := 0; j+1 < len(n.Content); j += 2 {
		if n.Content[j].Value == key {
			seq := n.Content[j+1]
			if seq.Kind == yaml.SequenceNode && i < len(seq.Content) {
				return seq.Content[i].Line
			}
			return n.Content[j].Line
		}
	}
	return n.Line
}

// scrapeNode decodes one scrape config.
type scrapeNode struct {
	sc   *ScrapeConfig
	line int
}

// UnmarshalYAML decodes a scrape config: job_name, static_configs and the
// native mechanisms' `*_sd_configs` strictly; the other keys are left to
// Prometheus's loader, which reads the whole file after this pass.
func (s *scrapeNode) UnmarshalYAML(unmarshal func(any) error) error {
	var node nodeCapture
	if err := unmarshal(&node); err != nil {
		return err
	}
	n := node.n
	s.line = n.Line
	if n.Kind != yaml.MappingNode {
		return &discovery.LineError{Line: n.Line, Err: errors.New("a scrape config must be a mapping")}
	}
	// sdhub decodes the native mechanisms' blocks; Prometheus's loader
	// decodes every other mechanism's (attach) and validates everything.
	read := []string{"job_name", "static_configs"}
	for _, m := range Native {
		read = append(read, m.Key())
	}
	ignored := append(slices.Clip(scrapeKeys), legacyScrapeKeys...)
	for _, m := range Mechanisms[len(Native):] {
		ignored = append(ignored, m.Key())
	}
	unsupported := leftOutKeys()
	if err := checkKeys(n, "scrape config", read, append(ignored, unsupported...)); err != nil {
		return err
	}

	// A struct with one field per mechanism, so that yaml.v3 decodes each
	// element into the mechanism's own type, strictly.
	fields := []reflect.StructField{
		{Name: "JobName", Type: reflect.TypeFor[string](), Tag: `yaml:"job_name"`},
		{Name: "StaticConfigs", Type: reflect.TypeFor[[]*targetgroup.Group](), Tag: `yaml:"static_configs"`},
		{Name: "Rest", Type: reflect.TypeFor[map[string]yaml.Node](), Tag: `yaml:",inline"`},
	}
	for i, m := range Native {
		fields = append(fields, reflect.StructField{
			Name: fmt.Sprintf("M%d", i),
			Type: reflect.SliceOf(reflect.TypeOf(m.NewConfig())),
			Tag:  reflect.StructTag(fmt.Sprintf(`yaml:%q`, m.Key())),
		})
	}
	v := reflect.New(reflect.StructOf(fields))
	if err := unmarshal(v.Interface()); err != nil {
		return err
	}
	e := v.Elem()
	sc := &ScrapeConfig{JobName: e.Field(0).String()}
	if err := ValidateJobName(sc.JobName); err != nil {
		return &discovery.LineError{Line: discovery.KeyLine(n, "job_name"), Err: err}
	}
	groups := e.Field(1).Interface().([]*targetgroup.Group)
	_, hasRelabel := mapValue(n, "relabel_configs")
	for i, g := range groups {
		if g == nil {
			return &discovery.LineError{Line: itemLine(n, "static_configs", i), Err: errors.New("empty or null section in static_configs")}
		}
		if hasRelabel {
			continue
		}
		for _, t := range g.Targets {
			if addr := t["__address__"]; strings.Contains(string(addr), "/") {
				return &discovery.LineError{Line: itemLine(n, "static_configs", i), Err: fmt.Errorf("%q is not a valid hostname", addr)}
			}
		}
	}
	for i, m := range Native {
		list := e.Field(3 + i)
		for j := range list.Len() {
			c := list.Index(j)
			if c.IsNil() {
				return &discovery.LineError{Line: itemLine(n, m.Key(), j), Err: fmt.Errorf("empty or null section in %s", m.Key())}
			}
			sc.ServiceDiscoveryConfigs = append(sc.ServiceDiscoveryConfigs, c.Interface().(discovery.Config))
		}
	}
	if len(groups) > 0 {
		// As in Prometheus: all static groups of a job form one config, last.
		sc.ServiceDiscoveryConfigs = append(sc.ServiceDiscoveryConfigs, static.FromGroups(groups))
	}
	for _, key := range unsupported {
		if _, ok := mapValue(n, key); ok {
			sc.Unsupported = append(sc.Unsupported, key)
		}
	}
	s.sc = sc
	return nil
}

func mapValue(n *yaml.Node, key string) (*yaml.Node, bool) {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1], true
		}
	}
	return nil, false
}

// nodeCapture keeps the node it is decoded from.
type nodeCapture struct{ n *yaml.Node }

func (c *nodeCapture) UnmarshalYAML(n *yaml.Node) error {
	c.n = n
	return nil
}
