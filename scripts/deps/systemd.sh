#!/usr/bin/env bash
# Installs systemd-analyze (Debian's systemd package), which checks
# packaging/systemd/sdhub.service, if it is not there yet. Prints its path.
set -euo pipefail
if ! command -v systemd-analyze >/dev/null 2>&1; then
	echo "installing Debian's systemd package" >&2
	export DEBIAN_FRONTEND=noninteractive
	if ! apt-get install -y --no-install-recommends systemd >&2; then
		apt-get update >&2
		apt-get install -y --no-install-recommends systemd >&2
	fi
fi
command -v systemd-analyze
