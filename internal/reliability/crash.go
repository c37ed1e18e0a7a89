package reliability

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// CrashOptions size the crash-consistency scenario.
type CrashOptions struct {
	Bin     string // the sdhub binary
	Dir     string // a fresh directory for inputs and outputs
	Kills   int    // SIGKILLs to deliver
	Targets int    // targets of the job, changing continuously
	// MaxDelay bounds the random time between sdhub listening and its kill.
	MaxDelay time.Duration
}

// crashVersions is how many distinct versions the input cycles through.
const crashVersions = 16

// crashGroups is how many groups the job's targets are spread over.
const crashGroups = 50

// Crash kills sdhub with SIGKILL at random moments while the input of a
// large file_sd job is rewritten in a loop, and after every kill checks that
// every output parses as file_sd and is exactly one of the versions the
// input went through, and that the temp files a kill leaves are gone once
// the next run has started.
//
// Every other kill lands at a random moment; the others land within a few
// milliseconds of the writer creating a temp file, that is mid-write.
func Crash(ctx context.Context, o CrashOptions) (r Result) {
	r = Result{Scenario: "crash consistency (SIGKILL)"}
	defer r.timed(time.Now())

	ps, err := makeDirs(o.Dir)
	if r.failOn(err) {
		return r
	}
	out := ps.out
	input := filepath.Join(ps.in, "big.json")
	if r.failOn(ps.writeConfig(fmt.Sprintf("scrape_configs:\n  - job_name: big\n    file_sd_configs:\n      - files: [%q]\n  - job_name: small\n    static_configs:\n      - targets: [\"a:1\", \"b:2\"]\n", input))) {
		return r
	}

	// The input writer: a new version every few milliseconds, for the
	// whole scenario. written holds every version it has put in place.
	var (
		mu      sync.Mutex
		written = map[int]bool{}
		last    = -1
	)
	put := func(k int) error {
		if err := WriteFileAtomic(input, crashInput(k%crashVersions, o.Targets)); err != nil {
			return err
		}
		mu.Lock()
		written[k%crashVersions], last = true, k%crashVersions
		mu.Unlock()
		return nil
	}
	if r.failOn(put(0)) {
		return r
	}
	wctx, stopWriter := context.WithCancel(ctx)
	writerDone := make(chan error, 1)
	go func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for k := 1; ; k++ {
			select {
			case <-wctx.Done():
				writerDone <- nil
				return
			case <-tick.C:
			}
			if err := put(k); err != nil {
				writerDone <- err
				return
			}
		}
	}()
	stop := sync.OnceValue(func() error {
		stopWriter()
		return <-writerDone
	})
	defer stop()

	verified := map[[32]byte]error{} // output digest → verdict
	check := func(mustExist bool) {
		data, err := os.ReadFile(filepath.Join(out, "big.json"))
		if errors.Is(err, fs.ErrNotExist) {
			if mustExist {
				r.Fail("output big.json missing after it had been written")
			}
			return
		}
		if err != nil {
			r.Fail("%v", err)
			return
		}
		sum := sha256.Sum256(data)
		verdict, seen := verified[sum]
		if !seen {
			mu.Lock()
			ok := copySet(written)
			mu.Unlock()
			verdict = verifyCrashOutput(data, input, o.Targets, ok)
			verified[sum] = verdict
		}
		if verdict != nil {
			r.Fail("torn or unexpected output: %v", verdict)
		}
		if m, err := os.ReadFile(filepath.Join(out, ".sdhub-manifest")); err == nil && !json.Valid(m) {
			r.Fail("torn manifest: %q", m)
		}
		if small, err := os.ReadFile(filepath.Join(out, "small.json")); err == nil {
			if _, err := ParseFileSD(small); err != nil {
				r.Fail("small.json: %v", err)
			}
		}
	}

	var (
		everWritten bool
		stale       int
		maxTemp     int
		midWrite    int
		onWrite     int
		prevTemps   []string
	)
	// The writer makes its temp files in the staging directory: watch it
	// from the start (sdhub empties it at start and keeps it).
	if r.failOn(os.MkdirAll(StagingDir(out), 0o755)) {
		return r
	}
	w, err := WatchDir(StagingDir(out))
	if r.failOn(err) {
		return r
	}
	defer w.Close()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 5))
	for i := 0; i < o.Kills && ctx.Err() == nil; i++ {
		p, err := ps.start(o.Bin, fastFlush)
		if err != nil {
			r.Fail("start %d: %v", i, err)
			break
		}
		// The previous kill's temp files must be gone: output.New removes
		// them before the server listens.
		for _, name := range prevTemps {
			if _, err := os.Stat(filepath.Join(out, name)); err == nil {
				stale++
				r.Fail("stale temp file %s survived a restart", name)
			}
		}
		if i%2 == 1 {
			if waitTempCreated(ctx, w, o.MaxDelay) {
				onWrite++
			}
			if i%4 == 3 {
				time.Sleep(time.Duration(rng.Int64N(int64(2 * time.Millisecond))))
			}
		} else {
			select {
			case <-time.After(time.Duration(rng.Int64N(int64(o.MaxDelay) + 1))):
			case <-ctx.Done():
			}
		}
		p.Kill()
		r.Runs++
		temps, err := TempFiles(out)
		if err != nil {
			r.Fail("%v", err)
		}
		if len(temps) > 0 {
			midWrite++
		}
		maxTemp = max(maxTemp, len(temps))
		prevTemps = temps
		check(everWritten)
		if _, err := os.Stat(filepath.Join(out, "big.json")); err == nil {
			everWritten = true
		}
	}

	// A last clean run: it must converge on the last version and leave no
	// temp file behind.
	if err := stop(); err != nil {
		r.Fail("input writer: %v", err)
	}
	p, err := ps.start(o.Bin, fastFlush)
	if err != nil {
		r.Fail("final start: %v", err)
		return r
	}
	mu.Lock()
	want := crashOutputCheck(last)
	mu.Unlock()
	if err := Eventually("the output of the last input version", func() bool {
		data, err := os.ReadFile(filepath.Join(out, "big.json"))
		return err == nil && verifyCrashOutput(data, input, o.Targets, want) == nil
	}); err != nil {
		r.Fail("%v", err)
	}
	if err := p.Stop(); err != nil {
		r.Fail("%v", err)
	}
	temps, _ := TempFiles(out)
	if len(temps) > 0 {
		r.Fail("temp files after a clean stop: %v", temps)
	}
	// Without kills that land during a write, the checks above say nothing
	// about torn files or stale temp files.
	if r.Runs >= 4 && (onWrite == 0 || midWrite == 0) {
		r.Fail("of %d kills, %d came at a temp file's creation and %d left a temp file: want some of each", r.Runs, onWrite, midWrite)
	}
	r.Fig("kills %d", r.Runs)
	r.Fig("kills at a temp file's creation %d", onWrite)
	r.Fig("kills leaving a temp file %d", midWrite)
	r.Fig("targets %d", o.Targets)
	r.Fig("distinct outputs checked %d", len(verified))
	torn := 0
	for _, v := range verified {
		if v != nil {
			torn++
		}
	}
	r.Fig("torn/unexpected files %d", torn)
	r.Fig("stale temp files %d", stale)
	r.Fig("max temp files at a kill %d", maxTemp)
	return r
}

// waitTempCreated drains w's old events, then waits up to limit for the
// writer to create a temp file.
func waitTempCreated(ctx context.Context, w *fsnotify.Watcher, limit time.Duration) bool {
	for drained := false; !drained; {
		select {
		case <-w.Events:
		case <-w.Errors:
		default:
			drained = true
		}
	}
	timeout := time.After(limit)
	for {
		select {
		case ev := <-w.Events:
			if !ev.Has(fsnotify.Create) || !tempRE.MatchString(filepath.Base(ev.Name)) {
				continue
			}
			if _, err := os.Stat(ev.Name); err == nil { // not an old event: the write is on
				return true
			}
		case <-w.Errors:
		case <-timeout:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

func copySet(m map[int]bool) map[int]bool {
	c := make(map[int]bool, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

func crashOutputCheck(k int) map[int]bool { return map[int]bool{k: true} }

// crashTarget is target i of version k.
func crashTarget(i, k int) string {
	return fmt.Sprintf("10.%d.%d.%d:%d", i>>16, (i>>8)&0xff, i&0xff, 9000+k)
}

// crashInput is version k of the input: crashGroups groups with labels
// v=k and g=j.
func crashInput(k, targets int) []byte {
	b := make([]byte, 0, targets*24+crashGroups*64)
	b = append(b, '[')
	for j := 0; j < crashGroups; j++ {
		if j > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"targets":[`...)
		for i := j; i < targets; i += crashGroups {
			if i > j {
				b = append(b, ',')
			}
			b = strconv.AppendQuote(b, crashTarget(i, k))
		}
		b = fmt.Appendf(b, `],"labels":{"v":"%d","g":"%d"}}`, k, j)
	}
	return append(b, "]\n"...)
}

// verifyCrashOutput checks that data is valid file_sd holding exactly one
// of the versions in ok.
func verifyCrashOutput(data []byte, input string, targets int, ok map[int]bool) error {
	entries, err := ParseFileSD(data)
	if err != nil {
		return err
	}
	if len(entries) != crashGroups {
		return fmt.Errorf("%d entries, want %d", len(entries), crashGroups)
	}
	k := -1
	for _, e := range entries {
		v, err := strconv.Atoi(e.Labels["v"])
		if err != nil {
			return fmt.Errorf("entry without a version label: %v", e.Labels)
		}
		if k == -1 {
			k = v
		}
		if v != k {
			return fmt.Errorf("versions %d and %d mixed in one file", k, v)
		}
		j, err := strconv.Atoi(e.Labels["g"])
		if err != nil {
			return fmt.Errorf("entry without a group label: %v", e.Labels)
		}
		if e.Labels["__meta_sdhub_filepath"] != input || len(e.Labels) != 3 {
			return fmt.Errorf("unexpected labels %v", e.Labels)
		}
		var want []string
		for i := j; i < targets; i += crashGroups {
			want = append(want, crashTarget(i, k))
		}
		slices.Sort(want)
		if !slices.Equal(e.Targets, want) {
			return fmt.Errorf("group %d of version %d: %d targets differ from the input's %d", j, k, len(e.Targets), len(want))
		}
	}
	if !ok[k] {
		return fmt.Errorf("version %d was never written to the input", k)
	}
	return nil
}
