#!/usr/bin/env bash
# Drive klt-render through the REAL argocd-cmp-server (Argo CD's CMP sidecar), built from the
# github.com/argoproj/argo-cd/v3 Go module, with the cases of tests/fixtures/cmp/.
#
#   tests/argocd-cmp/run.sh [-v] [--build-only] [CASE...]
#
# 1. builds argocd-cmp-server, cmpclient and syncdriver (tests/e2e/sync.sh's Argo CD sync
#    driver) (this directory's Go module; needs Go 1.27, taken
#    as GOTOOLCHAIN=go1.27.3 from the Go module proxy), cached in
#    $REPO/.cache/argocd-cmp/<hash of go.mod, go.sum and the Go sources>/;
# 2. starts two servers with a minimal environment (`env -i`), one per plugin config:
#    plugin.yaml (socket klt-render.sock) and deploy/argocd/plugin-kustomize.yaml
#    (klt-render-kustomize.sock, for cases with "command": "kustomize"), sockets in a temp dir
#    given as ARGOCD_PLUGINSOCKFILEPATH, PATH = klt-render (and a `kustomize` shim backed by
#    `kubectl kustomize`) + /usr/bin:/bin;
# 3. runs cmpclient: one GenerateManifest request per case, compared with expected.yaml /
#    expected.stderr; prints `argocd-cmp-server: N passed, M failed`;
# 4. stops the servers.
#
# --build-only: build (or find cached) and print the directory holding the binaries on stdout.
#
# Exit: 0 all passed; 1 a check failed (or the build or a server failed); 2 usage;
# 3 the build is impossible on this machine (toolchain or a module not to be had from the Go
# module proxy): the last line of stderr says why (the pytest wrapper skips on it).
#
# Environment: KLT_RENDER_BIN (default $CARGO_TARGET_DIR or $REPO/target, /debug/klt-render,
# built with cargo when missing), ARGOCD_CMP_CACHE (default $REPO/.cache/argocd-cmp).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
REPO="$(cd "$HERE/../.." && pwd -P)"
CASES="$REPO/tests/fixtures/cmp"
TOOLCHAIN=go1.27.3

verbose=()
build_only=false
cases=()
for arg in "$@"; do
    case "$arg" in
        -v) verbose=(-v) ;;
        --build-only) build_only=true ;;
        -h|--help) sed -n '2,24p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "run.sh: unknown option $arg" >&2; exit 2 ;;
        *) cases+=("$arg") ;;
    esac
done

impossible() { echo "argocd-cmp-server cannot be built here: $*" >&2; exit 3; }
log() { printf '==> %s\n' "$*" >&2; }

# ---- build ----------------------------------------------------------------------------------
command -v go >/dev/null || impossible "no go command on PATH"
export GOTOOLCHAIN=$TOOLCHAIN
# Heavy compiles share this 2-core machine: lowest priority, two compile jobs.
export GOFLAGS="-p=2 -mod=readonly -buildvcs=false" CGO_ENABLED=0

argo_version="$(awk '$1 == "github.com/argoproj/argo-cd/v3" { print $2; exit }' "$HERE/go.mod")"
# common.version etc. are what argo-cd's Makefile stamps; a build without them reports
# v99.99.99+unknown.
ldflags="-X github.com/argoproj/argo-cd/v3/common.version=${argo_version#v} -X github.com/argoproj/argo-cd/v3/common.gitTag=$argo_version -X github.com/argoproj/argo-cd/v3/common.gitCommit=module-build -X github.com/argoproj/argo-cd/v3/common.gitTreeState=clean"
key="$(cd "$HERE" && cat go.mod go.sum $(find cmd -name '*.go' | sort) | { cat; echo "$TOOLCHAIN $ldflags"; } | sha256sum | cut -c1-16)"
cache_root="${ARGOCD_CMP_CACHE:-$REPO/.cache/argocd-cmp}"
bin="$cache_root/$key"

if [[ -x "$bin/argocd-cmp-server" && -x "$bin/cmpclient" && -x "$bin/syncdriver" ]]; then
    log "argocd-cmp-server $argo_version: cached in $bin"
else
    log "toolchain $TOOLCHAIN (from the Go module proxy when this machine lacks it)"
    if ! out="$(cd "$HERE" && go version 2>&1)"; then
        impossible "toolchain $TOOLCHAIN unavailable: $(tail -n1 <<<"$out")"
    fi
    log "modules of argo-cd $argo_version (go mod download)"
    if ! out="$(cd "$HERE" && nice -n 19 go mod download 2>&1)"; then
        printf '%s\n' "$out" | tail -n 20 >&2
        impossible "the Go module proxy did not serve every module: $(grep -m1 -iE 'error|refused|not found|410|404|verifying' <<<"$out" || tail -n1 <<<"$out")"
    fi
    log "building argocd-cmp-server $argo_version, cmpclient and syncdriver into $bin (cold: several minutes)"
    mkdir -p "$cache_root"
    tmpbin="$(mktemp -d "$cache_root.build.XXXXXX")"
    start=$SECONDS
    (cd "$HERE" && nice -n 19 go build -trimpath -ldflags "$ldflags" -o "$tmpbin/argocd-cmp-server" ./cmd/argocd-cmp-server \
        && nice -n 19 go build -trimpath -ldflags "-s -w" -o "$tmpbin/cmpclient" ./cmd/cmpclient \
        && nice -n 19 go build -trimpath -ldflags "-s -w $ldflags" -o "$tmpbin/syncdriver" ./cmd/syncdriver) \
        || { rm -rf "$tmpbin"; echo "run.sh: go build failed" >&2; exit 1; }
    # Keep only this build (about 230 MB): older keys are stale.
    find "$cache_root" -mindepth 1 -maxdepth 1 -type d -not -name "$key" -exec rm -rf {} +
    mv "$tmpbin" "$bin"
    log "built in $((SECONDS - start)) s: $(du -h "$bin/argocd-cmp-server" | cut -f1) argocd-cmp-server"
fi
if $build_only; then printf '%s\n' "$bin"; exit 0; fi

# ---- klt-render -----------------------------------------------------------------------------
klt="${KLT_RENDER_BIN:-}"
if [[ -z "$klt" ]]; then
    target="${CARGO_TARGET_DIR:-$REPO/target}"
    [[ "$target" = /* ]] || target="$REPO/$target"
    klt="$target/debug/klt-render"
    if [[ ! -x "$klt" ]]; then
        log "cargo build --bin klt-render"
        (cd "$REPO" && cargo build --locked --quiet --bin klt-render)
    fi
fi
[[ -x "$klt" ]] || { echo "run.sh: klt-render binary not found: $klt" >&2; exit 1; }

# ---- servers --------------------------------------------------------------------------------
# Unix socket paths are limited to 108 bytes: keep the temp dir short.
tmp="$(mktemp -d /tmp/argocd-cmp.XXXXXX)"
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        # argocd-cmp-server traps SIGTERM only to remove its socket (cmpserver.Shutdown) and
        # keeps serving; a pod's kubelet follows up with SIGKILL, so do we.
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$tmp"
}
trap cleanup EXIT

mkdir -p "$tmp/bin" "$tmp/plugins" "$tmp/work"
ln -s "$klt" "$tmp/bin/klt-render"
# `kustomize build DIR` backed by kubectl's built-in kustomize (as the Python harness does).
printf '#!/bin/sh\n[ "$1" = build ] || exit 64\nshift\nexec kubectl kustomize "$@"\n' > "$tmp/bin/kustomize"
chmod 755 "$tmp/bin/kustomize"
kubectl_dir=""
if command -v kubectl >/dev/null; then kubectl_dir="$(dirname "$(command -v kubectl)"):"; fi
server_path="$tmp/bin:${kubectl_dir}/usr/bin:/bin"

start_server() { # NAME CONFIG-FILE
    local name="$1" config="$2" dir="$tmp/$1"
    mkdir -p "$dir/config" "$dir/home" "$dir/tmp"
    cp "$config" "$dir/config/plugin.yaml"
    # The sidecar's own environment reaches the plugin (os.Environ() + the request's env):
    # keep it as small as a container's.
    env -i PATH="$server_path" HOME="$dir/home" TMPDIR="$dir/tmp" \
        ARGOCD_PLUGINSOCKFILEPATH="$tmp/plugins" \
        "$bin/argocd-cmp-server" --config-dir-path "$dir/config" --logformat text --loglevel info \
        > "$dir/server.log" 2>&1 &
    pids+=($!)
    local sock="$tmp/plugins/$name.sock" i
    for i in $(seq 1 150); do
        [[ -S "$sock" ]] && return 0
        kill -0 "${pids[-1]}" 2>/dev/null || break
        sleep 0.2
    done
    echo "run.sh: argocd-cmp-server for $name did not open $sock; its log:" >&2
    tail -n 30 "$dir/server.log" >&2
    exit 1
}

log "starting argocd-cmp-server $argo_version (plugins klt-render, klt-render-kustomize)"
start_server klt-render "$REPO/plugin.yaml"
start_server klt-render-kustomize "$REPO/deploy/argocd/plugin-kustomize.yaml"

# ---- cases ----------------------------------------------------------------------------------
status=0
ARGOCD_PLUGINSOCKFILEPATH="$tmp/plugins" "$bin/cmpclient" "${verbose[@]}" \
    -cases "$CASES" -work "$tmp/work" \
    -plugin klt-render -variant kustomize=klt-render-kustomize \
    -plugin-config "$tmp/klt-render/config" -differences "$HERE/known-differences" \
    "${cases[@]}" || status=$?

if [[ $status -ne 0 ]]; then
    for name in klt-render klt-render-kustomize; do
        echo "---- $name server log (last 40 lines)" >&2
        tail -n 40 "$tmp/$name/server.log" >&2 || true
    done
fi
exit $status
