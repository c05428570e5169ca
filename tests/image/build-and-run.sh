#!/usr/bin/env bash
# Builds the klt-render sidecar image offline and runs `klt-render generate` inside it.
#
#   tests/image/build-and-run.sh            # from any directory; run by tests/integration/test_image.py
#
# 1. buildah: installed with apt-get when missing (root only).
# 2. The static binary: target/static/<triple>/release/klt-render (crt-static glibc, stripped;
#    cargo keeps it cached there, apart from the normal target/).
# 3. The image: `buildah bud --target prebuilt` of the repo's Dockerfile. That stage copies the
#    binary from the build context, and buildah skips the unused `build` stage (Rust image), so
#    nothing is pulled (--pull=never would fail the build otherwise).
# 4. Checks: image config (user 999:999, entrypoint, PATH), the image's files (only the binary
#    and plugin.yaml, byte-identical to the host's; no shell), its size, and renders.
#    A render is `klt-render generate` run the way argocd-cmp-server runs it: cwd = the app dir
#    of a repository copy, the request's env (ARGOCD_APP_*), user 999, the binary found through
#    the image's PATH. It runs in a buildah container (`buildah run --isolation chroot`, the
#    checkout bind-mounted read-only at the same absolute path as on the host, so paths in
#    messages match), and on the host with the same binary and `env -i` + the same env, and
#    with the normal dev build (target/debug); exit code, stdout and stderr must be equal
#    byte for byte. Cases: examples/checkout (ARGOCD_APP_SOURCE_PATH=examples/checkout) and
#    every tests/fixtures/cmp case that runs plugin.yaml's command (the kustomize variant needs
#    a shell, which the image deliberately lacks).
#
# buildah run reports a non-zero exit of the command by appending its own lines to stderr
# ("subprocess exited with status N", "Error: exit status N"); exactly those trailing lines
# are removed before comparing (and required to be there when the exit code is non-zero).
#
# Output: one line per check, then `image: N passed, M failed`.
# Exit: 0 all passed; 1 a check failed; 2 a step failed (build, buildah); 77 buildah is not
# installed and could not be installed (the reason is the last line of stderr).
# Env: IMAGE_TEST_KEEP=1 keeps the image (tag printed) and the work dir;
#      IMAGE_TEST_MAX_BYTES size budget of the image's files (default 16 MiB);
#      PYTHON (default python3) for JSON and tar inspection.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
PYTHON="${PYTHON:-python3}"
MAX_BYTES="${IMAGE_TEST_MAX_BYTES:-16777216}"
cd "$REPO"

log() { printf '# %s\n' "$*" >&2; }
die() { printf 'build-and-run.sh: %s\n' "$*" >&2; exit 2; }
skip() { printf 'build-and-run.sh: skipped: %s\n' "$*" >&2; exit 77; }

passed=0
failed=0
pass() { passed=$((passed + 1)); printf 'ok   %s\n' "$1"; }
fail() {
    failed=$((failed + 1))
    printf 'FAIL %s\n' "$1"
    if [[ $# -gt 1 ]]; then printf '%s\n' "${@:2}" | sed 's/^/     /'; fi
}

# ---- 1. buildah ------------------------------------------------------------------------------
if ! command -v buildah >/dev/null 2>&1; then
    if [[ "$(id -u)" != 0 ]]; then
        skip "buildah is not installed and this user (uid $(id -u)) cannot apt-get install it"
    fi
    command -v apt-get >/dev/null 2>&1 || skip "buildah is not installed and there is no apt-get to install it"
    log "installing buildah (apt-get)"
    apt_log="$(mktemp)"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah; } >"$apt_log" 2>&1; then
        reason="$(tail -n 3 "$apt_log" | tr '\n' ' ')"
        rm -f "$apt_log"
        skip "buildah is not installed and 'apt-get install buildah' failed: $reason"
    fi
    rm -f "$apt_log"
    command -v buildah >/dev/null 2>&1 || skip "apt-get installed buildah but it is not on PATH"
fi
log "$(buildah --version)"

# ---- 2. binaries -----------------------------------------------------------------------------
arch="$(uname -m)"
triple="$arch-unknown-linux-gnu"
# .dockerignore lets exactly this file into the build context.
[[ "$arch" == x86_64 ]] || die "only x86_64 is wired up (.dockerignore, Dockerfile BINARY); this is $arch"
static_rel="target/static/$triple/release/klt-render"
static_bin="$REPO/$static_rel"
log "cargo build (static, release) -> $static_rel"
RUSTFLAGS="-C target-feature=+crt-static" CARGO_PROFILE_RELEASE_STRIP=symbols \
    CARGO_TARGET_DIR="$REPO/target/static" \
    nice cargo build --locked --quiet --release --target "$triple" --bin klt-render \
    || die "static cargo build failed"

# The normal dev build the other tests use (as tests/integration/conftest.py finds it).
dev_target="${CARGO_TARGET_DIR:-$REPO/target}"
[[ "$dev_target" == /* ]] || dev_target="$REPO/$dev_target"
dev_bin="$dev_target/debug/klt-render"
log "cargo build (dev) -> $dev_bin"
cargo build --locked --quiet --bin klt-render || die "cargo build failed"

ldd_out="$(ldd "$static_bin" 2>&1 || true)"
if grep -Eq 'statically linked|not a dynamic executable' <<<"$ldd_out"; then
    pass "static binary ($static_rel: $(tr -d '\t' <<<"$ldd_out"))"
else
    fail "static binary" "ldd $static_rel:" "$ldd_out"
fi

# ---- 3. image --------------------------------------------------------------------------------
work="$(mktemp -d "${TMPDIR:-/tmp}/klt-image-test.XXXXXX")"
tag="localhost/klt-render:image-test-$$"
ctr=""
cleanup() {
    if [[ -n "$ctr" ]]; then buildah rm "$ctr" >/dev/null 2>&1 || true; fi
    if [[ "${IMAGE_TEST_KEEP:-}" == 1 ]]; then
        log "kept image $tag and work dir $work"
    else
        buildah rmi "$tag" >/dev/null 2>&1 || true
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

log "buildah bud --target prebuilt -> $tag"
if ! buildah bud --isolation chroot --pull=never --target prebuilt \
    --build-arg "BINARY=$static_rel" -f "$REPO/Dockerfile" -t "$tag" "$REPO" \
    >"$work/bud.log" 2>&1; then
    cat "$work/bud.log" >&2
    die "buildah bud --target prebuilt failed (if it tried to pull the Rust image, buildah did not skip the unused build stage)"
fi
if grep -q 'library/rust' "$work/bud.log"; then
    fail "unused build stage skipped" "$(grep 'library/rust' "$work/bud.log")"
else
    pass "unused build stage skipped (no Rust image needed)"
fi

# Config and files of the image, from an OCI layout copy: image config, the layer's members,
# the binary and plugin.yaml compared with the host's.
buildah inspect --type image "$tag" >"$work/inspect.json" || die "buildah inspect failed"
buildah push --quiet "$tag" "oci:$work/oci:image" >/dev/null 2>&1 || die "buildah push to an OCI layout failed"
"$PYTHON" - "$work" "$static_bin" "$REPO/plugin.yaml" "$MAX_BYTES" >"$work/checks.txt" <<'PY' || die "image inspection failed"
import hashlib, json, pathlib, sys, tarfile

work, binary, plugin, max_bytes = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
out = []
def check(ok, name, detail=""):
    out.append(("ok" if ok else "fail") + "\t" + name + "\t" + detail)

cfg = json.loads((work / "inspect.json").read_text())["OCIv1"]["config"]
check(cfg.get("User") == "999:999", "image user 999:999", f"User={cfg.get('User')!r}")
check(cfg.get("Entrypoint") == ["/usr/local/bin/klt-render"], "image entrypoint /usr/local/bin/klt-render",
      f"Entrypoint={cfg.get('Entrypoint')!r}")
check(cfg.get("Cmd") == ["krm"], "image default command krm (KRM function)", f"Cmd={cfg.get('Cmd')!r}")
path = [e.split("=", 1)[1] for e in cfg.get("Env") or [] if e.startswith("PATH=")]
check(bool(path) and "/usr/local/bin" in path[0].split(":"), "image PATH has /usr/local/bin", f"Env={cfg.get('Env')!r}")

blobs = work / "oci" / "blobs" / "sha256"
index = json.loads((work / "oci" / "index.json").read_text())
manifest = json.loads((blobs / index["manifests"][0]["digest"].split(":")[1]).read_text())
files, compressed, uncompressed = {}, 0, 0
for layer in manifest["layers"]:
    blob = blobs / layer["digest"].split(":")[1]
    compressed += blob.stat().st_size
    with tarfile.open(blob) as tar:
        for m in tar.getmembers():
            name = "/" + m.name.lstrip("./").rstrip("/")
            if m.isfile():
                uncompressed += m.size
                files[name] = (m.mode & 0o7777, hashlib.sha256(tar.extractfile(m).read()).hexdigest())
            elif not m.isdir():
                files[name] = (m.mode & 0o7777, m.type.decode() if isinstance(m.type, bytes) else str(m.type))
sha = lambda p: hashlib.sha256(pathlib.Path(p).read_bytes()).hexdigest()
repo = pathlib.Path(plugin).parent
want = {
    "/usr/local/bin/klt-render": (0o755, sha(binary)),
    "/home/argocd/cmp-server/config/plugin.yaml": (0o644, sha(plugin)),
    "/etc/passwd": (0o644, sha(repo / "deploy/image/passwd")),
    "/etc/group": (0o644, sha(repo / "deploy/image/group")),
}
extra = sorted(set(files) - set(want))
check(not extra and set(files) == set(want), "image holds only klt-render, plugin.yaml, /etc/passwd, /etc/group",
      "files: " + ", ".join(sorted(files)))
for name, (mode, digest) in want.items():
    have = files.get(name)
    check(have == (mode, digest), f"{name} is the host's file, mode {mode:o}",
          f"image: {have and (oct(have[0]), have[1])}, host: ({oct(mode)}, {digest})")
shells = [f for f in files if pathlib.PurePath(f).name in ("sh", "bash", "ash", "dash", "zsh", "busybox", "toybox")]
check(not shells, "no shell in the image", ", ".join(shells))
check(uncompressed <= max_bytes, f"image size {uncompressed} B <= {max_bytes} B",
      f"files {uncompressed} B, compressed layers {compressed} B")
print("\n".join(out))
print(f"size\t{uncompressed}\t{compressed}")
PY
while IFS=$'\t' read -r kind name detail; do
    case "$kind" in
        ok) pass "$name" ;;
        fail) fail "$name" "$detail" ;;
        size) size_files="$name"; size_layers="$detail" ;;
    esac
done <"$work/checks.txt"
log "image size: ${size_files} B of files, ${size_layers} B compressed layer(s); buildah images: $(buildah images --format '{{.Size}}' "$tag")"

# ---- 4. renders ------------------------------------------------------------------------------
ctr="$(buildah from --pull=never --name "klt-image-test-$$" "$tag")" || die "buildah from failed"

# Argo CD hands the plugin the checkout with dirs 0755 and files 0644, owned by the sidecar.
normalize_modes() {
    find "$1" -type d -exec chmod 0755 {} +
    find "$1" -type f -exec chmod 0644 {} +
}

# run_case NAME CHECKOUT APP_PATH [K=V...]: image vs host static vs dev binary.
run_case() {
    local name="$1" checkout="$2" app="$3"
    shift 3
    local dir="$work/runs/$name"
    local cwd="$checkout/$app"
    mkdir -p "$dir"
    local envflags=()
    local kv
    for kv in "$@"; do envflags+=(--env "$kv"); done

    # In the image: as argocd-cmp-server would, `klt-render` through PATH, as user 999.
    set +e
    buildah run --isolation chroot --user 999:999 --workingdir "$cwd" \
        --volume "$checkout:$checkout:ro" "${envflags[@]}" "$ctr" -- klt-render generate \
        >"$dir/image.out" 2>"$dir/image.err.raw" </dev/null
    echo $? >"$dir/image.rc"
    (cd "$cwd" && env -i "$@" "$static_bin" generate) >"$dir/host.out" 2>"$dir/host.err" </dev/null
    echo $? >"$dir/host.rc"
    (cd "$cwd" && env -i "$@" "$dev_bin" generate) >"$dir/dev.out" 2>"$dir/dev.err" </dev/null
    echo $? >"$dir/dev.rc"
    set -e

    # Drop buildah's own trailing report of a non-zero exit.
    local rc
    rc="$(cat "$dir/image.rc")"
    "$PYTHON" - "$dir/image.err.raw" "$dir/image.err" "$rc" <<'PY'
import re, sys
raw = open(sys.argv[1], "rb").read()
rc = int(sys.argv[3])
if rc != 0:
    tail = re.compile(rb"(?:subprocess exited with status %d\n)+Error: exit status %d\n?\Z" % (rc, rc))
    m = tail.search(raw)
    raw = raw[: m.start()] if m else raw + b"<buildah's exit report missing>\n"
open(sys.argv[2], "wb").write(raw)
PY

    local problems=()
    local other
    for other in host dev; do
        [[ "$(cat "$dir/$other.rc")" == "$rc" ]] ||
            problems+=("exit code: image $rc, $other $(cat "$dir/$other.rc")")
        cmp -s "$dir/image.out" "$dir/$other.out" ||
            problems+=("stdout differs from $other:" "$({ diff -u "$dir/$other.out" "$dir/image.out" || true; } | head -n 20)")
        cmp -s "$dir/image.err" "$dir/$other.err" ||
            problems+=("stderr differs from $other:" "$({ diff -u "$dir/$other.err" "$dir/image.err" || true; } | head -n 20)")
    done
    local what="exit $rc, $(wc -c <"$dir/image.out") B stdout"
    if [[ "${#problems[@]}" -eq 0 ]]; then
        pass "generate in the image == host: $name ($what)"
    else
        fail "generate in the image == host: $name ($what)" "${problems[@]}"
    fi
}

# examples/checkout, in a repository copy, with the env Argo CD sets for the Application.
example_repo="$work/checkouts/example/_cmp_server/request"
mkdir -p "$example_repo/examples"
cp -R "$REPO/examples/checkout" "$example_repo/examples/checkout"
normalize_modes "$work/checkouts/example"
run_case examples/checkout "$example_repo" examples/checkout \
    ARGOCD_APP_NAME=checkout ARGOCD_APP_NAMESPACE=checkout ARGOCD_APP_SOURCE_PATH=examples/checkout \
    ARGOCD_APP_PROJECT_NAME=default ARGOCD_APP_PARAMETERS=null KUBE_VERSION=1.33.2 \
    KUBE_API_VERSIONS=apps/v1,apps/v1/Deployment,batch/v1,batch/v1/Job,v1,v1/ConfigMap,v1/Secret,v1/Service
if [[ "$(cat "$work/runs/examples/checkout/image.rc")" != 0 ]] || ! grep -q '^kind: Job$' "$work/runs/examples/checkout/image.out"; then
    fail "examples/checkout renders Jobs in the image" "$(head -c 2000 "$work/runs/examples/checkout/image.err")"
else
    pass "examples/checkout renders Jobs in the image ($(grep -c '^kind: Job$' "$work/runs/examples/checkout/image.out") Jobs)"
fi

# tests/fixtures/cmp/<case>/: repo/ + case.json (app_path, env, symlinks; `command` = a variant).
for case_dir in "$REPO"/tests/fixtures/cmp/*/; do
    case_dir="${case_dir%/}"
    [[ -f "$case_dir/case.json" ]] || continue
    case_name="cmp/$(basename "$case_dir")"
    mapfile -d '' -t spec < <("$PYTHON" - "$case_dir/case.json" <<'PY'
import json, sys
spec = json.load(open(sys.argv[1]))
fields = [spec.get("command") or "", spec["app_path"], str(len(spec.get("symlinks", {})))]
for link, target in spec.get("symlinks", {}).items():
    fields += [link, target]
fields += [f"{k}={v}" for k, v in spec.get("env", {}).items()]
sys.stdout.write("".join(f + "\0" for f in fields))
PY
    )
    if [[ -n "${spec[0]}" ]]; then
        log "not in the image: $case_name (plugin variant '${spec[0]}' needs a shell)"
        continue
    fi
    checkout="$work/checkouts/$(basename "$case_dir")/_cmp_server/request"
    mkdir -p "$(dirname "$checkout")"
    cp -R "$case_dir/repo" "$checkout"
    normalize_modes "$checkout"
    n_links="${spec[2]}"
    for ((i = 0; i < n_links; i++)); do
        link="$checkout/${spec[3 + 2 * i]}"
        mkdir -p "$(dirname "$link")"
        ln -s "${spec[4 + 2 * i]}" "$link"
    done
    normalize_modes "$checkout"
    run_case "$case_name" "$checkout" "${spec[1]}" "${spec[@]:$((3 + 2 * n_links))}"
done

# The image's own USER (no --user): a file klt-render writes belongs to 999:999.
probe="$work/probe"
mkdir -p "$probe"
chmod 0777 "$probe"
if buildah run --isolation chroot --workingdir "$example_repo/examples/checkout" \
    --volume "$example_repo:$example_repo:ro" --volume "$probe:/probe" "$ctr" -- \
    klt-render render --output /probe/out.yaml . >"$work/probe.log" 2>&1 &&
    [[ "$(stat -c %u:%g "$probe/out.yaml" 2>/dev/null)" == 999:999 ]]; then
    pass "runs as 999:999 by default (image USER)"
else
    fail "runs as 999:999 by default (image USER)" "owner: $(stat -c %u:%g "$probe/out.yaml" 2>&1)" "$(cat "$work/probe.log")"
fi

# No shell to start (the file list above is the real check; this is how it looks at run time).
if buildah run --isolation chroot "$ctr" -- /bin/sh -c true >"$work/sh.log" 2>&1; then
    fail "/bin/sh cannot be started in the image" "it ran"
else
    pass "/bin/sh cannot be started in the image"
fi

# Same version inside and outside.
image_version="$(buildah run --isolation chroot "$ctr" -- klt-render --version 2>/dev/null || true)"
host_version="$("$static_bin" --version)"
if [[ -n "$image_version" && "$image_version" == "$host_version" ]]; then
    pass "klt-render --version in the image: $image_version"
else
    fail "klt-render --version in the image" "image: $image_version" "host: $host_version"
fi

echo "image size: ${size_files} bytes of files (${size_layers} bytes compressed)"
echo "image: $passed passed, $failed failed"
[[ "$failed" -eq 0 ]]
