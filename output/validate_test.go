package output

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/sdhub/sdhub/internal/managertest"
	"github.com/sdhub/sdhub/manager"
)

// TestDropsTargetsPrometheusRejects writes, for each hostile target, a job
// of that target and a good one: the good one is written, the hostile one
// left out and counted, and the file is one Prometheus parses.
func TestDropsTargetsPrometheusRejects(t *testing.T) {
	good := model.LabelSet{model.AddressLabel: "good:1"}
	huge := strings.Repeat("x", 1<<20)
	for _, tc := range []struct {
		name    string
		group   model.LabelSet // the group's labels
		target  model.LabelSet
		dropped int
		written int // distinct targets in the file; 0 means 2 - dropped
		reason  string
	}{
		{name: "address not UTF-8", target: model.LabelSet{model.AddressLabel: "h\xff:1"}, dropped: 1, reason: reasonLabelValue},
		{name: "value not UTF-8", target: model.LabelSet{model.AddressLabel: "h:1", "__meta_x": "a\xffb"}, dropped: 1, reason: reasonLabelValue},
		{name: "name not legacy", target: model.LabelSet{model.AddressLabel: "h:1", "a.b": "v"}, dropped: 1, reason: reasonLabelName},
		{name: "name empty", target: model.LabelSet{model.AddressLabel: "h:1", "": "v"}, dropped: 1, reason: reasonLabelName},
		{name: "name not UTF-8", target: model.LabelSet{model.AddressLabel: "h:1", "a\xff": "v"}, dropped: 1, reason: reasonLabelName},
		{name: "group name invalid", group: model.LabelSet{"0x": "v"}, target: model.LabelSet{model.AddressLabel: "h:1"}, dropped: 2, written: 1, reason: reasonLabelName},
		{name: "group value overridden", group: model.LabelSet{"x": "\xff"}, target: model.LabelSet{model.AddressLabel: "h:1", "x": "ok"}, dropped: 1, written: 2, reason: reasonLabelValue},
		// Kept: Prometheus accepts these. An address that is empty or has a
		// "/" is checked only after the consumer's relabelling, which may
		// fix it, as it would with native SD.
		{name: "empty address", target: model.LabelSet{model.AddressLabel: ""}},
		{name: "no address", target: model.LabelSet{"a": "b"}},
		{name: "slash", target: model.LabelSet{model.AddressLabel: "h:1/metrics"}},
		{name: "group address", group: model.LabelSet{model.AddressLabel: "g/1"}, target: model.LabelSet{"a": "b"}},
		{name: "newlines and quotes", target: model.LabelSet{model.AddressLabel: "h:1", "x": "a\nb\"c\\\u2028"}},
		{name: "huge value", target: model.LabelSet{model.AddressLabel: "h:1", "x": model.LabelValue(huge)}},
		{name: "ipv6", target: model.LabelSet{model.AddressLabel: "[::1]:9100"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			var logs bytes.Buffer
			w, err := New(dir, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			groups := []*targetgroup.Group{
				{Source: "a", Targets: []model.LabelSet{good}},
				{Source: "b", Labels: tc.group, Targets: []model.LabelSet{tc.target, good}},
			}
			before := slices.Clone(groups[1].Targets)
			apply(t, w, manager.Update{"job": managertest.NewJob(true, wrap(groups)...)})
			if !slices.EqualFunc(groups[1].Targets, before, func(a, b model.LabelSet) bool { return a.Equal(b) }) {
				t.Error("filter modified the manager's group")
			}
			data := readFile(t, Path(dir, "job"))
			var entries []struct {
				Targets []string          `json:"targets"`
				Labels  map[string]string `json:"labels"`
			}
			if err := json.Unmarshal(data, &entries); err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, e := range entries {
				n += len(e.Targets)
				for name := range e.Labels {
					if !model.LegacyValidation.IsValidLabelName(name) {
						t.Errorf("label name %q written", name)
					}
				}
			}
			// good:1 is in both groups: one target in the file.
			want := tc.written
			if want == 0 {
				want = 2 - tc.dropped
			}
			if n != want || !bytes.Contains(data, []byte(`"good:1"`)) {
				t.Errorf("file holds %d targets, want %d:\n%.300s", n, want, data)
			}
			if bytes.Contains(data, []byte(`\ufffd`)) || !isUTF8(data) {
				t.Errorf("file has a replaced or invalid byte:\n%.300s", data)
			}
			if got := testutil.ToFloat64(w.metrics.dropped.WithLabelValues("job")); got != float64(tc.dropped) {
				t.Errorf("sdhub_output_dropped_targets = %v, want %d", got, tc.dropped)
			}
			if tc.dropped > 0 && !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), strings.Trim(strconv.Quote(tc.reason), `"`)) {
				t.Errorf("log lacks a warning with %q:\n%.500s", tc.reason, logs.String())
			}
			if len(logs.String()) > 4096 {
				t.Errorf("log of %d bytes: a hostile value was logged whole", logs.Len())
			}
			// The job leaving the config deletes its series.
			apply(t, w, manager.Update{})
			if n := testutil.CollectAndCount(w.metrics.dropped); n != 0 {
				t.Errorf("%d dropped-target series after the job left", n)
			}
		})
	}
}

func isUTF8(b []byte) bool { return strings.ToValidUTF8(string(b), "") == string(b) }
