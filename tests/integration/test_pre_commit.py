"""The real pre-commit against our .pre-commit-hooks.yaml (language: rust).

A temporary hook repository holds this checkout's sources (committed, as pre-commit needs a
revision), a temporary app repository uses it from .pre-commit-config.yaml, and real
`git commit`s go through the installed hook: a broken task definition is refused with our
message, a good one passes, and committed rendered manifests that went stale are refused.
pre-commit builds klt-render with the system cargo (`cargo install --path`), so the first run
compiles; PRE_COMMIT_HOME and CARGO_TARGET_DIR live under .cache/ to keep later runs warm.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess

import pytest

from conftest import REPO, ensure_binary

CACHE = REPO / ".cache" / "pre-commit-test"


def git(cwd: pathlib.Path, *args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
    venv_bin = pathlib.Path(os.sys.executable).parent
    e = {
        "PATH": f"{venv_bin}:{os.environ['PATH']}",
        "HOME": str(tmp_path_factory.mktemp("home")),
        "PRE_COMMIT_HOME": str(CACHE / "home"),
        "CARGO_TARGET_DIR": str(CACHE / "target"),
        "CARGO_HOME": os.environ.get("CARGO_HOME", str(pathlib.Path.home() / ".cargo")),
        "RUSTUP_HOME": os.environ.get("RUSTUP_HOME", str(pathlib.Path.home() / ".rustup")),
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "test@example.invalid",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "test@example.invalid",
        "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
        "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z",
    }
    return e


@pytest.fixture(scope="module")
def hook_repo(tmp_path_factory, env) -> tuple[pathlib.Path, str]:
    repo = tmp_path_factory.mktemp("hookrepo")
    for name in ["Cargo.toml", "Cargo.lock", ".pre-commit-hooks.yaml"]:
        shutil.copy(REPO / name, repo / name)
    shutil.copytree(REPO / "src", repo / "src")
    # Workspace members must be present for cargo to load the root package.
    for member in ("reconciler", "evaluator"):
        if (REPO / member).is_dir():
            shutil.copytree(REPO / member, repo / member,
                            ignore=shutil.ignore_patterns("target", ".cache"))
    assert git(repo, "init", "-q", env=env).returncode == 0
    git(repo, "add", "-A", env=env)
    assert git(repo, "commit", "-q", "-m", "hooks", env=env).returncode == 0
    sha = git(repo, "rev-parse", "HEAD", env=env).stdout.strip()
    return repo, sha


def test_manifest_validates(env):
    r = subprocess.run(
        ["pre-commit", "validate-manifest", str(REPO / ".pre-commit-hooks.yaml")],
        env=env, capture_output=True, text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_commits_go_through_the_hooks(tmp_path, env, hook_repo):
    hooks, sha = hook_repo
    app = tmp_path / "app"
    shutil.copytree(REPO / "examples" / "checkout", app / "apps" / "checkout")
    (app / "rendered").mkdir()
    (app / ".pre-commit-config.yaml").write_text(
        f"""repos:
  - repo: {hooks}
    rev: {sha}
    hooks:
      - id: klt-render-check
        args: [apps]
      - id: klt-render-render
        args: [--output, rendered/checkout.yaml, apps/checkout]
"""
    )
    binary = ensure_binary()
    subprocess.run([str(binary), "render", "apps/checkout", "-o", "rendered/checkout.yaml"],
                   cwd=app, check=True, capture_output=True)
    assert git(app, "init", "-q", env=env).returncode == 0
    r = subprocess.run(["pre-commit", "install"], cwd=app, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr

    # A good commit passes (the first one builds klt-render through pre-commit).
    git(app, "add", "-A", env=env)
    good = git(app, "commit", "-m", "good", env=env)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "klt-render check" in good.stdout + good.stderr

    # A misspelled field is refused with our message.
    tasks = app / "apps" / "checkout" / "tasks.yaml"
    original = tasks.read_text()
    tasks.write_text(original.replace("secureParameters:", "secureParameter:", 1))
    git(app, "add", "-A", env=env)
    bad = git(app, "commit", "-m", "bad", env=env)
    out = bad.stdout + bad.stderr
    assert bad.returncode != 0, out
    assert "error[KLT004]" in out and 'did you mean "secureParameters"?' in out, out
    assert "Failed" in out

    # Fixed definition but a changed parameter: the committed render is stale.
    tasks.write_text(original.replace('channel: "#deployments"', 'channel: "#releases"'))
    git(app, "add", "-A", env=env)
    stale = git(app, "commit", "-m", "stale", env=env)
    out = stale.stdout + stale.stderr
    assert stale.returncode != 0, out
    assert "rendered/checkout.yaml is stale" in out, out

    # Re-rendered: passes.
    subprocess.run([str(binary), "render", "apps/checkout", "-o", "rendered/checkout.yaml"],
                   cwd=app, check=True, capture_output=True)
    git(app, "add", "-A", env=env)
    fixed = git(app, "commit", "-m", "fixed", env=env)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
