package web

import (
	"github.com/prometheus/prometheus/model/relabel"

	"github.com/sdhub/sdhub/output"
)

// ScrapeSettings are the settings of the consuming Prometheus's job that
// it sets as labels on every target before the job's relabel_configs
// (output.ScrapeSettings).
type ScrapeSettings = output.ScrapeSettings

// Target is one target of a job's output as the consuming Prometheus's
// scrape target population makes it (output.Target).
type Target = output.Target

// RelabelCounts are the targets of a job after the consuming Prometheus's
// relabelling (output.RelabelCounts).
type RelabelCounts = output.RelabelCounts

// Populate returns what the consuming Prometheus's job makes of each target
// of entries (output.Populate).
func Populate(job string, settings ScrapeSettings, rules []*relabel.Config, entries []output.Entry) []Target {
	return output.Populate(job, settings, rules, entries)
}

// CountRelabelled counts the targets of entries that the consuming
// Prometheus's job keeps and drops (output.CountRelabelled).
func CountRelabelled(job string, settings ScrapeSettings, rules []*relabel.Config, entries []output.Entry) RelabelCounts {
	return output.CountRelabelled(job, settings, rules, entries)
}
