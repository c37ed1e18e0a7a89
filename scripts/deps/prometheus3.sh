#!/usr/bin/env bash
# Builds Prometheus 3 (every service-discovery mechanism, consul_sd and
# kubernetes_sd included; Debian's 2.42 has neither) for the benchmarks that
# compare a consuming Prometheus reading sdhub's output with one running its
# own discovery. The source is the prometheus/prometheus module from the Go
# module proxy (v0.315.0 is Prometheus 3.5's code); the binary is cached under
# ${XDG_CACHE_HOME:-$HOME/.cache}/sdhub/bin/prometheus-<version>, and when it
# is there the script only prints its path. The path is the only thing
# written to stdout; progress goes to stderr. Takes about 4 minutes on 2 cores.
set -euo pipefail

version="${PROMETHEUS3_MODULE_VERSION:-v0.315.0}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/sdhub/bin"
bin="$cache/prometheus-$version"

if [[ -x "$bin" ]]; then
	echo "$bin"
	exit 0
fi

command -v go >/dev/null || { echo "prometheus3.sh: go is required" >&2; exit 1; }
mkdir -p "$cache"
work="$(mktemp -d)"
trap 'chmod -R u+w "$work" 2>/dev/null || true; rm -rf "$work"' EXIT

echo "prometheus3.sh: downloading github.com/prometheus/prometheus@$version" >&2
src="$(cd "$work" && GOFLAGS= GOWORK=off go mod download -json "github.com/prometheus/prometheus@$version" |
	sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
[[ -n "$src" && -d "$src" ]] || { echo "prometheus3.sh: go mod download gave no source directory" >&2; exit 1; }
cp -r "$src" "$work/prometheus"
chmod -R u+w "$work/prometheus"
cd "$work/prometheus"
echo "prometheus3.sh: building ./cmd/prometheus (takes a few minutes)" >&2
# The web UI's assets are not in the module: build without them (the API,
# which the benchmarks read, is complete).
GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -o "$work/prometheus.bin" ./cmd/prometheus
"$work/prometheus.bin" --version >&2
mv "$work/prometheus.bin" "$bin.tmp.$$"
mv "$bin.tmp.$$" "$bin"
echo "$bin"
