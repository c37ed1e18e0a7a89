#!/usr/bin/env bash
# Builds sdhub's container image (Dockerfile) from the static binary of the
# release build, for the host's architecture (or $GOARCH), without pulling
# anything:
#
#   scripts/image.sh [-t TAG] [DOCKER BUILD ARGUMENTS...]
#
# TAG defaults to sdhub:latest. Like the release, the binary is built from
# the commit HEAD names, not from uncommitted changes. The image gets the
# CA certificates of the host ($CA_CERTIFICATES, default Debian's bundle) for
# https SD configs.
set -euo pipefail
cd "$(dirname "$0")/.."

tag=sdhub:latest
if [[ ${1:-} == -t ]]; then
	tag=$2
	shift 2
fi
arch=${GOARCH:-$(go env GOARCH)}
version=$(git show HEAD:VERSION | tr -d '[:space:]')
name=sdhub-$version.linux-$arch

stage=.build/image
rm -rf "$stage"
mkdir -p "$stage/sd" "$stage/linux-$arch"
scripts/release.sh -o .build/dist "linux/$arch" >/dev/null
tar -xzf ".build/dist/$name.tar.gz" -C "$stage/linux-$arch" --strip-components=1 "$name/sdhub"
cp "${CA_CERTIFICATES:-/etc/ssl/certs/ca-certificates.crt}" "$stage/ca-certificates.crt"

# Without the buildx plugin, the docker CLI needs the classic builder.
if ! docker buildx version >/dev/null 2>&1; then
	export DOCKER_BUILDKIT=0
fi
docker build -t "$tag" --build-arg "TARGETARCH=$arch" --build-arg "VERSION=$version" \
	--build-arg "REVISION=$(git rev-parse HEAD)" "$@" .
