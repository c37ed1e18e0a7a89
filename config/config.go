// Package config loads sdhub's configuration: a prometheus.yml. Every key
// Prometheus accepts is accepted; the scrape configs' service-discovery blocks
// that sdhub implements are decoded strictly with Prometheus's defaults and
// validation, everything else is ignored.
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
	"unicode"
	"unicode/utf8"

	"github.com/prometheus/prometheus/discovery/targetgroup"
	"gopkg.in/yaml.v3"

	"github.com/sdhub/sdhub/discovery"
	"github.com/sdhub/sdhub/discovery/static"
)

// Config is a loaded configuration.
type Config struct {
	// ScrapeConfigs are the jobs sdhub serves: those with at least one
	// mechanism sdhub implements, in file order.
	ScrapeConfigs []*ScrapeConfig
	// Warnings name the jobs and mechanisms left to Prometheus, and what
	// the mechanisms find in their configs taken together
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
	// to Prometheus.
	Unsupported []string
}

// Jobs maps each job name to its SD configs, the input of the manager.
func (c *Config) Jobs() map[string]discovery.Configs {
	jobs := make(map[string]discovery.Configs, len(c.ScrapeConfigs))
	for _, sc := range c.ScrapeConfigs {
		jobs[sc.JobName] = sc.ServiceDiscoveryConfigs
	}
	return jobs
}

// topLevelKeys are the top-level keys of prometheus.yml that sdhub accepts
// and ignores; scrape_configs and scrape_config_files are read.
var topLevelKeys = []string{
	"global", "runtime", "alerting", "rule_files", "storage", "tracing", "remote_write", "remote_read", "otlp",
}

// scrapeKeys are the keys of a Prometheus scrape config that do not concern
// discovery, including the inlined HTTP client settings, and the 2.x keys
// that 3.x renamed (scrape_classic_histograms, 2.45 to 2.55), so a 2.x
// prometheus.yml loads too.
var scrapeKeys = []string{
	"honor_labels", "honor_timestamps", "track_timestamps_staleness", "params", "scrape_interval",
	"scrape_timeout", "scrape_protocols", "fallback_scrape_protocol", "scrape_native_histograms",
	"always_scrape_classic_histograms", "convert_classic_histograms_to_nhcb", "scrape_failure_log_file",
	"metrics_path", "scheme", "enable_compression", "body_size_limit", "sample_limit", "target_limit",
	"label_limit", "label_name_length_limit", "label_value_length_limit", "native_histogram_bucket_limit",
	"native_histogram_min_bucket_factor", "keep_dropped_targets", "metric_name_validation_scheme",
	"metric_name_escaping_scheme", "extra_scrape_metrics", "relabel_configs", "metric_relabel_configs",
	"scrape_classic_histograms",
	// HTTP client settings, inlined.
	"basic_auth", "authorization", "oauth2", "bearer_token", "bearer_token_file", "tls_config",
	"follow_redirects", "enable_http2", "http_headers", "proxy_url", "no_proxy", "proxy_from_environment",
	"proxy_connect_header",
}

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
	cfg := &Config{Filename: filename}
	raw := top.scrapeConfigs(filename)
	for _, pattern := range top.scrapeConfigFiles {
		if !filepath.IsAbs(pattern) {
			pattern = filepath.Join(dir, pattern)
		}
		files, err := filepath.Glob(pattern)
		if err != nil {
			return nil, fmt.Errorf("%s: invalid scrape_config_files pattern %q: %w", filename, pattern, err)
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				return nil, err
			}
			sub, err := decodeFile(data, f, scrapeFileSchema)
			if err != nil {
				return nil, err
			}
			raw = append(raw, sub.scrapeConfigs(f)...)
		}
	}
	if err := cfg.build(raw); err != nil {
		return nil, err
	}
	return cfg, nil
}

// rawScrapeConfig is one decoded scrape config and where it came from.
type rawScrapeConfig struct {
	sc       *ScrapeConfig
	filename string
	line     int
}

func (c *Config) build(raw []rawScrapeConfig) error {
	seen := map[string]rawScrapeConfig{}
	files := map[string]rawScrapeConfig{}
	for _, r := range raw {
		name := r.sc.JobName
		if prev, ok := seen[name]; ok {
			return fmt.Errorf("%s:%d: found multiple scrape configs with job name %q (first at %s:%d)",
				r.filename, r.line, name, prev.filename, prev.line)
		}
		seen[name] = r
		if len(r.sc.Unsupported) > 0 {
			c.Warnings = append(c.Warnings, fmt.Sprintf("job %q: %s left to Prometheus (sdhub does not implement %s)",
				name, strings.Join(r.sc.Unsupported, ", "), plural(len(r.sc.Unsupported), "it", "them")))
		}
		if len(r.sc.ServiceDiscoveryConfigs) == 0 {
			if len(r.sc.Unsupported) == 0 {
				c.Warnings = append(c.Warnings, fmt.Sprintf("job %q: no service discovery configs, skipped", name))
			}
			continue
		}
		key := strings.ToLower(name)
		if prev, ok := files[key]; ok {
			return fmt.Errorf("%s:%d: job names %q and %q map to the same output file on a case-insensitive file system (first at %s:%d)",
				r.filename, r.line, prev.sc.JobName, name, prev.filename, prev.line)
		}
		files[key] = r
		c.ScrapeConfigs = append(c.ScrapeConfigs, r.sc)
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
	return nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// ValidateJobName reports whether name can be a job and an output file name:
// <name>.json in the output directory, and nothing outside it.
func ValidateJobName(name string) error {
	switch {
	case name == "":
		return errors.New("job_name is empty")
	case len(name) > 250:
		return fmt.Errorf("job_name %q is longer than 250 bytes, too long for a file name", name)
	case !utf8.ValidString(name):
		return fmt.Errorf("job_name %q is not valid UTF-8", name)
	case strings.ContainsAny(name, `/\`):
		return fmt.Errorf("job_name %q contains a path separator; it must be usable as a file name", name)
	case strings.HasPrefix(name, "."):
		return fmt.Errorf("job_name %q starts with a dot; it must be usable as a file name", name)
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		return fmt.Errorf("job_name %q contains a control character; it must be usable as a file name", name)
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

// UnmarshalYAML decodes a scrape config: job_name, static_configs and every
// `*_sd_configs` key strictly, the other keys ignored.
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
	read := []string{"job_name", "static_configs"}
	for _, m := range Mechanisms {
		read = append(read, m.Key())
	}
	unsupported := make([]string, 0, len(unsupportedMechanisms))
	for _, name := range unsupportedMechanisms {
		unsupported = append(unsupported, name+"_sd_configs")
	}
	if err := checkKeys(n, "scrape config", read, append(slices.Clip(scrapeKeys), unsupported...)); err != nil {
		return err
	}

	// A struct with one field per mechanism, so that yaml.v3 decodes each
	// element into the mechanism's own type, strictly.
	fields := []reflect.StructField{
		{Name: "JobName", Type: reflect.TypeFor[string](), Tag: `yaml:"job_name"`},
		{Name: "StaticConfigs", Type: reflect.TypeFor[[]*targetgroup.Group](), Tag: `yaml:"static_configs"`},
		{Name: "Rest", Type: reflect.TypeFor[map[string]yaml.Node](), Tag: `yaml:",inline"`},
	}
	for i, m := range Mechanisms {
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
	for i, m := range Mechanisms {
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
