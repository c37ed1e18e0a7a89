package main

import (
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/alecthomas/kingpin/v2"
	"gopkg.in/yaml.v3"

	"github.com/sdhub/sdhub/config"
	"github.com/sdhub/sdhub/output"
	"github.com/sdhub/sdhub/shard"
)

// generateCommand is `sdhub generate prometheus-config`: the prometheus.yml
// of the Prometheus that consumes sdhub's outputs.
type generateCommand struct {
	cmd  *kingpin.CmdClause
	opts generateOptions
}

// generateOptions say how generatePrometheusConfig rewrites a job.
type generateOptions struct {
	// outDir is sdhub's --output.dir as the consumer sees it.
	outDir string
	// httpSDURL, if set, is sdhub's base URL: jobs read http_sd from it
	// instead of their file.
	httpSDURL string
	// includeStatic rewrites the jobs whose only block sdhub runs is
	// static_configs too; by default they stay with Prometheus as they are.
	includeStatic bool
	// parts are the jobs written in several parts (output.Layout.Plan):
	// the job reads each through a file_sd_configs entry of its own.
	parts map[string]int
	// shard is the consumer's share of every job it reads through http_sd,
	// for one server of a fleet; Shards 0 or 1 reads whole jobs.
	shard    output.ShardSpec
	strategy string
	// query is the http_sd URL's query for shard.
	query url.Values
	// digests are the digests of the rules of the jobs filtered at the
	// hub (filterFlags.plan): their http_sd URLs name them.
	digests map[string]string
}

// shardQuery is the query of the http_sd URL of a fleet's server, none for a
// server that reads whole jobs.
func shardQuery(opts generateOptions) (url.Values, error) {
	sp := opts.shard
	strategy, err := shard.ParseStrategy(opts.strategy)
	if err != nil {
		return nil, fmt.Errorf("--strategy: %w", err)
	}
	if sp.Shards <= 1 && sp.Shard == 0 && max(sp.Replicas, 1) == 1 && strategy == shard.Rendezvous && sp.WeightLabel == "" {
		return nil, nil
	}
	if opts.httpSDURL == "" {
		return nil, fmt.Errorf("--shards, --shard, --replicas, --strategy and --weight-label split jobs through http_sd: they need --http-sd-url")
	}
	if err := shard.Validate(sp.Shard, sp.Shards); err != nil {
		return nil, fmt.Errorf("--shard and --shards: %w", err)
	}
	if err := shard.ValidateReplicas(max(sp.Replicas, 1), sp.Shards); err != nil {
		return nil, fmt.Errorf("--replicas: %w", err)
	}
	if sp.WeightLabel != "" && strategy != shard.BoundedLoad {
		return nil, fmt.Errorf("--weight-label needs --strategy=%s", shard.BoundedLoad)
	}
	q := url.Values{}
	q.Set("shard", strconv.Itoa(sp.Shard))
	q.Set("shards", strconv.Itoa(sp.Shards))
	if sp.Replicas > 1 {
		q.Set("replicas", strconv.Itoa(sp.Replicas))
	}
	if strategy != shard.Rendezvous {
		q.Set("strategy", string(strategy))
	}
	if sp.WeightLabel != "" {
		q.Set("weight_label", sp.WeightLabel)
	}
	return q, nil
}

func newGenerateCommand(app *kingpin.Application) *generateCommand {
	c := &generateCommand{}
	gen := app.Command("generate", "Generate files for the programs around sdhub.")
	c.cmd = gen.Command("prometheus-config", "Print the config file (--config.file) rewritten for the Prometheus that reads sdhub's outputs: "+
		"in every job sdhub serves, the service discovery sdhub runs is replaced by one file_sd_configs entry reading the job's output file "+
		"in --output.dir, or with --http-sd-url one http_sd_configs entry reading sdhub's endpoint, and relabel rules that give "+
		"__meta_filepath and __meta_url the values native SD gives them come first in its relabel_configs. "+
		"Jobs whose only service discovery is static_configs stay as they are unless --include-static-jobs. "+
		"Everything else, formatting and comments included, is kept.")
	c.cmd.Flag("http-sd-url", "Base URL of sdhub's web server as the consuming Prometheus reaches it, e.g. http://sdhub:9099: jobs read /api/v1/sd/<job> there instead of their file.").
		PlaceHolder("URL").StringVar(&c.opts.httpSDURL)
	c.cmd.Flag("include-static-jobs", "Also route the jobs whose only service discovery is static_configs (such as Prometheus's self-scrape) through sdhub.").
		BoolVar(&c.opts.includeStatic)
	c.cmd.Flag("shards", "With --http-sd-url: the number of Prometheus servers that split every job; the config printed is that of server --shard. Run the command once per server.").
		Default("1").IntVar(&c.opts.shard.Shards)
	c.cmd.Flag("shard", "With --shards: the server whose config is printed, from 0 to shards-1.").
		Default("0").IntVar(&c.opts.shard.Shard)
	c.cmd.Flag("replicas", "With --shards: how many of the servers scrape each target (2 for an HA pair per target).").
		Default("1").IntVar(&c.opts.shard.Replicas)
	c.cmd.Flag("strategy", "With --shards: how targets are split, rendezvous (each target by its address; the fewest moves) or bounded-load (every server within 1.1x the mean).").
		Default(string(shard.Rendezvous)).StringVar(&c.opts.strategy)
	c.cmd.Flag("weight-label", "With --strategy=bounded-load: the discovered label whose value is a target's weight (1 when missing).").
		PlaceHolder("LABEL").StringVar(&c.opts.shard.WeightLabel)
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
	opts := c.opts
	opts.outDir = f.outputDir
	layout, err := f.layout.layout()
	if err != nil {
		fmt.Fprintf(stderr, "sdhub generate: %v\n", err)
		return exitBadConfig
	}
	opts.parts = layout.Plan(cfg.Splittable())
	plans, _ := f.filter.plan(cfg)
	opts.digests = map[string]string{}
	for job, p := range plans {
		if p.Digest != "" {
			opts.digests[job] = p.Digest
		}
	}
	out, warnings, err := generatePrometheusConfig(data, cfg, opts)
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
// entry for the job's output file (or, with opts.httpSDURL, one
// http_sd_configs entry for its endpoint) takes the place of the first of
// them; the job's relabel_configs start with restoreRules. A job whose only
// such key is static_configs is left as it is, unless opts.includeStatic.
//
// The rest of data is kept byte for byte: the edits replace the lines of
// the keys they change, found from the positions of the YAML nodes, so
// blank lines, indentation, comments and key order outside them stay. A job
// written as one flow mapping ({job_name: ..., ...}) is written again as a
// whole, without its comments.
//
// Jobs that come from scrape_config_files are not rewritten: they are
// returned as warnings.
func generatePrometheusConfig(data []byte, cfg *config.Config, opts generateOptions) ([]byte, []string, error) {
	if opts.httpSDURL != "" {
		u, err := url.Parse(opts.httpSDURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, nil, fmt.Errorf("invalid --http-sd-url %q (want an http or https URL with a host, e.g. http://sdhub:9099)", opts.httpSDURL)
		}
		if u.RawQuery != "" || u.Fragment != "" {
			return nil, nil, fmt.Errorf("invalid --http-sd-url %q (want a base URL without query or fragment)", opts.httpSDURL)
		}
		opts.httpSDURL = strings.TrimSuffix(opts.httpSDURL, "/")
	}
	query, err := shardQuery(opts)
	if err != nil {
		return nil, nil, err
	}
	opts.query = query
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
	src := newSource(data)
	var edits []edit
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
			p := planJob(job, name.Value, sdKeys, opts)
			if p == nil {
				continue
			}
			e, err := p.edits(src)
			if err != nil {
				return nil, nil, fmt.Errorf("%s:%d: job %q: %w", cfg.Filename, job.Line, name.Value, err)
			}
			edits = append(edits, e...)
		}
	}
	var warnings []string
	for _, sc := range cfg.ScrapeConfigs {
		if !served[sc.JobName] {
			warnings = append(warnings, fmt.Sprintf("job %q comes from a scrape_config_files file, not %s: its service discovery is not rewritten", sc.JobName, cfg.Filename))
		}
	}
	out, err := src.apply(edits)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", cfg.Filename, err)
	}
	return out, warnings, nil
}

// restoreRules are the relabel rules that come first in every job generate
// rewrites, endpoint being the job's http_sd URL on sdhub ("" when it reads
// sdhub's file). The consumer sets __meta_filepath (file_sd) or __meta_url
// (http_sd) on every target it reads from sdhub, and sdhub's output
// carries a source's own values as output.FilepathLabel and
// output.URLLabel. The rules give the job's own rules the labels native SD
// would:
//
//   - __meta_filepath from sdhub's label, or none: only file_sd sets it,
//     and sdhub runs every file_sd_configs (the regex always matches, and
//     an empty replacement removes the label);
//   - __meta_url, on sdhub's targets only, from sdhub's label or none: the
//     job may keep http_sd_configs of its own, whose targets keep the URL
//     Prometheus gives them. Through http_sd, sdhub's targets are those
//     whose __meta_url is the endpoint; through file_sd, they carry no
//     __meta_url but the one sdhub's label puts back;
//   - sdhub's labels dropped, which native SD does not have.
func restoreRules(endpoint string) []*yaml.Node {
	rule := func(from []string, regex, to string) *yaml.Node {
		var src []*yaml.Node
		for _, f := range from {
			src = append(src, str(f))
		}
		return flowMapping(
			str("source_labels"), flowSeq(src...),
			str("regex"), str(regex),
			str("target_label"), str(to),
			str("replacement"), str("$1"),
		)
	}
	first := rule([]string{output.FilepathLabel}, "(.*)", "__meta_filepath")
	first.HeadComment = "sdhub: __meta_filepath and __meta_url as native SD sets them"
	url := rule([]string{output.URLLabel}, "(.+)", "__meta_url")
	if endpoint != "" {
		// Joined by relabel's default separator, ";". The endpoint with any
		// query: one edited by hand (rules= dropped, a shard changed) is
		// still sdhub's.
		base, _, _ := strings.Cut(endpoint, "?")
		url = rule([]string{"__meta_url", output.URLLabel}, regexp.QuoteMeta(base)+`(?:\?[^;]*)?;(.*)`, "__meta_url")
	}
	drop := flowMapping(str("regex"), str(strings.TrimSuffix(output.FilepathLabel, "filepath")+"(filepath|url)"), str("action"), str("labeldrop"))
	return []*yaml.Node{first, url, drop}
}

// jobPlan is what generate changes in one scrape config.
type jobPlan struct {
	job *yaml.Node
	// replaced are the indexes in job.Content of the keys sdhub runs, in
	// file order.
	replaced []int
	// key (file_sd_configs or http_sd_configs) and entries are the block
	// that takes their place (one entry, or one per part of the job's
	// output); at is the index of the job's own key of that name, left to
	// Prometheus, which the entries join, or -1.
	key     *yaml.Node
	entries []*yaml.Node
	at      int
	// endpoint is the job's http_sd URL on sdhub, "" for file_sd.
	endpoint string
	// relabel is the index of the job's relabel_configs key, or -1.
	relabel int
}

// partsRefresh is the refresh_interval of the consumer's entry for a part:
// how soon a consumer that started before sdhub made the part's directory
// reads it. Each refresh reads the part again: at 1m, a whole job a minute
// over its parts.
const partsRefresh = "1m"

// planJob returns what to change in job, or nil to leave it as it is.
func planJob(job *yaml.Node, name string, sdKeys []string, opts generateOptions) *jobPlan {
	p := &jobPlan{job: job, at: -1, relabel: -1}
	var names []string
	for i := 0; i+1 < len(job.Content); i += 2 {
		if k := job.Content[i].Value; slices.Contains(sdKeys, k) {
			p.replaced = append(p.replaced, i)
			names = append(names, k)
		}
	}
	if len(p.replaced) == 0 || (!opts.includeStatic && len(names) == 1 && names[0] == "static_configs") {
		return nil
	}
	key := "file_sd_configs"
	p.entries = []*yaml.Node{mapping(str("files"), flowSeq(str(output.Path(opts.outDir, name))))}
	if n := opts.parts[name]; n > 1 {
		p.entries = p.entries[:0]
		for i := range n {
			// refresh_interval: a consumer that starts before sdhub made
			// the part's directory watches it from its next refresh.
			p.entries = append(p.entries, flowMapping(str("files"), flowSeq(str(output.PartPath(opts.outDir, name, i))),
				str("refresh_interval"), str(partsRefresh)))
		}
	}
	if opts.httpSDURL != "" {
		key = "http_sd_configs"
		p.endpoint = opts.httpSDURL + "/api/v1/sd/" + url.PathEscape(name)
		q := maps.Clone(opts.query)
		if q == nil {
			q = url.Values{}
		}
		if d := opts.digests[name]; d != "" {
			q.Set("rules", d)
		}
		if len(q) > 0 {
			p.endpoint += "?" + q.Encode()
		}
		p.entries = []*yaml.Node{mapping(str("url"), str(p.endpoint))}
	}
	p.key = str(key)
	p.key.LineComment = "sdhub: replaces " + strings.Join(names, ", ")
	for i := 0; i+1 < len(job.Content); i += 2 {
		switch k := job.Content[i].Value; {
		case slices.Contains(p.replaced, i):
		case k == key && job.Content[i+1].Kind == yaml.SequenceNode:
			p.at = i // the job's own http_sd_configs, left to Prometheus
		case k == "relabel_configs":
			p.relabel = i
		}
	}
	return p
}

// rewriteNode applies the plan to the job's nodes, for the whole job to be
// written again; flow leaves out the comments sdhub adds, which a flow
// mapping written on one line cannot hold.
func (p *jobPlan) rewriteNode(flow bool) {
	job := p.job
	rules := restoreRules(p.endpoint)
	if flow {
		rules[0].HeadComment = ""
		// The job's own comment stays in the text after the mapping.
		job.HeadComment, job.LineComment, job.FootComment = "", "", ""
	}
	if p.relabel >= 0 && job.Content[p.relabel+1].Kind == yaml.SequenceNode {
		seq := job.Content[p.relabel+1]
		seq.Content = append(rules, seq.Content...)
	} else if p.relabel >= 0 {
		job.Content[p.relabel+1] = &yaml.Node{Kind: yaml.SequenceNode, Content: rules}
	}
	var content []*yaml.Node
	for i := 0; i+1 < len(job.Content); i += 2 {
		k, v := job.Content[i], job.Content[i+1]
		switch {
		case i == p.at:
			v.Content = append(v.Content, p.entries...)
		case i == p.replaced[0] && p.at < 0:
			content = append(content, str(p.key.Value), &yaml.Node{Kind: yaml.SequenceNode, Content: p.entries})
			if p.relabel < 0 {
				content = append(content, str("relabel_configs"), &yaml.Node{Kind: yaml.SequenceNode, Content: rules})
			}
			continue
		case slices.Contains(p.replaced, i):
			continue
		}
		content = append(content, k, v)
		if i == p.at && p.relabel < 0 {
			content = append(content, str("relabel_configs"), &yaml.Node{Kind: yaml.SequenceNode, Content: rules})
		}
	}
	job.Content = content
}

// edits returns the changes to src that carry out the plan.
func (p *jobPlan) edits(src *source) ([]edit, error) {
	job := p.job
	if job.Style&yaml.FlowStyle != 0 {
		// {job_name: ..., ...}: the job's mapping is written again.
		start := src.offset(job.Line, job.Column)
		end, err := src.flowEnd(start)
		if err != nil {
			return nil, err
		}
		p.rewriteNode(true)
		text, err := encode(job)
		if err != nil {
			return nil, err
		}
		return []edit{{start, end, strings.TrimSuffix(text, "\n")}}, nil
	}
	// pair is the text of key i and its value, from the key (or the
	// comment lines right above it at its indentation, which go with it)
	// to the end of the value's last line, and the key's indentation.
	pair := func(i int) (start, end, indent int) {
		k := job.Content[i]
		first := k.Line
		for first > 1 && src.onlySpaceBefore(src.offset(k.Line, k.Column)) {
			if kind, in := src.kind(first - 1); kind != commentLine || in != k.Column-1 {
				break
			}
			first--
		}
		return src.offset(first, k.Column), src.lineEnd(src.lastLine(job.Content[i+1], k.Line, k.Column-1)), k.Column - 1
	}
	// added are the keys written where the first replaced key was.
	var added []*yaml.Node
	if p.at < 0 {
		added = append(added, p.key, &yaml.Node{Kind: yaml.SequenceNode, Content: p.entries})
	}
	if p.relabel < 0 {
		added = append(added, str("relabel_configs"), &yaml.Node{Kind: yaml.SequenceNode, Content: restoreRules(p.endpoint)})
	}
	if first, _, _ := pair(p.replaced[0]); len(added) == 0 && !src.onlySpaceBefore(first) {
		// The first replaced key shares its line with the item's "- " and
		// nothing takes its place: the job is written again as a whole.
		start := src.offset(job.Line, job.Column)
		end := src.lineEnd(src.lastLine(job, job.Line, job.Column-2))
		p.rewriteNode(false)
		text, err := encodeAt(job, job.Column-1)
		if err != nil {
			return nil, err
		}
		return []edit{{start, end, text}}, nil
	}

	var edits []edit
	if p.at >= 0 {
		// The job's own http_sd_configs, with sdhub's entry added.
		v := job.Content[p.at+1]
		seq := &yaml.Node{Kind: yaml.SequenceNode, Content: append(slices.Clone(v.Content), p.entries...)}
		start, end, indent := pair(p.at)
		text, err := encodeAt(mapping(job.Content[p.at], seq), indent)
		if err != nil {
			return nil, err
		}
		edits = append(edits, edit{start, end, text})
	}
	if p.relabel >= 0 {
		v := job.Content[p.relabel+1]
		if v.Kind == yaml.SequenceNode && v.Style&yaml.FlowStyle == 0 && len(v.Content) > 0 {
			// A block sequence: the rules go in right under the key, at the
			// indentation of its first item; the job's own rules and their
			// comments stay as they are.
			first := v.Content[0]
			dash, ok := src.dashColumn(first.Line, first.Column)
			if !ok {
				return nil, fmt.Errorf("line %d: cannot find the \"-\" of relabel_configs' first item", first.Line)
			}
			text, err := encodeAt(&yaml.Node{Kind: yaml.SequenceNode, Content: restoreRules(p.endpoint)}, dash)
			if err != nil {
				return nil, err
			}
			at := src.lineEnd(job.Content[p.relabel].Line)
			edits = append(edits, edit{at, at, strings.Repeat(" ", dash) + text})
		} else {
			// Empty, null or a flow sequence: written again, rules first.
			seq := &yaml.Node{Kind: yaml.SequenceNode, Content: restoreRules(p.endpoint)}
			if v.Kind == yaml.SequenceNode {
				seq.Content = append(seq.Content, v.Content...)
			}
			start, end, indent := pair(p.relabel)
			text, err := encodeAt(mapping(job.Content[p.relabel], seq), indent)
			if err != nil {
				return nil, err
			}
			edits = append(edits, edit{start, end, text})
		}
	}
	for n, i := range p.replaced {
		start, end, indent := pair(i)
		if n == 0 && len(added) > 0 {
			text, err := encodeAt(mapping(added...), indent)
			if err != nil {
				return nil, err
			}
			edits = append(edits, edit{start, end, text})
			continue
		}
		edits = append(edits, edit{src.lineStart(start), end, ""})
	}
	return edits, nil
}

func str(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s} }

func mapping(kv ...*yaml.Node) *yaml.Node { return &yaml.Node{Kind: yaml.MappingNode, Content: kv} }

func flowMapping(kv ...*yaml.Node) *yaml.Node {
	return &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle, Content: kv}
}

func flowSeq(items ...*yaml.Node) *yaml.Node {
	return &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle, Content: items}
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
