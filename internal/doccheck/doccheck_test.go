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
