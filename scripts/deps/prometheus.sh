#!/usr/bin/env bash
# Installs Debian's Prometheus (the real consumer of sdhub's outputs in the
# end-to-end tests) if it is not there yet. Prints the prometheus binary's path.
set -euo pipefail
if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
	echo "installing Debian's prometheus package" >&2
	export DEBIAN_FRONTEND=noninteractive
	# The package's service must not start here: the tests run their own.
	printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
	chmod +x /usr/sbin/policy-rc.d
	trap 'rm -f /usr/sbin/policy-rc.d' EXIT
	if ! apt-get install -y --no-install-recommends prometheus >&2; then
		apt-get update >&2
		apt-get install -y --no-install-recommends prometheus >&2
	fi
fi
command -v prometheus
