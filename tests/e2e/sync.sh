#!/usr/bin/env bash
# Sync an app directory with Argo CD's own sync engine against a local test cluster and print
# the timeline (JSON lines) on stdout. Documented in tests/e2e/README.md (a stable interface).
#
#   tests/e2e/sync.sh APP_DIR [--mode waves|hooks] [--records] [--revision N]
#                     [--keep-env | --env-dir DIR] [--app-name NAME] [--namespace NS]
#                     [--param NAME=VALUE]... [--retry-limit N] [--timeout DURATION] [-v]
#   tests/e2e/sync.sh --start DIR         # only start (or find) the environment kept in DIR
#   tests/e2e/sync.sh --stop DIR          # stop an environment kept by --keep-env / --env-dir
#
# APP_DIR is copied into a fresh one-app repository (as Argo CD's repo-server would stream
# it) and rendered by `klt-render generate` inside the real argocd-cmp-server (plugin.yaml).
# --env-dir DIR reuses the environment running in DIR (or starts one there and keeps it):
# each call is then the next Git revision of the app on the same cluster (--revision
# defaults to the previous one + 1). --keep-env starts a new one and keeps it (its DIR is on
# stderr). Without either, the environment is started and stopped for this one sync.
#
# Exit: 0 the sync Succeeded; 1 it failed (or was still running at --timeout); 2 usage or
# environment error; 3 the Go build is impossible on this machine (reason on stderr).
#
# Env: KLT_RENDER_BIN, KLT_EVALUATE_BIN, KLT_RECONCILER_BIN (default target/debug/*, built when missing),
# ARGOCD_SYNC_WAVE_DELAY (Argo CD's, default 2 s), SYNCDRIVER_BIN (a syncdriver built by hand,
# for working on it).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
REPO="$(cd "$HERE/../.." && pwd -P)"

usage() { sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
die() { echo "sync.sh: $*" >&2; exit 2; }
log() { printf 'sync.sh: %s\n' "$*" >&2; }

app_dir="" mode="waves" records=false revision="" keep=false env_dir="" app_name="" namespace=""
retry_limit=0 timeout=10m verbose=() stop_dir="" extra_params=() start_only=false
while [[ $# -gt 0 ]]; do
    case "$1" in
        --mode) [[ $# -ge 2 ]] || die "--mode needs a value"; mode="$2"; shift ;;
        --mode=*) mode="${1#*=}" ;;
        --records) records=true ;;
        --revision) [[ $# -ge 2 ]] || die "--revision needs a value"; revision="$2"; shift ;;
        --keep-env) keep=true ;;
        --env-dir) [[ $# -ge 2 ]] || die "--env-dir needs a value"; env_dir="$2"; shift ;;
        --app-name) [[ $# -ge 2 ]] || die "--app-name needs a value"; app_name="$2"; shift ;;
        --namespace) [[ $# -ge 2 ]] || die "--namespace needs a value"; namespace="$2"; shift ;;
        --param) [[ $# -ge 2 && "$2" == ?*=* ]] || die "--param needs NAME=VALUE"; extra_params+=(-param "$2"); shift ;;
        --retry-limit) [[ $# -ge 2 ]] || die "--retry-limit needs a value"; retry_limit="$2"; shift ;;
        --timeout) [[ $# -ge 2 ]] || die "--timeout needs a value"; timeout="$2"; shift ;;
        --start) [[ $# -ge 2 ]] || die "--start needs a directory"; env_dir="$2"; start_only=true; shift ;;
        --stop) [[ $# -ge 2 ]] || die "--stop needs a directory"; stop_dir="$2"; shift ;;
        -v) verbose=(-v) ;;
        -h|--help) usage; exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) [[ -z "$app_dir" ]] || die "one APP_DIR only (got $app_dir and $1)"; app_dir="$1" ;;
    esac
    shift
done

# ---- stopping a kept environment ------------------------------------------------------------
stop_env() { # DIR
    local dir="$1" pid
    if [[ -f "$dir/reconciler.pid" ]]; then
        pid="$(cat "$dir/reconciler.pid")"
        kill -TERM "$pid" 2>/dev/null || true
        rm -f "$dir/reconciler.pid"
    fi
    if [[ -f "$dir/env.sh" ]]; then
        pid="$(sed -n 's/^export KUBE_TESTENV_PID=//p' "$dir/env.sh")"
        [[ -n "$pid" ]] && KUBE_TESTENV_KEEP=1 "$REPO/testenv/stop.sh" "$pid" >&2 || true
        rm -f "$dir/env.sh"
    fi
}
if [[ -n "$stop_dir" ]]; then
    [[ -d "$stop_dir" ]] || die "--stop: no such directory: $stop_dir"
    stop_env "$stop_dir"
    exit 0
fi

if $start_only; then
    [[ -z "$app_dir" ]] || die "--start takes no APP_DIR"
    app_dir="$REPO" # not synced; keeps the checks below simple
fi
[[ -n "$app_dir" ]] || { usage >&2; exit 2; }
[[ -d "$app_dir" ]] || die "APP_DIR is not a directory: $app_dir"
case "$mode" in waves|hooks) ;; *) die "--mode must be waves or hooks (got $mode)" ;; esac
[[ "$retry_limit" =~ ^-?[0-9]+$ ]] || die "--retry-limit must be an integer (got $retry_limit)"
[[ -z "$revision" || "$revision" =~ ^[0-9]+$ ]] || die "--revision must be a number (got $revision)"
! { $keep && [[ -n "$env_dir" ]]; } || die "--keep-env and --env-dir exclude each other"
$records && [[ "$mode" == hooks ]] && die "--records needs --mode waves (klt-render's records option)"
app_dir="$(cd "$app_dir" && pwd -P)"
app_name="${app_name:-$(basename "$app_dir")}"
namespace="${namespace:-$app_name}"
[[ "$app_name" =~ ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$ ]] || die "app name must be a DNS label (got $app_name; use --app-name)"

# ---- builds (cached) ------------------------------------------------------------------------
target="${CARGO_TARGET_DIR:-$REPO/target}"
[[ "$target" = /* ]] || target="$REPO/$target"
# Built unless given: cargo is quick when nothing changed, and a stale binary from an older
# checkout would test old code.
build() { # NAME CARGO-ARGS...
    local name="$1"
    shift
    (cd "$REPO" && nice cargo build --locked --quiet "$@") || die "cargo build of $name failed"
}
klt="${KLT_RENDER_BIN:-$target/debug/klt-render}"
[[ -n "${KLT_RENDER_BIN:-}" ]] || build klt-render --bin klt-render
# The task runner's evaluation pods: `klt-render run --pod` executes klt-evaluate.
evaluate="${KLT_EVALUATE_BIN:-$target/debug/klt-evaluate}"
[[ -n "${KLT_EVALUATE_BIN:-}" ]] || build klt-evaluate -p klt-evaluate
gobin=""
if ! $start_only; then
    set +e
    gobin="$("$REPO/tests/argocd-cmp/run.sh" --build-only)"
    rc=$?
    set -e
    [[ $rc -eq 3 ]] && exit 3
    [[ $rc -eq 0 && -x "$gobin/syncdriver" ]] || die "building the Argo CD binaries failed (tests/argocd-cmp/run.sh --build-only: exit $rc)"
fi
reconciler=""
if $records; then
    reconciler="${KLT_RECONCILER_BIN:-$target/debug/klt-reconciler}"
    [[ -n "${KLT_RECONCILER_BIN:-}" ]] || build klt-reconciler -p klt-reconciler
fi

# ---- environment ----------------------------------------------------------------------------
tmp="$(mktemp -d /tmp/e2e-sync.XXXXXX)" # short: unix socket paths are limited to 108 bytes
cmp_pid=""
owned_env=""
cleanup() {
    if [[ -n "$cmp_pid" ]]; then
        # argocd-cmp-server ignores SIGTERM but for removing its socket (tests/argocd-cmp/README.md).
        kill -KILL "$cmp_pid" 2>/dev/null || true
        wait "$cmp_pid" 2>/dev/null || true
    fi
    [[ -n "$owned_env" ]] && stop_env "$owned_env"
    rm -rf "$tmp"
}
trap cleanup EXIT

if $keep; then
    env_dir="$(mktemp -d /tmp/e2e-env.XXXXXX)"
elif [[ -z "$env_dir" ]]; then
    env_dir="$tmp/env"
    owned_env="$env_dir"
fi
mkdir -p "$env_dir"
env_dir="$(cd "$env_dir" && pwd -P)"
task_log="$env_dir/task.log"
touch "$task_log"

env_alive() {
    [[ -f "$env_dir/env.sh" ]] || return 1
    local pid
    pid="$(sed -n 's/^export KUBE_TESTENV_PID=//p' "$env_dir/env.sh")"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null
}
if env_alive; then
    log "reusing the environment in $env_dir"
else
    env_args=()
    # The cluster flavour (controller-manager, scheduler, kwok node, task-pod runner) where
    # testenv has it; otherwise an API server only (Jobs are applied but never run).
    if grep -q -- '"cluster"' "$REPO/testenv/main.go" 2>/dev/null || grep -q -- '--cluster' "$REPO/testenv/run.sh"; then
        env_args=(--cluster --klt-render "$klt" --task-log "$task_log")
        if [[ -x "$evaluate" ]] && grep -q -- '"klt-evaluate"' "$REPO/testenv/main.go"; then
            env_args+=(--klt-evaluate "$evaluate")
        fi
    else
        log "testenv has no --cluster here: API server only, Jobs will not run"
    fi
    # The task runner's klt-render runs deno and python3 from PATH: deno from the test venv
    # (the PyPI package, tests/requirements.txt) when it is not installed.
    if ! command -v deno >/dev/null && [[ -x "$REPO/.venv/bin/deno" ]]; then
        mkdir -p "$env_dir/bin"
        ln -sf "$REPO/.venv/bin/deno" "$env_dir/bin/deno"
        export PATH="$env_dir/bin:$PATH"
    fi
    command -v deno >/dev/null || log "no deno on PATH: deno tasks will fail (pip install deno, or scripts/test.sh's venv)"
    log "starting the test environment in $env_dir"
    KUBE_TESTENV_DIR="$env_dir/testenv" "$REPO/testenv/run.sh" "${env_args[@]}" > "$env_dir/env.sh.new" \
        || die "testenv/run.sh failed (logs in $env_dir/testenv)"
    mv "$env_dir/env.sh.new" "$env_dir/env.sh"
fi
# shellcheck disable=SC1091
source "$env_dir/env.sh"
if $start_only; then
    log "environment running in $env_dir (kubeconfig $KUBECONFIG)"
    exit 0
fi

if $records; then
    kubectl apply --server-side -f "$REPO/deploy/reconciler/crd.yaml" >/dev/null \
        || die "applying deploy/reconciler/crd.yaml failed"
    kubectl wait --for=condition=Established --timeout=60s crd/taskrecords.klt-render.dev >/dev/null \
        || die "the TaskRecord CRD did not become Established"
    if ! { [[ -f "$env_dir/reconciler.pid" ]] && kill -0 "$(cat "$env_dir/reconciler.pid")" 2>/dev/null; }; then
        log "starting klt-reconciler"
        KLT_RECONCILER_LISTEN=127.0.0.1:0 RUST_LOG=info setsid "$reconciler" run \
            </dev/null >>"$env_dir/reconciler.log" 2>&1 &
        echo $! > "$env_dir/reconciler.pid"
    fi
fi

# ---- the app as a one-app repository, and the plugin sidecar --------------------------------
repo="$tmp/repo"
mkdir -p "$repo"
cp -R "$app_dir" "$repo/$app_name"
mkdir -p "$tmp/bin" "$tmp/plugins" "$tmp/cmp/config" "$tmp/cmp/home" "$tmp/cmp/tmp"
ln -s "$klt" "$tmp/bin/klt-render"
cp "$REPO/plugin.yaml" "$tmp/cmp/config/plugin.yaml"
env -i PATH="$tmp/bin:/usr/bin:/bin" HOME="$tmp/cmp/home" TMPDIR="$tmp/cmp/tmp" \
    ARGOCD_PLUGINSOCKFILEPATH="$tmp/plugins" \
    "$gobin/argocd-cmp-server" --config-dir-path "$tmp/cmp/config" --logformat text --loglevel warn \
    > "$tmp/cmp/server.log" 2>&1 &
cmp_pid=$!
for _ in $(seq 1 150); do
    [[ -S "$tmp/plugins/klt-render.sock" ]] && break
    kill -0 "$cmp_pid" 2>/dev/null || break
    sleep 0.1
done
[[ -S "$tmp/plugins/klt-render.sock" ]] || { tail -n 20 "$tmp/cmp/server.log" >&2; die "argocd-cmp-server did not start"; }

# ---- revision and sync ----------------------------------------------------------------------
rev_file="$env_dir/revision-$app_name"
if [[ -z "$revision" ]]; then
    revision=$(( $(cat "$rev_file" 2>/dev/null || echo 0) + 1 ))
fi
echo "$revision" > "$rev_file"
log "syncing $app_name (revision $revision, mode $mode$($records && echo ', records')) into namespace $namespace"

params=(-param "mode=$mode")
$records && params+=(-param records=true)
params+=("${extra_params[@]}")
# Argo CD does not wait for the health of the last wave (gitops-engine sync_context.go:719):
# keep watching until the app's Jobs (and the reconciler's TaskRecords) have an outcome.
await=(-await-health batch/Job)
$records && await+=(-await-health klt-render.dev/TaskRecord)
set +e
ARGOCD_PLUGINSOCKFILEPATH="$tmp/plugins" "${SYNCDRIVER_BIN:-$gobin/syncdriver}" "${verbose[@]}" \
    -repo-root "$repo" -app-path "$app_name" -app-name "$app_name" -namespace "$namespace" \
    -revision "$revision" "${params[@]}" "${await[@]}" -task-log "$task_log" -retry-limit "$retry_limit" \
    -timeout "$timeout" -health-lua "$REPO/deploy/argocd/health/klt-render.dev_TaskRecord.lua"
rc=$?
set -e
if [[ $rc -eq 2 ]]; then
    echo "---- argocd-cmp-server log (last 20 lines)" >&2
    tail -n 20 "$tmp/cmp/server.log" >&2 || true
fi
if $keep; then
    log "environment kept in $env_dir: next revision: --env-dir $env_dir; stop: tests/e2e/sync.sh --stop $env_dir"
fi
exit $rc
