package main

import (
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alecthomas/kingpin/v2"

	"github.com/sdhub/sdhub/internal/doccheck"
)

// repoRoot is the module's root, from this package's directory.
var repoRoot = filepath.Join("..", "..")

// commandFlags reads every command of the kingpin application runMain
// builds, with its visible flags ("--name") and arguments ("<name>"), by
// the command's section title on docs/reference/flags.md: "sdhub" for the
// application's own flags, "sdhub run", "sdhub check config", ...
func commandFlags(t *testing.T) map[string][]string {
	t.Helper()
	var app *kingpin.Application
	inspectApp = func(a *kingpin.Application) { app = a }
	defer func() { inspectApp = nil }()
	if code := runMain([]string{"--help"}, io.Discard, io.Discard); code != exitOK {
		t.Fatalf("sdhub --help: exit %d", code)
	}
	if app == nil {
		t.Fatal("runMain did not hand over its application")
	}
	out := map[string][]string{}
	m := app.Model()
	for _, f := range m.Flags {
		if !f.Hidden {
			out["sdhub"] = append(out["sdhub"], "--"+f.Name)
		}
	}
	var walk func(cmds []*kingpin.CmdModel)
	walk = func(cmds []*kingpin.CmdModel) {
		for _, c := range cmds {
			if c.Hidden {
				continue
			}
			if len(c.Commands) > 0 {
				walk(c.Commands)
				continue
			}
			key := "sdhub " + c.FullCommand
			out[key] = []string{}
			for _, f := range c.Flags {
				if !f.Hidden {
					out[key] = append(out[key], "--"+f.Name)
				}
			}
			for _, a := range c.Args {
				if !a.Hidden {
					out[key] = append(out[key], "<"+a.Name+">")
				}
			}
		}
	}
	walk(m.Commands)
	return out
}

// TestFlagsDocumented holds docs/reference/flags.md to the flags and
// arguments of every command: each has a row in its command's section, and
// every row names one the command has.
func TestFlagsDocumented(t *testing.T) {
	page := filepath.Join(repoRoot, "docs", "reference", "flags.md")
	doc, err := doccheck.TableNames(page)
	if err != nil {
		t.Fatal(err)
	}
	actual := commandFlags(t)
	for cmd, flags := range actual {
		missing, gone := doccheck.Diff(doc[cmd], flags)
		for _, f := range missing {
			t.Errorf("%s: %s %s is not documented (add a row to its section %q)", page, cmd, f, cmd)
		}
		for _, f := range gone {
			t.Errorf("%s: %s %s is documented but the command has no such flag or argument", page, cmd, f)
		}
	}
	for section := range doc {
		if _, ok := actual[section]; !ok && strings.HasPrefix(section, "sdhub") {
			t.Errorf("%s: section %q documents a command sdhub does not have", page, section)
		}
	}
}
