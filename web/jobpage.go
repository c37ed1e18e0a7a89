package web

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"

	"github.com/sdhub/sdhub/output"
)

// jobPage is one job's drill-down: its status and its targets as written,
// filtered by the page's query.
type jobPage struct {
	statusPage
	Job   jobRow
	Known bool
	Note  string
	// The filter, from the query: Query are words every target shown
	// contains, Show which targets after relabelling (showValues), Limit
	// the most rows shown (0: all).
	Query, Show string
	Limit       int
	Shows       []string
	Rows        []targetRow
	// Total is the number of targets, Matched those the filter keeps, of
	// which Rows are the first Limit.
	Total, Matched int
	// AllURL shows every target the filter keeps, "" when Rows does.
	AllURL string
}

// targetRow is one target on a job's page.
type targetRow struct {
	Address string
	Labels  []output.LabelPair // as the job's file holds them
	// With relabelling known: the labels the target's series get
	// (Prometheus's "target labels"), the URL it is scraped at, or why
	// the job drops or rejects it.
	After   []output.LabelPair
	URL     string
	Dropped bool
	Err     string
	// DroppedBy is the rule that dropped the target: its index in the
	// job's relabel_configs and its text.
	DroppedBy string
}

// The values of the job page's show parameter.
var showValues = []string{"all", "kept", "dropped", "rejected"}

// defaultLimit is how many targets a job's page lists unless asked for
// more.
const defaultLimit = 500

func (h *handler) jobPage(w http.ResponseWriter, r *http.Request) {
	job := r.PathValue("job")
	page := &jobPage{statusPage: *h.collect("../"), Shows: showValues}
	for _, j := range page.Jobs {
		if j.Name == job {
			page.Job, page.Known = j, true
		}
	}
	if !page.Known {
		page.Job.Name = job
		h.render(w, http.StatusNotFound, "job.html", page)
		return
	}
	var notes []string
	q := r.URL.Query()
	page.Query = strings.TrimSpace(q.Get("q"))
	page.Show = q.Get("show")
	switch {
	case page.Show == "":
		page.Show = "all"
	case !slices.Contains(showValues, page.Show) || (page.Show != "all" && !page.Relabel):
		notes = append(notes, fmt.Sprintf("unknown show=%q (one of: %s); showing all", page.Show, strings.Join(page.allowedShows(), ", ")))
		page.Show = "all"
	}
	page.Limit = defaultLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			notes = append(notes, fmt.Sprintf("invalid limit=%q (a number of targets, 0 for all); showing %d", v, defaultLimit))
		} else {
			page.Limit = n
		}
	}

	var snap *output.Snapshot
	if h.o.Outputs != nil {
		jobs, _ := h.o.Outputs.Snapshots()
		snap = jobs[job]
	}
	switch {
	case h.o.Outputs == nil:
		notes = append(notes, "targets are not tracked by this handler")
	case snap == nil || !snap.Serving():
		notes = append(notes, "waiting for the first full set of targets of every provider")
	default:
		page.list(h, snap)
	}
	page.Note = strings.Join(notes, "; ")
	h.render(w, http.StatusOK, "job.html", page)
}

func (p *jobPage) allowedShows() []string {
	if p.Relabel {
		return showValues
	}
	return showValues[:1]
}

// list fills the page's rows with the targets of snap its filter keeps.
func (p *jobPage) list(h *handler, snap *output.Snapshot) {
	entries := snap.Whole().Entries()
	var populated []Target
	var rules []*relabel.Config
	if p.Relabel {
		rules = h.o.Relabel(p.Job.Name)
		populated = Populate(p.Job.Name, h.scrape(p.Job.Name), rules, entries)
	}
	terms := strings.Fields(strings.ToLower(p.Query))
	i := 0
	for _, e := range entries {
		for _, addr := range e.Targets {
			row := targetRow{Address: addr, Labels: e.Labels}
			if populated != nil {
				row.relabelled(populated[i], rules)
			}
			i++
			p.Total++
			if !row.shownBy(p.Show) || !row.matches(terms) {
				continue
			}
			p.Matched++
			if p.Limit == 0 || len(p.Rows) < p.Limit {
				p.Rows = append(p.Rows, row)
			}
		}
	}
	if len(p.Rows) < p.Matched {
		v := url.Values{"limit": {"0"}}
		if p.Query != "" {
			v.Set("q", p.Query)
		}
		if p.Show != "all" {
			v.Set("show", p.Show)
		}
		p.AllURL = "?" + v.Encode()
	}
}

// relabelled sets what the consuming job makes of the target.
func (r *targetRow) relabelled(t Target, rules []*relabel.Config) {
	switch {
	case t.Err != nil:
		r.Err = t.Err.Error()
	case t.Dropped():
		r.Dropped, r.DroppedBy = true, output.DroppedByText(t, rules)
	default:
		t.Labels.Range(func(l labels.Label) {
			if !strings.HasPrefix(l.Name, model.ReservedLabelPrefix) {
				r.After = append(r.After, output.LabelPair{Name: l.Name, Value: l.Value})
			}
		})
		r.URL = scrapeURL(t.Labels)
	}
}

// scrapeURL is the URL Prometheus scrapes a relabelled target at.
func scrapeURL(ls labels.Labels) string {
	params := url.Values{}
	ls.Range(func(l labels.Label) {
		if name, ok := strings.CutPrefix(l.Name, model.ParamLabelPrefix); ok {
			params.Set(name, l.Value)
		}
	})
	u := url.URL{Scheme: ls.Get(model.SchemeLabel), Host: ls.Get(model.AddressLabel), Path: ls.Get(model.MetricsPathLabel), RawQuery: params.Encode()}
	return u.String()
}

func (r *targetRow) shownBy(show string) bool {
	switch show {
	case "kept":
		return r.Err == "" && !r.Dropped
	case "dropped":
		return r.Dropped
	case "rejected":
		return r.Err != ""
	}
	return true
}

// matches reports whether every term (lower case) is in the target's
// address or one of its labels, written name="value" or name=value, in
// the file or after relabelling; case is ignored.
func (r *targetRow) matches(terms []string) bool {
	if len(terms) == 0 {
		return true
	}
	var b strings.Builder
	b.WriteString(r.Address)
	for _, ls := range [][]output.LabelPair{r.Labels, r.After} {
		for _, l := range ls {
			fmt.Fprintf(&b, "\x00%s=%q\x00%s=%s", l.Name, l.Value, l.Name, l.Value)
		}
	}
	b.WriteString("\x00" + r.URL)
	text := strings.ToLower(b.String())
	for _, t := range terms {
		if !strings.Contains(text, t) {
			return false
		}
	}
	return true
}
