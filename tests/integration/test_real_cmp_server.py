"""klt-render through the REAL argocd-cmp-server (tests/argocd-cmp/run.sh).

run.sh builds Argo CD's CMP sidecar server from the github.com/argoproj/argo-cd/v3 Go module
(Go 1.27 via GOTOOLCHAIN=go1.27.3 from the Go module proxy; cached in .cache/argocd-cmp/),
starts it with plugin.yaml (and deploy/argocd/plugin-kustomize.yaml) and sends every case of
tests/fixtures/cmp/ as a GenerateManifest request with argo-cd's own client packages. See
tests/argocd-cmp/README.md for what differs from the emulation in test_cmp_contract.py.

Skipped, with run.sh's reason, only when the build is impossible on this machine (no go
command, the toolchain or a module not served by the Go module proxy: run.sh exit code 3).
A cold build takes several minutes; KLT_SKIP_REAL_CMP=1 skips the test on purpose.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from conftest import REPO, child_env, ensure_binary

RUN = REPO / "tests" / "argocd-cmp" / "run.sh"
IMPOSSIBLE = 3  # run.sh: the build is impossible here
TIMEOUT_S = 45 * 60  # a cold build on a busy 2-core machine, with module downloads


def test_cases_through_real_argocd_cmp_server():
    if os.environ.get("KLT_SKIP_REAL_CMP"):
        pytest.skip("KLT_SKIP_REAL_CMP is set")
    binary = ensure_binary()
    proc = subprocess.run(
        ["bash", str(RUN), "-v"],
        cwd=REPO,
        env=child_env({"KLT_RENDER_BIN": str(binary)}),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    if proc.returncode == IMPOSSIBLE:
        reason = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "run.sh exit 3"
        pytest.skip(reason)
    summary = [line for line in proc.stdout.splitlines() if line.startswith("argocd-cmp-server:")]
    assert proc.returncode == 0, (
        f"run.sh exited {proc.returncode}\n--- stdout\n{proc.stdout[-12000:]}\n--- stderr\n{proc.stderr[-6000:]}"
    )
    assert summary and summary[-1].endswith(" 0 failed"), proc.stdout[-6000:]
