// Package testenv decides what an integration test does when the external
// component it needs (a Consul binary, a Docker engine) is absent: skip with
// a clear message, or fail when SDHUB_REQUIRE_INTEGRATION=1 (CI sets it).
package testenv

import (
	"os"
	"testing"
)

// RequireEnv is the variable that turns skips into failures.
const RequireEnv = "SDHUB_REQUIRE_INTEGRATION"

// Required reports whether integration tests must run (RequireEnv is "1").
func Required() bool { return os.Getenv(RequireEnv) == "1" }

// Require returns when ok. Otherwise it stops the test: t.Fatalf when
// integration tests are required, else t.Skipf. what names the component
// and why says why it is unavailable.
func Require(t testing.TB, what string, ok bool, why string) {
	t.Helper()
	if ok {
		return
	}
	if Required() {
		t.Fatalf("%s unavailable and %s=1: %s", what, RequireEnv, why)
	}
	t.Skipf("skipping: %s unavailable (%s); set %s=1 to fail instead", what, why, RequireEnv)
}
