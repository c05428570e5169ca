#!/usr/bin/env bash
# Integration tests of klt-reconciler against a real kube-apiserver + etcd (testenv/):
# builds the tests, starts testenv (building it first if its cache is cold: ~10+ min on
# 2 cores, needs Go and the Go module proxy), runs reconciler/tests/integration.rs, stops
# the server (also on failure or Ctrl-C).
#
#   reconciler/tests/run-integration.sh [TEST-FILTER] [-- LIBTEST-ARGS...]
#
# Without testenv the same tests print SKIP and pass (plain `cargo test`); here they must
# run: KLT_RECONCILER_IT_REQUIRED=1 turns a skip into a failure.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
cd "$REPO"

echo "==> cargo test -p klt-reconciler --test integration --no-run" >&2
nice -n 10 cargo test --locked -p klt-reconciler --test integration --no-run

KLT_RECONCILER_IT_REQUIRED=1 testenv/with-testenv.sh cargo test --locked -p klt-reconciler --test integration "$@"
