// Command discoveronce measures what sdhub saves an API that a fleet of
// Prometheus servers discovers from: a mock Eureka API (eureka_sd_configs;
// its server is configurable and Debian's Prometheus 2.42 has it) that
// counts the requests it answers. For each fleet size N it runs, one after
// the other:
//
//   - native: N real Prometheus processes, each with the job's
//     eureka_sd_configs, each polling the API;
//   - sdhub: one sdhub with the same eureka_sd_configs (run with
//     Prometheus's own eureka discoverer) and N real Prometheus processes,
//     Prometheus I reading shard I of N of the job from sdhub's http_sd
//     endpoint (/api/v1/sd/<job>?shard=I&shards=N).
//
// Every side uses the same refresh_interval. Once every Prometheus has the
// job's targets, the API's requests are counted over -window. The targets
// each Prometheus discovered (its service-discovery page's discovered
// labels, __meta_url aside) are compared: the union of the N shards must be
// the native target set, each target in exactly one shard.
//
//	go run ./bench/discoveronce                    # N = 1, 3, 6; 60 s windows
//	go run ./bench/discoveronce -n 3 -window 30s
//
// Prometheus is $SDHUB_PROMETHEUS_BIN or prometheus on PATH; sdhub is built
// from this module unless -sdhub names a binary.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sdhub/sdhub/internal/benchreport"
	"github.com/sdhub/sdhub/internal/sdhubtest"
)

func main() {
	var (
		ns        = flag.String("n", "1,3,6", "fleet sizes: numbers of Prometheus servers, comma separated")
		instances = flag.Int("instances", 120, "instances the mock Eureka API lists")
		apps      = flag.Int("apps", 6, "applications the instances are spread over")
		refresh   = flag.Duration("refresh", 5*time.Second, "refresh_interval of eureka_sd_configs and of the http_sd_configs reading sdhub")
		window    = flag.Duration("window", time.Minute, "how long requests are counted once every Prometheus has the targets")
		promBin   = flag.String("prometheus", "", "Prometheus binary (default $SDHUB_PROMETHEUS_BIN, else prometheus on PATH)")
		sdhubBin  = flag.String("sdhub", "", "sdhub binary (default: go build ./cmd/sdhub)")
	)
	flag.Parse()
	if err := run(*ns, *instances, *apps, *refresh, *window, *promBin, *sdhubBin); err != nil {
		fmt.Fprintln(os.Stderr, "discoveronce:", err)
		os.Exit(1)
	}
}

func run(ns string, instances, apps int, refresh, window time.Duration, promBin, sdhubBin string) error {
	var sizes []int
	for _, s := range strings.Split(ns, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return fmt.Errorf("invalid fleet size %q in -n (want positive numbers, e.g. 1,3,6)", s)
		}
		sizes = append(sizes, n)
	}
	if promBin == "" {
		promBin = os.Getenv("SDHUB_PROMETHEUS_BIN")
	}
	if promBin == "" {
		p, err := exec.LookPath("prometheus")
		if err != nil {
			return fmt.Errorf("no Prometheus: set -prometheus or SDHUB_PROMETHEUS_BIN, or put prometheus on PATH")
		}
		promBin = p
	}
	work, err := os.MkdirTemp("", "discoveronce-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	if sdhubBin == "" {
		if sdhubBin, err = sdhubtest.Build(context.Background(), "", work); err != nil {
			return fmt.Errorf("building sdhub (run from the module, or set -sdhub): %w", err)
		}
	}
	header := benchreport.New("bench/discoveronce", benchreport.Program("Prometheus", promBin, "--version"))
	api, err := newEureka(instances, apps)
	if err != nil {
		return err
	}
	defer api.close()

	if err := header.Write(os.Stdout); err != nil {
		return err
	}
	fmt.Printf("mock Eureka API: %d instances in %d applications; refresh_interval %s; requests counted over %s\n\n",
		instances, apps, refresh, window)
	fmt.Println("| Prometheus servers | API requests/min, native eureka_sd | API requests/min, through sdhub | targets, native (each server) | targets per shard | union of the shards = native set |")
	fmt.Println("|---|---|---|---|---|---|")
	for _, n := range sizes {
		r, err := measure(n, api, promBin, sdhubBin, filepath.Join(work, strconv.Itoa(n)), refresh, window)
		if err != nil {
			return fmt.Errorf("N=%d: %w", n, err)
		}
		fmt.Printf("| %d | %.1f | %.1f | %d | %s | %s (%d targets) |\n", n, r.nativeRate, r.sdhubRate, r.nativeTargets, r.perShard, r.verdict, r.shardTargets)
	}
	return nil
}

// result is one fleet size's measurement.
type result struct {
	nativeRate, sdhubRate       float64 // API requests per minute
	nativeTargets, shardTargets int
	perShard                    string // "41, 40, 39"
	verdict                     string
}

const job = "eureka"

func measure(n int, api *eureka, promBin, sdhubBin, dir string, refresh, window time.Duration) (result, error) {
	var res result
	sd := fmt.Sprintf("eureka_sd_configs:\n      - server: %s\n        refresh_interval: %s\n", api.url(), refresh)

	// Native: every Prometheus polls the API.
	native, err := startFleet(promBin, filepath.Join(dir, "native"), n, func(int) string { return sd })
	if err != nil {
		return res, err
	}
	sets, err := waitTargets(native, api.instances)
	if err != nil {
		stopAll(native)
		return res, fmt.Errorf("native: %w", err)
	}
	res.nativeRate = api.rate(window)
	stopAll(native)
	want := sets[0]
	for i, s := range sets {
		if !slices.Equal(s, want) {
			return res, fmt.Errorf("native Prometheus %d discovered other targets than Prometheus 0", i)
		}
	}
	res.nativeTargets = len(want)

	// sdhub: one sdhub polls the API; Prometheus I reads shard I of N.
	hub, err := startSdhub(sdhubBin, filepath.Join(dir, "sdhub"), "scrape_configs:\n  - job_name: "+job+"\n    "+sd)
	if err != nil {
		return res, err
	}
	defer hub.stop()
	fleet, err := startFleet(promBin, filepath.Join(dir, "shards"), n, func(i int) string {
		return fmt.Sprintf("http_sd_configs:\n      - url: http://%s/api/v1/sd/%s?shard=%d&shards=%d\n        refresh_interval: %s\n",
			hub.addr, job, i, n, refresh)
	})
	if err != nil {
		return res, err
	}
	defer stopAll(fleet)
	shards, err := waitUnion(fleet, api.instances)
	if err != nil {
		return res, fmt.Errorf("through sdhub: %w", err)
	}
	res.sdhubRate = api.rate(window)

	var union []string
	var sizes []string
	seen := map[string]int{}
	for i, s := range shards {
		sizes = append(sizes, strconv.Itoa(len(s)))
		for _, t := range s {
			if j, dup := seen[t]; dup {
				return res, fmt.Errorf("target in shards %d and %d: %s", j, i, t)
			}
			seen[t] = i
			union = append(union, t)
		}
	}
	slices.Sort(union)
	res.shardTargets = len(union)
	res.perShard = strings.Join(sizes, ", ")
	res.verdict = "yes"
	if !slices.Equal(union, want) {
		res.verdict = "NO"
	}
	return res, nil
}

// waitTargets waits until every server has discovered want targets and
// returns each one's target set.
func waitTargets(fleet []*proc, want int) ([][]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sets := make([][]string, len(fleet))
	for i, p := range fleet {
		for {
			s, err := p.discovered(ctx)
			if err == nil && len(s) == want {
				sets[i] = s
				break
			}
			if err := pause(ctx, 200*time.Millisecond); err != nil {
				return nil, fmt.Errorf("Prometheus %d has %d of %d targets (%v): %w", i, len(s), want, err, ctx.Err())
			}
		}
	}
	return sets, nil
}

// waitUnion waits until the servers' targets together number want and
// returns each one's.
func waitUnion(fleet []*proc, want int) ([][]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for {
		sets := make([][]string, len(fleet))
		total := 0
		var lastErr error
		for i, p := range fleet {
			s, err := p.discovered(ctx)
			if err != nil {
				lastErr = err
			}
			sets[i] = s
			total += len(s)
		}
		if lastErr == nil && total == want {
			return sets, nil
		}
		if err := pause(ctx, 200*time.Millisecond); err != nil {
			return nil, fmt.Errorf("the shards hold %d of %d targets (%v): %w", total, want, lastErr, err)
		}
	}
}

// pause waits d, or returns ctx's error.
func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
