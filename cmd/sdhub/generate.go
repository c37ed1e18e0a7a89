package main

import (
	"bytes"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strings"

	"github.com/alecthomas/kingpin/v2"
	"gopkg.in/yaml.v3"

	"github.com/sdhub/sdhub/config"
	"github.com/sdhub/sdhub/output"
)

// generateCommand is `sdhub generate prometheus-config`: the prometheus.yml
// of the Prometheus that consumes sdhub's outputs.
type generateCommand struct {
	cmd       *kingpin.CmdClause
	httpSDURL string
}

func newGenerateCommand(app *kingpin.Application) *generateCommand {
	c := &generateCommand{}
	gen := app.Command("generate", "Generate files for the programs around sdhub.")
	c.cmd = gen.Command("prometheus-config", "Print the config file (--config.file) rewritten for the Prometheus that reads sdhub's outputs: "+
		"in every job sdhub serves, the service discovery sdhub runs is replaced by one file_sd_configs entry reading the job's output file "+
		"in --output.dir, or with --http-sd-url one http_sd_configs entry reading sdhub's endpoint. Everything else is kept.")
	c.cmd.Flag("http-sd-url", "Base URL of sdhub's web server as the consuming Prometheus reaches it, e.g. http://sdhub:9099: jobs read /api/v1/sd/<job> there instead of their file.").
		PlaceHolder("URL").StringVar(&c.httpSDURL)
	return c
}

func (c *generateCommand) run(f flags, stdout, stderr io.Writer) int {
	cfg, err := config.LoadFile(f.configFile)
	if err != nil {
		fmt.Fprintf(stderr, "sdhub generate: %v\n", err)
		return exitBadConfig
	}
	data, err := os.ReadFile(f.configFile)
	if err != nil {
		fmt.Fprintf(stderr, "sdhub generate: %v\n", err)
		return exitError
	}
	out, warnings, err := generatePrometheusConfig(data, cfg, f.outputDir, c.httpSDURL)
	if err != nil {
		fmt.Fprintf(stderr, "sdhub generate: %v\n", err)
		return exitBadConfig
	}
	for _, w := range warnings {
		fmt.Fprintf(stderr, "sdhub generate: warning: %s\n", w)
	}
	if _, err := stdout.Write(out); err != nil {
		fmt.Fprintf(stderr, "sdhub generate: %v\n", err)
		return exitError
	}
	return exitOK
}

// generatePrometheusConfig rewrites data, the prometheus.yml cfg was loaded
// from, for the consuming Prometheus. In each scrape config of a job cfg
// serves, the keys of the mechanisms sdhub runs (static_configs and the
// `*_sd_configs` of config.Mechanisms) are removed and one file_sd_configs
// entry for the job's output file (or, with httpSDURL, one http_sd_configs
// entry for its endpoint) takes the place of the first of them. Every other
// key, job, section and comment stays; the mechanisms sdhub leaves to
// Prometheus stay in their jobs. Jobs that come from scrape_config_files
// are not rewritten: they are returned as warnings.
func generatePrometheusConfig(data []byte, cfg *config.Config, outDir, httpSDURL string) ([]byte, []string, error) {
	if httpSDURL != "" {
		u, err := url.Parse(httpSDURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, nil, fmt.Errorf("invalid --http-sd-url %q (want an http or https URL with a host, e.g. http://sdhub:9099)", httpSDURL)
		}
		if u.RawQuery != "" || u.Fragment != "" {
			return nil, nil, fmt.Errorf("invalid --http-sd-url %q (want a base URL without query or fragment)", httpSDURL)
		}
		httpSDURL = strings.TrimSuffix(httpSDURL, "/")
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", cfg.Filename, err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return data, nil, nil // empty: nothing to rewrite
	}
	sdKeys := []string{"static_configs"}
	for _, m := range config.Mechanisms {
		sdKeys = append(sdKeys, m.Key())
	}
	served := map[string]bool{}
	for _, sc := range cfg.ScrapeConfigs {
		served[sc.JobName] = false
	}
	if jobs, ok := mapValue(doc.Content[0], "scrape_configs"); ok && jobs.Kind == yaml.SequenceNode {
		for _, job := range jobs.Content {
			if job.Kind != yaml.MappingNode {
				continue
			}
			name, ok := mapValue(job, "job_name")
			if !ok {
				continue
			}
			if done, ok := served[name.Value]; !ok || done {
				continue
			}
			served[name.Value] = true
			rewriteJob(job, name.Value, sdKeys, outDir, httpSDURL)
		}
	}
	var warnings []string
	for _, sc := range cfg.ScrapeConfigs {
		if !served[sc.JobName] {
			warnings = append(warnings, fmt.Sprintf("job %q comes from a scrape_config_files file, not %s: its service discovery is not rewritten", sc.JobName, cfg.Filename))
		}
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, nil, err
	}
	return b.Bytes(), warnings, nil
}

// rewriteJob replaces the sdKeys of the scrape config job by one entry for
// sdhub's output of the job.
func rewriteJob(job *yaml.Node, name string, sdKeys []string, outDir, httpSDURL string) {
	key, entry := "file_sd_configs", mapping("files", &yaml.Node{Kind: yaml.SequenceNode, Content: []*yaml.Node{str(output.Path(outDir, name))}})
	if httpSDURL != "" {
		key, entry = "http_sd_configs", mapping("url", str(httpSDURL+"/api/v1/sd/"+url.PathEscape(name)))
	}
	var (
		content  []*yaml.Node
		replaced []string
		at       = -1
	)
	for i := 0; i+1 < len(job.Content); i += 2 {
		k := job.Content[i]
		if slices.Contains(sdKeys, k.Value) {
			if at < 0 {
				at = len(content)
			}
			replaced = append(replaced, k.Value)
			continue
		}
		content = append(content, k, job.Content[i+1])
	}
	if existing, ok := mapValue(&yaml.Node{Kind: yaml.MappingNode, Content: content}, key); ok && existing.Kind == yaml.SequenceNode {
		// http_sd_configs of the job's own, left to Prometheus: add to them.
		existing.Content = append(existing.Content, entry)
		job.Content = content
		return
	}
	k := str(key)
	k.LineComment = "sdhub: replaces " + strings.Join(replaced, ", ")
	if at < 0 {
		at = len(content)
	}
	content = slices.Insert(content, at, k, &yaml.Node{Kind: yaml.SequenceNode, Content: []*yaml.Node{entry}})
	job.Content = content
}

func str(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s} }

func mapping(k string, v *yaml.Node) *yaml.Node {
	return &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{str(k), v}}
}

// mapValue returns the value of key in mapping n.
func mapValue(n *yaml.Node, key string) (*yaml.Node, bool) {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1], true
		}
	}
	return nil, false
}
