"""`klt-render plan`: golden output for examples/checkout in every format, what `--against`
says after the upgrades Keptn users make, the terminal's colour and width rules, and the
Mermaid output checked by mermaid's own parser (npm `mermaid` with `jsdom`, pinned in
tests/mermaid/package-lock.json and installed there by `npm ci` when missing).

``KLT_BLESS=1`` rewrites the expectations in tests/fixtures/plan/.
"""

from __future__ import annotations

import json
import os
import pathlib
import pty
import shutil
import subprocess

import pytest

from conftest import EXAMPLES, REPO, child_env

FIXTURES = REPO / "tests" / "fixtures" / "plan"
MERMAID = REPO / "tests" / "mermaid"
BLESS = os.environ.get("KLT_BLESS") == "1"
CHECKOUT = EXAMPLES / "checkout"


def plan(binary, *args, env=None):
    result = subprocess.run(
        [str(binary), "plan", *map(str, args)],
        capture_output=True,
        env=child_env({k: v for k, v in (env or {}).items()}) | {"COLUMNS": ""},
        timeout=120,
        check=False,
    )
    return result.returncode, result.stdout.decode(), result.stderr.decode()


def expect(name: str, actual: str):
    path = FIXTURES / name
    if BLESS:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual)
    assert path.exists(), f"{path} missing (KLT_BLESS=1 writes it)"
    assert actual == path.read_text(), f"{name} differs (KLT_BLESS=1 rewrites it)"


@pytest.fixture(scope="module")
def mermaid_parser() -> list[str]:
    node = shutil.which("node")
    npm = shutil.which("npm")
    assert node and npm, "node and npm are needed to check the Mermaid output"
    lock = (MERMAID / "package-lock.json").read_text()
    stamp = MERMAID / "node_modules" / ".klt-lock"
    if not stamp.exists() or stamp.read_text() != lock:
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=MERMAID,
            check=True,
            timeout=600,
        )
        stamp.write_text(lock)
    return [node, str(MERMAID / "parse.mjs")]


def parse_mermaid(parser, tmp_path: pathlib.Path, text: str) -> str:
    f = tmp_path / "plan.mmd"
    f.write_text(text)
    r = subprocess.run([*parser, str(f)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


@pytest.mark.parametrize(
    "fmt,name",
    [("table", "checkout/table.txt"), ("json", "checkout/plan.json"), ("mermaid", "checkout/plan.mmd")],
)
def test_checkout_plan_golden(binary, fmt, name):
    code, out, err = plan(binary, CHECKOUT, "--namespace", "checkout", "--format", fmt)
    assert code == 0, err
    expect(name, out)
    if fmt == "json":
        doc = json.loads(out)
        steps = doc["groups"][0]["steps"]
        order = [(s["stage"], s["wave"], s.get("task", {}).get("phase")) for s in steps]
        assert order == sorted(order, key=lambda o: (o[0] != "Sync", o[1])), order


def test_mermaid_is_accepted_by_mermaids_parser(binary, mermaid_parser, tmp_path):
    _, out, _ = plan(binary, CHECKOUT, "-n", "checkout", "--format", "mermaid")
    assert "ok (flowchart" in parse_mermaid(mermaid_parser, tmp_path, out)
    # The parser is not lenient: a broken diagram fails.
    bad = tmp_path / "bad.mmd"
    bad.write_text(out.replace('"]', "", 1))
    r = subprocess.run([*mermaid_parser, str(bad)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stdout


def edited_checkout(tmp_path: pathlib.Path, edits: list[tuple[str, str, str]]) -> pathlib.Path:
    app = tmp_path / "checkout"
    shutil.copytree(CHECKOUT, app)
    for file, old, new in edits:
        f = app / file
        text = f.read_text()
        assert old in text, (file, old)
        f.write_text(text.replace(old, new, 1))
    return app


APP_BUMP = [("app.yaml", '  version: "1.4.0"\n  revision', '  version: "1.4.1"\n  revision')]
WORKLOAD_BUMP = [
    ("workloads.yaml", 'app.kubernetes.io/version: "1.4.0"', 'app.kubernetes.io/version: "1.5.0"'),
    ("app.yaml", 'version: "1.4.0"\n    - name: checkout-worker', 'version: "1.5.0"\n    - name: checkout-worker'),
]


@pytest.mark.parametrize(
    "edits,name,summary",
    [
        (APP_BUMP, "app-version-bump", "checkout 1.4.1: re-runs check-dependencies (app pre), notify-release (app post)"),
        (
            WORKLOAD_BUMP,
            "workload-version-bump",
            "checkout 1.4.0: re-runs check-dependencies (app pre), db-migrate (checkout-checkout-api pre),"
            " smoke-test (checkout-checkout-api post), notify-release (app post)",
        ),
        ([], "same-commit", "checkout 1.4.0: no task runs"),
    ],
)
def test_against_a_previous_render(binary, mermaid_parser, tmp_path, edits, name, summary):
    before = tmp_path / "before.yaml"
    r = subprocess.run(
        [str(binary), "render", str(CHECKOUT), "-n", "checkout", "-o", str(before)],
        capture_output=True, env=child_env(), timeout=120, check=False,
    )
    assert r.returncode == 0, r.stderr
    app = edited_checkout(tmp_path, edits)
    code, out, err = plan(binary, app, "-n", "checkout", "--against", before)
    assert code == 0, err
    expect(f"against/{name}.txt", out)
    assert summary in out.splitlines(), out
    code, out, _ = plan(binary, app, "-n", "checkout", "--against", before, "--format", "mermaid")
    assert code == 0
    parse_mermaid(mermaid_parser, tmp_path, out)


def test_hooks_mode_runs_on_every_sync(binary):
    code, out, err = plan(binary, CHECKOUT, "-n", "checkout", "--mode", "hooks", "--format", "json")
    assert code == 0, err
    tasks = [s for g in json.loads(out)["groups"] for s in g["steps"] if "task" in s]
    assert tasks and all(t["task"]["runs"] == "every-sync" for t in tasks), tasks
    stages = {(t["task"]["phase"], t["stage"]) for t in tasks}
    assert stages == {
        ("app-pre", "PreSync"), ("workload-pre", "PreSync"),
        ("workload-post", "PostSync"), ("app-post", "PostSync"),
    }


def read_all(fd: int) -> str:
    """Everything a pseudo-terminal's leader side yields until the follower closes."""
    chunks = []
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.close(fd)
    return b"".join(chunks).decode().replace("\r\n", "\n")


def on_a_terminal(binary, env: dict[str, str]) -> str:
    """stdout of `plan` on a pseudo-terminal (stderr discarded)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [str(binary), "plan", str(CHECKOUT), "-n", "checkout"],
        stdout=follower, stderr=subprocess.DEVNULL, env=child_env(env),
    )
    os.close(follower)
    out = read_all(leader)
    proc.wait(timeout=60)
    return out


def test_terminal_colour_and_width(binary):
    coloured = on_a_terminal(binary, {"COLUMNS": "80"})
    assert "\x1b[" in coloured
    plain = on_a_terminal(binary, {"COLUMNS": "80", "NO_COLOR": "1"})
    assert "\x1b[" not in plain
    assert max(len(line) for line in plain.splitlines()) <= 80, plain
    assert "…" in plain, "object names are shortened to fit"
    # Piped: no colour, nothing shortened.
    _, piped, _ = plan(binary, CHECKOUT, "-n", "checkout")
    assert "\x1b[" not in piped and "…" not in piped


def test_bad_input_prints_nothing_on_stdout(binary, tmp_path):
    (tmp_path / "a.yaml").write_text("kind: KeptnApp\nmetadata: {name: x\n")
    code, out, err = plan(binary, tmp_path)
    assert (code, out) == (2, "")
    assert "a.yaml:" in err and "nothing was planned" in err, err
    code, out, err = plan(binary, CHECKOUT, "--against", tmp_path / "missing.yaml")
    assert (code, out) == (2, "")
    assert "missing.yaml" in err, err


def stderr_on_a_terminal(binary, *args) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of klt-render with stderr on a pseudo-terminal."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [str(binary), *map(str, args)], stdout=subprocess.PIPE, stderr=follower, env=child_env(),
    )
    os.close(follower)
    out = proc.stdout.read().decode()
    err = read_all(leader)
    return proc.wait(timeout=60), out, err


def test_render_summarizes_each_app_on_a_terminal_only(binary):
    code, out, err = stderr_on_a_terminal(binary, "render", CHECKOUT, "-n", "checkout")
    assert code == 0
    summary = [l for l in err.splitlines() if l.startswith("klt-render: ")]
    assert summary == [
        "klt-render: checkout 1.4.0: 4 task Job(s) (wave -2, wave -1, wave 1, wave 2), 2 code ConfigMap(s)"
    ], err
    # Piped (scripts, Argo CD): stderr as before, stdout identical either way.
    r = subprocess.run(
        [str(binary), "render", str(CHECKOUT), "-n", "checkout"],
        capture_output=True, text=True, env=child_env(), timeout=60,
    )
    assert r.stdout == out
    assert "klt-render: " not in r.stderr, r.stderr


EVALUATIONS = REPO / "tests" / "fixtures" / "render" / "evaluations-v1" / "input"


@pytest.mark.parametrize("fmt,name", [("table", "evaluations/table.txt"), ("json", "evaluations/plan.json")])
def test_evaluation_plan_golden(binary, fmt, name):
    """Evaluation Jobs are steps of their own (runner `evaluation`), each in the wave after
    its phase's tasks, in Keptn's order."""
    code, out, err = plan(binary, EVALUATIONS, "--format", fmt)
    assert code == 0, err
    expect(name, out)


def test_evaluation_plan_orders_keptns_phases(binary):
    code, out, err = plan(binary, EVALUATIONS, "--format", "json")
    assert code == 0, err
    (group,) = json.loads(out)["groups"]
    jobs = [s for s in group["steps"] if s.get("task")]
    order = [(s["task"]["phase"], s["task"]["runner"] == "evaluation") for s in jobs]
    assert order == [
        ("app-pre", False), ("app-pre", True), ("workload-pre", False), ("workload-pre", True),
        ("workload-post", False), ("workload-post", True), ("app-post", False), ("app-post", True),
    ]
    waves = [s["wave"] for s in jobs]
    assert waves == sorted(waves) and len(set(waves)) == len(waves), waves


def test_evaluation_plan_mermaid_parses(binary, mermaid_parser, tmp_path):
    code, out, err = plan(binary, EVALUATIONS, "--format", "mermaid")
    assert code == 0, err
    parse_mermaid(mermaid_parser, tmp_path, out)
