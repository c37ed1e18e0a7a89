package manager

import (
	"testing"
	"testing/synctest"

	"github.com/sdhub/sdhub/discovery"
)

// Two managers in one process (two hubs) number their states on their own:
// the same steps give the same Gens in each, whatever the other did between.
func TestManagersNumberOnTheirOwn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := newEnv(t, Options{}), newEnv(t, Options{})
		var gens [2][]uint64
		for i, e := range []*env{a, b, a, b} {
			e.apply(map[string]discovery.Configs{"job": {e.cfg("one")}})
			e.latest()
			e.send("one", group("s1", "a:1"))
			jt := e.latest()["job"]
			gens[i%2] = append(gens[i%2], jt.Gen, jt.Groups[0].Gen)
		}
		if gens[0][0] != gens[1][0] || gens[0][1] != gens[1][1] {
			t.Errorf("the first states of two managers have Gens %v and %v, want the same", gens[0][:2], gens[1][:2])
		}
		if gens[0][2] != gens[1][2] || gens[0][3] != gens[1][3] {
			t.Errorf("the second states of two managers have Gens %v and %v, want the same", gens[0][2:], gens[1][2:])
		}
	})
}
