#!/usr/bin/env bash
# Run a command with a Docker engine where one can start, so the Docker tests run instead of
# being skipped: an engine DOCKER_HOST already answers at is used as it is; otherwise the
# private engine of .ci/dockerd.sh is started (dockerd installed, root) and stopped afterwards.
set -u
here="$(cd "$(dirname "$0")" && pwd)"
started=no
private="unix://${SDPO_DOCKERD_ROOT:-/tmp/sdpo-dockerd}/docker.sock"
if ! docker info >/dev/null 2>&1; then
  DOCKER_HOST="$private" docker info >/dev/null 2>&1 || started=yes
  if out=$("$here/dockerd.sh" start 2>/dev/null); then
    eval "$out"
    echo "Docker engine up at $DOCKER_HOST$([ "$started" = yes ] && echo ' (stopped after the command)')"
  else
    started=no
    echo "No Docker engine can start here: the Docker tests will be skipped and say why." \
      "To run them, install docker.io (root) or point DOCKER_HOST at a running engine."
  fi
fi
"$@"
status=$?
[ "$started" = yes ] && "$here/dockerd.sh" stop
exit $status
