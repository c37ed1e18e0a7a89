package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"path/filepath"
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
`)
	want := `[
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
	var stdout, stderr bytes.Buffer
	code := runMain([]string{"discover", "--config.file=" + cfgFile, "--job=files", "--timeout=30s"}, &stdout, &stderr)
	if code != exitOK || stdout.String() != want {
		t.Errorf("discover = exit %d, stdout\n%s\nwant exit 0 and\n%s\nstderr: %s", code, stdout.String(), want, stderr.String())
	}

	for _, c := range []struct {
		name string
		args []string
		code int
		err  string
	}{
		{"unknown job", []string{"--config.file=" + cfgFile, "--job=nope"}, exitBadConfig,
			`sdhub discover: no job "nope" with service discovery sdhub runs in ` + cfgFile + " (jobs: files, other)\n"},
		{"no job flag", []string{"--config.file=" + cfgFile}, exitBadConfig, "sdhub: required flag(s) '--job' not provided\n"},
		{"missing config", []string{"--config.file=" + filepath.Join(t.TempDir(), "none.yml"), "--job=files"}, exitBadConfig, "no such file or directory"},
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
	return silent{o.Logger}, nil
}

type silent struct{ logger *slog.Logger }

func (s silent) Run(ctx context.Context, _ chan<- []*targetgroup.Group) {
	s.logger.Error("Unable to refresh target groups", "err", errors.New("dial tcp 127.0.0.1:8500: connect: connection refused"))
	<-ctx.Done()
}

var _ discovery.Config = brokenConfig{}

func TestDiscoverFailures(t *testing.T) {
	var log bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&log, nil))
	_, err := discoverOnce("web", discovery.Configs{brokenConfig{fail: true}}, waitTimeout, logger)
	want := `job "web": 1 of its 1 SD configs failed to start: cannot create service discovery: broken_sd_configs: cannot read "/etc/sdhub/ca.pem": permission denied`
	if err == nil || err.Error() != want {
		t.Errorf("a config that cannot start: %v, want %s", err, want)
	}

	start := time.Now()
	_, err = discoverOnce("web", discovery.Configs{brokenConfig{}}, time.Second, logger)
	want = `job "web": timed out after 1s waiting for the first full set of broken/0; last errors: broken/0: Unable to refresh target groups: dial tcp 127.0.0.1:8500: connect: connection refused`
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
