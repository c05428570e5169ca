"""Each command's --help shows the options it uses and its exit codes; generate's also the
environment it reads. Options hidden from a command's help are still accepted, so that a hook
can pass `check` the arguments it passes `render`."""

from __future__ import annotations

import subprocess

import pytest

from conftest import EXAMPLES, child_env

OUTPUT_ONLY = ["--deno-image", "--python-image", "--records", "--hook-delete-policy"]


def klt(binary, *args):
    r = subprocess.run(
        [str(binary), *args], capture_output=True, text=True, env=child_env(), timeout=60
    )
    return r.returncode, r.stdout, r.stderr


@pytest.mark.parametrize(
    "command,hidden,shown",
    [
        ("render", [], OUTPUT_ONLY + ["--mode", "--keep-keptn", "--namespace"]),
        ("plan", ["--hook-delete-policy"], ["--mode", "--records", "--against", "--format"]),
        ("check", OUTPUT_ONLY, ["--mode", "--profile", "--namespace", "--deny-warnings"]),
        ("run", OUTPUT_ONLY + ["--mode", "--keep-keptn"], ["--profile", "--namespace", "--phase"]),
    ],
)
def test_help_shows_what_the_command_uses(binary, command, hidden, shown):
    code, out, _ = klt(binary, command, "--help")
    assert code == 0
    words = out.split()
    for opt in hidden:
        assert opt not in words, f"{command} --help shows {opt}"
    for opt in shown:
        assert opt in words, f"{command} --help lacks {opt}"
    assert "Exit status" in out, out


def test_generate_help_names_the_environment(binary):
    _, out, _ = klt(binary, "generate", "--help")
    for var in ["ARGOCD_APP_NAME", "ARGOCD_APP_NAMESPACE", "ARGOCD_APP_SOURCE_PATH",
                "ARGOCD_APP_PARAMETERS", "PARAM_<NAME>", "ARGOCD_ENV_KLT_*", "KUBE_API_VERSIONS"]:
        assert var in out, var
    assert "Exit status:" in out


def test_hidden_options_are_still_accepted(binary):
    code, _, err = klt(binary, "check", str(EXAMPLES / "checkout"), "-n", "checkout",
                       "--deno-image", "mirror.example/deno:1", "--hook-delete-policy", "HookSucceeded")
    assert code == 0, err
