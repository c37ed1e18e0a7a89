package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/sdhub/sdhub/internal/benchproc"
	"github.com/sdhub/sdhub/internal/consulagent"
	"github.com/sdhub/sdhub/internal/consulfill"
)

// The consul source's catalog: its nodes, the bound on its services (a
// port each: 20000 + the service's number) and the agent's per-client
// connection limit, raised as bench/consul raises it: Prometheus's
// consul_sd holds a blocking query per service, every one from 127.0.0.1.
const (
	consulNodes       = 50
	maxConsulServices = 40_000
	agentConnLimit    = 15_000
)

// consulRules are the job's relabel_configs with the consul source: the
// file source's but __meta_filepath, which consul_sd does not set, and two
// labels from consul_sd's datacenter and node metadata.
const consulRules = keepRules + `- source_labels: [__meta_consul_dc]
  target_label: dc
- source_labels: [__meta_consul_metadata_rack]
  target_label: rack
`

// consulCatalog is the consul source's catalog: services services of
// instances instances each, instance i of service s on node
// (s*instances+i) mod 50, external nodes registered through the catalog
// (as catalog-sync or an ESM setup registers them), every instance with a
// passing check. Node n is at 127.1.0.n+1 with the node metadata rack;
// service s listens on port 20000+s, at its node's address (an empty
// service address on odd services, which consul_sd then takes from the
// node). Its tags are prod, http and its node's zone, plus scrape on the
// fraction keep of the services (s%20 == 0 for 5%); its metadata owner,
// version and commit.
type consulCatalog struct {
	services, instances int
	keep                float64
}

// kept reports whether service s carries the tag "scrape": s*k mod 10,000
// runs through the multiples of gcd(k, 10,000) evenly.
func (c consulCatalog) kept(s int) bool {
	k := int(c.keep*10000 + 0.5)
	return (s*k)%10000 < k
}

// keptServices is the number of services tagged "scrape".
func (c consulCatalog) keptServices() int {
	n := 0
	for s := range c.services {
		if c.kept(s) {
			n++
		}
	}
	return n
}

func consulNodeName(n int) string { return fmt.Sprintf("node-%02d", n) }
func consulNodeAddr(n int) string { return fmt.Sprintf("127.1.%d.%d", n/250, 1+n%250) }

// fill registers the nodes, then every instance with its check, through
// the agent's transaction endpoint (package consulfill).
func (c consulCatalog) fill(ctx context.Context, client *api.Client) error {
	err := consulfill.Fill(ctx, client, func(yield func(api.TxnOps) bool) {
		for n := range consulNodes {
			if !yield(api.TxnOps{{Node: &api.NodeTxnOp{Verb: api.NodeSet, Node: api.Node{
				Node: consulNodeName(n), Address: consulNodeAddr(n), Meta: map[string]string{"rack": fmt.Sprintf("r%d", n%5)},
			}}}}) {
				return
			}
		}
	})
	if err != nil {
		return fmt.Errorf("registering the nodes: %w", err)
	}
	err = consulfill.Fill(ctx, client, func(yield func(api.TxnOps) bool) {
		for s := range c.services {
			name := fmt.Sprintf("%s-%04d", kinds[s%len(kinds)], s)
			for i := range c.instances {
				n := (s*c.instances + i) % consulNodes
				node, id := consulNodeName(n), fmt.Sprintf("%s-%02d", name, i)
				svc := api.AgentService{ID: id, Service: name, Port: 20000 + s,
					Tags: []string{"prod", "http", fmt.Sprintf("az-%c", 'a'+n%3)},
					Meta: map[string]string{
						"owner":   fmt.Sprintf("team-%02d", s%23),
						"version": fmt.Sprintf("1.%d.%d", s%17, s%5),
						"commit":  fmt.Sprintf("%012x", uint64(s)*0x9e3779b97f4a7c15>>16),
					}}
				if c.kept(s) {
					svc.Tags = append(svc.Tags, "scrape")
				}
				if s%2 == 0 {
					svc.Address = consulNodeAddr(n)
				}
				if !yield(api.TxnOps{
					{Service: &api.ServiceTxnOp{Verb: api.ServiceSet, Node: node, Service: svc}},
					{Check: &api.CheckTxnOp{Verb: api.CheckSet, Check: api.HealthCheck{
						Node: node, CheckID: id + ":tcp", Name: "tcp", Status: api.HealthPassing, ServiceID: id, ServiceName: name,
					}}},
				}) {
					return
				}
			}
		}
	})
	if err != nil {
		return fmt.Errorf("registering the services: %w", err)
	}
	return nil
}

// consulJob starts the consul source's agent, its log in dir/consul.log,
// and fills its catalog. The job's close stops the agent; so does SIGINT
// or SIGTERM, which then ends the program (the agent is not the
// benchmark's child as the Prometheus servers and sdhub are, killed when it
// dies).
func consulJob(cfg benchConfig, dir string) (_ *job, err error) {
	logf, err := os.Create(filepath.Join(dir, "consul.log"))
	if err != nil {
		return nil, err
	}
	startCtx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a, err := consulagent.Start(startCtx, cfg.consul, consulagent.Options{MaxConnsPerClient: agentConnLimit, Log: logf})
	if err != nil {
		logf.Close()
		return nil, err
	}
	sig, done := make(chan os.Signal, 1), make(chan struct{})
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		select {
		case s := <-sig:
			a.Close()
			fmt.Fprintf(os.Stderr, "hubfilter: %v: the Consul agent is stopped, the Prometheus servers and sdhub die with this process\n", s)
			os.Exit(1)
		case <-done:
		}
	}()
	closeJob := func() {
		signal.Stop(sig)
		close(done)
		<-stopped
		a.Close()
		logf.Close()
	}
	defer func() {
		if err != nil {
			closeJob()
		}
	}()

	tr := &http.Transport{MaxIdleConnsPerHost: consulfill.Parallel}
	defer tr.CloseIdleConnections()
	client, err := api.NewClient(&api.Config{Address: a.Addr(), Scheme: "http", HttpClient: &http.Client{Transport: tr}})
	if err != nil {
		return nil, err
	}
	cat := consulCatalog{services: cfg.services, instances: cfg.instances, keep: cfg.keep}
	fillCtx, cancelFill := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancelFill()
	t0 := time.Now()
	if err := cat.fill(fillCtx, client); err != nil {
		return nil, fmt.Errorf("filling the catalog: %w", err)
	}
	filled := time.Since(t0)
	services, _, err := client.Catalog().Services((&api.QueryOptions{}).WithContext(fillCtx))
	if err != nil {
		return nil, err
	}
	if len(services) != cfg.services+1 { // and the agent's own: consul
		return nil, fmt.Errorf("the agent's catalog has %d services, want %d and consul", len(services), cfg.services)
	}

	instances := cfg.services * cfg.instances
	return &job{
		promYML: promConfig(fmt.Sprintf("    consul_sd_configs:\n      - server: %s\n", a.Addr()), consulRules),
		targets: instances + 1,
		kept:    cat.keptServices() * cfg.instances,
		agent:   a,
		close:   closeJob,
		about: fmt.Sprintf("%d targets: the catalog of a real Consul agent, %d services of %d instances on %d nodes, and the agent's own service consul (one instance), "+
			"as consul_sd labels them, one group per service", instances+1, cfg.services, cfg.instances, consulNodes),
		method: fmt.Sprintf("the source is a real Consul agent (consul %s, one server on loopback, http_max_conns_per_client %d; Consul's default is 200) of %d services × %d instances on %d nodes "+
			"(external nodes registered through the catalog, every instance with a passing check), filled through its transaction endpoint in %s. "+
			"The native side, Prometheus 3, runs the job's consul_sd_configs itself; one sdhub runs the same prometheus.yml and serves both sdhub sides.",
			consulagent.Version, agentConnLimit, cfg.services, cfg.instances, consulNodes, benchproc.Ms(filled)),
	}, nil
}

// writeAgent prints the agent's usage and the connections the native side
// and sdhub hold to it.
func writeAgent(w io.Writer, a *consulagent.Agent, hub *proc, sides []*side) error {
	u, err := benchproc.ReadUsage(a.PID())
	if err != nil {
		return fmt.Errorf("the agent's usage: %w", err)
	}
	hc, err := consulagent.Established(hub.cmd.Process.Pid, a.HTTPPort())
	if err != nil {
		return fmt.Errorf("sdhub's connections to the agent: %w", err)
	}
	fmt.Fprintf(w, "- the Consul agent: RSS %d MiB (peak %d MiB), CPU %.1f s since its start (the fill included); TCP connections to it: native %d (at its RSS reading), sdhub %d (now; "+
		"sdhub's max_connections defaults to half the agent's http_max_conns_per_client, which leaves room for a stream per service)\n",
		u.RSS>>20, u.Peak>>20, u.CPU, sides[0].agentConns, hc)
	return nil
}

// prometheus3 is the consul source's default Prometheus:
// $SDHUB_PROMETHEUS3_BIN, else the binary scripts/deps/prometheus3.sh
// caches.
func prometheus3() (string, error) {
	if p := os.Getenv("SDHUB_PROMETHEUS3_BIN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("no Prometheus 3 at $SDHUB_PROMETHEUS3_BIN: %w", err)
		}
		return p, nil
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("no Prometheus 3: set -prometheus or $SDHUB_PROMETHEUS3_BIN (%w)", err)
		}
		cache = filepath.Join(home, ".cache")
	}
	p := filepath.Join(cache, "sdhub", "bin", "prometheus-v0.315.0")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("no Prometheus 3: set -prometheus or $SDHUB_PROMETHEUS3_BIN, or run scripts/deps/prometheus3.sh (%w)", err)
	}
	return p, nil
}
