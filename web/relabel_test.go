package web

import (
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/model/relabel"
	"gopkg.in/yaml.v3"

	"github.com/sdhub/sdhub/internal/outputtest"
	"github.com/sdhub/sdhub/output"
)

// rules parses relabel_configs as Prometheus's config loader does.
func rules(t *testing.T, y string) []*relabel.Config {
	t.Helper()
	var rs []*relabel.Config
	if err := yaml.Unmarshal([]byte(y), &rs); err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if err := r.Validate(model.UTF8Validation); err != nil {
			t.Fatal(err)
		}
	}
	return rs
}

// relabelEntries is a job's output: consul targets with tags, one from a
// file (its __meta_filepath as sdhub's output carries it), one in dev.
func relabelEntries() []output.Entry {
	return outputtest.NewSnapshot("web", []*targetgroup.Group{
		group("a", map[model.LabelName]model.LabelValue{"__meta_consul_tags": ",metrics,http,", "env": "prod"}, "10.0.0.1:80", "10.0.0.2:80"),
		group("b", map[model.LabelName]model.LabelValue{"__meta_consul_tags": ",http,", "env": "prod"}, "10.0.0.3:80"),
		group("c", map[model.LabelName]model.LabelValue{"__meta_filepath": "/etc/prometheus/batch.json", "env": "dev"}, "10.0.0.4:80"),
	}).Entries()
}

func TestCountRelabelled(t *testing.T) {
	for _, c := range []struct {
		name  string
		rules string
		want  RelabelCounts
	}{
		{"no rules", `[]`, RelabelCounts{Kept: 4}},
		{"keep", `
- source_labels: [__meta_consul_tags]
  regex: ".*,metrics,.*"
  action: keep`, RelabelCounts{Kept: 2, Dropped: 2}},
		{"drop", `
- source_labels: [env]
  regex: dev
  action: drop`, RelabelCounts{Kept: 3, Dropped: 1}},
		{"keep on the native __meta_filepath", `
- source_labels: [__meta_filepath]
  regex: ".*/batch\\.json"
  action: keep`, RelabelCounts{Kept: 1, Dropped: 3}},
		{"no sdhub label to keep on", `
- source_labels: [__meta_sdhub_filepath]
  regex: ".+"
  action: keep`, RelabelCounts{Dropped: 4}},
		{"replace __address__", `
- source_labels: [__address__]
  regex: "(.+):80"
  replacement: "${1}:9100"
  target_label: __address__`, RelabelCounts{Kept: 4}},
		{"an __address__ Prometheus rejects", `
- source_labels: [env]
  regex: dev
  replacement: "10.0.0.4/metrics"
  target_label: __address__`, RelabelCounts{Kept: 3, Rejected: 1, FirstError: `10.0.0.4:80: "10.0.0.4/metrics" is not a valid hostname`}},
		{"no address left", `
- regex: __address__
  action: labeldrop`, RelabelCounts{Rejected: 4, FirstError: "10.0.0.1:80: no address"}},
		{"keep on the job's defaults", `
- source_labels: [job, __scheme__, __metrics_path__, __scrape_interval__, __scrape_timeout__]
  regex: "web;http;/metrics;1m;10s"
  action: keep`, RelabelCounts{Kept: 4}},
		{"hashmod", `
- source_labels: [__address__]
  modulus: 2
  target_label: __tmp_hash
  action: hashmod
- source_labels: [__tmp_hash]
  regex: "0"
  action: keep`, RelabelCounts{Kept: 2, Dropped: 2}}, // md5's last 8 bytes mod 2: 1, 1, 0, 0 (python3's hashlib)
	} {
		t.Run(c.name, func(t *testing.T) {
			got := CountRelabelled("web", ScrapeSettings{}, rules(t, c.rules), relabelEntries())
			if got != c.want {
				t.Errorf("counts = %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestPopulate(t *testing.T) {
	rs := rules(t, `
- source_labels: [__address__]
  regex: "(.+):80"
  replacement: "${1}:9100"
  target_label: __address__
- source_labels: [__meta_consul_tags]
  regex: ".*,http,.*"
  action: keep
- source_labels: [__param_module]
  target_label: module`)
	settings := ScrapeSettings{Scheme: "https", Interval: model.Duration(15 * time.Second), Params: url.Values{"module": {"http_2xx", "tcp"}}}
	got := Populate("web", settings, rs, relabelEntries())
	want := []struct{ discovered, labels string }{
		{`{__address__="10.0.0.1:80", __always_scrape_classic_histograms__="false", __convert_classic_histograms_to_nhcb__="false", __meta_consul_tags=",metrics,http,", __metrics_path__="/metrics", __param_module="http_2xx", __scheme__="https", __scrape_interval__="15s", __scrape_native_histograms__="false", __scrape_timeout__="10s", env="prod", instance_label="x10.0.0.1:80", job="web"}`,
			`{__address__="10.0.0.1:9100", __always_scrape_classic_histograms__="false", __convert_classic_histograms_to_nhcb__="false", __metrics_path__="/metrics", __param_module="http_2xx", __scheme__="https", __scrape_interval__="15s", __scrape_native_histograms__="false", __scrape_timeout__="10s", env="prod", instance="10.0.0.1:9100", instance_label="x10.0.0.1:80", job="web", module="http_2xx"}`},
		{`{__address__="10.0.0.2:80", __always_scrape_classic_histograms__="false", __convert_classic_histograms_to_nhcb__="false", __meta_consul_tags=",metrics,http,", __metrics_path__="/metrics", __param_module="http_2xx", __scheme__="https", __scrape_interval__="15s", __scrape_native_histograms__="false", __scrape_timeout__="10s", env="prod", instance_label="x10.0.0.2:80", job="web"}`,
			`{__address__="10.0.0.2:9100", __always_scrape_classic_histograms__="false", __convert_classic_histograms_to_nhcb__="false", __metrics_path__="/metrics", __param_module="http_2xx", __scheme__="https", __scrape_interval__="15s", __scrape_native_histograms__="false", __scrape_timeout__="10s", env="prod", instance="10.0.0.2:9100", instance_label="x10.0.0.2:80", job="web", module="http_2xx"}`},
		{`{__address__="10.0.0.3:80", __always_scrape_classic_histograms__="false", __convert_classic_histograms_to_nhcb__="false", __meta_consul_tags=",http,", __metrics_path__="/metrics", __param_module="http_2xx", __scheme__="https", __scrape_interval__="15s", __scrape_native_histograms__="false", __scrape_timeout__="10s", env="prod", instance_label="x10.0.0.3:80", job="web"}`,
			`{__address__="10.0.0.3:9100", __always_scrape_classic_histograms__="false", __convert_classic_histograms_to_nhcb__="false", __metrics_path__="/metrics", __param_module="http_2xx", __scheme__="https", __scrape_interval__="15s", __scrape_native_histograms__="false", __scrape_timeout__="10s", env="prod", instance="10.0.0.3:9100", instance_label="x10.0.0.3:80", job="web", module="http_2xx"}`},
		{`{__address__="10.0.0.4:80", __always_scrape_classic_histograms__="false", __convert_classic_histograms_to_nhcb__="false", __meta_filepath="/etc/prometheus/batch.json", __metrics_path__="/metrics", __param_module="http_2xx", __scheme__="https", __scrape_interval__="15s", __scrape_native_histograms__="false", __scrape_timeout__="10s", env="dev", instance_label="x10.0.0.4:80", job="web"}`,
			`{}`},
	}
	if len(got) != len(want) {
		t.Fatalf("%d targets, want %d", len(got), len(want))
	}
	for i, w := range want {
		if got[i].Discovered.String() != w.discovered || got[i].Labels.String() != w.labels || got[i].Err != nil {
			t.Errorf("target %d:\n  discovered %s\n  labels     %s (err %v)\nwant\n  discovered %s\n  labels     %s", i,
				got[i].Discovered, got[i].Labels, got[i].Err, w.discovered, w.labels)
		}
	}
	if !got[3].Dropped() || got[0].Dropped() {
		t.Errorf("Dropped() = %v, %v; want the 4th target dropped, not the 1st", got[3].Dropped(), got[0].Dropped())
	}
}

// TestPopulateRejects checks the checks Prometheus makes after relabelling.
func TestPopulateRejects(t *testing.T) {
	entries := relabelEntries()[:1]
	for _, c := range []struct {
		name     string
		settings ScrapeSettings
		rules    string
		err      string
	}{
		{"timeout above interval", ScrapeSettings{Interval: model.Duration(5 * time.Second)}, `[]`,
			`scrape timeout cannot be greater than scrape interval ("10s" > "5s")`},
		{"bad interval from a rule", ScrapeSettings{}, `
- target_label: __scrape_interval__
  replacement: soon`, `error parsing scrape interval: not a valid duration string: "soon"`},
		{"zero timeout from a rule", ScrapeSettings{}, `
- target_label: __scrape_timeout__
  replacement: 0s`, `scrape timeout cannot be 0`},
		{"bad histogram setting", ScrapeSettings{}, `
- target_label: __scrape_native_histograms__
  replacement: maybe`, `error parsing scrape native histograms: strconv.ParseBool: parsing "maybe": invalid syntax`},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := Populate("web", c.settings, rules(t, c.rules), entries)
			if got[0].Err == nil || got[0].Err.Error() != c.err || !got[0].Labels.IsEmpty() || got[0].Dropped() {
				t.Errorf("target: labels %s, err %v; want rejected with %q", got[0].Labels, got[0].Err, c.err)
			}
		})
	}
}

// TestPopulateUnvalidatedRules: rules whose name validation is unset (not
// passed through Prometheus's loader) run with UTF-8 validation, and the
// caller's rules are left as they are.
func TestPopulateUnvalidatedRules(t *testing.T) {
	r := &relabel.Config{Action: relabel.Replace, Regex: relabel.MustNewRegexp("(.*)"), Separator: ";",
		SourceLabels: model.LabelNames{"env"}, TargetLabel: "environment", Replacement: "$1"}
	got := Populate("web", ScrapeSettings{}, []*relabel.Config{r}, relabelEntries()[:1])
	if v := got[0].Labels.Get("environment"); v != "prod" {
		t.Errorf("environment = %q, want prod", v)
	}
	if r.NameValidationScheme != model.UnsetValidation {
		t.Errorf("the caller's rule was changed: %v", r.NameValidationScheme)
	}
}

// BenchmarkCountRelabelled is the cost the status page pays per job and
// render: 10,000 consul-like targets through three rules.
func BenchmarkCountRelabelled(b *testing.B) {
	var groups []*targetgroup.Group
	for i := range 10000 {
		groups = append(groups, &targetgroup.Group{Source: fmt.Sprint(i), Labels: model.LabelSet{
			"__meta_consul_service": model.LabelValue(fmt.Sprintf("svc%d", i%50)), "__meta_consul_tags": ",metrics,http,",
			"__meta_consul_node": model.LabelValue(fmt.Sprintf("node%d", i%200)), "__meta_consul_dc": "dc1", "env": "prod",
		}, Targets: []model.LabelSet{{model.AddressLabel: model.LabelValue(fmt.Sprintf("10.%d.%d.%d:9100", i>>16, (i>>8)&255, i&255))}}})
	}
	entries := outputtest.NewSnapshot("web", groups).Entries()
	var rs []*relabel.Config
	if err := yaml.Unmarshal([]byte(`
- source_labels: [__meta_consul_tags]
  regex: ".*,metrics,.*"
  action: keep
- source_labels: [__meta_consul_service]
  target_label: service
- source_labels: [__meta_consul_node]
  regex: "node1.*"
  action: drop`), &rs); err != nil {
		b.Fatal(err)
	}
	for _, r := range rs {
		if err := r.Validate(model.UTF8Validation); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		if c := CountRelabelled("web", ScrapeSettings{}, rs, entries); c.Kept+c.Dropped != 10000 {
			b.Fatalf("counts %+v", c)
		}
	}
}

// The status page counts a job again only when its output or its rules
// change.
func TestCountsCache(t *testing.T) {
	var c countsCache
	snap := outputtest.NewSnapshot("web", []*targetgroup.Group{group("a", model.LabelSet{"env": "prod"}, "10.0.0.1:80", "10.0.0.2:80")})
	drop := rules(t, `
- source_labels: [env]
  regex: prod
  action: drop`)
	if got := c.get("web", snap, drop, ScrapeSettings{}); got != (RelabelCounts{Dropped: 2}) {
		t.Fatalf("first count = %+v", got)
	}
	// The same rules (pointers) and snapshot: the cached counts, not a
	// recount (which would see the rule changed under them).
	drop[0].Action = relabel.Keep
	if got := c.get("web", snap, drop, ScrapeSettings{}); got != (RelabelCounts{Dropped: 2}) {
		t.Errorf("cached count = %+v, want the first", got)
	}
	// Other rules, other settings, another snapshot: counted again.
	if got := c.get("web", snap, rules(t, `[]`), ScrapeSettings{}); got != (RelabelCounts{Kept: 2}) {
		t.Errorf("count with other rules = %+v", got)
	}
	if got := c.get("web", snap, nil, ScrapeSettings{Timeout: model.Duration(2 * time.Minute)}); got.Rejected != 2 {
		t.Errorf("count with a timeout over the interval = %+v, want both rejected", got)
	}
	snap2 := outputtest.NewSnapshot("web", []*targetgroup.Group{group("a", model.LabelSet{"env": "prod"}, "10.0.0.1:80")})
	if got := c.get("web", snap2, nil, ScrapeSettings{}); got != (RelabelCounts{Kept: 1}) {
		t.Errorf("count of a new snapshot = %+v", got)
	}
	c.keep(map[string]*output.Snapshot{})
	if len(c.jobs) != 0 {
		t.Errorf("a job gone is still cached")
	}
}
