package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/sdhub/sdhub/output"
)

// layoutFlags say how many parts each job's output is written in
// (output.Layout). run and `generate prometheus-config` take the same
// flags, so that the consumer's config reads the files the hub writes.
type layoutFlags struct {
	parts         int
	maxEntries    int
	jobParts      []string
	wholeInterval time.Duration
}

// Defaults: 16 parts for a job that discovers more than static_configs, within
// 96 file_sd_configs entries in all (Linux allows 128 inotify instances per
// user by default, and each entry is one). docs/configuration.md says why.
const (
	defaultParts         = "16"
	defaultMaxEntries    = "96"
	defaultWholeInterval = "5s"
)

func addLayoutFlags(cmd *kingpin.CmdClause, l *layoutFlags) {
	cmd.Flag("output.parts", "Parts of the output of a job that has service discovery other than static_configs: each a file in a directory of its own, "+
		"<job>.parts/<i>/targets.json, which the consuming Prometheus reads through a file_sd_configs entry of its own, "+
		"so that a change costs it the part that changed, not the whole job. 1 writes every job as one file.").
		Default(defaultParts).IntVar(&l.parts)
	cmd.Flag("output.parts.max-entries", "The most file_sd_configs entries the consumer of every job needs: --output.parts is lowered, for every job alike, "+
		"until the parts fit (each entry costs the consumer an inotify instance). 0: no bound.").
		Default(defaultMaxEntries).IntVar(&l.maxEntries)
	cmd.Flag("output.job-parts", "Parts of one job, as <job>=<parts>, over --output.parts (repeatable; the last '=' splits).").
		PlaceHolder("JOB=N").StringsVar(&l.jobParts)
	if cmd.FullCommand() == "run" {
		cmd.Flag("output.whole-file-interval", "How often at most the file of a job of several parts that holds the whole job (<job>.json, "+
			"which a consumer configured for one file per job reads) is written; 0 leaves it out.").
			Default(defaultWholeInterval).DurationVar(&l.wholeInterval)
	}
}

// layout returns the flags' layout, or an error naming the flag.
func (l layoutFlags) layout() (output.Layout, error) {
	out := output.Layout{Parts: l.parts, MaxEntries: l.maxEntries}
	if l.parts < 1 || l.parts > output.MaxParts {
		return out, fmt.Errorf("invalid --output.parts %d (from 1 to %d)", l.parts, output.MaxParts)
	}
	if l.maxEntries < 0 {
		return out, fmt.Errorf("invalid --output.parts.max-entries %d (0 or more)", l.maxEntries)
	}
	for _, jp := range l.jobParts {
		i := strings.LastIndexByte(jp, '=')
		n, err := strconv.Atoi(jp[i+1:])
		if i <= 0 || err != nil || n < 1 || n > output.MaxParts {
			return out, fmt.Errorf("invalid --output.job-parts %q (want <job>=<parts>, parts from 1 to %d)", jp, output.MaxParts)
		}
		if out.Jobs == nil {
			out.Jobs = map[string]int{}
		}
		out.Jobs[jp[:i]] = n
	}
	return out, nil
}
