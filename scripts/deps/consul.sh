#!/usr/bin/env bash
# Installs the Consul binary used by sdhub's integration tests and benchmark.
#
# Consul is not packaged in Debian, so it is built from source fetched through
# the Go module proxy. The binary is cached under
# ${XDG_CACHE_HOME:-$HOME/.cache}/sdhub/bin/consul-<version>; when it is already
# there the script does nothing but print its path. The path is the only thing
# written to stdout; progress goes to stderr.
set -euo pipefail

version="${CONSUL_VERSION:-1.20.6}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/sdhub/bin"
bin="$cache/consul-$version"

if [[ -x "$bin" ]]; then
	echo "$bin"
	exit 0
fi

command -v go >/dev/null || { echo "consul.sh: go is required to build consul" >&2; exit 1; }
mkdir -p "$cache"

work="$(mktemp -d)"
trap 'chmod -R u+w "$work" 2>/dev/null || true; rm -rf "$work"' EXIT

echo "consul.sh: downloading github.com/hashicorp/consul@v$version" >&2
src="$(cd "$work" && GOFLAGS= go mod download -json "github.com/hashicorp/consul@v$version" |
	sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
[[ -n "$src" && -d "$src" ]] || { echo "consul.sh: go mod download gave no source directory" >&2; exit 1; }

cp -r "$src" "$work/consul"
chmod -R u+w "$work/consul"
cd "$work/consul"

# The release go.mod replaces its own sub-modules (api, sdk, ...) with relative
# directories that the module zip does not contain; use the published versions.
for r in $(awk '{ sub(/^replace[[:space:]]+/, "") } $2 == "=>" && $3 ~ /^\.\.?\// { print $1 }' go.mod); do
	go mod edit -dropreplace="$r"
done

echo "consul.sh: building (takes a few minutes)" >&2
GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -o "$work/consul.bin" .
"$work/consul.bin" version >&2
mv "$work/consul.bin" "$bin.tmp.$$"
mv "$bin.tmp.$$" "$bin"
echo "$bin"
