package reliability

import (
	"os"
	"path/filepath"
	"time"
)

// paths are where a scenario keeps its files under its Dir: the inputs
// sdhub reads, sdhub's output directory and its config file.
type paths struct{ in, out, cfg string }

// newPaths names the paths under dir.
func newPaths(dir string) paths {
	return paths{in: filepath.Join(dir, "in"), out: filepath.Join(dir, "out"), cfg: filepath.Join(dir, "sdhub.yml")}
}

// makeDirs names the paths under dir and creates the input and output
// directories.
func makeDirs(dir string) (paths, error) {
	ps := newPaths(dir)
	for _, d := range []string{ps.in, ps.out} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return ps, err
		}
	}
	return ps, nil
}

// writeConfig writes text as sdhub's config file.
func (ps paths) writeConfig(text string) error {
	return os.WriteFile(ps.cfg, []byte(text), 0o644)
}

// fastFlush is the flush interval of the scenarios that wait on writes.
const fastFlush = "--output.flush-interval=20ms"

// start runs bin on the config file and the output directory, with the
// extra flags, and waits until it listens.
func (ps paths) start(bin string, extra ...string) (*Proc, error) {
	return Start(bin, append([]string{"--config.file=" + ps.cfg, "--output.dir=" + ps.out}, extra...)...)
}

// timed sets r's duration to the time since start, when deferred at the
// start of a scenario: `defer r.timed(time.Now())`.
func (r *Result) timed(start time.Time) { r.Duration = time.Since(start) }

// failOn counts a non-nil err as a failure and reports whether it was one.
func (r *Result) failOn(err error) bool {
	if err == nil {
		return false
	}
	r.Fail("%v", err)
	return true
}

// stop stops p and counts an unclean stop as a failure; when r has failed
// it then keeps the last logTail bytes of p's log among the errors (0:
// none).
func (r *Result) stop(p *Proc, logTail int) {
	if err := p.Stop(); err != nil {
		r.Fail("%v", err)
	}
	if logTail > 0 && r.Failures > 0 {
		r.Errors = append(r.Errors, "sdhub log tail: "+tail(p.Log(), logTail))
	}
}
