# Sourced by fuzz/run-campaign.sh and fuzz/smoke.sh: finds or installs what fuzzing needs.
#
# Sets FUZZ (this directory), TARGETS, TOOLCHAIN (nightly when installed, else stable: the
# targets are built without a sanitizer, `-s none`, which needs no -Z flag), FUZZ_TARGET_DIR
# (a cache outside the work tree, so a fresh clone on the same machine reuses the build) and
# LIBFUZZER_FLAGS. `fuzz_setup` returns non-zero when cargo-fuzz cannot be had.

FUZZ="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
TARGETS=(yaml_reader gojson model render krm_wire krm_config)
CACHE="${KLT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/klt-render}"
FUZZ_TARGET_DIR="${KLT_FUZZ_TARGET_DIR:-$CACHE/fuzz-target}"
CARGO_FUZZ_VERSION=0.13.2
# -timeout: a render of 32 KiB takes milliseconds; 10 s is a hang, not a slow input.
# -max_len: far above any real manifest, small enough to keep executions fast.
# -rss_limit_mb: a backstop; the harness' counting allocator enforces the real bound.
LIBFUZZER_FLAGS=(-timeout=10 -max_len=32768 -rss_limit_mb=2048 -dict="$FUZZ/dict/keptn.dict")

fuzz_setup() {
    if rustup run nightly rustc --version >/dev/null 2>&1; then
        TOOLCHAIN=nightly
    else
        TOOLCHAIN=stable
    fi
    if ! cargo fuzz --version >/dev/null 2>&1; then
        if [[ -x "$CACHE/cargo-fuzz/bin/cargo-fuzz" ]]; then
            export PATH="$CACHE/cargo-fuzz/bin:$PATH"
        else
            echo "fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION into $CACHE/cargo-fuzz"
            cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --quiet \
                --root "$CACHE/cargo-fuzz" || return 1
            export PATH="$CACHE/cargo-fuzz/bin:$PATH"
        fi
    fi
    cargo fuzz --version >/dev/null 2>&1
}

fuzz_build() {
    (cd "$FUZZ" && cargo "+$TOOLCHAIN" fuzz build -s none --debug-assertions \
        --target-dir "$FUZZ_TARGET_DIR" "$@")
}

fuzz_bin() {
    echo "$FUZZ_TARGET_DIR/x86_64-unknown-linux-gnu/release/$1"
}

# The first line that says what went wrong in a libFuzzer log, for known-open matching.
fuzz_failure_summary() {
    grep -m1 -A1 -E "panicked at|klt-fuzz: memory bound|ERROR: libFuzzer|memory allocation of" "$1" \
        | tr '\n' ' ' | cut -c1-400
}

# Whether a failure log matches an entry of fuzz/known-open.txt for target $2: every
# tab-separated text after the target must occur in the log. Prints the entry.
fuzz_known_open() {
    local log="$1" target="$2" t rest sig ok
    while IFS=$'\t' read -r t rest; do
        [[ -z "$t" || "$t" == \#* ]] && continue
        [[ "$t" == "$target" || "$t" == "*" ]] || continue
        ok=1
        IFS=$'\t' read -r -a sigs <<<"$rest"
        for sig in "${sigs[@]}"; do
            grep -qF -- "$sig" "$log" || { ok=0; break; }
        done
        if ((ok)); then
            echo "${sigs[*]}"
            return 0
        fi
    done < "$FUZZ/known-open.txt"
    return 1
}
