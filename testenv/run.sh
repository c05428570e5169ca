#!/usr/bin/env bash
# Start kube-testenv in the background and wait until it is ready.
#
#   eval "$(testenv/run.sh)"     # sets KUBECONFIG, KUBE_TESTENV_PID, KUBE_TESTENV_DIR
#   ...
#   testenv/stop.sh "$KUBE_TESTENV_PID"
#
# Builds the binary first if needed (testenv/build.sh), or uses
# $KUBE_TESTENV_BIN if set. Working dir: $KUBE_TESTENV_DIR if set, else a fresh
# temp dir (certs, etcd data, kubeconfig, logs). Stdout is only the export
# lines; progress and errors go to stderr.
# Env: TESTENV_READY_TIMEOUT (seconds, default 120).
#
# A small cluster instead of an API server alone (see README.md, "--cluster"):
#   eval "$(testenv/run.sh --cluster --klt-render PATH [--klt-evaluate PATH] --task-log FILE)"
# returns once the API server is ready, the node is Ready and the controllers run.
# Exit 3: the binary cannot be built here (build.sh).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
timeout="${TESTENV_READY_TIMEOUT:-120}"

bin="${KUBE_TESTENV_BIN:-}"
if [ -z "$bin" ]; then
  bin="$("$here/build.sh")"
fi
[ -x "$bin" ] || { echo "run.sh: not executable: $bin" >&2; exit 1; }

if [ -n "${KUBE_TESTENV_DIR:-}" ]; then
  dir="$KUBE_TESTENV_DIR"
  mkdir -p "$dir"
else
  dir="$(mktemp -d "${TMPDIR:-/tmp}/kube-testenv.XXXXXX")"
  touch "$dir/.created-by-run.sh" # lets stop.sh remove it
fi
dir="$(cd "$dir" && pwd)"
kubeconfig="$dir/kubeconfig"

# setsid: own session/process group, so the caller's Ctrl-C or the end of the
# calling shell does not hit it; stop it with stop.sh.
setsid "$bin" --dir "$dir" --kubeconfig "$kubeconfig" --ready-timeout "${timeout}s" "$@" \
  </dev/null >"$dir/stdout.log" 2>"$dir/stderr.log" &
pid=$!
echo "$pid" >"$dir/pid"

start=$(date +%s)
while :; do
  if grep -q '^READY ' "$dir/stdout.log" 2>/dev/null; then
    break
  fi
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "run.sh: kube-testenv (pid $pid) exited before READY; stderr:" >&2
    tail -n 30 "$dir/stderr.log" >&2 || true
    echo "run.sh: logs in $dir" >&2
    exit 1
  fi
  if [ $(( $(date +%s) - start )) -ge $(( timeout + 10 )) ]; then
    echo "run.sh: no READY within ${timeout}s; stopping pid $pid; logs in $dir" >&2
    kill -TERM "$pid" 2>/dev/null || true
    exit 1
  fi
  sleep 0.2
done

echo "run.sh: ready after $(( $(date +%s) - start ))s (pid $pid, dir $dir)" >&2
printf 'export KUBECONFIG=%q\n' "$kubeconfig"
printf 'export KUBE_TESTENV_PID=%q\n' "$pid"
printf 'export KUBE_TESTENV_DIR=%q\n' "$dir"
