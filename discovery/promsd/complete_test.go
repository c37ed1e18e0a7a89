package promsd

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	_ "github.com/prometheus/prometheus/discovery/xds" // kuma_sd_configs

	"github.com/sdhub/sdhub/discovery"
)

// silent is a log handler that takes no record: whatever the discoverer
// reports must reach its Health some other way.
type silent struct{}

func (silent) Enabled(context.Context, slog.Level) bool  { return false }
func (silent) Handle(context.Context, slog.Record) error { return nil }
func (s silent) WithAttrs([]slog.Attr) slog.Handler      { return s }
func (s silent) WithGroup(string) slog.Handler           { return s }

// TestRefreshFailureWithoutLog: an http_sd source answering 500 is reported
// to the provider's Health as a failure once per failed refresh, as
// prometheus_sd_refresh_failures_total counts it, with a logger that takes
// no record; once the source answers, the first refresh's one update is the
// first update, and the provider is synced.
func TestRefreshFailureWithoutLog(t *testing.T) {
	reg, refresh, m := mechanismMetrics(t, "http")

	src := newHTTPSource(t, "")
	src.set("", http.StatusInternalServerError)
	h := newHealth()
	d, err := decode(t, "http", "url: "+src.srv.URL+"\nrefresh_interval: 100ms\n").NewDiscoverer(discovery.Options{
		SetName: "inventory", Metrics: m, Health: h, Logger: slog.New(silent{}),
	})
	if err != nil {
		t.Fatal(err)
	}
	if r := d.(*Discovery).rule; !r.one {
		t.Fatalf("http_sd_configs has rule %+v, want the first update (refresh-based)", r)
	}
	up := run(t, d)
	h.waitFor(t, "two failed refreshes", func(failed []string, _ int) bool { return len(failed) >= 2 })
	src.set(`[{"targets": ["10.0.0.1:9100", "10.0.0.2:9100"]}]`, http.StatusOK)
	first := next(t, up, "the first update")
	if got := flatten(first); len(got) != 2 {
		t.Fatalf("first update %q, want both targets", got)
	}
	h.waitFor(t, "synced", func(_ []string, synced int) bool { return synced >= 1 })
	drain(t, up)

	failed, _ := h.state()
	want := `refresh of http_sd_configs failed (prometheus_sd_refresh_failures_total{mechanism="http",config="inventory"}); its last targets are kept`
	for _, f := range failed {
		if f != want {
			t.Fatalf("failure %q, want %q", f, want)
		}
	}
	counted := testutil.ToFloat64(refresh.Instantiate("http", "inventory").Failures)
	if counted != float64(len(failed)) {
		t.Fatalf("%d failures reported, prometheus_sd_refresh_failures_total = %v", len(failed), counted)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(fmt.Sprintf(`
# HELP prometheus_sd_refresh_failures_total Number of refresh failures for the given SD mechanism.
# TYPE prometheus_sd_refresh_failures_total counter
prometheus_sd_refresh_failures_total{config="inventory",mechanism="http"} %d
`, len(failed))), "prometheus_sd_refresh_failures_total"); err != nil {
		t.Fatal(err)
	}
}

// TestRules: the rule each kind of discoverer gets. (serverset's
// constructor connects to ZooKeeper at once, so it is not built here; it
// takes the default, quiet rule.)
func TestRules(t *testing.T) {
	for _, tc := range []struct {
		name, block string
		one, live   bool
	}{
		{"dns", "names: [_x._tcp.example.org]\n", true, false},
		{"kubernetes", "role: pod\napi_server: http://127.0.0.1:1\n", false, true},
		{"kuma", "server: http://127.0.0.1:1\n", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := decode(t, tc.name, tc.block).NewDiscoverer(discovery.Options{SetName: "job"})
			if err != nil {
				t.Fatal(err)
			}
			if r := d.(*Discovery).rule; r.one != tc.one || (r.live != nil) != tc.live || (r.empty != nil) != tc.live {
				t.Fatalf("rule one=%v live=%v empty=%v, want one=%v live=%v empty=%v", r.one, r.live != nil, r.empty != nil, tc.one, tc.live, tc.live)
			}
		})
	}
}

// counted sends n groups one per 10 ms (a burst far longer than the old
// 2 s bound when n is large), counting each in listed before it is sent,
// as an informer's handler counts an object before its key is queued;
// extra more are counted as it starts, as by another discoverer.
type counted struct {
	n, extra int
	listed   *atomic.Int64
}

func (c counted) Run(ctx context.Context, up chan<- []*targetgroup.Group) {
	c.listed.Add(int64(c.extra))
	for i := range c.n {
		c.listed.Add(1)
		select {
		case <-time.After(10 * time.Millisecond):
		case <-ctx.Done():
			return
		}
		select {
		case up <- []*targetgroup.Group{group(fmt.Sprint("pod/", i), "10.0.0.1:80")}:
		case <-ctx.Done():
			return
		}
	}
	<-ctx.Done()
}

// TestFirstUpdateCounted: under the kubernetes rule the first update waits
// for as many Sources as objects were listed, however long the burst,
// then settleQuiet; when the count is never met (another discoverer counts
// into it), kubeQuiet without an update.
func TestFirstUpdateCounted(t *testing.T) {
	for _, tc := range []struct {
		name  string
		extra int // counted by someone else
		wait  time.Duration
	}{
		{"met", 0, settleQuiet},
		{"never met", 5, kubeQuiet},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var listed atomic.Int64
				const n = 500 // 5 s of burst
				d := &Discovery{inner: counted{n: n, extra: tc.extra, listed: &listed}, health: newHealth(), rule: rule{live: func() float64 { return float64(listed.Load()) }}}
				up := run(t, d)
				start := time.Now()
				first := <-up
				if len(first) != n {
					t.Errorf("first update has %d groups, want %d", len(first), n)
				}
				if waited, want := time.Since(start), n*10*time.Millisecond+tc.wait; waited != want {
					t.Errorf("first update after %s, want %s", waited, want)
				}
			})
		})
	}
}
