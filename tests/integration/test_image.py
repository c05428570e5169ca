"""The sidecar image: Dockerfile + .dockerignore, built and run by tests/image/build-and-run.sh.

The script builds the static binary (cached in target/static), builds the image offline with
buildah (``--target prebuilt``) and runs ``klt-render generate`` inside it as user 999 on
examples/checkout and the CMP fixtures, comparing exit code, stdout and stderr byte for byte
with the host. It takes a minute or two (mostly the static release build when src/ changed)
and is part of the normal suite. It is skipped only when buildah is missing and cannot be
installed (the script exits 77 and says why); any other problem fails.

The other tests here read the Dockerfile and .dockerignore without building anything.
"""

from __future__ import annotations

import fnmatch
import re
import subprocess
import sys

import pytest

from conftest import REPO, child_env

SCRIPT = REPO / "tests" / "image" / "build-and-run.sh"
SKIP_EXIT = 77  # build-and-run.sh: buildah unavailable
STATIC_BINARY = "target/static/x86_64-unknown-linux-gnu/release/klt-render"
FINAL_PATHS = {
    "binary": "/usr/local/bin/klt-render",
    "config": "/home/argocd/cmp-server/config/plugin.yaml",
}


def test_image_builds_offline_and_renders_like_the_host():
    proc = subprocess.run(
        ["bash", str(SCRIPT)],
        cwd=REPO,
        env=child_env({"PYTHON": sys.executable}),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=1800,
        check=False,
    )
    report = f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr[-5000:]}"
    if proc.returncode == SKIP_EXIT:
        lines = proc.stderr.strip().splitlines()
        pytest.skip(lines[-1] if lines else "build-and-run.sh: buildah unavailable")
    assert proc.returncode == 0, f"tests/image/build-and-run.sh exited {proc.returncode}\n{report}"
    summary = re.search(r"^image: (\d+) passed, (\d+) failed$", proc.stdout, re.MULTILINE)
    assert summary, f"no summary line\n{report}"
    assert summary.group(2) == "0" and int(summary.group(1)) >= 20, report
    # The renders that matter most are really there.
    assert "ok   generate in the image == host: examples/checkout" in proc.stdout, report
    assert "ok   no shell in the image" in proc.stdout, report


# ---------------------------------------------------------------------------------------------
# Dockerfile structure (no build)


def stages() -> dict[str, list[str]]:
    """{stage name: instructions (continuation lines joined, comments dropped)}."""
    text = (REPO / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("#")))
    out: dict[str, list[str]] = {"<global>": []}
    current = "<global>"
    for line in (l.strip() for l in text.splitlines()):
        if not line:
            continue
        m = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?$", line, re.IGNORECASE)
        if m:
            current = m.group(2) or f"<stage {len(out)}>"
            out[current] = [f"FROM {m.group(1)}"]
        else:
            out[current].append(re.sub(r"\s+", " ", line))
    return out


def test_dockerfile_stages():
    s = stages()
    assert list(s) == ["<global>", "build", "prebuilt", "image"], list(s)
    assert re.match(r"FROM docker\.io/library/rust:\$\{RUST_VERSION\}-\w+$", s["build"][0]), s["build"][0]
    assert s["prebuilt"][0] == s["image"][0] == "FROM scratch"
    # The default (last) stage builds from source; `prebuilt` differs only in where the
    # binary comes from, so the tested image is the shipped one.
    assert f"ARG BINARY={STATIC_BINARY}" in s["prebuilt"]
    assert f"COPY --chmod=0755 ${{BINARY}} {FINAL_PATHS['binary']}" in s["prebuilt"]
    assert f"COPY --from=build --chmod=0755 /out/klt-render {FINAL_PATHS['binary']}" in s["image"]
    def rest(stage):  # everything but the binary's source
        return [i for i in s[stage][1:] if not i.startswith("ARG ") and not i.endswith(" " + FINAL_PATHS["binary"])]

    assert rest("prebuilt") == rest("image")
    for stage in ("prebuilt", "image"):
        assert f"COPY --chmod=0644 plugin.yaml {FINAL_PATHS['config']}" in s[stage]
        assert "USER 999:999" in s[stage]
        assert f'ENTRYPOINT ["{FINAL_PATHS["binary"]}"]' in s[stage]
        assert 'CMD ["krm"]' in s[stage], "with no arguments the image is the KRM function"
        assert "COPY --chmod=0644 deploy/image/passwd /etc/passwd" in s[stage]
        assert not any(i.startswith("RUN") for i in s[stage]), "a FROM scratch stage cannot RUN"
    build = " ".join(s["build"])
    assert "+crt-static" in build and "--locked" in build and "--bin klt-render" in build


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule, enough for these patterns: the last matching pattern wins; a pattern
    matches the path or one of its parent directories."""
    excluded = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pat in patterns:
        negate = pat.startswith("!")
        pat = pat[1:] if negate else pat
        if any(fnmatch.fnmatchcase(p, pat) or fnmatch.fnmatchcase(p, pat.replace("**/", "")) for p in prefixes):
            excluded = not negate
    return excluded


def test_dockerignore_keeps_only_what_the_stages_copy():
    lines = (REPO / ".dockerignore").read_text().splitlines()
    patterns = [l.strip() for l in lines if l.strip() and not l.lstrip().startswith("#")]
    for kept in ["Cargo.toml", "Cargo.lock", "src/main.rs", "plugin.yaml", STATIC_BINARY, "reconciler/Cargo.toml",
                 "deploy/image/passwd", "deploy/image/group"]:
        assert not dockerignored(kept, patterns), f"{kept} must be in the build context"
    for dropped in [
        "target/debug/klt-render",
        "target/release/klt-render",
        "target/static/x86_64-unknown-linux-gnu/release/deps/klt_render-0123.rlib",
        ".venv/bin/python",
        ".git/HEAD",
        ".cache/testenv/abc/kube-testenv",
        "testenv/main.go",
        "tests/integration/__pycache__/conftest.cpython-311.pyc",
    ]:
        assert dockerignored(dropped, patterns), f"{dropped} must not be in the build context"
