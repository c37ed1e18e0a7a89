package output

import (
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
)

func TestOutputLabelName(t *testing.T) {
	for name, want := range map[string]string{
		"__meta_filepath":       "__meta_sdhub_filepath",
		"__meta_url":            "__meta_sdhub_url",
		"__meta_filepath_x":     "__meta_filepath_x",
		"__meta_consul_service": "__meta_consul_service",
		"env":                   "env",
		"__address__":           "__address__",
	} {
		if got := outputLabelName(name); got != want {
			t.Errorf("outputLabelName(%q) = %q, want %q", name, got, want)
		}
	}
}

// TestRenderRenamesConsumerLabels checks the rename where the file is
// rendered, for a group label and a target label: the file never holds
// __meta_filepath or __meta_url, which the consumer would overwrite.
func TestRenderRenamesConsumerLabels(t *testing.T) {
	got, err := Render([]*targetgroup.Group{{
		Source:  "in/a.json:0",
		Labels:  model.LabelSet{"__meta_filepath": "/in/a.json", "env": "dev"},
		Targets: []model.LabelSet{{"__address__": "a:1", "__meta_url": "http://inventory/targets"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := `[
  {
    "targets": [
      "a:1"
    ],
    "labels": {
      "__meta_sdhub_filepath": "/in/a.json",
      "__meta_sdhub_url": "http://inventory/targets",
      "env": "dev"
    }
  }
]
`
	if string(got) != want {
		t.Errorf("Render =\n%s\nwant\n%s", got, want)
	}
}
