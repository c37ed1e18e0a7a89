package web

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/model/relabel"

	"github.com/sdhub/sdhub/manager"
	"github.com/sdhub/sdhub/output"
)

// addresses returns the targets of an http_sd answer.
func addresses(t *testing.T, body string) []string {
	t.Helper()
	var groups []*targetgroup.Group
	if err := json.Unmarshal([]byte(body), &groups); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	var out []string
	for _, g := range groups {
		for _, tl := range g.Targets {
			out = append(out, string(tl[model.AddressLabel]))
		}
	}
	slices.Sort(out)
	return out
}

// A consumer that names the digest of the job's rules gets the targets
// they keep, and its shards are split over those; one that names none gets
// every target; one that names another digest gets every target, is
// counted as a mismatch and shows on the status page.
func TestHTTPSDHubFilter(t *testing.T) {
	store := newStage(t)
	keep := []*relabel.Config{{SourceLabels: model.LabelNames{"env"}, Regex: relabel.MustNewRegexp("prod"), Action: relabel.Keep,
		Separator: ";", Replacement: "$1", NameValidationScheme: model.UTF8Validation}}
	if err := store.SetFilters(map[string]output.FilterSpec{"web": {Rules: keep}}); err != nil {
		t.Fatal(err)
	}
	digest := output.FilterDigest("web", output.ScrapeSettings{}, keep)
	reg := prometheus.NewRegistry()
	now := time.Date(2026, 12, 8, 2, 0, 0, 0, time.UTC)
	h := NewHandler(Options{Gatherer: reg, Registerer: reg, Outputs: store, Now: func() time.Time { return now }})
	var prod []string
	for i := range 40 {
		prod = append(prod, "10.0.0."+string(rune('a'+i%26))+string(rune('a'+i/26))+":80")
	}
	apply(t, store, manager.Update{"web": job(true,
		group("a", model.LabelSet{"env": "prod"}, prod...),
		group("b", model.LabelSet{"env": "dev"}, "10.0.1.1:80", "10.0.1.2:80", "10.0.1.3:80"),
	)})
	get := func(query string) []string {
		t.Helper()
		code, _, body := do(t, h, http.MethodGet, "/api/v1/sd/web"+query)
		if code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", query, code, body)
		}
		return addresses(t, body)
	}
	if got := get(""); len(got) != 43 {
		t.Errorf("no digest: %d targets, want every one of 43", len(got))
	}
	if got := get("?rules=" + digest); !slices.Equal(got, slices.Sorted(slices.Values(prod))) {
		t.Errorf("the job's digest: %v, want the prod targets", got)
	}
	var sharded []string
	for i := range 4 {
		part := get("?rules=" + digest + "&shard=" + string(rune('0'+i)) + "&shards=4&strategy=bounded-load")
		if len(part) > 11 { // within 1.1 times the mean of the kept targets
			t.Errorf("shard %d of the kept targets holds %d of 40", i, len(part))
		}
		sharded = append(sharded, part...)
	}
	if slices.Sort(sharded); !slices.Equal(sharded, slices.Sorted(slices.Values(prod))) {
		t.Errorf("the shards of the kept view hold %v", sharded)
	}
	if got := get("?rules=0123456789abcdef"); len(got) != 43 {
		t.Errorf("another digest: %d targets, want every one of 43", len(got))
	}
	want := `# HELP sdhub_http_sd_requests_total ` + requestsHelp + `
# TYPE sdhub_http_sd_requests_total counter
sdhub_http_sd_requests_total{job="web",view="kept"} 5
sdhub_http_sd_requests_total{job="web",view="mismatch"} 1
sdhub_http_sd_requests_total{job="web",view="whole"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "sdhub_http_sd_requests_total"); err != nil {
		t.Error(err)
	}
	status := func() string {
		t.Helper()
		code, _, body := do(t, h, http.MethodGet, "/")
		if code != http.StatusOK {
			t.Fatalf("GET /: %d", code)
		}
		return body
	}
	summary := func(body string) string {
		if i := strings.Index(body, `<div class="summary err">`); i >= 0 {
			return body[i : i+strings.Index(body[i:], "</div>")]
		}
		return ""
	}
	if s := summary(status()); !strings.Contains(s, `relabel rules &#34;0123456789abcdef&#34;, sdhub&#39;s digest is `+digest) {
		t.Errorf("the status page's problems do not name the mismatch: %q", s)
	}
	now = now.Add(mismatchRecent)
	if s := summary(status()); s != "" {
		t.Errorf("a mismatch %v ago is still a problem: %q", mismatchRecent, s)
	}
	// The job leaves the config: its series go.
	apply(t, store, manager.Update{"db": job(true, group("c", nil, "10.0.2.1:80"))})
	if n, err := testutil.GatherAndCount(reg, "sdhub_http_sd_requests_total"); err != nil || n != 0 {
		t.Errorf("after job web left: %d series of sdhub_http_sd_requests_total (%v), want none", n, err)
	}
}

// With the files filtered too, the job's snapshot is its kept view: the
// pages still count every target, and follow a change of dropped targets
// only.
func TestStatusCountsWholeWithFilesFiltered(t *testing.T) {
	store := newStage(t)
	keep := []*relabel.Config{{SourceLabels: model.LabelNames{"env"}, Regex: relabel.MustNewRegexp("prod"), Action: relabel.Keep,
		Separator: ";", Replacement: "$1", NameValidationScheme: model.UTF8Validation}}
	if err := store.SetFilters(map[string]output.FilterSpec{"web": {Rules: keep, Files: true}}); err != nil {
		t.Fatal(err)
	}
	h := &handler{o: Options{Outputs: store, Now: time.Now, Relabel: func(string) []*relabel.Config { return keep }}, consumers: newConsumers(store)}
	for _, dev := range [][]string{{"10.0.1.1:80"}, {"10.0.1.1:80", "10.0.1.2:80"}} {
		apply(t, store, manager.Update{"web": job(true,
			group("a", model.LabelSet{"env": "prod"}, "10.0.0.1:80", "10.0.0.2:80"),
			group("b", model.LabelSet{"env": "dev"}, dev...),
		)})
		page := h.collect("./")
		r := page.Jobs[0]
		if r.Targets != 2+len(dev) || r.Relabel == nil || r.Relabel.Kept != 2 || r.Relabel.Dropped != len(dev) ||
			r.Filter == nil || !r.Filter.Files || r.Filter.Kept != 2 || r.Filter.DroppedAtHub != len(dev) {
			t.Errorf("%d dev targets: row %d targets, relabel %+v, filter %+v", len(dev), r.Targets, r.Relabel, r.Filter)
		}
	}
}

// With the rules' digest, a bounded-load split can weigh targets by a label
// the job's rules set: the shards are even in weight.
func TestHTTPSDWeightFromRules(t *testing.T) {
	store := newStage(t)
	var rs []*relabel.Config
	for _, r := range []relabel.Config{
		{SourceLabels: model.LabelNames{"env"}, Regex: relabel.MustNewRegexp("prod"), Action: relabel.Keep},
		{SourceLabels: model.LabelNames{"__meta_cost"}, Regex: relabel.MustNewRegexp("(.*)"), TargetLabel: "__tmp_weight", Replacement: "$1", Action: relabel.Replace},
	} {
		r.Separator, r.NameValidationScheme = ";", model.UTF8Validation
		if r.Replacement == "" {
			r.Replacement = "$1"
		}
		rs = append(rs, &r)
	}
	if err := store.SetFilters(map[string]output.FilterSpec{"web": {Rules: rs}}); err != nil {
		t.Fatal(err)
	}
	digest := output.FilterDigest("web", output.ScrapeSettings{}, rs)
	h := NewHandler(Options{Gatherer: prometheus.NewRegistry(), Outputs: store})
	var heavy, light []string
	for i := range 4 {
		heavy = append(heavy, "10.0.9."+string(rune('a'+i))+":80")
	}
	for i := range 36 {
		light = append(light, "10.0.0."+string(rune('a'+i%26))+string(rune('a'+i/26))+":80")
	}
	apply(t, store, manager.Update{"web": job(true,
		group("h", model.LabelSet{"env": "prod", "__meta_cost": "100"}, heavy...),
		group("l", model.LabelSet{"env": "prod", "__meta_cost": "1"}, light...),
		group("d", model.LabelSet{"env": "dev", "__meta_cost": "100"}, "10.0.1.1:80"),
	)})
	weight := map[string]float64{}
	for _, a := range heavy {
		weight[a] = 100
	}
	for _, a := range light {
		weight[a] = 1
	}
	heaviest := func(label string) float64 {
		t.Helper()
		most, total := 0.0, 0.0
		for i := range 4 {
			code, _, body := do(t, h, http.MethodGet, "/api/v1/sd/web?rules="+digest+"&shard="+string(rune('0'+i))+"&shards=4&strategy=bounded-load&weight_label="+label)
			if code != http.StatusOK {
				t.Fatalf("%d %s", code, body)
			}
			sum := 0.0
			for _, a := range addresses(t, body) {
				sum += weight[a]
			}
			most, total = max(most, sum), total+sum
		}
		if total != 436 {
			t.Fatalf("the shards weigh %v in all, want 436: every kept target once", total)
		}
		return most / (total / 4)
	}
	if r := heaviest("__tmp_weight"); r > 1.1 {
		t.Errorf("weighed by the label the rules set, the heaviest shard is %.2fx the mean", r)
	}
	if r := heaviest("__tmp_unset"); r <= 1.1 { // the input must tell the two apart
		t.Fatalf("by count alone the heaviest shard is %.2fx the mean: the test's targets do not show weights at work", r)
	}
}
