package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/model/relabel"
	"gopkg.in/yaml.v3"

	"github.com/sdhub/sdhub/internal/consulagent"
)

// jobName is the benchmark's one job.
const jobName = "big"

// fileRules are the job's relabel_configs with the file source: keep the
// targets tagged "scrape", then give them the labels a consul job
// typically sets. The last rule reads __meta_filepath, which the
// consumer's file_sd sets on native targets and sdhub's restore rules put
// back on its own.
const fileRules = keepRules + `- source_labels: [__meta_filepath]
  target_label: file
`

// keepRules are the rules both sources' jobs start with.
const keepRules = `- source_labels: [__meta_consul_tags]
  regex: .*,scrape,.*
  action: keep
- source_labels: [__meta_consul_service]
  target_label: service
- source_labels: [__meta_consul_node]
  target_label: node
- regex: __meta_consul_service_metadata_(.+)
  action: labelmap
`

// parseRules returns rules (YAML) as Prometheus's config package loads
// them.
func parseRules(rulesYAML string) ([]*relabel.Config, error) {
	var rules []*relabel.Config
	if err := yaml.Unmarshal([]byte(rulesYAML), &rules); err != nil {
		return nil, fmt.Errorf("parsing the job's relabel_configs: %w", err)
	}
	for i, r := range rules {
		if err := r.Validate(model.UTF8Validation); err != nil {
			return nil, fmt.Errorf("relabel_configs[%d]: %w", i, err)
		}
	}
	return rules, nil
}

// job is the benchmark's one job as its source sets it up.
type job struct {
	promYML string // the prometheus.yml of native and of sdhub
	targets int    // the targets the job's discovery finds
	kept    int    // the targets its relabel_configs keep
	about   string // what "The job:" says of it
	method  string // what "Method:" says of the source first, if anything

	pop   *population        // the file source's, for the in-process stage
	rules []*relabel.Config  // the file source's, for the in-process stage
	agent *consulagent.Agent // the consul source's
	close func()
}

// fileJob writes the file source's job into dir/in.
func fileJob(cfg benchConfig, dir string) (*job, error) {
	rules, err := parseRules(fileRules)
	if err != nil {
		return nil, err
	}
	pop := newPopulation(cfg.targets, cfg.services, cfg.keep)
	glob, err := pop.writeFiles(filepath.Join(dir, "in"), cfg.files)
	if err != nil {
		return nil, err
	}
	return &job{
		promYML: promConfig(fmt.Sprintf("    file_sd_configs:\n      - files: [%q]\n", glob), fileRules),
		targets: cfg.targets, kept: pop.keptCount(), pop: &pop, rules: rules, close: func() {},
		about: fmt.Sprintf("%d targets labelled like consul_sd's (%d services on %d nodes, %d labels each), in %d file_sd files, one group per target",
			cfg.targets, pop.services(), min(nodes, cfg.targets), pop.labelCount(), cfg.files),
	}, nil
}

// population is the job's targets: target i is instance i%nodes of service
// i/perService, labelled as consul_sd labels it, and carries the tag
// "scrape" (which the rules keep) for a fraction keep of the targets,
// spread evenly over services and nodes.
type population struct {
	targets, perService int
	keep                float64
}

const nodes = 2000

func newPopulation(targets, services int, keep float64) population {
	per := (targets + services - 1) / services
	return population{targets: targets, perService: max(per, 1), keep: keep}
}

// services is the number of services, the groups of the in-process job.
func (p population) services() int { return (p.targets + p.perService - 1) / p.perService }

// kept reports whether target i carries the tag the rules keep: 5761 is
// prime to 10,000, so i*5761 mod 10,000 runs through every residue once in
// each 10,000 consecutive targets.
func (p population) kept(i int) bool { return (i*5761)%10000 < int(p.keep*10000+0.5) }

// keptCount is the number of targets the rules keep.
func (p population) keptCount() int {
	n := 0
	for i := range p.targets {
		if p.kept(i) {
			n++
		}
	}
	return n
}

var kinds = []string{"api", "web", "worker", "cache", "auth", "search", "billing", "ingest"}

// labels returns target i's address and its labels but __address__;
// round, when not 0, marks a changed target (__meta_consul_service_metadata_version).
func (p population) labels(i, round int) (string, map[string]string) {
	svc, node := i/p.perService, i%nodes
	ip := fmt.Sprintf("127.1.%d.%d", node/250, 1+node%250)
	port := 20000 + svc%40000
	name := fmt.Sprintf("%s-%04d", kinds[svc%len(kinds)], svc)
	nodeName := fmt.Sprintf("node-%04d.dc1.consul", node)
	tags := fmt.Sprintf(",prod,http,az-%c,", 'a'+node%3)
	if p.kept(i) {
		tags += "scrape,"
	}
	version := fmt.Sprintf("1.%d.%d", svc%17, svc%5)
	if round != 0 {
		version = fmt.Sprintf("1.%d.%d-r%d", svc%17, svc%5, round)
	}
	return fmt.Sprintf("%s:%d", ip, port), map[string]string{
		"__meta_consul_address":                  ip,
		"__meta_consul_dc":                       "dc1",
		"__meta_consul_health":                   "passing",
		"__meta_consul_node":                     nodeName,
		"__meta_consul_service":                  name,
		"__meta_consul_service_address":          ip,
		"__meta_consul_service_id":               name + "-" + nodeName,
		"__meta_consul_service_port":             fmt.Sprint(port),
		"__meta_consul_tags":                     tags,
		"__meta_consul_service_metadata_owner":   fmt.Sprintf("team-%02d", svc%23),
		"__meta_consul_service_metadata_version": version,
		"__meta_consul_service_metadata_commit":  fmt.Sprintf("%012x", uint64(svc)*0x9e3779b97f4a7c15>>16),
	}
}

// writeFiles writes the job's targets as file_sd files, files of them in
// dir, one group per target, and returns their glob.
func (p population) writeFiles(dir string, files int) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	per := (p.targets + files - 1) / files
	for f := range files {
		var b strings.Builder
		b.WriteString("[\n")
		for i := f * per; i < min((f+1)*per, p.targets); i++ {
			addr, ls := p.labels(i, 0)
			e, err := json.Marshal(struct {
				Targets []string          `json:"targets"`
				Labels  map[string]string `json:"labels"`
			}{[]string{addr}, ls})
			if err != nil {
				return "", err
			}
			if i > f*per {
				b.WriteString(",\n")
			}
			b.Write(e)
		}
		b.WriteString("\n]\n")
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("targets-%03d.json", f)), []byte(b.String()), 0o644); err != nil {
			return "", err
		}
	}
	return filepath.Join(dir, "*.json"), nil
}

// group returns service s as consul_sd gives it: one group per service,
// every label on its targets; round marks target changed (its index in
// the group), when not 0.
func (p population) group(s, changed, round int) *targetgroup.Group {
	g := &targetgroup.Group{Source: fmt.Sprintf("svc-%04d", s), Labels: model.LabelSet{}}
	for k, i := 0, s*p.perService; i < min((s+1)*p.perService, p.targets); k, i = k+1, i+1 {
		r := 0
		if k == changed {
			r = round
		}
		addr, ls := p.labels(i, r)
		t := make(model.LabelSet, len(ls)+1)
		t[model.AddressLabel] = model.LabelValue(addr)
		for n, v := range ls {
			t[model.LabelName(n)] = model.LabelValue(v)
		}
		g.Targets = append(g.Targets, t)
	}
	return g
}

// promConfig is the prometheus.yml of the native side and of sdhub: the
// job discovers its targets with sd (a *_sd_configs block, indented),
// relabels them with rules and scrapes what it keeps every 5 minutes.
func promConfig(sd, rules string) string {
	var b strings.Builder
	b.WriteString("global:\n  scrape_interval: 5m\n  scrape_timeout: 10s\n  evaluation_interval: 5m\n")
	b.WriteString("scrape_configs:\n")
	fmt.Fprintf(&b, "  - job_name: %s\n    scrape_interval: 5m\n    scrape_timeout: 10s\n", jobName)
	b.WriteString(sd)
	b.WriteString("    relabel_configs:\n")
	for _, l := range strings.SplitAfter(strings.TrimSuffix(rules, "\n"), "\n") {
		b.WriteString("      " + l)
	}
	b.WriteString("\n")
	return b.String()
}

// labelCount is the number of labels of a target, __address__ included.
func (p population) labelCount() int {
	_, ls := p.labels(0, 0)
	return len(ls) + 1
}
