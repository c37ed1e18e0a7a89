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
		"__meta_sdhub_filepath": "",
		"__meta_sdhub_url":      "",
	} {
		if got := outputLabelName(name); got != want {
			t.Errorf("outputLabelName(%q) = %q, want %q", name, got, want)
		}
	}
}

// TestRenderRenamesConsumerLabels checks the rename where the file is
// rendered, for a group label and a target label: the file never holds
// __meta_filepath or __meta_url, which the consumer would overwrite, and a
// source's own labels of sdhub's names are not carried.
func TestRenderRenamesConsumerLabels(t *testing.T) {
	got := Render([]*targetgroup.Group{{
		Source:  "in/a.json:0",
		Labels:  model.LabelSet{"__meta_filepath": "/in/a.json", "env": "dev", "__meta_sdhub_url": "forged"},
		Targets: []model.LabelSet{{"__address__": "a:1", "__meta_url": "http://inventory/targets", "__meta_sdhub_filepath": "forged"}},
	}})
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
