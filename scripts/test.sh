#!/usr/bin/env bash
# Sets up everything the tests need and runs every test:
#   - Consul (built from the Go module proxy once, then cached),
#   - the Docker engine in swarm mode (Debian's docker.io),
#   - Prometheus and promtool (Debian's prometheus package),
#   - Chromium (Debian's package) for the status page's browser test,
#   - systemd-analyze (Debian's systemd) for the systemd unit's check,
# then gofmt, go vet and every Go test with the race detector, the
# reliability suite at full size (its table of figures), and each fuzz
# target for FUZZTIME executions (100000x; see the Makefile for why a count,
# not a duration). Integration tests fail, rather than skip, when
# a component is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }

step "dependencies"
export SDHUB_REQUIRE_INTEGRATION=1
SDHUB_CONSUL_BIN="$(scripts/deps/consul.sh)"
export SDHUB_CONSUL_BIN
# --clean removes services and networks a crashed earlier run left behind.
scripts/deps/docker.sh --clean
SDHUB_PROMETHEUS_BIN="$(scripts/deps/prometheus.sh)"
export SDHUB_PROMETHEUS_BIN
SDHUB_CHROMIUM_BIN="$(scripts/deps/chromium.sh)"
export SDHUB_CHROMIUM_BIN
scripts/deps/systemd.sh >/dev/null
echo "consul: $SDHUB_CONSUL_BIN"
echo "prometheus: $SDHUB_PROMETHEUS_BIN"
echo "chromium: $SDHUB_CHROMIUM_BIN"

step "gofmt and go vet"
unformatted="$(gofmt -l $(git ls-files '*.go'))"
if [ -n "$unformatted" ]; then
	echo "gofmt would change:" "$unformatted" >&2
	exit 1
fi
go vet ./...

step "go test -race ./..."
go test -race -count=1 -timeout 25m ./...

step "reliability suite at full size"
timeout 20m go run ./internal/reliability/cmd/reliability

step "fuzz targets, ${FUZZTIME:-100000x} each"
make --no-print-directory fuzz FUZZTIME="${FUZZTIME:-100000x}"
