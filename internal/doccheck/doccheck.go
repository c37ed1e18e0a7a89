// Package doccheck reads sdhub's Markdown documentation for the tests that
// hold it to the code: the names the reference pages list in their tables,
// and the commands of the fenced sh blocks.
package doccheck

import (
	"bufio"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// Names are the names a reference page lists, by the section (the text of
// the last "## " heading, "" before the first) that lists them.
type Names map[string][]string

// All is every name of every section.
func (n Names) All() []string {
	var out []string
	for _, names := range n {
		out = append(out, names...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

var firstCell = regexp.MustCompile("^\\|\\s*`([^`]+)`")

// TableNames reads the Markdown file path and returns the name at the
// start of the first cell of every table row: a row whose first cell
// begins with a name in backquotes (`--config.file`, `sdhub_output_ready`)
// lists it. Header and rule rows, and rows that begin otherwise, list
// nothing.
func TableNames(path string) (Names, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names := Names{}
	section := ""
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := s.Text()
		if h, ok := strings.CutPrefix(line, "## "); ok {
			section = strings.TrimSpace(h)
			continue
		}
		if m := firstCell.FindStringSubmatch(line); m != nil {
			names[section] = append(names[section], m[1])
		}
	}
	return names, s.Err()
}

// Diff compares what a page documents with what the code has: missing are
// in the code and not on the page, gone on the page and not in the code.
func Diff(documented, actual []string) (missing, gone []string) {
	for _, a := range actual {
		if !slices.Contains(documented, a) {
			missing = append(missing, a)
		}
	}
	for _, d := range documented {
		if !slices.Contains(actual, d) {
			gone = append(gone, d)
		}
	}
	slices.Sort(missing)
	slices.Sort(gone)
	return slices.Compact(missing), slices.Compact(gone)
}

// Command is one command of a fenced sh block.
type Command struct {
	File string // relative to the root given to Commands
	Line int    // of the command's first line
	Text string // continuation lines joined, the trailing comment cut
}

func (c Command) String() string { return fmt.Sprintf("%s:%d: %s", c.File, c.Line, c.Text) }

// Block is a fenced code block.
type Block struct {
	File string // relative to the root given to Blocks
	Line int    // of the block's first line, after the fence
	Text string // its lines, each ending in a newline
}

// Blocks returns the fenced blocks of language lang ("```sh", "```yaml")
// of root's README.md and of every .md file under root/docs, in file order.
func Blocks(root, lang string) ([]Block, error) {
	files := []string{"README.md"}
	err := filepath.WalkDir(filepath.Join(root, "docs"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".md") {
			rel, err := filepath.Rel(root, p)
			if err != nil {
				return err
			}
			files = append(files, rel)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var out []Block
	for _, rel := range files {
		b, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			return nil, err
		}
		var cur *Block
		for i, line := range strings.Split(string(b), "\n") {
			trimmed := strings.TrimSpace(line)
			switch {
			case cur == nil && trimmed == "```"+lang:
				cur = &Block{File: rel, Line: i + 2}
			case cur != nil && trimmed == "```":
				out = append(out, *cur)
				cur = nil
			case cur != nil:
				cur.Text += line + "\n"
			}
		}
	}
	return out, nil
}

// Commands returns the commands of the ```sh blocks of root's README.md
// and of every .md file under root/docs, in file order. A line ending in a
// backslash continues on the next; a comment after " # " and blank lines
// are dropped.
func Commands(root string) ([]Command, error) {
	blocks, err := Blocks(root, "sh")
	if err != nil {
		return nil, err
	}
	var out []Command
	for _, b := range blocks {
		var cur *Command
		for i, line := range strings.Split(strings.TrimSuffix(b.Text, "\n"), "\n") {
			trimmed := strings.TrimSpace(line)
			if cur == nil {
				if trimmed == "" || strings.HasPrefix(trimmed, "#") {
					continue
				}
				cur = &Command{File: b.File, Line: b.Line + i}
			}
			text, more := strings.CutSuffix(trimmed, "\\")
			if !more {
				if j := strings.Index(text, " # "); j >= 0 {
					text = text[:j]
				}
			}
			cur.Text = strings.TrimSpace(cur.Text + " " + strings.TrimSpace(text))
			if !more {
				out = append(out, *cur)
				cur = nil
			}
		}
	}
	return out, nil
}

var (
	headingRE = regexp.MustCompile(`^#+\s+(.*)`)
	linkRE    = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	slugDrop  = regexp.MustCompile(`[^\p{L}\p{N}_\- ]`)
)

// Anchor is the id GitHub gives a heading's text.
func Anchor(heading string) string {
	return strings.ReplaceAll(slugDrop.ReplaceAllString(strings.ToLower(strings.TrimSpace(heading)), ""), " ", "-")
}

// BrokenLinks returns the relative links of the Markdown files (paths
// relative to root) whose target file, or heading, does not exist. Links
// in fenced blocks and to other sites are not checked.
func BrokenLinks(root string, files []string) ([]string, error) {
	anchors := map[string]map[string]bool{}
	anchorsOf := func(path string) (map[string]bool, error) {
		if a, ok := anchors[path]; ok {
			return a, nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		a := map[string]bool{}
		fenced := false
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "```") {
				fenced = !fenced
			}
			if m := headingRE.FindStringSubmatch(line); m != nil && !fenced {
				a[Anchor(m[1])] = true
			}
		}
		anchors[path] = a
		return a, nil
	}
	var broken []string
	for _, rel := range files {
		path := filepath.Join(root, rel)
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		fenced := false
		for i, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "```") {
				fenced = !fenced
				continue
			}
			if fenced {
				continue
			}
			for _, m := range linkRE.FindAllStringSubmatch(line, -1) {
				link := m[1]
				if strings.Contains(link, "://") || strings.HasPrefix(link, "mailto:") {
					continue
				}
				file, anchor, _ := strings.Cut(link, "#")
				target := path
				if file != "" {
					target = filepath.Join(filepath.Dir(path), file)
				}
				if _, err := os.Stat(target); err != nil {
					broken = append(broken, fmt.Sprintf("%s:%d: %s: no such file", rel, i+1, link))
					continue
				}
				if anchor == "" || !strings.HasSuffix(target, ".md") {
					continue
				}
				a, err := anchorsOf(target)
				if err != nil {
					return nil, err
				}
				if !a[anchor] {
					broken = append(broken, fmt.Sprintf("%s:%d: %s: no such heading", rel, i+1, link))
				}
			}
		}
	}
	return broken, nil
}
