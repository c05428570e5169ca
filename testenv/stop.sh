#!/usr/bin/env bash
# Stop a kube-testenv started by run.sh:  testenv/stop.sh PID
# Sends SIGTERM, waits up to 60 s for a clean exit (API server shut down, etcd
# stopped), then SIGKILL. Removes the working dir if run.sh created it, unless
# KUBE_TESTENV_KEEP=1. Refuses PIDs that are not kube-testenv.
set -euo pipefail

pid="${1:-}"
case "$pid" in
  ''|*[!0-9]*) echo "usage: $0 PID" >&2; exit 2 ;;
esac

alive() {
  # A zombie (state Z) counts as gone: it has already exited.
  [ -r "/proc/$pid/stat" ] || return 1
  local state
  state="$(sed 's/^.*) //' "/proc/$pid/stat" | cut -d' ' -f1)"
  [ "$state" != Z ]
}

if ! alive; then
  echo "stop.sh: pid $pid is not running" >&2
  exit 0
fi
exe="$(readlink "/proc/$pid/exe" 2>/dev/null || true)"
case "$exe" in
  */kube-testenv|*/kube-testenv\ \(deleted\)) ;;
  *) echo "stop.sh: pid $pid is not kube-testenv ($exe); not touching it" >&2; exit 1 ;;
esac

# Find --dir from its command line.
dir=""
prev=""
while IFS= read -r -d '' arg; do
  if [ "$prev" = "--dir" ]; then dir="$arg"; fi
  case "$arg" in --dir=*) dir="${arg#--dir=}" ;; esac
  prev="$arg"
done <"/proc/$pid/cmdline"

kill -TERM "$pid"
for _ in $(seq 1 600); do
  alive || break
  sleep 0.1
done
if alive; then
  echo "stop.sh: pid $pid still running after 60s; sending SIGKILL" >&2
  kill -KILL "$pid" 2>/dev/null || true
  sleep 0.5
fi
echo "stop.sh: stopped pid $pid" >&2

if [ -n "$dir" ] && [ -f "$dir/.created-by-run.sh" ] && [ "${KUBE_TESTENV_KEEP:-0}" != 1 ]; then
  rm -rf -- "$dir"
  echo "stop.sh: removed $dir" >&2
elif [ -n "$dir" ]; then
  echo "stop.sh: logs kept in $dir" >&2
fi
