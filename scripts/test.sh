#!/usr/bin/env bash
# The test command of klt-render: Rust unit and golden tests, then the Python integration tests
# (kubernetes-validate, CRD schemas, real `kubectl kustomize` hash check, CLI contract).
#
#   ./scripts/test.sh [PYTEST-ARGS...]     # works from any directory
#
# Needs: cargo (and rustup: the fuzz smoke installs cargo-fuzz itself), python3 (>= 3.9, with venv
# or pip), kubectl (its built-in kustomize), and PyPI for the first run. The venv lives in
# $REPO/.venv and is reused while tests/requirements.txt (and the Python version) are unchanged.
# shared/ is found at $REPO/../shared unless KLT_SHARED is set.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
VENV="$REPO/.venv"
REQS="$REPO/tests/requirements.txt"
PYTHON="${PYTHON:-python3}"
cd "$REPO"

section() { printf '\n==> %s\n' "$*"; }

# ---- Python venv --------------------------------------------------------------------------
py_version="$("$PYTHON" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"
want_hash="$( { cat "$REQS"; echo "python $py_version"; } | sha256sum | cut -d' ' -f1)"
have_hash="$(cat "$VENV/.requirements.sha256" 2>/dev/null || true)"
if [[ "$want_hash" == "$have_hash" ]] && "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
    section "venv: reusing $VENV (requirements unchanged)"
else
    section "venv: creating $VENV (Python $py_version) from tests/requirements.txt"
    rm -rf "$VENV"
    pip_flags=(--disable-pip-version-check --no-input --quiet --quiet)
    if "$PYTHON" -m venv "$VENV" 2>/dev/null; then
        "$VENV/bin/python" -m pip install "${pip_flags[@]}" -r "$REQS"
    else
        # No ensurepip (e.g. Debian without python3-venv): a pip-less venv filled by the
        # interpreter's own pip (pip >= 22.3 has --python).
        rm -rf "$VENV"
        "$PYTHON" -m venv --without-pip "$VENV"
        "$PYTHON" -m pip --python "$VENV/bin/python" install "${pip_flags[@]}" -r "$REQS"
    fi
    echo "$want_hash" > "$VENV/.requirements.sha256"
fi

# ---- Debian tools the tests measure with -----------------------------------------------------
# GNU time reports the peak RSS of exactly one command (tests/integration/test_hostile_input.py).
if [[ ! -x /usr/bin/time ]]; then
    section "apt-get install time"
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null \
            || { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null; }
    else
        echo "warning: /usr/bin/time is missing and cannot be installed here; the hostile-input tests will fail" >&2
    fi
fi

# Prometheus + promtool: the evaluator's integration tests query a real server
# (tests/integration/test_evaluator.py; they skip with the reason when these are missing).
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
    section "apt-get install prometheus"
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null \
            || { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; } \
            || echo "warning: apt-get install prometheus failed; the evaluator tests will skip" >&2
    else
        echo "warning: prometheus is missing and cannot be installed here; the evaluator tests will skip" >&2
    fi
fi

# ---- Rust ------------------------------------------------------------------------------------
section "cargo build --locked"
cargo build --locked

section "cargo test --locked (klt-render)"
cargo test --locked

section "cargo test --locked -p klt-evaluate (builds target/debug/klt-evaluate)"
cargo test --locked -p klt-evaluate
cargo build --locked -p klt-evaluate

section "cargo test --locked -p klt-reconciler"
cargo test --locked -p klt-reconciler

# ---- Fuzz smoke ------------------------------------------------------------------------------
# Every regression seed, then each fuzz target briefly (about 2.5 min in all; see fuzz/smoke.sh).
# KLT_FUZZ_SMOKE_SECONDS sets the seconds per target; KLT_SKIP_FUZZ=1 skips it locally.
if [[ "${KLT_SKIP_FUZZ:-}" == 1 ]]; then
    section "fuzz smoke: skipped (KLT_SKIP_FUZZ=1)"
else
    section "fuzz smoke (fuzz/smoke.sh)"
    "$REPO/fuzz/smoke.sh"
fi

# ---- Python integration tests --------------------------------------------------------------
section "pytest tests/integration"
command -v kubectl >/dev/null || echo "warning: kubectl not on PATH; the kustomize hash tests will fail" >&2
# -p no:cacheprovider: leave no .pytest_cache in the work tree.
PYTHONDONTWRITEBYTECODE=1 "$VENV/bin/python" -m pytest tests/integration -q -p no:cacheprovider "$@"

# ---- The reconciler against a real kube-apiserver --------------------------------------------
section "reconciler integration tests (testenv kube-apiserver)"
"$REPO/reconciler/tests/run-integration.sh"
