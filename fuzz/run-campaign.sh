#!/usr/bin/env bash
# A fuzzing campaign: every target in turn (one core, niced), seeded from the fixtures.
#
#   fuzz/run-campaign.sh [SECONDS_PER_TARGET] [TARGET...]     # default 300 s, all targets
#
# libFuzzer runs in fork mode with crashes, OOMs and timeouts ignored, so one known bug does
# not end a target's run: every failing input lands in fuzz/artifacts/<target>/ and
# `fuzz/triage.py` groups, minimises and replays them. Corpora grow in fuzz/corpus/<target>/
# (not committed; fuzz/seed.py rebuilds the seeds), logs go to fuzz/logs/. Prints one line per
# target: executions, coverage (cov = edges, ft = features, libFuzzer's final figures), corpus
# size and failures found.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SECS="${1:-300}"
shift || true
(($#)) && TARGETS=("$@")

fuzz_setup || { echo "fuzz: cargo-fuzz is not available" >&2; exit 1; }
python3 "$FUZZ/seed.py" "$FUZZ/corpus" >/dev/null
echo "fuzz: building ${TARGETS[*]} with cargo +$TOOLCHAIN fuzz (no sanitizer, debug assertions)"
mkdir -p "$FUZZ/logs"
fuzz_build >/dev/null 2>"$FUZZ/logs/build.log" || { cat "$FUZZ/logs/build.log" >&2; exit 1; }

summary=()
for t in "${TARGETS[@]}"; do
    mkdir -p "$FUZZ/corpus/$t" "$FUZZ/artifacts/$t"
    before=$(find "$FUZZ/artifacts/$t" -type f | wc -l)
    log="$FUZZ/logs/$t.log"
    echo "fuzz: $t for ${SECS}s (log $log)"
    start=$SECONDS
    # Not the regressions: known-open ones would crash job after job (the smoke replays them).
    nice -n 10 "$(fuzz_bin "$t")" "$FUZZ/corpus/$t" \
        "${LIBFUZZER_FLAGS[@]}" -max_total_time="$SECS" -artifact_prefix="$FUZZ/artifacts/$t/" \
        -fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1 -print_final_stats=1 \
        >"$log" 2>&1 || true
    took=$((SECONDS - start))
    # Fork mode's status lines: `#RUNS: cov: N ft: N corp: N exec/s N oom/timeout/crash: a/b/c ...`.
    last=$(grep -E '^#[0-9]+: cov:' "$log" | tail -1 || true)
    runs=$(sed -E 's/^#([0-9]+):.*/\1/' <<<"$last")
    cov=$(sed -E 's/.* cov: ([0-9]+).*/\1/' <<<"$last")
    ft=$(sed -E 's/.* ft: ([0-9]+).*/\1/' <<<"$last")
    corp=$(sed -E 's/.* corp: ([0-9]+).*/\1/' <<<"$last")
    otc=$(sed -E 's/.*oom\/timeout\/crash: ([0-9\/]+).*/\1/' <<<"$last")
    after=$(find "$FUZZ/artifacts/$t" -type f | wc -l)
    line=$(printf '%-12s %6ss  execs %10s  cov %6s  ft %7s  corpus %6s  oom/timeout/crash %-9s new artifacts %s' \
        "$t" "$took" "${runs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "${otc:-?}" "$((after - before))")
    echo "$line"
    summary+=("$line")
done
echo
echo "campaign summary (${SECS}s per target):"
printf '  %s\n' "${summary[@]}"
echo "triage: python3 fuzz/triage.py"
