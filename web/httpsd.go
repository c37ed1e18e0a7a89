package web

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/prometheus/common/model"

	"github.com/sdhub/sdhub/output"
	"github.com/sdhub/sdhub/shard"
)

// SDPath is the path of a job's http_sd endpoint; "{job}" is the job name.
const SDPath = "/api/v1/sd/{job}"

// serveSD answers Prometheus's http_sd_configs with a job's targets: 200 and
// the bytes of the job's output (or of the asked shard's part; with
// ?rules=DIGEST, the digest of the job's rules, only the targets they keep:
// consumers.view), 404 for a
// job sdhub does not serve, 503 until the job's first complete state, so that
// Prometheus keeps the targets it has.
func (h *handler) serveSD(w http.ResponseWriter, r *http.Request) {
	job := r.PathValue("job")
	sp, _, err := parseShard(r.URL.Query())
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
	snap = h.consumers.view(snap, r.URL.Query().Get("rules"), h.o.Now()).Shard(sp)
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

// parseShard reads ?shard=I&shards=N, and with them replicas=R,
// strategy=S and weight_label=L; sharded is false when none is given.
func parseShard(q url.Values) (sp output.ShardSpec, sharded bool, err error) {
	if !q.Has("shard") && !q.Has("shards") {
		for _, k := range []string{"replicas", "strategy", "weight_label"} {
			if q.Has(k) {
				return sp, false, fmt.Errorf("%s goes with shard and shards: ?shard=I&shards=N&%s=...", k, k)
			}
		}
		return output.ShardSpec{Shards: 1}, false, nil
	}
	if !q.Has("shard") || !q.Has("shards") {
		return sp, false, fmt.Errorf("shard and shards go together: ?shard=I&shards=N with 0 <= I < N")
	}
	if sp.Shards, err = strconv.Atoi(q.Get("shards")); err != nil {
		return sp, false, fmt.Errorf("invalid shards %q (must be an integer of at least 1)", q.Get("shards"))
	}
	if sp.Shard, err = strconv.Atoi(q.Get("shard")); err != nil {
		return sp, false, fmt.Errorf("invalid shard %q (must be an integer from 0 to shards-1)", q.Get("shard"))
	}
	if err := shard.Validate(sp.Shard, sp.Shards); err != nil {
		return sp, false, err
	}
	sp.Replicas = 1
	if q.Has("replicas") {
		if sp.Replicas, err = strconv.Atoi(q.Get("replicas")); err != nil {
			return sp, false, fmt.Errorf("invalid replicas %q (must be an integer from 1 to shards = %d)", q.Get("replicas"), sp.Shards)
		}
		if err := shard.ValidateReplicas(sp.Replicas, sp.Shards); err != nil {
			return sp, false, err
		}
	}
	if sp.Strategy, err = shard.ParseStrategy(q.Get("strategy")); err != nil {
		return sp, false, err
	}
	if sp.WeightLabel = q.Get("weight_label"); sp.WeightLabel != "" && sp.Strategy != shard.BoundedLoad {
		return sp, false, fmt.Errorf("weight_label needs strategy=%s: a rendezvous split places each target by its address alone", shard.BoundedLoad)
	}
	if q.Has("weight_label") && !model.LabelName(sp.WeightLabel).IsValidLegacy() {
		return sp, false, fmt.Errorf("invalid weight_label %q (a label name: [a-zA-Z_][a-zA-Z0-9_]*)", sp.WeightLabel)
	}
	return sp, true, nil
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
