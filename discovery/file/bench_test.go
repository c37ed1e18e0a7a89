package file

import (
	"fmt"
	"reflect"
	"runtime"
	"strconv"
	"testing"
)

// bigFile is a file_sd JSON file of n targets, one group per target, each
// with 12 labels shaped like consul_sd's (addresses and IDs unique, the
// rest shared by many targets), as one line of JSON like json.Marshal
// writes. Target changed (0 <= changed < n) has version v in a label;
// every target's port is port.
func bigFile(n, changed, v, port int) []byte {
	b := make([]byte, 0, n*520)
	b = append(b, '[')
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		addr := fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
		health := "passing"
		if i == changed && v > 0 {
			health = "critical-" + strconv.Itoa(v)
		}
		b = fmt.Appendf(b, `{"targets":["%s:%d"],"labels":{`+
			`"__meta_consul_address":"%s","__meta_consul_dc":"dc1","__meta_consul_health":"%s",`+
			`"__meta_consul_metadata_rack":"r%d","__meta_consul_node":"node-%d","__meta_consul_service":"svc-%d",`+
			`"__meta_consul_service_address":"%s","__meta_consul_service_id":"svc-%d-%d",`+
			`"__meta_consul_service_metadata_owner":"team-%d","__meta_consul_service_port":"8080",`+
			`"__meta_consul_tagged_address_lan":"%s:8080","__meta_consul_tags":",prod,http,"}}`,
			addr, port, addr, health, i%7, i%97, i/50, addr, i/50, i, i/50%10, addr)
	}
	return append(b, ']')
}

const benchTargets = 100_000

// BenchmarkDecode100k decodes a 100,000-target file from scratch: sdhub's
// reader, and Prometheus's decoding (encoding/json into
// []*targetgroup.Group, then Source and __meta_filepath), which its file SD
// runs on every change of the file. live-B/op is the heap the decoded
// groups hold once decoded.
//
//	go test -run '^$' -bench 'Decode100k|Change100k' -benchmem ./discovery/file
func BenchmarkDecode100k(b *testing.B) {
	content := bigFile(benchTargets, 0, 0, 8080)
	const name = "/sd/big.json"
	b.Run("sdhub", func(b *testing.B) {
		b.SetBytes(int64(len(content)))
		var st *fileState
		for b.Loop() {
			var err error
			if st, err = newReader().decode(name, content, nil); err != nil || len(st.groups) != benchTargets {
				b.Fatal(err)
			}
		}
		reportLive(b, func() any {
			st, _ := newReader().decode(name, content, nil)
			return st
		})
		runtime.KeepAlive(st)
	})
	b.Run("prometheus", func(b *testing.B) {
		b.SetBytes(int64(len(content)))
		for b.Loop() {
			if gs, err := promRead(name, content); err != nil || len(gs) != benchTargets {
				b.Fatal(err)
			}
		}
		reportLive(b, func() any {
			gs, _ := promRead(name, content)
			return gs
		})
	})
}

// BenchmarkChange100k reads the 100,000-target file after a change,
// alternating between two versions: sdhub's reader after one target's
// labels changed (it decodes that group only and keeps the others) and
// after every target's port changed (it decodes every target list and
// keeps every group's labels); Prometheus's decoding decodes the whole
// file again in either case.
func BenchmarkChange100k(b *testing.B) {
	const name = "/sd/big.json"
	one := [2][]byte{bigFile(benchTargets, benchTargets/2, 1, 8080), bigFile(benchTargets, benchTargets/2, 2, 8080)}
	every := [2][]byte{bigFile(benchTargets, 0, 0, 8080), bigFile(benchTargets, 0, 0, 9090)}
	sdhub := func(versions [2][]byte, check func(prev, st *fileState) bool) func(b *testing.B) {
		return func(b *testing.B) {
			b.SetBytes(int64(len(versions[0])))
			r := newReader()
			st, err := r.decode(name, versions[0], nil)
			if err != nil {
				b.Fatal(err)
			}
			i := 0
			for b.Loop() {
				i++
				prev := st
				if st, err = r.decode(name, versions[i%2], prev); err != nil {
					b.Fatal(err)
				}
				if !check(prev, st) {
					b.Fatal("not an incremental decode")
				}
			}
		}
	}
	b.Run("sdhub-one-group", sdhub(one, func(prev, st *fileState) bool {
		return st.groups[0] == prev.groups[0] && st.groups[benchTargets/2] != prev.groups[benchTargets/2]
	}))
	b.Run("sdhub-every-target", sdhub(every, func(prev, st *fileState) bool {
		return st.groups[7] != prev.groups[7] && reflect.ValueOf(st.groups[7].Labels).UnsafePointer() == reflect.ValueOf(prev.groups[7].Labels).UnsafePointer()
	}))
	b.Run("prometheus", func(b *testing.B) {
		b.SetBytes(int64(len(one[0])))
		i := 0
		for b.Loop() {
			i++
			if gs, err := promRead(name, one[i%2]); err != nil || len(gs) != benchTargets {
				b.Fatal(err)
			}
		}
	})
}

// reportLive reports the heap that what build returns holds, as live-B/op.
func reportLive(b *testing.B, build func() any) {
	b.StopTimer()
	defer b.StartTimer()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	v := build()
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(v)
	b.ReportMetric(float64(after.HeapAlloc)-float64(before.HeapAlloc), "live-B/op")
}
