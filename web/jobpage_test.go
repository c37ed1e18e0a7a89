package web

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/model/relabel"

	"github.com/sdhub/sdhub/internal/outputtest"
	"github.com/sdhub/sdhub/output"
)

// manyTargets is a job of n targets with many labels each: target i has
// team="team<i%3>" and a long label list. The output lists them by label
// set: team0's first. With rules, the consuming job drops team0.
func manyTargets(t *testing.T, n int, withRules bool) Options {
	t.Helper()
	var groups []*targetgroup.Group
	for i := range n {
		ls := model.LabelSet{"team": model.LabelValue(fmt.Sprintf("team%d", i%3))}
		for j := range 12 {
			ls[model.LabelName(fmt.Sprintf("__meta_consul_service_metadata_key%02d", j))] = model.LabelValue(strings.Repeat("v", 10))
		}
		groups = append(groups, &targetgroup.Group{Source: fmt.Sprint(i), Labels: ls,
			Targets: []model.LabelSet{{model.AddressLabel: model.LabelValue(fmt.Sprintf("10.1.0.%d:9100", i))}}})
	}
	o := Options{Gatherer: prometheus.NewRegistry(), Outputs: &fakeOutputs{applied: true,
		jobs: map[string]*output.Snapshot{"many": outputtest.NewSnapshot("many", groups)}}}
	if withRules {
		rs := rules(t, `
- source_labels: [team]
  regex: team0
  action: drop`)
		o.Relabel = func(string) []*relabel.Config { return rs }
	}
	return o
}

var rowRE = regexp.MustCompile(`<tr><td><code>([0-9.:]+)</code></td>`)

// shownTargets lists the targets a job page shows, in order.
func shownTargets(body string) []string {
	var out []string
	for _, m := range rowRE.FindAllStringSubmatch(body, -1) {
		out = append(out, m[1])
	}
	return out
}

func TestJobPageFilter(t *testing.T) {
	h := NewHandler(manyTargets(t, 7, true))
	for _, c := range []struct {
		query    string
		want     []string
		contains []string
	}{
		{"", []string{"10.1.0.0:9100", "10.1.0.3:9100", "10.1.0.6:9100", "10.1.0.1:9100", "10.1.0.4:9100", "10.1.0.2:9100", "10.1.0.5:9100"},
			[]string{"<p>7 targets.</p>", `<option selected>all</option>`}},
		{"?q=10.1.0.4", []string{"10.1.0.4:9100"}, []string{"1 of 7 targets match.", `value="10.1.0.4"`, `<a href="?">Clear</a>`}},
		{"?q=TEAM1", []string{"10.1.0.1:9100", "10.1.0.4:9100"}, nil},
		{`?q=team="team2"`, []string{"10.1.0.2:9100", "10.1.0.5:9100"}, nil},
		{"?q=team=team2+10.1.0.5", []string{"10.1.0.5:9100"}, nil},
		{"?q=instance=%2210.1.0.4:9100%22", []string{"10.1.0.4:9100"}, nil}, // a label the relabelling gives
		{"?q=nowhere", nil, []string{"0 of 7 targets match.", "No target matches."}},
		{"?show=dropped", []string{"10.1.0.0:9100", "10.1.0.3:9100", "10.1.0.6:9100"}, []string{`<option selected>dropped</option>`}},
		{"?show=kept&q=team1", []string{"10.1.0.1:9100", "10.1.0.4:9100"}, nil},
		{"?limit=2", []string{"10.1.0.0:9100", "10.1.0.3:9100"}, []string{`the first 2 shown: <a href="?limit=0">show all 7</a>`}},
		{"?limit=1&q=team1&show=kept", []string{"10.1.0.1:9100"}, []string{`<a href="?limit=0&amp;q=team1&amp;show=kept">show all 2</a>`}},
		{"?show=bogus", []string{"10.1.0.0:9100", "10.1.0.3:9100", "10.1.0.6:9100", "10.1.0.1:9100", "10.1.0.4:9100", "10.1.0.2:9100", "10.1.0.5:9100"},
			[]string{`unknown show=&#34;bogus&#34; (one of: all, kept, dropped, rejected); showing all`}},
		{"?limit=-1&q=10.1.0.6", []string{"10.1.0.6:9100"}, []string{`invalid limit=&#34;-1&#34; (a number of targets, 0 for all); showing 500`}},
	} {
		t.Run(c.query, func(t *testing.T) {
			code, _, body := do(t, h, http.MethodGet, "/job/many"+c.query)
			if code != http.StatusOK {
				t.Fatalf("GET %s = %d", c.query, code)
			}
			if got := shownTargets(body); fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Errorf("shown %v, want %v", got, c.want)
			}
			for _, s := range c.contains {
				if !strings.Contains(body, s) {
					t.Errorf("page lacks %q", s)
				}
			}
		})
	}
}

// Without relabelling known, the page has no column for it and no show
// filter; a show filter asked for anyway is reported and ignored.
func TestJobPageWithoutRelabel(t *testing.T) {
	h := NewHandler(manyTargets(t, 2, false))
	_, _, body := do(t, h, http.MethodGet, "/job/many?show=dropped")
	for _, s := range []string{"After the job's relabelling", `name="show"`, "scraped at"} {
		if strings.Contains(body, s) {
			t.Errorf("the page has %q without relabelling", s)
		}
	}
	if want := `unknown show=&#34;dropped&#34; (one of: all); showing all`; !strings.Contains(body, want) {
		t.Errorf("the page lacks %q", want)
	}
	if got := shownTargets(body); len(got) != 2 {
		t.Errorf("shown %v, want both targets", got)
	}
	_, _, body = do(t, h, http.MethodGet, "/")
	if strings.Contains(body, "After the job's relabelling") || strings.Contains(body, "kept /") {
		t.Error("the status page has a kept/dropped column without relabelling")
	}
}

// A long label list shows the labels a series keeps first and collapses
// the rest.
func TestJobPageCollapsesLongLabels(t *testing.T) {
	h := NewHandler(manyTargets(t, 1, false))
	_, _, body := do(t, h, http.MethodGet, "/job/many")
	want := `<td><code>team="team0"</code><br><code>__meta_consul_service_metadata_key00="vvvvvvvvvv"</code><br>` +
		`<code>__meta_consul_service_metadata_key01="vvvvvvvvvv"</code><br><code>__meta_consul_service_metadata_key02="vvvvvvvvvv"</code><br>` +
		`<code>__meta_consul_service_metadata_key03="vvvvvvvvvv"</code><br><code>__meta_consul_service_metadata_key04="vvvvvvvvvv"</code><br>` +
		`<details><summary>7 more labels</summary><code>__meta_consul_service_metadata_key05="vvvvvvvvvv"</code><br>`
	if !strings.Contains(body, want) {
		t.Errorf("the page lacks\n%s\n%s", want, body)
	}
	// Eight labels are shown whole: collapsing one or two saves nothing.
	if got := splitLabels(make([]output.LabelPair, labelsShown+2)); len(got.Rest) != 0 {
		t.Errorf("%d labels: %d collapsed, want none", labelsShown+2, len(got.Rest))
	}
}
