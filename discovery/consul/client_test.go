package consul

import "testing"

// TestStreamSlots: how an HTTP/1.1 discoverer divides its connections
// between reads and streams.
func TestStreamSlots(t *testing.T) {
	for _, tc := range []struct {
		name               string
		maxConns           int
		auto               bool
		agentLimit         int
		wantReads, wantStr int
	}{
		{"default, agent at Consul's default", DefaultMaxConnections, true, 200, 16, 84},
		{"default, agent raised", DefaultMaxConnections, true, 15000, 16, 7484},
		{"default, agent unknown", DefaultMaxConnections, true, 0, 16, 0},
		{"default, agent below twice the reads", DefaultMaxConnections, true, 30, 16, 0},
		{"set to the default: no streams", 16, false, 200, 16, 0},
		{"set below the default", 8, false, 15000, 8, 0},
		{"set above the default", 100, false, 0, 16, 84},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reads, slots := streamSlots(tc.maxConns, tc.auto, tc.agentLimit)
			if reads != tc.wantReads || slots != tc.wantStr {
				t.Fatalf("streamSlots(%d, %v, %d) = %d reads, %d streams; want %d, %d", tc.maxConns, tc.auto, tc.agentLimit, reads, slots, tc.wantReads, tc.wantStr)
			}
		})
	}
}
