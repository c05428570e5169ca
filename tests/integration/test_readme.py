"""The README's first-app example is the file it names, and it does what the README says:
`check` finds only the KLT018 warning about the out-of-band Secret, and `plan` shows
`notify` before and after the workload."""

from __future__ import annotations

import json
import re
import subprocess

from conftest import EXAMPLES, REPO, child_env

FIRST_APP = EXAMPLES / "first-app" / "app.yaml"


def readme_example() -> str:
    text = (REPO / "README.md").read_text()
    m = re.search(r"<!-- first-app:[^\n]*-->\n```yaml\n(.*?)```\n", text, re.S)
    assert m, "README has no first-app example block"
    return m.group(1)


def klt(binary, *args):
    r = subprocess.run(
        [str(binary), *map(str, args)], capture_output=True, text=True, env=child_env(), timeout=60
    )
    return r.returncode, r.stdout, r.stderr


def test_readme_example_is_the_file():
    assert readme_example() == FIRST_APP.read_text()


def test_first_app_checks_with_one_expected_warning(binary):
    code, out, _ = klt(binary, "check", FIRST_APP.parent, "-n", "shop", "--format", "json")
    assert code == 0
    assert [(f["code"], f["severity"]) for f in json.loads(out)] == [("KLT018", "warning")]


def test_first_app_plan_runs_notify_around_the_workload(binary):
    code, out, err = klt(binary, "plan", FIRST_APP.parent, "-n", "shop", "--format", "json")
    assert code == 0, err
    steps = json.loads(out)["groups"][0]["steps"]
    seen = [(s.get("task", {}).get("phase"), s["kind"]) for s in steps]
    assert seen == [("workload-pre", "Job"), (None, "Deployment"), ("app-post", "Job"), (None, "ConfigMap")], seen
    assert steps[-1]["name"] == "shop-1.0.0-sync-gate", steps


def test_first_app_post_task_runs_as_the_readme_says(binary, tmp_path):
    import os
    token = tmp_path / "token.txt"
    token.write_text("dummy")
    venv_bin = str(REPO / ".venv" / "bin")
    r = subprocess.run(
        [str(binary), "run", "notify", str(FIRST_APP.parent), "-n", "shop", "--phase", "post",
         "--secret-file", str(token)],
        capture_output=True, text=True, timeout=120,
        env=child_env({"PATH": venv_bin + os.pathsep + os.environ.get("PATH", "")}),
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "post-deployment of shop: telling #releases", r.stdout
