package consul

import (
	"context"
	"flag"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	promconsul "github.com/prometheus/prometheus/discovery/consul"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/sdhub/sdhub/discovery"
	"github.com/sdhub/sdhub/internal/consulagent"
)

var benchSize = flag.String("consul.size", "5000x10", "BenchmarkFullRead's catalog: services x instances, on 50 nodes")

// BenchmarkFullRead measures the discoverer's own cost of a complete read
// of a large catalog from a real agent, over HTTP and HTTPS, next to
// Prometheus's consul discoverer: each op starts a discoverer, waits for
// every target, and stops it. cpu-s/op is this process's CPU time (the
// discoverer's decoding and labels, and the receiver's counting, the same
// for both); the agent's is not in it. Filling the agent takes minutes:
//
//	go test ./discovery/consul -run '^$' -bench FullRead -benchtime 3x
func BenchmarkFullRead(b *testing.B) {
	var n, m int
	if _, err := fmt.Sscanf(*benchSize, "%dx%d", &n, &m); err != nil {
		b.Fatalf("invalid -consul.size %q: %v", *benchSize, err)
	}
	a := consulagent.StartT(b, consulagent.Options{TLS: true, MaxConnsPerClient: 15000}) // Prometheus holds a connection per service over HTTP
	w := newWriter(b, a)
	const nodes = 50
	for i := range nodes {
		w.registerNode(node{name: fmt.Sprintf("n-%02d", i), addr: fmt.Sprintf("10.7.0.%d", i+1), meta: map[string]string{"rack": fmt.Sprint(i % 5)}})
	}
	var ins []instance
	for s := range n {
		for i := range m {
			in := instance{node: node{name: fmt.Sprintf("n-%02d", (s*m+i)%nodes)}, id: fmt.Sprintf("s-%05d-%02d", s, i), name: fmt.Sprintf("s-%05d", s),
				port: 10000 + i, tags: []string{"bench", fmt.Sprintf("shard-%d", s%10)}, meta: map[string]string{"instance": fmt.Sprint(i)}}
			in.checks = map[string]string{in.id + "-tcp": "passing"}
			ins = append(ins, in)
		}
	}
	w.registerMany(ins)
	want := n * m

	for _, tc := range []struct {
		name   string
		https  bool
		sdhub  bool
		config string
	}{
		{"sdhub/http", false, true, sdConfig(a, false)},
		{"sdhub/https", true, true, sdConfig(a, true)},
		{"prometheus/http", false, false, sdConfig(a, false)},
		{"prometheus/https", true, false, sdConfig(a, true)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			var cpu float64
			for b.Loop() {
				ctx, cancel := context.WithCancel(context.Background())
				before := cpuSeconds()
				var d discovery.Discoverer
				if tc.sdhub {
					d = newTestDiscovery(b, tc.config+noAgent)
				} else {
					c, err := decodeConfig(b, []byte(tc.config+noAgent))
					if err != nil {
						b.Fatal(err)
					}
					pc := toPrometheus(c)
					// Its loop sleeps out refresh_interval before it sees
					// ctx end; a second lets it return soon after the op.
					pc.RefreshInterval = model.Duration(time.Second)
					if d, err = promconsul.NewDiscovery(pc, nil, pc.NewDiscovererMetrics(prometheus.NewRegistry(), nil)); err != nil {
						b.Fatal(err)
					}
				}
				done := runUntil(ctx, d, want)
				cpu += cpuSeconds() - before
				b.StopTimer()
				cancel()
				<-done
				b.StartTimer()
			}
			b.ReportMetric(cpu/float64(b.N), "cpu-s/op")
		})
	}
}

// runUntil runs d until its groups hold want targets, and returns a channel
// closed when Run has returned after ctx ends.
func runUntil(ctx context.Context, d discovery.Discoverer, want int) <-chan struct{} {
	up := make(chan []*targetgroup.Group)
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.Run(ctx, up)
	}()
	counts := map[string]int{}
	total := 0
	for total < want {
		select {
		case tgs := <-up:
			for _, g := range tgs {
				if g != nil {
					total += len(g.Targets) - counts[g.Source]
					counts[g.Source] = len(g.Targets)
				}
			}
		case <-ctx.Done():
			return done
		}
	}
	go func() { // drain until Run returns
		for {
			select {
			case <-up:
			case <-done:
				return
			}
		}
	}()
	return done
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}
