package promsd

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	promdiscovery "github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/discovery/dns"
	promhttp "github.com/prometheus/prometheus/discovery/http"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"go.uber.org/goleak"
	yamlv2 "go.yaml.in/yaml/v2"

	"github.com/sdhub/sdhub/discovery"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitTimeout bounds every wait.
const waitTimeout = 20 * time.Second

// decode decodes a `<name>_sd_configs` element with Prometheus's own type,
// as Prometheus's loader does.
func decode(t *testing.T, name, block string) *SDConfig {
	t.Helper()
	typ, ok := Registered()[name]
	if !ok {
		t.Fatalf("%s_sd_configs is not registered", name)
	}
	v := reflect.New(typ.Elem())
	if err := yamlv2.UnmarshalStrict([]byte(block), v.Interface()); err != nil {
		t.Fatalf("decoding %s: %v", name, err)
	}
	return Wrap(v.Interface().(promdiscovery.Config))
}

func TestRegistered(t *testing.T) {
	reg := Registered()
	if reg["dns"] != reflect.TypeFor[*dns.SDConfig]() || reg["http"] != reflect.TypeFor[*promhttp.SDConfig]() {
		t.Fatalf("registry: dns %v, http %v", reg["dns"], reg["http"])
	}
	if _, ok := reg["static"]; ok {
		t.Fatal("static_configs listed as a mechanism")
	}
	var names []string
	for _, m := range Mechanisms("http") {
		names = append(names, m.Name)
		if _, ok := m.NewConfig().(*SDConfig); !ok {
			t.Errorf("%s: NewConfig returns %T", m.Name, m.NewConfig())
		}
	}
	if !slices.IsSorted(names) || slices.Contains(names, "http") || !slices.Contains(names, "dns") {
		t.Fatalf("Mechanisms(\"http\") = %q, want sorted, without http, with dns", names)
	}
}

// health records what a discoverer reports.
type health struct {
	mu     sync.Mutex
	failed []string
	synced int
	ch     chan struct{} // a report arrived
}

func newHealth() *health { return &health{ch: make(chan struct{}, 100)} }

func (h *health) Failed(err error) {
	h.mu.Lock()
	h.failed = append(h.failed, err.Error())
	h.mu.Unlock()
	h.notify()
}

func (h *health) Synced() {
	h.mu.Lock()
	h.synced++
	h.mu.Unlock()
	h.notify()
}

func (h *health) notify() {
	select {
	case h.ch <- struct{}{}:
	default:
	}
}

func (h *health) state() (failed []string, synced int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.failed), h.synced
}

// waitFor waits until cond holds on h's reports.
func (h *health) waitFor(t *testing.T, what string, cond func(failed []string, synced int) bool) {
	t.Helper()
	deadline := time.After(waitTimeout)
	for !cond(h.state()) {
		select {
		case <-h.ch:
		case <-deadline:
			f, s := h.state()
			t.Fatalf("timed out waiting for %s: failed %q, synced %d", what, f, s)
		}
	}
}

// run runs d until the test ends and returns its updates.
func run(t *testing.T, d interface {
	Run(context.Context, chan<- []*targetgroup.Group)
},
) <-chan []*targetgroup.Group {
	ctx, cancel := context.WithCancel(context.Background())
	up := make(chan []*targetgroup.Group)
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.Run(ctx, up)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return up
}

// drain receives and drops updates until the test ends.
func drain(t *testing.T, up <-chan []*targetgroup.Group) {
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-up:
			case <-stop:
				return
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		<-done
	})
}

// next receives one update.
func next(t *testing.T, up <-chan []*targetgroup.Group, what string) []*targetgroup.Group {
	t.Helper()
	select {
	case tgs := <-up:
		return tgs
	case <-time.After(waitTimeout):
		t.Fatalf("timed out waiting for %s", what)
		return nil
	}
}

// flatten is a set of groups as the consuming Prometheus sees them: every
// target's labels merged over its group's, groups with no targets dropped,
// one line per target, sorted.
func flatten(tgs []*targetgroup.Group) []string {
	var out []string
	for _, tg := range tgs {
		for _, tl := range tg.Targets {
			ls := model.LabelSet{}
			for k, v := range tg.Labels {
				ls[k] = v
			}
			for k, v := range tl {
				ls[k] = v
			}
			out = append(out, ls.String())
		}
	}
	sort.Strings(out)
	return out
}

// state keeps the groups of a discoverer's updates by Source, as a
// discovery manager does, and flattens them.
type state map[string]*targetgroup.Group

func (s state) add(tgs []*targetgroup.Group) []string {
	for _, tg := range tgs {
		s[tg.Source] = tg
	}
	all := make([]*targetgroup.Group, 0, len(s))
	for _, tg := range s {
		all = append(all, tg)
	}
	return flatten(all)
}

// httpSource is a real HTTP server answering http_sd requests with body,
// or with status when it is not 200.
type httpSource struct {
	mu     sync.Mutex
	body   string
	status int
	srv    *httptest.Server
}

func newHTTPSource(t *testing.T, body string) *httpSource {
	s := &httpSource{body: body, status: http.StatusOK}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s.mu.Lock()
		body, status := s.body, s.status
		s.mu.Unlock()
		if status != http.StatusOK {
			http.Error(w, "unavailable", status)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, body)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *httpSource) set(body string, status int) {
	s.mu.Lock()
	s.body, s.status = body, status
	s.mu.Unlock()
}

// TestHTTPMatchesPrometheus runs http_sd_configs against a real HTTP server
// through the adapter and through Prometheus's own discoverer: both see the
// same targets, label for label, before and after the source changes; the
// adapter reports each refresh as synced, and a failing server as failed
// with Prometheus's error text, until it recovers.
func TestHTTPMatchesPrometheus(t *testing.T) {
	src := newHTTPSource(t, `[{"targets": ["10.0.0.1:9100", "10.0.0.2:9100"], "labels": {"env": "prod", "__meta_rack": "r1"}},
		{"targets": ["10.0.0.3:9100"], "labels": {"env": "dev"}}]`)
	block := fmt.Sprintf("url: %s/targets\nrefresh_interval: 200ms\n", src.srv.URL)
	ours := decode(t, "http", block)
	theirs := decode(t, "http", block)

	h := newHealth()
	d, err := ours.NewDiscoverer(discovery.Options{SetName: "web", Health: h})
	if err != nil {
		t.Fatal(err)
	}
	pd, err := theirs.Config.NewDiscoverer(promdiscovery.DiscovererOptions{
		Metrics: theirs.Config.NewDiscovererMetrics(prometheus.NewRegistry(), promdiscovery.NewRefreshMetrics(prometheus.NewRegistry())),
		SetName: "web",
	})
	if err != nil {
		t.Fatal(err)
	}
	upOurs, upTheirs := run(t, d), run(t, pd)
	sOurs, sTheirs := state{}, state{}

	got, want := sOurs.add(next(t, upOurs, "the adapter's first update")), sTheirs.add(next(t, upTheirs, "Prometheus's first update"))
	if len(got) != 3 || !slices.Equal(got, want) {
		t.Fatalf("first update:\n adapter:    %q\n Prometheus: %q", got, want)
	}
	if !strings.Contains(got[0], `__meta_url="`+src.srv.URL+`/targets"`) {
		t.Errorf("no __meta_url in %s", got[0])
	}
	h.waitFor(t, "synced after the first update", func(_ []string, synced int) bool { return synced >= 1 })

	src.set(`[{"targets": ["10.0.0.9:9100"], "labels": {"env": "canary"}}]`, http.StatusOK)
	until := func(up <-chan []*targetgroup.Group, s state, what string) []string {
		for {
			if got := s.add(next(t, up, what)); len(got) == 1 {
				return got
			}
		}
	}
	got, want = until(upOurs, sOurs, "the adapter's change"), until(upTheirs, sTheirs, "Prometheus's change")
	if !slices.Equal(got, want) || !strings.Contains(got[0], `env="canary"`) {
		t.Fatalf("after the change:\n adapter:    %q\n Prometheus: %q", got, want)
	}

	drain(t, upOurs)
	drain(t, upTheirs)
	src.set("", http.StatusServiceUnavailable)
	h.waitFor(t, "a failure", func(failed []string, _ int) bool { return len(failed) > 0 })
	failed, synced := h.state()
	if want := `refresh of http_sd_configs failed (prometheus_sd_refresh_failures_total{mechanism="http",config="web"}); its last targets are kept`; failed[0] != want {
		t.Fatalf("failure = %q, want %q", failed[0], want)
	}
	src.set(`[{"targets": ["10.0.0.9:9100"], "labels": {"env": "canary"}}]`, http.StatusOK)
	h.waitFor(t, "synced after the recovery", func(_ []string, s int) bool { return s > synced })
}

// mechanismMetrics makes the metrics of mechanism name, and the refresh
// metrics, on a new registry, unregistered when the test ends.
func mechanismMetrics(t *testing.T, name string) (*prometheus.Registry, *discovery.RefreshMetrics, discovery.Metrics) {
	t.Helper()
	reg := prometheus.NewRegistry()
	refresh, err := discovery.NewRefreshMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	m, err := mechanismNamed(t, name).NewMetrics(reg, refresh)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Unregister)
	return reg, refresh, m
}

// mechanismNamed is the mechanism name of Mechanisms.
func mechanismNamed(t *testing.T, name string) discovery.Mechanism {
	t.Helper()
	ms := Mechanisms()
	i := slices.IndexFunc(ms, func(m discovery.Mechanism) bool { return m.Name == name })
	if i < 0 {
		t.Fatalf("no mechanism %s", name)
	}
	return ms[i]
}

// TestMetrics: a mechanism's metrics are Prometheus's, registered once; its
// refresh metrics are sdhub's, registered once for every mechanism.
func TestMetrics(t *testing.T) {
	reg, refresh, m := mechanismMetrics(t, "http")
	{
		// Twice on one registry is an error, not a second set.
		reg := prometheus.NewRegistry()
		httpMech := mechanismNamed(t, "http")
		if _, err := httpMech.NewMetrics(reg, refresh); err != nil {
			t.Fatal(err)
		}
		if _, err := httpMech.NewMetrics(reg, refresh); err == nil {
			t.Fatal("registering http's metrics twice succeeded")
		}
	}

	src := newHTTPSource(t, "")
	src.set("", http.StatusInternalServerError)
	h := newHealth()
	d, err := decode(t, "http", "url: "+src.srv.URL+"\nrefresh_interval: 1h\n").NewDiscoverer(discovery.Options{SetName: "inventory", Metrics: m, Health: h})
	if err != nil {
		t.Fatal(err)
	}
	run(t, d)
	h.waitFor(t, "the failed first refresh", func(failed []string, _ int) bool { return len(failed) > 0 })
	want := `
# HELP prometheus_sd_http_failures_total Number of HTTP service discovery refresh failures.
# TYPE prometheus_sd_http_failures_total counter
prometheus_sd_http_failures_total 1
# HELP prometheus_sd_refresh_failures_total Number of refresh failures for the given SD mechanism.
# TYPE prometheus_sd_refresh_failures_total counter
prometheus_sd_refresh_failures_total{config="inventory",mechanism="http"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "prometheus_sd_http_failures_total", "prometheus_sd_refresh_failures_total"); err != nil {
		t.Fatal(err)
	}
	m.Unregister()
	if n, err := testutil.GatherAndCount(reg, "prometheus_sd_http_failures_total"); err != nil || n != 0 {
		t.Fatalf("after Unregister: %d series, %v", n, err)
	}
}

// piecemeal is a discoverer that sends its initial state in pieces, as
// Prometheus's kubernetes discoverer does, then one change.
type piecemeal struct{ pieces [][]*targetgroup.Group }

func (p piecemeal) Run(ctx context.Context, up chan<- []*targetgroup.Group) {
	for i, tgs := range p.pieces {
		if i == len(p.pieces)-1 {
			// The change comes after a quiet spell.
			select {
			case <-time.After(time.Second):
			case <-ctx.Done():
				return
			}
		}
		select {
		case up <- tgs:
		case <-ctx.Done():
			return
		}
	}
	<-ctx.Done()
}

func group(source string, addrs ...string) *targetgroup.Group {
	tg := &targetgroup.Group{Source: source}
	for _, a := range addrs {
		tg.Targets = append(tg.Targets, model.LabelSet{model.AddressLabel: model.LabelValue(a)})
	}
	return tg
}

// TestFirstUpdateSettles: what a discoverer sends in a burst at start
// becomes one first update (merged by Source); a later change goes out as
// it comes.
func TestFirstUpdateSettles(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHealth()
		d := &Discovery{inner: piecemeal{pieces: [][]*targetgroup.Group{
			{group("pod/a", "10.0.0.1:80")},
			{group("pod/b", "10.0.0.2:80")},
			{group("pod/a", "10.0.0.1:80", "10.0.0.1:81")},
			{group("pod/b")},
		}}, health: h}
		up := run(t, d)
		start := time.Now()
		first := <-up
		if got := flatten(first); len(first) != 2 || len(got) != 3 {
			t.Fatalf("first update %q from %d groups, want pod/a's 2 targets and pod/b's", got, len(first))
		}
		if waited := time.Since(start); waited != settleQuiet {
			t.Errorf("first update after %s, want %s", waited, settleQuiet)
		}
		second := <-up
		if len(second) != 1 || second[0].Source != "pod/b" || len(second[0].Targets) != 0 {
			t.Fatalf("second update %v, want pod/b gone", second)
		}
		synctest.Wait()
		if _, synced := h.state(); synced != 2 {
			t.Errorf("synced %d times, want 2", synced)
		}
	})
}

// endless sends a new group every 10 ms, never quiet.
type endless struct{}

func (endless) Run(ctx context.Context, up chan<- []*targetgroup.Group) {
	for i := 0; ; i++ {
		select {
		case up <- []*targetgroup.Group{group(fmt.Sprint(i), "10.0.0.1:80")}:
		case <-ctx.Done():
			return
		}
		select {
		case <-time.After(10 * time.Millisecond):
		case <-ctx.Done():
			return
		}
	}
}

// TestFirstUpdateBounded: a discoverer that is never quiet still gets its
// first update out after settleMax.
func TestFirstUpdateBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := &Discovery{inner: endless{}, health: newHealth()}
		up := run(t, d)
		start := time.Now()
		first := <-up
		if waited := time.Since(start); waited != settleMax {
			t.Errorf("first update after %s, want %s", waited, settleMax)
		}
		if len(first) < 100 {
			t.Errorf("first update has %d groups, want the ~%d sent meanwhile", len(first), settleMax/(10*time.Millisecond))
		}
	})
}

// TestUnmarshalYAML: a block decoded into a mechanism's fresh config gets
// Prometheus's defaults, keys and validation.
func TestUnmarshalYAML(t *testing.T) {
	var mech discovery.Mechanism
	for _, m := range Mechanisms() {
		if m.Name == "dns" {
			mech = m
		}
	}
	c := mech.NewConfig().(*SDConfig)
	if err := yamlv2.UnmarshalStrict([]byte("names: [_x._tcp.example.org]\n"), c); err != nil {
		t.Fatal(err)
	}
	d := c.Config.(*dns.SDConfig)
	if d.RefreshInterval != model.Duration(30*time.Second) || d.Type != "SRV" || !reflect.DeepEqual(d.Names, []string{"_x._tcp.example.org"}) {
		t.Fatalf("decoded %+v, want Prometheus's defaults (30s, SRV)", d)
	}
	c = mech.NewConfig().(*SDConfig)
	err := yamlv2.UnmarshalStrict([]byte("names: [a.example.org]\ntype: MX\nport: 0\n"), c)
	if want := "a port is required in DNS-SD configs for all record types except SRV"; err == nil || err.Error() != want {
		t.Fatalf("error %v, want %q", err, want)
	}
}
