package doccheck

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestTableNames(t *testing.T) {
	p := filepath.Join(t.TempDir(), "flags.md")
	write(t, p, "# Flags\n\n| flag | default |\n|---|---|\n| `--top` | x |\n\n## sdhub run\n\n"+
		"| flag | default |\n|---|---|\n| `--config.file` | `prometheus.yml` |\n| `--[no-]output.spare-files` | on |\n"+
		"| not a name | x |\n\n## sdhub discover\n\n| `--timeout` | `30s` |\n")
	n, err := TableNames(p)
	if err != nil {
		t.Fatal(err)
	}
	want := Names{"": {"--top"}, "sdhub run": {"--config.file", "--[no-]output.spare-files"}, "sdhub discover": {"--timeout"}}
	if len(n) != len(want) {
		t.Fatalf("got %q, want %q", n, want)
	}
	for k, v := range want {
		if !slices.Equal(n[k], v) {
			t.Errorf("section %q: got %q, want %q", k, n[k], v)
		}
	}
	if all := n.All(); !slices.Equal(all, []string{"--[no-]output.spare-files", "--config.file", "--timeout", "--top"}) {
		t.Errorf("All() = %q", all)
	}
}

func TestDiff(t *testing.T) {
	missing, gone := Diff([]string{"a", "b", "b"}, []string{"b", "c", "c"})
	if !slices.Equal(missing, []string{"c"}) || !slices.Equal(gone, []string{"a"}) {
		t.Errorf("missing %q, gone %q; want [c], [a]", missing, gone)
	}
}

func TestCommands(t *testing.T) {
	root := t.TempDir()
	write(t, filepath.Join(root, "README.md"), "x\n\n```sh\n# a comment\ngo run ./cmd/sdhub   # the hub\n\nmake a \\\n  b # not a comment yet \\\n  c\n```\n\n```yaml\nnot: a command\n```\n")
	write(t, filepath.Join(root, "docs/sub/page.md"), "```sh\nsdhub check config x.yml\n```\n")
	got, err := Commands(root)
	if err != nil {
		t.Fatal(err)
	}
	want := []Command{
		{"README.md", 5, "go run ./cmd/sdhub"},
		{"README.md", 7, "make a b # not a comment yet c"},
		{filepath.Join("docs", "sub", "page.md"), 2, "sdhub check config x.yml"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
}

func TestBlocks(t *testing.T) {
	root := t.TempDir()
	write(t, filepath.Join(root, "README.md"), "```yaml\na: 1\n  b: 2\n```\n\n```sh\nx\n```\n")
	write(t, filepath.Join(root, "docs", "empty.md"), "no blocks\n")
	got, err := Blocks(root, "yaml")
	if err != nil {
		t.Fatal(err)
	}
	if want := []Block{{"README.md", 2, "a: 1\n  b: 2\n"}}; !slices.Equal(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestAnchor(t *testing.T) {
	for in, want := range map[string]string{
		"bench/consul":                                          "benchconsul",
		"Reading sdhub over HTTP (http_sd)":                     "reading-sdhub-over-http-http_sd",
		"What happens when a source is down, or sdhub restarts": "what-happens-when-a-source-is-down-or-sdhub-restarts",
		"Prometheus's mechanisms (every other `*_sd_configs`)":  "prometheuss-mechanisms-every-other-_sd_configs",
	} {
		if got := Anchor(in); got != want {
			t.Errorf("Anchor(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestRepoLinks checks the links of sdhub's own Markdown files: every file
// and heading they point to exists.
func TestRepoLinks(t *testing.T) {
	root := filepath.Join("..", "..")
	files := []string{"README.md", "CHANGELOG.md", "monitoring/README.md", "internal/reliability/README.md"}
	err := filepath.WalkDir(filepath.Join(root, "docs"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && filepath.Ext(p) == ".md" {
			rel, _ := filepath.Rel(root, p)
			files = append(files, rel)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	broken, err := BrokenLinks(root, files)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range broken {
		t.Error(b)
	}
}

func TestBrokenLinks(t *testing.T) {
	root := t.TempDir()
	write(t, filepath.Join(root, "a.md"), "# Top\n\n## Sub part\n\n[ok](#sub-part) [ok](b.md#b) [bad](#none) [bad](c.md) [web](https://x/y)\n\n```\n[in a block](nowhere.md)\n```\n")
	write(t, filepath.Join(root, "b.md"), "# B\n")
	got, err := BrokenLinks(root, []string{"a.md"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"a.md:5: #none: no such heading", "a.md:5: c.md: no such file"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}
