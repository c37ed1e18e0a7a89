#!/usr/bin/env bash
# Installs Debian's Chromium (the headless browser that renders sdhub's
# status page in cmd/sdhub's screenshot test) if it is not there yet. Prints
# the chromium binary's path.
set -euo pipefail
if ! command -v chromium >/dev/null 2>&1; then
	echo "installing Debian's chromium package" >&2
	export DEBIAN_FRONTEND=noninteractive
	if ! apt-get install -y --no-install-recommends chromium >&2; then
		apt-get update >&2
		apt-get install -y --no-install-recommends chromium >&2
	fi
fi
command -v chromium
