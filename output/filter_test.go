package output

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"

	"github.com/sdhub/sdhub/internal/managertest"
	"github.com/sdhub/sdhub/manager"
)

// consumerKept returns the targets of a job's file_sd output (its bytes)
// that a consuming Prometheus keeps, as "address labels" strings, worked
// out the way the consumer does without any of the stage's code: the file
// parsed as Prometheus's file_sd parses it, __meta_filepath set to the
// consumer's path of the file, the labels of the job's scrape settings,
// then the relabel rules `sdhub generate prometheus-config` puts first
// (written out here, as the generated config has them) and the job's own.
func consumerKept(t *testing.T, job string, settings ScrapeSettings, rules []*relabel.Config, out []byte) []string {
	t.Helper()
	var groups []*targetgroup.Group
	if err := json.Unmarshal(out, &groups); err != nil {
		t.Fatalf("the output does not parse as file_sd: %v\n%s", err, out)
	}
	restore := []*relabel.Config{
		rule(relabel.Replace, []string{FilepathLabel}, "(.*)", "__meta_filepath"),
		rule(relabel.Replace, []string{URLLabel}, "(.+)", "__meta_url"),
		rule(relabel.LabelDrop, nil, "__meta_sdhub_(filepath|url)", ""),
	}
	chain := append(restore, rules...)
	s := settings.withDefaults()
	var kept []string
	for _, g := range groups {
		for _, tl := range g.Targets {
			lb := labels.NewBuilder(labels.EmptyLabels())
			for n, v := range g.Labels {
				lb.Set(string(n), string(v))
			}
			for n, v := range tl {
				lb.Set(string(n), string(v))
			}
			lb.Set("__meta_filepath", "/consumer/sd/"+job+".json")
			for n, v := range map[string]string{"job": job, "__scheme__": s.Scheme, "__metrics_path__": s.MetricsPath,
				"__scrape_interval__": s.Interval.String(), "__scrape_timeout__": s.Timeout.String()} {
				if lb.Get(n) == "" {
					lb.Set(n, v)
				}
			}
			if relabel.ProcessBuilder(lb, chain...) {
				kept = append(kept, targetKey(string(tl[model.AddressLabel]), g.Labels))
			}
		}
	}
	slices.Sort(kept)
	return slices.Compact(kept) // a target two groups give is in the part of each
}

// targetKey names a target of an output by its address and its entry's
// labels.
func targetKey(addr string, ls model.LabelSet) string { return addr + " " + ls.String() }

// viewTargets returns a snapshot's targets as targetKey strings.
func viewTargets(t *testing.T, s *Snapshot) []string {
	t.Helper()
	var groups []*targetgroup.Group
	if err := json.Unmarshal(s.Bytes(), &groups); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, g := range groups {
		for _, tl := range g.Targets {
			out = append(out, targetKey(string(tl[model.AddressLabel]), g.Labels))
		}
	}
	slices.Sort(out)
	return slices.Compact(out) // a target two groups give is in the part of each
}

func rule(action relabel.Action, source []string, regex, target string) *relabel.Config {
	r := relabel.DefaultRelabelConfig
	r.Action, r.Regex, r.TargetLabel = action, relabel.MustNewRegexp(regex), target
	for _, s := range source {
		r.SourceLabels = append(r.SourceLabels, model.LabelName(s))
	}
	r.NameValidationScheme = model.UTF8Validation
	return &r
}

// checkKept checks the stage's kept view of job against consumerKept on its
// whole output, and that the whole output is every target.
func checkKept(t *testing.T, w *Stage, job string, spec FilterSpec, whole []*targetgroup.Group) {
	t.Helper()
	s := snap(t, w, job)
	if got, want := viewTargets(t, s.Whole()), viewTargets(t, newSnapshot(job, whole, w.names).withCount()); !slices.Equal(got, want) {
		t.Fatalf("whole output:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	want := consumerKept(t, job, spec.Settings, spec.Rules, s.Whole().Bytes())
	if got := viewTargets(t, s.Kept()); !slices.Equal(got, want) {
		t.Fatalf("kept view:\n%s\nwant (what the consumer keeps of the whole output):\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if f := s.Filter; f == nil || f.Kept != s.Kept().Targets || f.DroppedAtHub != s.Whole().Targets-s.Kept().Targets {
		t.Fatalf("Filter = %+v; kept view %d targets of %d", f, s.Kept().Targets, s.Whole().Targets)
	}
	kept, dropped := testutil.ToFloat64(w.metrics.kept.WithLabelValues(job)), testutil.ToFloat64(w.metrics.hubDropped.WithLabelValues(job))
	if int(kept) != s.Kept().Targets || int(dropped) != s.Filter.DroppedAtHub {
		t.Fatalf("sdhub_output_kept_targets %v, sdhub_output_hub_dropped_targets %v; want %d, %d", kept, dropped, s.Kept().Targets, s.Filter.DroppedAtHub)
	}
}

func job(groups ...*targetgroup.Group) *manager.JobTargets {
	var gs []manager.Group
	for _, g := range groups {
		gs = append(gs, managertest.NewGroup("p", g))
	}
	return managertest.NewJob(true, gs...)
}

// The kept view holds what the consumer's rules keep, as the whole output
// changes group by group, in one file and in parts; a change of dropped
// targets only leaves the kept view as it was; the files hold the whole
// output unless Files.
func TestFilterKeptView(t *testing.T) {
	rules := []*relabel.Config{
		rule(relabel.Keep, []string{"__meta_consul_tags"}, ".*,metrics,.*", ""),
		rule(relabel.Replace, []string{"__address__"}, "(.*):9100", "__tmp_node"),
		rule(relabel.Drop, []string{"__tmp_node", "__meta_filepath"}, "b;.*", ""),
	}
	spec := FilterSpec{Rules: rules}
	tagged := func(src string, tags string, addrs ...string) *targetgroup.Group {
		g := &targetgroup.Group{Source: src, Labels: model.LabelSet{"__meta_consul_tags": model.LabelValue(tags), "__meta_consul_service": model.LabelValue(src)}}
		for _, a := range addrs {
			g.Targets = append(g.Targets, model.LabelSet{model.AddressLabel: model.LabelValue(a)})
		}
		return g
	}
	for _, parts := range []int{1, 4} {
		for _, files := range []bool{false, true} {
			t.Run(fmt.Sprintf("parts=%d,files=%v", parts, files), func(t *testing.T) {
				dir := t.TempDir()
				w := newWriter(t, dir)
				if parts > 1 {
					if err := w.SetLayout(map[string]int{"j": parts}); err != nil {
						t.Fatal(err)
					}
				}
				spec.Files = files
				if err := w.SetFilters(map[string]FilterSpec{"j": spec}); err != nil {
					t.Fatal(err)
				}
				web := tagged("web", ",metrics,", "a:9100", "b:9100", "c:80")
				db := tagged("db", ",db,", "d:1", "e:1")
				apply(t, w, manager.Update{"j": job(web, db)})
				checkKept(t, w, "j", spec, []*targetgroup.Group{web, db})
				if got := viewTargets(t, snap(t, w, "j").Kept()); len(got) != 2 {
					t.Fatalf("kept %v, want a:9100 and c:80", got)
				}

				// A change of dropped targets only: the kept view stays.
				before := snap(t, w, "j").Kept()
				db2 := tagged("db", ",db,", "d:1", "e:1", "f:1")
				apply(t, w, manager.Update{"j": job(web, db2)})
				checkKept(t, w, "j", spec, []*targetgroup.Group{web, db2})
				if after := snap(t, w, "j").Kept(); after.Gen != before.Gen {
					t.Errorf("the kept view changed (Gen %d -> %d) on a change of dropped targets only", before.Gen, after.Gen)
				}

				// Targets moving in and out of the kept view.
				web2 := tagged("web", ",db,", "a:9100")
				db3 := tagged("db", ",metrics,db,", "d:1", "b:9100")
				apply(t, w, manager.Update{"j": job(web2, db3)})
				checkKept(t, w, "j", spec, []*targetgroup.Group{web2, db3})
				apply(t, w, manager.Update{"j": job(db3)})
				checkKept(t, w, "j", spec, []*targetgroup.Group{db3})

				// What the files hold.
				s := snap(t, w, "j")
				want := s.Whole().Bytes()
				if files {
					want = s.Kept().Bytes()
				}
				if parts == 1 {
					if got := readFile(t, w.files.path("j")); string(got) != string(want) {
						t.Errorf("the file holds:\n%s\nwant:\n%s", got, want)
					}
				}
				if parts > 1 {
					var all []string
					for i := range parts {
						var groups []*targetgroup.Group
						if err := json.Unmarshal(readFile(t, w.files.partPath("j", i)), &groups); err != nil {
							t.Fatal(err)
						}
						for _, g := range groups {
							for _, tl := range g.Targets {
								all = append(all, targetKey(string(tl[model.AddressLabel]), g.Labels))
							}
						}
					}
					slices.Sort(all)
					wantT := viewTargets(t, s.Whole())
					if files {
						wantT = viewTargets(t, s.Kept())
					}
					if !slices.Equal(all, wantT) {
						t.Errorf("the parts hold %v, want %v", all, wantT)
					}
				}

				// Without a filter, the job is written whole and has no kept view.
				if err := w.SetFilters(nil); err != nil {
					t.Fatal(err)
				}
				s = snap(t, w, "j")
				if s.Filter != nil || s.Kept() != s || s.Whole() != s || len(viewTargets(t, s)) != 2 {
					t.Errorf("without a filter: Filter %+v, %d targets", s.Filter, len(viewTargets(t, s)))
				}
			})
		}
	}
}

// FuzzFilter compares the stage's kept view with what Prometheus's relabel
// package keeps of the whole output, over random label sets, random rule
// chains and a random change of one group.
//
//	go test -run '^$' -fuzz '^FuzzFilter$' -fuzztime 30s ./output
func FuzzFilter(f *testing.F) {
	for i := range uint64(40) {
		f.Add(i, uint8(i))
	}
	f.Fuzz(func(t *testing.T, seed uint64, parts uint8) {
		r := rand.New(rand.NewPCG(seed, seed>>32|1))
		names := []string{"__meta_a", "__meta_b", "__meta_filepath", "env", "__tmp_x", "__scheme__", "__metrics_path__"}
		values := []string{"", "x", "y", "xy", "x;y", "9100"}
		pick := func(s []string) string { return s[r.IntN(len(s))] }
		group := func(src string) *targetgroup.Group {
			g := &targetgroup.Group{Source: src, Labels: model.LabelSet{}}
			for range r.IntN(3) {
				g.Labels[model.LabelName(pick(names))] = model.LabelValue(pick(values))
			}
			for range 1 + r.IntN(4) {
				tl := model.LabelSet{model.AddressLabel: model.LabelValue(fmt.Sprintf("h%d:%s", r.IntN(4), pick([]string{"80", "9100"})))}
				for range r.IntN(3) {
					tl[model.LabelName(pick(names))] = model.LabelValue(pick(values))
				}
				g.Targets = append(g.Targets, tl)
			}
			return g
		}
		actions := []relabel.Action{relabel.Keep, relabel.Drop, relabel.Replace, relabel.LabelMap, relabel.KeepEqual, relabel.DropEqual,
			relabel.HashMod, relabel.Lowercase, relabel.LabelDrop, relabel.LabelKeep}
		regexes := []string{"x", "y|", ".*x.*", "(.*)", "", "h[01]:.*", "__meta_(.+)", "x;y"}
		var rules []*relabel.Config
		for len(rules) < 1+r.IntN(5) {
			a := actions[r.IntN(len(actions))]
			var src []string
			for range 1 + r.IntN(2) {
				src = append(src, pick(append(names, "__address__")))
			}
			target := pick([]string{"__tmp_y", "env", "__meta_a", "__address__"})
			c := rule(a, src, pick(regexes), target)
			switch a {
			case relabel.HashMod:
				c.Modulus = uint64(1 + r.IntN(3))
			case relabel.LabelMap, relabel.LabelDrop, relabel.LabelKeep:
				c.SourceLabels, c.TargetLabel = nil, ""
				if a == relabel.LabelMap {
					c.Replacement = "${1}"
				}
			case relabel.Keep, relabel.Drop:
				c.TargetLabel = ""
			}
			if c.Validate(model.UTF8Validation) != nil {
				continue
			}
			rules = append(rules, c)
		}
		rules = append(rules, rule(relabel.Keep, []string{"__address__"}, ".+", "")) // one that can drop, at least
		spec := FilterSpec{Rules: rules}
		w, err := New("", Options{})
		if err != nil {
			t.Fatal(err)
		}
		if n := int(parts % 4); n > 1 {
			if err := w.SetLayout(map[string]int{"j": n}); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.SetFilters(map[string]FilterSpec{"j": spec}); err != nil {
			t.Fatal(err)
		}
		groups := []*targetgroup.Group{group("a"), group("b"), group("c")}
		apply(t, w, manager.Update{"j": job(groups...)})
		checkKept(t, w, "j", spec, groups)
		groups[r.IntN(len(groups))] = group(pick([]string{"a", "b", "c"}) + "")
		slices.SortFunc(groups, func(x, y *targetgroup.Group) int { return strings.Compare(x.Source, y.Source) })
		groups = slices.CompactFunc(groups, func(x, y *targetgroup.Group) bool { return x.Source == y.Source })
		apply(t, w, manager.Update{"j": job(groups...)})
		checkKept(t, w, "j", spec, groups)
	})
}
