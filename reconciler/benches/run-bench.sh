#!/usr/bin/env bash
# Benchmark of klt-reconciler on a real kube-apiserver (testenv/): 1,000 app versions x 3
# task Jobs by default. Prints a JSON report on stdout and a summary line on stderr.
#
#   reconciler/benches/run-bench.sh
#   KLT_BENCH_APPS=200 KLT_BENCH_RECORDS=0 reconciler/benches/run-bench.sh
#
# Settings are documented in reconciler/benches/records.rs. Builds with the bench profile
# (release), then starts testenv, runs the benchmark, stops testenv.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
cd "$REPO"

echo "==> cargo bench -p klt-reconciler --bench records --no-run" >&2
nice -n 10 cargo bench --locked -p klt-reconciler --bench records --no-run

testenv/with-testenv.sh cargo bench --locked -p klt-reconciler --bench records
