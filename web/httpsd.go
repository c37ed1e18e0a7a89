package web

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/sdhub/sdhub/output"
	"github.com/sdhub/sdhub/shard"
)

// SDPath is the path of a job's http_sd endpoint; "{job}" is the job name.
const SDPath = "/api/v1/sd/{job}"

// serveSD answers Prometheus's http_sd_configs with a job's targets: 200 and
// the bytes of the job's file (or of the asked shard's part), 404 for a job
// sdhub does not serve, 503 until the job's first complete state, so that
// Prometheus keeps the targets it has.
func (h *handler) serveSD(w http.ResponseWriter, r *http.Request) {
	job := r.PathValue("job")
	sh, shards, sharded, err := parseShard(r.URL.Query())
	if err != nil {
		apiError(w, http.StatusBadRequest, "bad_data", err.Error())
		return
	}
	state, st := h.o.Targets.job(job)
	if state == stateNoUpdate && h.o.Config != nil {
		// Before the manager's first state the running config tells
		// whether sdhub serves the job at all.
		if cfg := h.o.Config(); cfg != nil {
			if _, ok := cfg.Jobs()[job]; !ok {
				state = stateUnknown
			}
		}
	}
	switch state {
	case stateNoUpdate:
		apiError(w, http.StatusServiceUnavailable, "unavailable", "no discovery state yet: sdhub is starting")
		return
	case stateUnknown:
		apiError(w, http.StatusNotFound, "not_found", fmt.Sprintf("job %q is not served by sdhub", job))
		return
	case stateWaiting:
		apiError(w, http.StatusServiceUnavailable, "unavailable", fmt.Sprintf("job %q is waiting for the first full set of targets of every provider", job))
		return
	}
	data, err := st.data, st.err
	if sharded && err == nil {
		data, err = output.RenderValid(shard.Filter(job, st.groups, sh, shards))
	}
	if err != nil {
		apiError(w, http.StatusInternalServerError, "internal", fmt.Sprintf("rendering the targets of job %q: %v", job, err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(data)
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
