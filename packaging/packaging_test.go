// Package packaging holds no code: the systemd unit and the image's files,
// and the tests of what `make release` and `make image` build (they run
// scripts/release.sh and scripts/image.sh from the repository's root).
package packaging

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sdhub/sdhub/internal/sdhubtest"
	"github.com/sdhub/sdhub/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// root is the repository's root, where the scripts run.
const root = ".."

// git runs git in the repository and returns its trimmed output.
func git(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git %s: %v", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out))
}

// release runs scripts/release.sh into a new directory with extra
// environment and returns the directory.
func release(t *testing.T, env ...string) string {
	t.Helper()
	out := t.TempDir()
	// One platform keeps the test's cost to one build and one cached
	// rebuild; arm64 goes through the same script (make release builds both).
	cmd := exec.Command("scripts/release.sh", "-o", out, "linux/amd64")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/release.sh: %v\n%s", err, b)
	}
	return out
}

// TestReleaseReproducible builds the release twice, the second time with
// another time zone, umask and output directory (and, as release.sh always
// does, from another temporary copy of the commit), and checks that both
// give the same bytes; then what the tarballs hold and the version
// information of the binaries.
func TestReleaseReproducible(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the release twice; skipped with -short")
	}
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatalf("git: %v", err)
	}
	start := time.Now()
	first := release(t, "TZ=UTC")
	second := release(t, "TZ=Pacific/Chatham", "GOFLAGS=")
	t.Logf("two release builds in %s", time.Since(start).Round(time.Second))

	version := strings.TrimSpace(git(t, "show", "HEAD:VERSION"))
	names := []string{"sdhub-" + version + ".linux-amd64.tar.gz"}
	sums, err := os.ReadFile(filepath.Join(first, "sha256sums.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range append(names, "sha256sums.txt") {
		a, errA := os.ReadFile(filepath.Join(first, n))
		b, errB := os.ReadFile(filepath.Join(second, n))
		if errA != nil || errB != nil {
			t.Fatalf("%s: %v, %v", n, errA, errB)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs between two builds of the same commit", n)
		}
		if n != "sha256sums.txt" && !strings.Contains(string(sums), "  "+n+"\n") {
			t.Errorf("sha256sums.txt does not list %s:\n%s", n, sums)
		}
	}
	t.Logf("sha256sums.txt, identical in both builds:\n%s", sums)

	revision := git(t, "rev-parse", "HEAD")
	epoch, err := strconv.ParseInt(git(t, "show", "-s", "--format=%ct", "HEAD"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	commitTime := time.Unix(epoch, 0).UTC()
	for _, n := range names {
		arch := strings.TrimSuffix(strings.TrimPrefix(n, "sdhub-"+version+".linux-"), ".tar.gz")
		dir := "sdhub-" + version + ".linux-" + arch
		files := untar(t, filepath.Join(first, n))
		var got []string
		for name, f := range files {
			got = append(got, name)
			if f.hdr.Uid != 0 || f.hdr.Gid != 0 || !f.hdr.ModTime.Equal(commitTime) {
				t.Errorf("%s: %s has owner %d:%d and time %s, want 0:0 and the commit's %s", n, name, f.hdr.Uid, f.hdr.Gid, f.hdr.ModTime, commitTime)
			}
		}
		slices.Sort(got)
		want := []string{dir + "/", dir + "/CHANGELOG.md", dir + "/LICENSE", dir + "/README.md", dir + "/monitoring/",
			dir + "/monitoring/README.md", dir + "/monitoring/alerts.yml", dir + "/monitoring/dashboard.json", dir + "/sdhub", dir + "/sdhub.service"}
		// docs/ as the commit has it, its directories included: the
		// README's links lead there.
		for _, f := range strings.Split(git(t, "ls-tree", "-r", "--name-only", "HEAD", "docs"), "\n") {
			for d := filepath.Dir(f); d != "."; d = filepath.Dir(d) {
				if !slices.Contains(want, dir+"/"+d+"/") {
					want = append(want, dir+"/"+d+"/")
				}
			}
			want = append(want, dir+"/"+f)
		}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s holds %q, want %q", n, got, want)
		}
		bin := files[dir+"/sdhub"]
		if bin.hdr.Mode != 0o755 {
			t.Errorf("%s: sdhub has mode %o, want 755", n, bin.hdr.Mode)
		}
		f, err := elf.NewFile(bytes.NewReader(bin.data))
		if err != nil {
			t.Fatalf("%s: sdhub is not an ELF file: %v", n, err)
		}
		if wantMachine := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[arch]; f.Machine != wantMachine {
			t.Errorf("%s: sdhub is for %s, want %s", n, f.Machine, wantMachine)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("%s: sdhub is dynamically linked", n)
			}
		}
		if arch != runtime.GOARCH {
			continue
		}
		exe := filepath.Join(t.TempDir(), "sdhub")
		if err := os.WriteFile(exe, bin.data, 0o755); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(exe, "--version").CombinedOutput()
		if err != nil {
			t.Fatalf("sdhub --version: %v\n%s", err, out)
		}
		for _, s := range []string{
			"sdhub, version " + version + " (branch: ",
			"revision: " + revision + ")",
			"build user:       sdhub-release",
			"build date:       " + commitTime.Format("20060102-15:04:05"),
		} {
			if !strings.Contains(string(out), s) {
				t.Errorf("sdhub --version lacks %q:\n%s", s, out)
			}
		}
		t.Logf("%s", out)
	}
}

type tarFile struct {
	hdr  *tar.Header
	data []byte
}

func untar(t *testing.T, path string) map[string]tarFile {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	if !zr.ModTime.IsZero() || zr.Name != "" {
		t.Errorf("%s: gzip header records name %q, time %s", path, zr.Name, zr.ModTime)
	}
	return readTar(t, zr)
}

func readTar(t *testing.T, r io.Reader) map[string]tarFile {
	t.Helper()
	files := map[string]tarFile{}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[hdr.Name] = tarFile{hdr, data}
	}
}

// TestSystemdUnit checks packaging/systemd/sdhub.service with
// systemd-analyze: verify prints nothing (an unknown key or a bad value is
// only a warning there), and the offline security review rates its
// exposure 2.0 or lower (on its 0 to 10 scale).
func TestSystemdUnit(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	testenv.Require(t, "systemd-analyze", err == nil, "not on PATH (scripts/deps/systemd.sh installs it)")
	// verify checks that ExecStart's program exists: point it at a real
	// sdhub.
	dir := t.TempDir()
	bin, err := sdhubtest.Build(context.Background(), "", dir)
	if err != nil {
		t.Fatal(err)
	}
	unit, err := os.ReadFile("systemd/sdhub.service")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(unit, []byte("ExecStart=/usr/local/bin/sdhub ")) {
		t.Fatal("ExecStart does not run /usr/local/bin/sdhub")
	}
	file := filepath.Join(dir, "sdhub.service")
	if err := os.WriteFile(file, bytes.Replace(unit, []byte("ExecStart=/usr/local/bin/sdhub "), []byte("ExecStart="+bin+" "), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", file).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err = exec.Command(sa, "security", "--offline=yes", "--threshold=20", file).CombinedOutput()
	if err != nil {
		t.Errorf("systemd-analyze security: %v (exposure over 2.0)\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	t.Logf("%s", lines[len(lines)-1])
	for _, want := range []string{"NoNewPrivileges=yes", "ProtectSystem=strict", "ReadWritePaths=/var/lib/sdhub", "--output.dir=/var/lib/sdhub", "User=sdhub"} {
		if !bytes.Contains(unit, []byte(want)) {
			t.Errorf("the unit lacks %s", want)
		}
	}
}
