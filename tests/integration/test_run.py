"""`klt-render run TASK PATH...`: task code run on this machine as the runtime images run it.

Cases live in tests/fixtures/run/<case>/ (plain manifests). deno comes from the PyPI package
``deno`` in the test venv (tests/requirements.txt); python is the venv's interpreter. Both are
found on PATH, which the tests put the venv's bin directory in front of, as a user's activated
venv would.
"""

from __future__ import annotations

import functools
import http.server
import os
import pathlib
import shutil
import subprocess
import threading
import time

import pytest

from conftest import EXAMPLES, REPO, child_env, load_docs

FIXTURES = REPO / "tests" / "fixtures" / "run"


@functools.cache
def deno_bin() -> pathlib.Path:
    import deno  # the PyPI package: the binary lands in the environment's scripts directory

    return pathlib.Path(deno.find_deno_bin())


def venv_path() -> str:
    """PATH with the directory holding the venv's deno (and python3) first."""
    return f"{deno_bin().parent}{os.pathsep}{os.environ.get('PATH', '')}"


@pytest.fixture(scope="session")
def run(binary):
    """``run(task, *paths_and_args, env=None) -> CompletedProcess`` (text), from FIXTURES."""

    def _run(task, *argv, env=None, timeout=120):
        extra = {"PATH": venv_path()}
        extra.update(env or {})
        return subprocess.run(
            [str(binary), "run", task, *map(str, argv)],
            cwd=FIXTURES,
            env=child_env(extra),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    return _run


def rendered_env(binary, case: str, definition: str, *args) -> dict[str, object]:
    """The env of the Job `klt-render render` makes for `definition` in `case`."""
    result = subprocess.run(
        [str(binary), "render", *args, case],
        cwd=FIXTURES,
        env=child_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    jobs = [
        d.obj
        for d in load_docs(result.stdout)
        if d.obj["kind"] == "Job"
        and d.obj["metadata"]["labels"]["klt-render.dev/task-definition"] == definition
    ]
    assert len(jobs) == 1, result.stdout
    env = jobs[0]["spec"]["template"]["spec"]["containers"][0]["env"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in env}


# ---------------------------------------------------------------------------------------------
# The tasks guide's examples


def test_guide_secret_text(run):
    r = run("dummy-task", "guide-secret-text")
    assert (r.returncode, r.stdout) == (0, "foo\n"), r.stderr
    assert r.stderr.startswith("klt-render run: dummy-task (deno, profile keptn-2)")


def test_guide_secret_json(run):
    r = run("dummy-task", "guide-secret-json")
    assert (r.returncode, r.stdout) == (0, "bar bar2\n"), r.stderr


def test_guide_pass_secret_runs_as_the_workloads_post_task(run):
    # Verbatim from the guide; the base64 value "YmFyCg==" is "bar\n", and console.log adds one.
    r = run("deployment-hello", "guide-pass-secret", "--phase", "post")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "Deployment Hello Task has been executed\nbar\n\n"
    assert "post task of workload hello-hello 1.0 (app hello)" in r.stderr


def test_a_missing_secret_is_named(run):
    r = run("dummy-task", "guide-secret-text/task.yaml")
    assert r.returncode == 2
    assert r.stdout == ""
    assert 'Secret "my-secret"' in r.stderr and "--secret-file" in r.stderr
    assert r.stderr.startswith("klt-render run: error:")


def test_guide_parameterized_function_under_klt_0_9(run, tmp_path):
    token = tmp_path / "token"
    token.write_text("xoxb-123")
    r = run(
        "slack-notification-dev", "guide-parameterized",
        "--phase", "post", "--profile", "klt-0.9", "--secret-file", token,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == (
        "This is my configuration\n"
        "Workload notifier-notifier 1.0 post\n"
        "token has 8 characters\n"
    )
    assert "xoxb-123" not in r.stderr


def test_guide_parameterized_function_reading_context_fails_under_keptn_2(run, tmp_path):
    token = tmp_path / "token"
    token.write_text("xoxb-123")
    r = run("slack-notification-dev", "guide-parameterized", "--phase", "post", "--secret-file", token)
    assert r.returncode == 1
    assert 'Requires env access to "CONTEXT"' in r.stderr


def test_guide_context_snippet(run):
    r = run("guide-context", "guide-context", "--profile", "klt-0.9", "--app", "shop", "--app-version", "3")
    assert r.returncode == 0, r.stderr
    assert r.stdout == (
        '{"workloadName":"","appName":"shop","appVersion":"3","workloadVersion":"",'
        '"taskType":"pre","objectType":"Application"}\n'
    )
    r = run("guide-context", "guide-context")
    assert r.returncode == 1
    assert "NotCapable" in r.stderr and '"CONTEXT"' in r.stderr


# ---------------------------------------------------------------------------------------------
# What a task sees


DENO_DATA = '{"greeting":"hello \\u003cworld\\u003e \\u0026 co","target":"prod"}'
DENO_CONTEXT = (
    '{"workloadName":"","appName":"shop","appVersion":"2.1","workloadVersion":"",'
    '"taskType":"pre","objectType":"App","metadata":{"stage":"dev"}}'
)


def test_deno_sees_data_secure_data_and_context_exactly(run, binary):
    r = run("print-env", "deno-env")
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{DENO_DATA}\n{DENO_CONTEXT}\ns3cr3t\n"
    # Byte for byte what the rendered Job carries.
    env = rendered_env(binary, "deno-env", "print-env")
    assert (env["DATA"], env["KEPTN_CONTEXT"]) == (DENO_DATA, DENO_CONTEXT)
    assert "pre task of app shop 2.1" in r.stderr
    assert "s3cr3t" not in r.stderr


def test_params_override_data_keys_in_gos_encoding(run):
    r = run("print-env", "deno-env", "-q", "--param", "target=staging", "--param", "new=<x>")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == (
        '{"greeting":"hello \\u003cworld\\u003e \\u0026 co","new":"\\u003cx\\u003e","target":"staging"}'
    )
    assert r.stderr == ""


def test_options_override_the_discovered_context(run):
    r = run("print-env", "deno-env", "-q", "--app-version", "2.2", "--phase", "post")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1] == (
        '{"workloadName":"","appName":"","appVersion":"2.2","workloadVersion":"",'
        '"taskType":"post","objectType":"App"}'
    )
    # Workload tasks get Keptn's workload name and an empty appVersion.
    r = run("print-env", "deno-env", "-q", "--app", "shop", "--workload", "Web_UI", "--workload-version", "7")
    assert r.stdout.splitlines()[1] == (
        '{"workloadName":"shop-web-ui","appName":"shop","appVersion":"","workloadVersion":"7",'
        '"taskType":"pre","objectType":"Workload"}'
    )


def test_dry_run_prints_env_and_command_without_the_secret(run):
    r = run("print-env", "deno-env", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "s3cr3t" not in r.stdout + r.stderr
    assert 'SECURE_DATA=<hidden: 6 bytes from Secret "shop-token">' in r.stdout
    assert r.stdout.splitlines()[-1].endswith(
        "run --allow-net --allow-write --allow-read --allow-env=DATA,SECURE_DATA,KEPTN_CONTEXT '$TMP/function.ts'"
    )


PYTHON_CONTEXT = (
    '{"workloadName":"shop-api","appName":"shop","appVersion":"","workloadVersion":"1.4.2",'
    '"taskType":"pre","objectType":"Workload","metadata":{"commit":"abc123"}}'
)


def test_python_sees_the_jobs_env_and_nothing_else(run, binary):
    r = run("python-env", "python-env", env={"LEAKED_SECRET": "x", "LANG": "C.UTF-8"})
    assert r.returncode == 0, r.stderr
    assert r.stdout == (
        '{"user":"ops"}\n'
        f"{PYTHON_CONTEXT}\n"
        "shop-api 1.4.2 ops\n"
        "CMD_ARGS DATA HOME KEPTN_CONTEXT PATH SCRIPT\n"
        "True function.py ''\n"
    )
    env = rendered_env(binary, "python-env", "python-env")
    assert env["KEPTN_CONTEXT"] == PYTHON_CONTEXT


def test_python_cmd_parameters_go_before_the_script(run):
    r = run("optimized", "python-cmd-parameters")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "1 True function.py 1\n"


def test_python_help_cmd_parameter_never_runs_the_code(run):
    r = run("help-only", "python-cmd-parameters")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage:")
    assert "the code ran" not in r.stdout


def test_functionref_child_runs_the_parents_code_with_merged_parameters(run, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("pssst")
    r = run("child", "functionref", "--secret-file", secret)
    assert r.returncode == 0, r.stderr
    assert r.stdout == '{"data":"mydata","other":"data","user":"myuser"}\npssst\n'
    assert "(python, profile keptn-2)" in r.stderr


# ---------------------------------------------------------------------------------------------
# Exit codes and time


@pytest.mark.parametrize(
    "task,code,stream,text",
    [("deno-exit", 3, "stderr", "giving up"), ("deno-throw", 1, "stderr", "boom"), ("python-exit", 5, "stdout", "checking")],
)
def test_a_failing_task_fails_with_its_exit_code(run, task, code, stream, text):
    r = run(task, "failing")
    assert r.returncode == code, r.stderr
    assert text in getattr(r, stream)


def test_the_definitions_timeout_kills_the_task_and_its_children(run, tmp_path):
    marker = tmp_path / "late"
    start = time.monotonic()
    r = run("python-sleeps", "timeout", "--param", f"marker={marker}")
    elapsed = time.monotonic() - start
    assert r.returncode == 124, r.stderr
    assert r.stdout == "sleeping\n"
    assert "longer than its timeout of 2s" in r.stderr
    assert elapsed < 15
    time.sleep(2.5)  # the child would have written the marker 3 s after it started
    assert not marker.exists()


def test_the_timeout_option_wins(run):
    start = time.monotonic()
    r = run("deno-sleeps", "timeout", "--timeout", "2s")
    assert r.returncode == 124, r.stderr
    assert time.monotonic() - start < 15


@pytest.mark.parametrize("task,var", [("read-home", "HOME"), ("read-context", "CONTEXT")])
def test_deno_refuses_env_vars_the_runtime_does_not_allow(run, task, var):
    r = run(task, "deno-forbidden-env")
    assert r.returncode != 0
    assert f'Requires env access to "{var}"' in r.stderr


# ---------------------------------------------------------------------------------------------
# httpRef


def test_httpref_needs_allow_net(run):
    r = run("deno-remote", "httpref")
    assert r.returncode == 2
    assert r.stdout == ""
    assert "https://tasks.example.com/task.ts" in r.stderr and "--allow-net" in r.stderr


class _Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".ts": "application/typescript"}

    def log_message(self, *args):
        pass


@pytest.fixture
def served_httpref(tmp_path):
    """httpref/ served on localhost; its definitions point at the server."""
    handler = functools.partial(_Handler, directory=str(FIXTURES / "httpref"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    text = (FIXTURES / "httpref" / "tasks.yaml").read_text()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    (tmp_path / "tasks.yaml").write_text(text.replace("https://tasks.example.com/", base))
    yield tmp_path
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("task,out", [("deno-remote", "remote deno\n"), ("python-remote", "remote python -\n")])
def test_httpref_runs_with_allow_net(run, served_httpref, task, out):
    r = run(task, served_httpref, "--allow-net")
    assert r.returncode == 0, r.stderr
    assert r.stdout == out


# ---------------------------------------------------------------------------------------------
# Refusals and programs


def test_container_tasks_are_refused_with_a_docker_run(run):
    r = run("check-dependencies", "container")
    assert r.returncode == 2
    assert r.stdout == ""
    assert "container task" in r.stderr
    assert "docker run --rm -e 'KEPTN_CONTEXT=" in r.stderr and "curlimages/curl:8.11.1" in r.stderr
    r = run("check-dependencies", "container", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "--entrypoint sh curlimages/curl:8.11.1 -c" in r.stdout


def test_an_unknown_task_gets_a_suggestion(run):
    r = run("dumy-task", "guide-secret-text")
    assert r.returncode == 2
    assert 'did you mean "dummy-task"?' in r.stderr


def test_an_unknown_task_lists_the_definitions(run):
    r = run("zzz", str(EXAMPLES / "checkout"))
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr.strip().endswith(
        "; the definitions there: check-dependencies, db-migrate, notify-release,"
        " slack-notification, smoke-test"
    ), r.stderr


@pytest.mark.parametrize(
    "task,phase,context",
    [
        ("notify-release", "post", '"appName":"checkout","appVersion":"1.4.0"'),
        ("smoke-test", "post", '"workloadName":"checkout-checkout-api"'),
        ("db-migrate", "pre", '"workloadName":"checkout-checkout-api"'),
    ],
)
def test_the_one_use_gives_phase_and_context_without_options(run, task, phase, context):
    r = run(task, str(EXAMPLES / "checkout"), "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "note:" not in r.stderr, r.stderr
    assert f'"taskType":"{phase}"' in r.stdout and context in r.stdout, r.stdout


def test_render_errors_are_reported_as_render_reports_them(run):
    r = run("anything", REPO / "tests" / "fixtures" / "render" / "err-no-runner" / "input")
    assert r.returncode == 2
    assert "error[KLT010]" in r.stderr and "  help: " in r.stderr
    assert "nothing was run" in r.stderr


def test_the_deno_binary_by_option_env_or_path(run):
    plain = os.environ.get("PATH", "")
    r = run("dummy-task", "guide-secret-text", "--deno", deno_bin(), env={"PATH": plain})
    assert (r.returncode, r.stdout) == (0, "foo\n"), r.stderr
    r = run("dummy-task", "guide-secret-text", env={"PATH": plain, "KLT_DENO": str(deno_bin())})
    assert (r.returncode, r.stdout) == (0, "foo\n"), r.stderr
    if shutil.which("deno", path=plain) is None:
        r = run("dummy-task", "guide-secret-text", env={"PATH": plain})
        assert r.returncode == 2
        assert "deno not found on PATH" in r.stderr and "--deno" in r.stderr


def test_context_options_that_contradict_keptn_are_refused(run):
    r = run("print-env", "deno-env", "--workload", "api", "--app", "shop", "--app-version", "1")
    assert r.returncode == 2
    assert "--app-version is for app tasks" in r.stderr
