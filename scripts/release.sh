#!/usr/bin/env bash
# Builds sdhub's release tarballs, reproducibly: the same commit and Go
# toolchain give the same bytes, whoever builds them, wherever and whenever.
#
#   scripts/release.sh [-o DIR] [PLATFORM...]
#
# PLATFORM is GOOS/GOARCH (default: linux/amd64 linux/arm64). For each one,
# DIR (default dist/) gets sdhub-VERSION.GOOS-GOARCH.tar.gz; then
# DIR/sha256sums.txt lists the checksums of every tarball in DIR.
#
# What is built is the commit HEAD names (`git archive`), never uncommitted
# changes: a static binary (CGO_ENABLED=0), -trimpath, with the version
# information of prometheus/common/version set as Prometheus's builds set
# it: Version from the VERSION file, Revision and Branch from git,
# BuildDate the commit's time (or SOURCE_DATE_EPOCH), BuildUser
# $BUILD_USER (default sdhub-release). The tarball's files have that time,
# owner 0, sorted names and normalised modes, and gzip records no name or
# time.
set -euo pipefail
cd "$(dirname "$0")/.."

out=dist
if [[ ${1:-} == -o ]]; then
	out=$2
	shift 2
fi
platforms=("$@")
if [[ ${#platforms[@]} -eq 0 ]]; then
	platforms=(linux/amd64 linux/arm64)
fi

version=$(git show HEAD:VERSION | tr -d '[:space:]')
revision=$(git rev-parse HEAD)
branch=${BRANCH:-$(git rev-parse --abbrev-ref HEAD)}
epoch=${SOURCE_DATE_EPOCH:-$(git show -s --format=%ct HEAD)}
build_date=$(TZ=UTC date -d "@$epoch" +%Y%m%d-%H:%M:%S)
build_user=${BUILD_USER:-sdhub-release}
pkg=github.com/prometheus/common/version
ldflags="-X $pkg.Version=$version -X $pkg.Revision=$revision -X $pkg.Branch=$branch"
ldflags+=" -X $pkg.BuildUser=$build_user -X $pkg.BuildDate=$build_date"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git archive --format=tar HEAD | tar -x -C "$work"
mkdir -p "$out"
out=$(cd "$out" && pwd)

for p in "${platforms[@]}"; do
	goos=${p%/*}
	goarch=${p#*/}
	name=sdhub-$version.$goos-$goarch
	stage=$work/stage/$name
	mkdir -p "$stage"
	(cd "$work" && CGO_ENABLED=0 GOOS=$goos GOARCH=$goarch GOFLAGS=-mod=readonly \
		go build -trimpath -buildvcs=false -ldflags "$ldflags" -o "$stage/sdhub" ./cmd/sdhub)
	cp "$work/LICENSE" "$work/README.md" "$work/CHANGELOG.md" "$stage/"
	cp "$work/packaging/systemd/sdhub.service" "$stage/"
	mkdir "$stage/monitoring"
	cp "$work/monitoring/README.md" "$work/monitoring/alerts.yml" "$work/monitoring/dashboard.json" "$stage/monitoring/"
	# The README's links lead into docs/.
	cp -r "$work/docs" "$stage/docs"
	tar -C "$work/stage" --sort=name --format=gnu --mtime="@$epoch" --owner=0 --group=0 --numeric-owner \
		--mode='u=rwX,go=rX' -cf - "$name" | gzip -n -9 >"$out/$name.tar.gz"
	echo "built $out/$name.tar.gz" >&2
done

(cd "$out" && sha256sum -- *.tar.gz >sha256sums.txt && cat sha256sums.txt)
