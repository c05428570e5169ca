#!/usr/bin/env bash
# Runs a command against a fresh testenv kube-apiserver: starts it (building it first when
# its cache is cold), exports KUBECONFIG, runs the command, stops the server on any exit
# (also on failure or Ctrl-C) and returns the command's exit status.
#
#   testenv/with-testenv.sh COMMAND [ARGS...]
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"

echo "==> starting testenv" >&2
env_lines="$("$HERE/run.sh")"
eval "$env_lines"
export KUBECONFIG
stop() {
  local rc=$?
  echo "==> stopping testenv (pid $KUBE_TESTENV_PID)" >&2
  "$HERE/stop.sh" "$KUBE_TESTENV_PID" >&2 || true
  exit "$rc"
}
trap stop EXIT
trap 'exit 130' INT TERM

echo "==> $* (KUBECONFIG=$KUBECONFIG)" >&2
"$@"
