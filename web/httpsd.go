package web

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/sdhub/sdhub/shard"
)

// SDPath is the path of a job's http_sd endpoint; "{job}" is the job name.
const SDPath = "/api/v1/sd/{job}"

// serveSD answers Prometheus's http_sd_configs with a job's targets: 200 and
// the bytes of the job's output (or of the asked shard's part), 404 for a
// job sdhub does not serve, 503 until the job's first complete state, so that
// Prometheus keeps the targets it has.
func (h *handler) serveSD(w http.ResponseWriter, r *http.Request) {
	job := r.PathValue("job")
	sh, shards, _, err := parseShard(r.URL.Query())
	if err != nil {
		apiError(w, http.StatusBadRequest, "bad_data", err.Error())
		return
	}
	jobs, applied := h.o.Outputs.Snapshots()
	snap := jobs[job]
	switch {
	case !applied && h.unknown(job):
		apiError(w, http.StatusNotFound, "not_found", fmt.Sprintf("job %q is not served by sdhub", job))
		return
	case !applied:
		apiError(w, http.StatusServiceUnavailable, "unavailable", "no discovery state yet: sdhub is starting")
		return
	case snap == nil:
		apiError(w, http.StatusNotFound, "not_found", fmt.Sprintf("job %q is not served by sdhub", job))
		return
	case !snap.Serving():
		apiError(w, http.StatusServiceUnavailable, "unavailable", fmt.Sprintf("job %q is waiting for the first full set of targets of every provider", job))
		return
	}
	snap = snap.Shard(sh, shards)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(snap.Size))
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = snap.WriteTo(w)
	}
}

// unknown reports whether the running config has no job named job: before
// the first update, the config tells whether sdhub serves it at all.
func (h *handler) unknown(job string) bool {
	if h.o.Config == nil {
		return false
	}
	cfg := h.o.Config()
	if cfg == nil {
		return false
	}
	_, ok := cfg.Jobs()[job]
	return !ok
}

// parseShard reads ?shard=I&shards=N; sharded is false when neither is given.
func parseShard(q url.Values) (sh, shards int, sharded bool, err error) {
	if !q.Has("shard") && !q.Has("shards") {
		return 0, 1, false, nil
	}
	if !q.Has("shard") || !q.Has("shards") {
		return 0, 0, false, fmt.Errorf("shard and shards go together: ?shard=I&shards=N with 0 <= I < N")
	}
	if shards, err = strconv.Atoi(q.Get("shards")); err != nil {
		return 0, 0, false, fmt.Errorf("invalid shards %q (must be an integer of at least 1)", q.Get("shards"))
	}
	if sh, err = strconv.Atoi(q.Get("shard")); err != nil {
		return 0, 0, false, fmt.Errorf("invalid shard %q (must be an integer from 0 to shards-1)", q.Get("shard"))
	}
	if err := shard.Validate(sh, shards); err != nil {
		return 0, 0, false, err
	}
	return sh, shards, true, nil
}

// apiError writes an error in the shape of Prometheus's HTTP API.
func apiError(w http.ResponseWriter, code int, typ, msg string) {
	body, _ := json.Marshal(struct {
		Status    string `json:"status"`
		ErrorType string `json:"errorType"`
		Error     string `json:"error"`
	}{"error", typ, msg})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(append(body, '\n'))
}
