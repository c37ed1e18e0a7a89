// Package benchreport writes the header of a benchmark's results: the
// commit, the machine, the tool versions and the command line, in Markdown,
// so that what a bench/ program prints can be pasted into
// docs/benchmarks.md as it is.
package benchreport

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
)

// Tool is a program or module a benchmark measures or runs, with its
// version.
type Tool struct{ Name, Version string }

// Header is what Write prints.
type Header struct {
	Title   string    // the section's title
	Time    time.Time // when the run started
	Commit  string    // git rev-parse HEAD, "+dirty" when the tree has changes
	Cores   int
	Memory  string // MemTotal of /proc/meminfo, in GiB
	CPU     string // the model name of /proc/cpuinfo
	Go      string
	Tools   []Tool
	Command string // os.Args, quoted for a POSIX shell
}

// New gathers the header of a run that starts now, with the versions of
// tools (Go's is added first).
func New(title string, tools ...Tool) Header {
	return Header{
		Title:   title,
		Time:    time.Now().UTC(),
		Commit:  commit(),
		Cores:   runtime.NumCPU(),
		Memory:  memory(),
		CPU:     cpuModel(),
		Go:      runtime.Version(),
		Tools:   tools,
		Command: Command(commandLine(os.Args)),
	}
}

// commandLine is args as the user typed them: a binary `go run` built in
// its temporary directory is named by `go run ./<package>`.
func commandLine(args []string) []string {
	bi, ok := debug.ReadBuildInfo()
	if !ok || len(args) == 0 || !strings.Contains(args[0], string(os.PathSeparator)+"go-build") {
		return args
	}
	pkg, ok := strings.CutPrefix(bi.Path, bi.Main.Path+"/")
	if !ok {
		return args
	}
	return append([]string{"go", "run", "./" + pkg}, args[1:]...)
}

// Write prints h as a Markdown heading and list.
func (h Header) Write(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "## %s, %s\n\n", h.Title, h.Time.Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&b, "- commit: %s\n", h.Commit)
	fmt.Fprintf(&b, "- machine: %d cores, %s memory, %s\n", h.Cores, h.Memory, h.CPU)
	versions := []string{"Go " + h.Go}
	for _, t := range h.Tools {
		versions = append(versions, t.Name+" "+t.Version)
	}
	fmt.Fprintf(&b, "- versions: %s\n", strings.Join(versions, ", "))
	fmt.Fprintf(&b, "- command: `%s`\n\n", h.Command)
	_, err := io.WriteString(w, b.String())
	return err
}

// Module is the version of the Go module path linked into this binary,
// "unknown" when the build has no module information.
func Module(path string) Tool {
	v := "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == path {
				v = d.Version
				if d.Replace != nil {
					v = d.Replace.Version
				}
			}
		}
	}
	return Tool{Name: path, Version: v}
}

// Program is the first line of the output of bin's version command (args,
// e.g. "--version"), "unknown" when it does not run.
func Program(name, bin string, args ...string) Tool {
	out, err := exec.Command(bin, args...).Output()
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	if err != nil || line == "" {
		line = "unknown"
	}
	return Tool{Name: name, Version: line}
}

// Command quotes args for a POSIX shell.
func Command(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a != "" && strings.Trim(a, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=./,:@+%") == "" {
			q[i] = a
			continue
		}
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

// commit is the commit of the working directory's git checkout.
func commit() string {
	out, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		return "unknown (not run from a git checkout)"
	}
	c := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
		c += "+dirty"
	}
	return c
}

func memory() string {
	v := procField("/proc/meminfo", "MemTotal")
	kb, err := strconv.ParseFloat(strings.TrimSuffix(v, " kB"), 64)
	if err != nil {
		return "unknown"
	}
	return fmt.Sprintf("%.1f GiB", kb/(1<<20))
}

func cpuModel() string {
	if v := procField("/proc/cpuinfo", "model name"); v != "" {
		return v
	}
	return runtime.GOARCH
}

// procField is the value of the first "key: value" line of a /proc file.
func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		k, v, ok := strings.Cut(s.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
