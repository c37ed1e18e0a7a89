#!/usr/bin/env bash
# Makes a Docker engine in swarm mode available for sdhub's dockerswarm tests.
#
# On a fresh Debian machine: installs Debian's docker.io when dockerd is absent,
# starts `dockerd --iptables=false` in the background when the engine does not
# answer (its log goes to ${XDG_CACHE_HOME:-$HOME/.cache}/sdhub/docker/dockerd.log),
# waits for `docker info` with a bound, and runs
# `docker swarm init --advertise-addr 127.0.0.1` when the engine is not yet a
# swarm manager. Idempotent: on a machine that is already set up it only checks.
# Every step it takes is printed.
#
# With --clean it then removes what crashed test runs left behind: services
# and networks labelled sdhub.test.run (tests remove their own when they end).
set -euo pipefail

clean=false
case "${1:-}" in
--clean) clean=true ;;
"") ;;
*) echo "usage: $0 [--clean]" >&2; exit 2 ;;
esac

say() { echo "docker.sh: $*"; }
die() { echo "docker.sh: $*" >&2; exit 1; }

wait_secs="${DOCKER_WAIT_SECONDS:-60}"
state="${XDG_CACHE_HOME:-$HOME/.cache}/sdhub/docker"

answers() { timeout 10 docker info >/dev/null 2>&1; }

if ! command -v dockerd >/dev/null; then
	say "dockerd absent: installing docker.io"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq docker.io >/dev/null
	say "installed $(dockerd --version)"
fi
command -v docker >/dev/null || die "docker CLI not found after install"

if answers; then
	say "engine already answering"
else
	mkdir -p "$state"
	say "starting dockerd --iptables=false (log: $state/dockerd.log)"
	# setsid: the daemon outlives this script and the job that ran it.
	setsid dockerd --iptables=false >>"$state/dockerd.log" 2>&1 </dev/null &
	echo $! >"$state/dockerd.pid"
	deadline=$((SECONDS + wait_secs))
	until answers; do
		if ((SECONDS >= deadline)); then
			tail -n 20 "$state/dockerd.log" >&2 || true
			die "engine did not answer within ${wait_secs}s"
		fi
		if ! kill -0 "$(cat "$state/dockerd.pid")" 2>/dev/null && ! answers; then
			tail -n 20 "$state/dockerd.log" >&2 || true
			die "dockerd exited"
		fi
		sleep 1
	done
	say "engine answering: server $(docker version --format '{{.Server.Version}}')"
fi

swarm="$(timeout 10 docker info --format '{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}')"
case "$swarm" in
"active true")
	say "already a swarm manager"
	;;
"active false")
	die "engine is a swarm worker, not a manager: run 'docker swarm leave --force' first"
	;;
*)
	say "initialising a single-node swarm (state was: $swarm)"
	timeout 60 docker swarm init --advertise-addr 127.0.0.1 >/dev/null
	say "swarm manager ready"
	;;
esac

if $clean; then
	services="$(docker service ls -q --filter label=sdhub.test.run)"
	if [[ -n "$services" ]]; then
		say "removing leftover test services: $(echo $services)"
		docker service rm $services >/dev/null
	fi
	networks="$(docker network ls -q --filter label=sdhub.test.run)"
	if [[ -n "$networks" ]]; then
		say "removing leftover test networks: $(echo $networks)"
		for n in $networks; do
			# A network stays busy until the removed services' containers stop.
			for _ in $(seq 30); do
				docker network rm "$n" >/dev/null 2>&1 && break
				docker network inspect "$n" >/dev/null 2>&1 || break
				sleep 1
			done
		done
	fi
fi
