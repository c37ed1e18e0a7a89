package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/sdhub/sdhub/config"
)

// checkConfig validates config files with the loader the server uses and
// reports as `promtool check config` does: exit 0 when every file is valid,
// 1 otherwise.
func checkConfig(files []string, lf layoutFlags, ff filterFlags, stdout, stderr io.Writer) int {
	code := exitOK
	layout, err := lf.layout()
	if err != nil {
		fmt.Fprintf(stderr, "  FAILED: %s\n", err)
		return exitError
	}
	for _, f := range files {
		fmt.Fprintf(stdout, "Checking %s\n", f)
		cfg, err := config.LoadFile(f)
		if err != nil {
			fmt.Fprintf(stderr, "  FAILED: %s\n", indent(err.Error()))
			code = exitError
			continue
		}
		for _, w := range cfg.Warnings {
			fmt.Fprintf(stderr, "  WARNING: %s\n", w)
		}
		jobs := make([]string, 0, len(cfg.ScrapeConfigs))
		for _, sc := range cfg.ScrapeConfigs {
			jobs = append(jobs, sc.JobName)
		}
		fmt.Fprintf(stdout, " SUCCESS: %s is valid sdhub config file syntax; %d %s served: %s\n",
			f, len(jobs), plural(len(jobs), "job", "jobs"), strings.Join(jobs, ", "))
		if len(jobs) > 0 {
			parts := layout.Plan(cfg.Splittable())
			var l []string
			for _, job := range jobs {
				if n := parts[job]; n > 1 {
					l = append(l, fmt.Sprintf("%s %d parts", job, n))
				} else {
					l = append(l, job+" one file")
				}
			}
			fmt.Fprintf(stdout, "  output layout: %s\n", strings.Join(l, ", "))
			fmt.Fprintf(stdout, "  hub filter: %s\n", ff.describe(cfg))
		}
	}
	return code
}

// indent keeps the lines of a multi-line error under the FAILED line.
func indent(s string) string { return strings.ReplaceAll(s, "\n", "\n          ") }

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
