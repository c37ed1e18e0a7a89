package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
)

// tally is a slog handler that counts the warnings and errors logged, by
// message and error text, so a side's RPC failures can be told apart.
type tally struct {
	mu     *sync.Mutex
	counts map[string]int
	attrs  []slog.Attr
}

func newTally() *tally { return &tally{mu: &sync.Mutex{}, counts: map[string]int{}} }

func (t *tally) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }

func (t *tally) Handle(_ context.Context, r slog.Record) error {
	key := r.Message
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "err" {
			key += ": " + squash(a.Value.String())
		}
		return true
	})
	t.mu.Lock()
	t.counts[key]++
	t.mu.Unlock()
	return nil
}

func (t *tally) WithAttrs(as []slog.Attr) slog.Handler {
	return &tally{mu: t.mu, counts: t.counts, attrs: append(slices.Clone(t.attrs), as...)}
}

func (t *tally) WithGroup(string) slog.Handler { return t }

// squash drops what differs between two errors of one kind: the service
// or node named in a URL path.
func squash(s string) string {
	for _, p := range []string{"/v1/health/service/", "/v1/catalog/node-services/", "/v1/catalog/node/"} {
		if i := strings.Index(s, p); i >= 0 {
			rest := s[i+len(p):]
			j := strings.IndexAny(rest, "?\": ")
			if j < 0 {
				j = len(rest)
			}
			s = s[:i+len(p)] + "<name>" + rest[j:]
		}
	}
	return s
}

// print writes the counts, most frequent first.
func (t *tally) print(w io.Writer, prefix string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	keys := slices.SortedFunc(maps.Keys(t.counts), func(a, b string) int { return t.counts[b] - t.counts[a] })
	for i, k := range keys {
		if i == 10 {
			fmt.Fprintf(w, "%s: ... %d more kinds\n", prefix, len(keys)-10)
			break
		}
		fmt.Fprintf(w, "%s: %d x %s\n", prefix, t.counts[k], k)
	}
}
