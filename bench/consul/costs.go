package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// requestCosts measures what each kind of request sdhub and Prometheus send
// costs the agent, in its CPU time per request, on the filled catalog
// while nothing else asks it anything. The sides' own costs follow from
// these and their request counts.
func requestCosts(a *agent) error {
	matchNothing := url.QueryEscape(`ID == "" and ID != ""`)
	notPassing := url.QueryEscape(`Status != "passing"`)
	fmt.Println("\n| request (catalog as filled, one at a time) | agent CPU per request |")
	fmt.Println("|---|---|")
	for _, tc := range []struct {
		what, path string
		n          int
	}{
		{"one service's instances: /v1/health/service/<name> (both sides, per service)", "/v1/health/service/" + serviceName(42), 200},
		{"the service list: /v1/catalog/services (both sides' catalog watch)", "/v1/catalog/services", 10},
		{"critical checks: /v1/health/state/critical (sdhub over HTTP, and warning ones)", "/v1/health/state/critical", 100},
		{"the node list: /v1/catalog/nodes (sdhub over HTTP)", "/v1/catalog/nodes", 100},
		{"one node's index: /v1/catalog/node-services/<node>?filter=<nothing> (sdhub over HTTP)", "/v1/catalog/node-services/" + nodeName(7) + "?filter=" + matchNothing, 100},
		{"one node's instances: /v1/catalog/node-services/<node> (sdhub over HTTP)", "/v1/catalog/node-services/" + nodeName(7), 20},
		{"(not used) checks not passing: /v1/health/state/any?filter=...", "/v1/health/state/any?filter=" + notPassing, 10},
		{"(not used) every check: /v1/health/state/any", "/v1/health/state/any", 3},
		{"(not used) the UI's service summary: /v1/internal/ui/services", "/v1/internal/ui/services", 3},
	} {
		before := a.cpu()
		for range tc.n {
			if err := get(a.Addr(), tc.path); err != nil {
				return err
			}
		}
		fmt.Printf("| %s | %.2f ms |\n", tc.what, (a.cpu()-before)*1000/float64(tc.n))
	}
	return nil
}

func get(addr, path string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path+sep+"stale", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	_, err = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d", path, resp.StatusCode)
	}
	return err
}
