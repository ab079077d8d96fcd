#!/usr/bin/env bash
# Start or stop a private Docker engine for the test suite (no registry is reachable, no
# bridge networking is needed: sandbox containers run with --network none).
#   .ci/dockerd.sh start   -> prints `export DOCKER_HOST=...` on success
#   .ci/dockerd.sh stop
set -u
ROOT=${SDPO_DOCKERD_ROOT:-/tmp/sdpo-dockerd}
SOCK="$ROOT/docker.sock"
case "${1:-start}" in
  start)
    mkdir -p "$ROOT/data" "$ROOT/exec"
    if [ -S "$SOCK" ] && DOCKER_HOST="unix://$SOCK" docker info >/dev/null 2>&1; then
      echo "export DOCKER_HOST=unix://$SOCK"; exit 0
    fi
    command -v dockerd >/dev/null || { echo "dockerd not installed" >&2; exit 1; }
    nohup dockerd --iptables=false --ip6tables=false --bridge=none \
      --data-root "$ROOT/data" --exec-root "$ROOT/exec" --pidfile "$ROOT/dockerd.pid" \
      -H "unix://$SOCK" >"$ROOT/dockerd.log" 2>&1 &
    for _ in $(seq 1 60); do
      if DOCKER_HOST="unix://$SOCK" docker info >/dev/null 2>&1; then
        echo "export DOCKER_HOST=unix://$SOCK"; exit 0
      fi
      sleep 0.5
    done
    echo "dockerd did not start; last log lines:" >&2; tail -20 "$ROOT/dockerd.log" >&2; exit 1
    ;;
  stop)
    if [ -f "$ROOT/dockerd.pid" ]; then
      kill "$(cat "$ROOT/dockerd.pid")" 2>/dev/null
      for _ in $(seq 1 40); do kill -0 "$(cat "$ROOT/dockerd.pid" 2>/dev/null)" 2>/dev/null || break; sleep 0.25; done
    fi
    ;;
esac
