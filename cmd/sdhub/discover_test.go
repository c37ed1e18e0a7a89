package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/sdhub/sdhub/discovery"
)

func TestDiscoverCommand(t *testing.T) {
	cfgFile, _, inDir := hubDir(t, `scrape_configs:
  - job_name: files
    file_sd_configs:
      - files: ["in/*.json"]
    static_configs:
      - targets: ["127.0.0.1:9100"]
        labels: {env: prod}
  - job_name: other
    static_configs: [{targets: ["127.0.0.2:9100"]}]
  - job_name: bare
`)
	// promtool's format, without relabel rules: after relabelling is
	// before it with the __meta_ labels gone and instance set.
	defaults := `
      "__always_scrape_classic_histograms__": "false",
      "__convert_classic_histograms_to_nhcb__": "false",`
	scrape := `
      "__metrics_path__": "/metrics",
      "__scheme__": "http",
      "__scrape_interval__": "1m",
      "__scrape_native_histograms__": "false",
      "__scrape_timeout__": "10s",`
	want := `[
  {
    "discoveredLabels": {
      "__address__": "127.0.0.1:8080",` + defaults + `
      "__meta_filepath": "` + filepath.Join(inDir, "a.json") + `",` + scrape + `
      "app": "web",
      "job": "files"
    },
    "labels": {
      "__address__": "127.0.0.1:8080",` + defaults + scrape + `
      "app": "web",
      "instance": "127.0.0.1:8080",
      "job": "files"
    }
  },
  {
    "discoveredLabels": {
      "__address__": "127.0.0.1:8081",` + defaults + `
      "__meta_filepath": "` + filepath.Join(inDir, "a.json") + `",` + scrape + `
      "app": "web",
      "job": "files"
    },
    "labels": {
      "__address__": "127.0.0.1:8081",` + defaults + scrape + `
      "app": "web",
      "instance": "127.0.0.1:8081",
      "job": "files"
    }
  },
  {
    "discoveredLabels": {
      "__address__": "127.0.0.1:9100",` + defaults + scrape + `
      "env": "prod",
      "job": "files"
    },
    "labels": {
      "__address__": "127.0.0.1:9100",` + defaults + scrape + `
      "env": "prod",
      "instance": "127.0.0.1:9100",
      "job": "files"
    }
  }
]
`
	// The file's bytes, with --format=file_sd.
	wantFile := `[
  {
    "targets": [
      "127.0.0.1:8080",
      "127.0.0.1:8081"
    ],
    "labels": {
      "__meta_sdhub_filepath": "` + filepath.Join(inDir, "a.json") + `",
      "app": "web"
    }
  },
  {
    "targets": [
      "127.0.0.1:9100"
    ],
    "labels": {
      "env": "prod"
    }
  }
]
`
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"positional", []string{cfgFile, "files"}, want},
		{"flags, as before", []string{"--config.file=" + cfgFile, "--job=files", "--timeout=30s"}, want},
		{"positional and the same flags", []string{"--config.file=" + cfgFile, "--job=files", cfgFile, "files"}, want},
		{"file_sd", []string{"--format=file_sd", cfgFile, "files"}, wantFile},
	} {
		t.Run(c.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := runMain(append([]string{"discover"}, c.args...), &stdout, &stderr)
			if code != exitOK || stdout.String() != c.want {
				t.Errorf("discover = exit %d, stdout\n%s\nwant exit 0 and\n%s\nstderr: %s", code, stdout.String(), c.want, stderr.String())
			}
		})
	}

	for _, c := range []struct {
		name string
		args []string
		code int
		err  string
	}{
		{"unknown job", []string{cfgFile, "nope"}, exitBadConfig,
			`sdhub discover: no job "nope" in ` + cfgFile + " (jobs sdhub serves: files, other)\n"},
		{"a job left to Prometheus", []string{cfgFile, "bare"}, exitBadConfig,
			`sdhub discover: job "bare" is not served by sdhub: it has no service discovery configs; ` +
				"`promtool check service-discovery " + cfgFile + " bare` discovers it\n"},
		{"no job", []string{cfgFile}, exitBadConfig, "sdhub discover: no job given: sdhub discover CONFIG JOB\n"},
		{"argument and flag disagree", []string{"--job=other", cfgFile, "files"}, exitBadConfig,
			`sdhub discover: the job argument "files" and its flag "other" disagree: give one` + "\n"},
		{"missing config", []string{filepath.Join(t.TempDir(), "none.yml"), "files"}, exitBadConfig, "no such file or directory"},
		{"unknown format", []string{"--format=json", cfgFile, "files"}, exitBadConfig, "enum value must be one of promtool,file_sd, got 'json'"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := runMain(append([]string{"discover"}, c.args...), &stdout, &stderr)
			if code != c.code || stdout.Len() != 0 || !strings.Contains(stderr.String(), c.err) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d, no output, stderr with %q", code, stdout.String(), stderr.String(), c.code, c.err)
			}
		})
	}
}

// brokenConfig is an SD config whose discoverer cannot start (fail) or
// never delivers and logs an error instead.
type brokenConfig struct{ fail bool }

func (brokenConfig) Name() string { return "broken" }

func (c brokenConfig) NewDiscoverer(o discovery.Options) (discovery.Discoverer, error) {
	if c.fail {
		return nil, errors.New(`cannot read "/etc/sdhub/ca.pem": permission denied`)
	}
	return silent{o.Logger, discovery.HealthOf(o)}, nil
}

type silent struct {
	logger *slog.Logger
	health discovery.Health
}

func (s silent) Run(ctx context.Context, _ chan<- []*targetgroup.Group) {
	err := errors.New("dial tcp 127.0.0.1:8500: connect: connection refused")
	s.logger.Error("Unable to refresh target groups", "err", err)
	s.health.Failed(err)
	<-ctx.Done()
}

var _ discovery.Config = brokenConfig{}

func TestDiscoverFailures(t *testing.T) {
	var log bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&log, nil))
	_, err := discoverOnce("web", discovery.Configs{brokenConfig{fail: true}}, waitTimeout, logger)
	want := `job "web": 1 of its 1 SD configs failed to start: broken_sd_configs: cannot read "/etc/sdhub/ca.pem": permission denied`
	if err == nil || err.Error() != want {
		t.Errorf("a config that cannot start: %v, want %s", err, want)
	}

	start := time.Now()
	_, err = discoverOnce("web", discovery.Configs{brokenConfig{}}, time.Second, logger)
	want = `job "web": timed out after 1s waiting for the first full set of broken/0; last errors: broken/0: dial tcp 127.0.0.1:8500: connect: connection refused`
	if err == nil || err.Error() != want {
		t.Errorf("a provider that never delivers: %v, want %s", err, want)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the timeout of 1s took %s", d)
	}
	// The errors reached the log too.
	if !strings.Contains(log.String(), "connection refused") {
		t.Errorf("the discoverer's error is not in the log:\n%s", log.String())
	}
}

// TestDiscoverRelabelsAsPromtool runs Debian's promtool check
// service-discovery and sdhub discover on one job with relabel_configs
// and scrape settings: the labels after relabelling are promtool's, label
// for label (but those Prometheus 3 adds for its histogram settings, which
// this promtool predates). The hooks stand in for the config's job. (This
// promtool panics on a job with file_sd_configs and static_configs: the
// job has static_configs only.)
func TestDiscoverRelabelsAsPromtool(t *testing.T) {
	promtool := filepath.Join(filepath.Dir(prometheusBin(t)), "promtool")
	const rulesYAML = `
      - source_labels: [env]
        regex: dev
        action: drop
      - source_labels: [__address__]
        regex: "(.+):80"
        replacement: "${1}:9100"
        target_label: __address__
      - source_labels: [__meta_source]
        target_label: source
      - source_labels: [__scheme__, __param_module]
        separator: "-"
        target_label: how
      - regex: "team_(.*)"
        action: labelmap
      - source_labels: [__address__]
        regex: "10\\.0\\.0\\.4:.*"
        replacement: "10.0.0.4/metrics"
        target_label: __address__`
	cfgFile := filepath.Join(t.TempDir(), "prometheus.yml")
	writeFile(t, cfgFile, `global:
  scrape_interval: 15s
scrape_configs:
  - job_name: node
    scheme: https
    params: {module: [http_2xx]}
    static_configs:
      - targets: ["10.0.0.5:80"]
        labels: {team_owner: ops, __meta_source: batch}
      - targets: ["10.0.0.1:80", "10.0.0.2:80"]
        labels: {env: prod}
      - targets: ["10.0.0.3:80"]
        labels: {env: dev}
      - targets: ["10.0.0.4:80"]
    relabel_configs:`+rulesYAML+"\n")
	// The rules and settings come from the config, as Prometheus's loader
	// parsed them (jobRelabel, jobScrape).
	var stdout, stderr bytes.Buffer
	if code := runMain([]string{"discover", cfgFile, "node"}, &stdout, &stderr); code != exitOK {
		t.Fatalf("sdhub discover: exit %d\n%s", code, stderr.String())
	}
	ours := sdResults(t, stdout.Bytes(), "__always_scrape_classic_histograms__", "__convert_classic_histograms_to_nhcb__", "__scrape_native_histograms__")
	out, err := exec.Command(promtool, "check", "service-discovery", cfgFile, "node", "--timeout=2s").Output()
	if err != nil {
		t.Fatalf("promtool check service-discovery: %v\n%s", err, out)
	}
	theirs := sdResults(t, out)
	if !slices.Equal(ours, theirs) {
		t.Errorf("after relabelling, sdhub discover has\n%s\npromtool has\n%s", strings.Join(ours, "\n"), strings.Join(theirs, "\n"))
	}
	// The rules did something: a target kept with new labels, one
	// dropped, one rejected (promtool leaves its labels empty too).
	for _, want := range []string{
		`{"__address__":"10.0.0.1:9100","__metrics_path__":"/metrics","__param_module":"http_2xx","__scheme__":"https","__scrape_interval__":"15s","__scrape_timeout__":"10s","env":"prod","how":"https-http_2xx","instance":"10.0.0.1:9100","job":"node"}`,
		`{"__address__":"10.0.0.5:9100","__metrics_path__":"/metrics","__param_module":"http_2xx","__scheme__":"https","__scrape_interval__":"15s","__scrape_timeout__":"10s","how":"https-http_2xx","instance":"10.0.0.5:9100","job":"node","owner":"ops","source":"batch","team_owner":"ops"}`,
		`{}`,
	} {
		if !slices.Contains(ours, want) {
			t.Errorf("sdhub discover lacks a target with labels %s", want)
		}
	}
	if !strings.Contains(stdout.String(), `"error": "\"10.0.0.4/metrics\" is not a valid hostname"`) {
		t.Errorf("sdhub discover does not say why 10.0.0.4 is rejected:\n%s", stdout.String())
	}
	if !strings.Contains(stdout.String(), `"droppedBy": "relabel_configs[0]: {action: drop, source_labels: [env], regex: \"dev\"}"`) {
		t.Errorf("sdhub discover does not name the rule that dropped 10.0.0.3:\n%s", stdout.String())
	}
}

// sdResults returns the labels after relabelling of each target of a
// promtool check service-discovery output, as sorted JSON objects, without
// the labels named in ignore.
func sdResults(t *testing.T, out []byte, ignore ...string) []string {
	t.Helper()
	var results []struct {
		Labels map[string]string `json:"labels"`
	}
	if err := json.Unmarshal(out, &results); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	var s []string
	for _, r := range results {
		for _, name := range ignore {
			delete(r.Labels, name)
		}
		b, err := json.Marshal(r.Labels) // keys sorted
		if err != nil {
			t.Fatal(err)
		}
		s = append(s, string(b))
	}
	slices.Sort(s)
	return s
}

// TestSubcommandHelp: each command's help lists its own flags only; the
// server's are run's.
func TestSubcommandHelp(t *testing.T) {
	serverFlags := []string{"config.auto-reload", "output.dir", "output.flush-interval", "web.listen-address", "web.enable-lifecycle",
		"web.config.file", "web.external-url", "web.route-prefix"}
	for _, c := range []struct {
		args          []string
		want, notWant []string
	}{
		{[]string{"discover", "--help"}, []string{"usage: sdhub discover [<flags>] [<config-file>] [<job>]", "--timeout=30s", "--format=promtool", "--log.level=info", "[<config-file>]  The config file"},
			append([]string{"config.file", "--job"}, serverFlags...)},
		{[]string{"check", "config", "--help"}, []string{"usage: sdhub check config [<flags>] <config-files>...", "<config-files>  The config files to check.", "--output.parts=16"},
			append([]string{"config.file", "log.level", "--timeout"}, serverFlags...)},
		{[]string{"run", "--help"}, append([]string{`--config.file="prometheus.yml"`, "--log.level=info", "--log.format=logfmt"}, serverFlags...),
			[]string{"--timeout", "--format", "--http-sd-url"}},
		{[]string{"generate", "prometheus-config", "--help"}, []string{`--config.file="prometheus.yml"`, `--output.dir="sd"`, "--http-sd-url"},
			append([]string{"log.level", "--timeout"}, serverFlags[2:]...)},
		{[]string{"--help"}, []string{"run* [<flags>]", "discover [<flags>] [<config-file>] [<job>]", "check config [<flags>] <config-files>...", "sdhub run --help"},
			[]string{"--web.listen-address", "--[no-]config.auto-reload", "--log.level", "--timeout"}},
	} {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := runMain(c.args, &stdout, &stderr); code != exitOK || stderr.Len() != 0 {
				t.Fatalf("exit %d, stderr %s", code, stderr.String())
			}
			for _, s := range c.want {
				if !strings.Contains(stdout.String(), s) {
					t.Errorf("help lacks %q:\n%s", s, stdout.String())
				}
			}
			for _, s := range c.notWant {
				if strings.Contains(stdout.String(), s) {
					t.Errorf("help lists %q, another command's flag:\n%s", s, stdout.String())
				}
			}
		})
	}
}
