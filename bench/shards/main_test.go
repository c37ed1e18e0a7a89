package main

import (
	"strings"
	"testing"
)

// TestSmoke runs the figures at a small size: every table and the summary
// must be printed. It asserts no figure (package shard's tests do).
func TestSmoke(t *testing.T) {
	var out strings.Builder
	err := run(config{sizes: []int{120}, trials: 3, bigTrials: 1, minN: 2, maxN: 4, replicas: []int{1, 2}, seed: 1}, &out)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"## bench/shards, ",
		"\n- commit: ",
		"### 120 targets, R = 1\n",
		"### 120 targets, R = 2\n",
		"\n| 4 | ",
		"### Summary\n",
		"\n| 120 | 2 | bounded-load | ",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in the output", want)
		}
	}
}
