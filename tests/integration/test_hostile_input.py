"""Hostile Git content: every entry point refuses input that would cost far more than its size.

Each attack is a few hundred bytes to a few MB that a push can put into a repository which
klt-render reads inside Argo CD's repo server. Before the limits existed, the alias bombs here
took 0.8-3 GB and seconds to minutes; now each is one located error (``path:line:col``, the limit
and how to raise it), exit 2 (``check``: non-zero), nothing on stdout, and the process' peak RSS
stays small. Peak RSS is read from the kernel (wait4), not timed: the bound is what matters.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import tempfile

import pytest

from conftest import child_env

# Far above what klt-render needs for these inputs (debug build: ~10 MB), far below what the
# attacks took before (800 MB - 3 GB).
RSS_BOUND_KB = 64 * 1024

TASK_DEFINITION = """\
apiVersion: lifecycle.keptn.sh/v1
kind: KeptnTaskDefinition
metadata:
  name: hello
spec:
  deno:
    inline:
      code: console.log("hi")
"""


def laughs(levels: int = 9, indent: str = "  ") -> str:
    lines = [f"{indent}a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        refs = ", ".join([f"*a{i - 1}"] * 9)
        lines.append(f"{indent}a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + "\n"


def merge_bomb() -> str:
    lines = ["  m0: &m0 {k0: 0, k1: 1, k2: 2, k3: 3, k4: 4, k5: 5, k6: 6, k7: 7}"]
    for i in range(1, 10):
        refs = ", ".join([f"*m{i - 1}"] * 8)
        lines.append(f"  m{i}: &m{i} {{<<: [{refs}], v{i}: [{refs}]}}")
    return "\n".join(lines) + "\n"


def deep_aliases() -> str:
    # Each alias adds 250 levels: the tree builder used to overflow its stack.
    nest = lambda inner: "[" * 250 + inner + "]" * 250  # noqa: E731
    lines = [f"  a0: &a0 {nest('1')}"]
    lines += [f"  a{i}: &a{i} {nest(f'*a{i - 1}')}" for i in range(1, 40)]
    return "\n".join(lines) + "\n"


CONFIG_MAP = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bomb\ndata:\n"

# name -> (files, the limit's option, extra environment)
ATTACKS = {
    "alias-bomb-in-configmap": ({"bomb.yaml": CONFIG_MAP + laughs()}, "alias-nodes-per-byte", {}),
    "alias-bomb-in-parameters": (
        {
            "task.yaml": TASK_DEFINITION
            + "  parameters:\n    map:\n"
            + laughs(indent="      ").replace("      a0:", "      a0:", 1)
        },
        "alias-nodes-per-byte",
        {},
    ),
    "merge-key-bomb": ({"bomb.yaml": CONFIG_MAP.replace("data:\n", "x:\n") + merge_bomb()}, "alias-nodes-per-byte", {}),
    "aliases-past-the-depth-limit": ({"deep.yaml": CONFIG_MAP.replace("data:\n", "x:\n") + deep_aliases()}, "max-depth", {}),
    "deep-flow-nesting": ({"deep.yaml": "a: " + "[" * 200_000}, "max-depth", {}),
    "deep-json-nesting": ({"deep.json": '{"a":' * 200_000}, "max-depth", {}),
    # The default (1,000,000) is reached the same way; a lower limit keeps the debug build quick.
    "many-empty-documents": ({"empty.yaml": "---\n" * 10_100}, "max-documents", {"KLT_MAX_DOCUMENTS": "10000"}),
    "document-over-the-size-limit": (
        {"big.yaml": CONFIG_MAP + "  x: " + "y" * 20_000 + "\n"},
        "max-document-bytes",
        {"KLT_MAX_DOCUMENT_BYTES": "16Ki"},
    ),
    "input-over-the-size-limit": (
        {"a.yaml": CONFIG_MAP + "  x: " + "y" * 9_000 + "\n", "b.yaml": CONFIG_MAP.replace("bomb", "b") + "  x: " + "y" * 9_000 + "\n"},
        "max-input-bytes",
        {"KLT_MAX_INPUT_BYTES": "16Ki"},
    ),
}

DIAG = re.compile(r"(?:^|: )(?P<path>[^\s:]+):(?P<line>\d+):(?P<col>\d+): error\[KLT050\]: input limit (?P<limit>[a-z-]+): ", re.M)


GNU_TIME = "/usr/bin/time"  # Debian package `time`; scripts/test.sh installs it when missing


def rss_run(cmd, cwd, env=None, stdin: bytes = b""):
    """Runs cmd; returns (exit code, stdout, stderr, peak RSS in KB of exactly that process).

    Peak RSS comes from GNU time's wait4 on the command: Linux carries a process' high-water mark
    across fork and exec, so a child forked from pytest itself would report pytest's RSS.
    """
    assert os.access(GNU_TIME, os.X_OK), f"{GNU_TIME} is missing (apt-get install time)"
    full_env = child_env()
    full_env.update(env or {})
    with tempfile.TemporaryDirectory() as tmp:
        report = pathlib.Path(tmp) / "rss"
        wrapped = [GNU_TIME, "-f", "%M", "-o", str(report), *cmd]
        proc = subprocess.run(wrapped, cwd=cwd, env=full_env, input=stdin, capture_output=True, timeout=60, check=False)
        rss = int(report.read_text().split()[-1])
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode(), rss


def write_tree(root: pathlib.Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def entry_points(binary, app: pathlib.Path, files: dict[str, str]):
    """(name, command, cwd, env, stdin, must exit 2: every command, `check` included, since input
    over a limit was not checked at all)."""
    stream = "".join("---\n" + t for n, t in sorted(files.items()) if not n.endswith(".json")).encode()
    generate_env = {"ARGOCD_APP_NAME": "hostile", "ARGOCD_APP_NAMESPACE": "default"}
    yield "render", [str(binary), "render", "."], app, {}, b"", True
    yield "check", [str(binary), "check", "."], app, {}, b"", True
    yield "generate", [str(binary), "generate"], app, generate_env, b"", True
    if stream:
        yield "render-stdin", [str(binary), "render", "-"], app, {}, stream, True
        yield "generate-stdin", [str(binary), "generate", "-"], app, generate_env, stream, True
    yield "run", [str(binary), "run", "hello", "."], app, {}, b"", True


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_every_entry_point_refuses_the_attack_with_a_located_error(binary, tmp_path, attack):
    files, option, env = ATTACKS[attack]
    app = tmp_path / "app"
    write_tree(app, {**files, "hello.yaml": TASK_DEFINITION})
    for name, cmd, cwd, extra, stdin, exit_two in entry_points(binary, app, files):
        if name.endswith("-stdin") and option == "max-input-bytes":
            continue  # one stream: covered by the stdin size test below
        code, out, err, rss = rss_run(cmd, cwd, {**env, **extra}, stdin)
        where = f"{attack} via {name}"
        assert (code == 2) if exit_two else (code != 0), f"{where}: exit {code}\n{err}"
        assert out == "", f"{where}: stdout must stay empty on error"
        found = DIAG.search(err)
        assert found, f"{where}: no located KLT050 in\n{err}"
        assert found["limit"] == option, f"{where}: {err}"
        assert f"--{option}" in err and f"KLT_{option.upper().replace('-', '_')}" in err, err
        assert rss < RSS_BOUND_KB, f"{where}: peak RSS {rss} KB"


def test_raising_a_limit_lets_an_honest_document_through(binary, tmp_path):
    # Four levels of laughs (9^4 strings) is over the default per-byte budget, fine when raised.
    files = {"cm.yaml": CONFIG_MAP + laughs(levels=4)}
    write_tree(tmp_path, files)
    code, _, err, _ = rss_run([str(binary), "render", "."], tmp_path)
    assert code == 2 and "alias-nodes-per-byte" in err, err
    code, out, err, _ = rss_run([str(binary), "render", "--alias-nodes-per-byte", "100", "."], tmp_path)
    assert code == 0, err
    code, out2, err, _ = rss_run([str(binary), "render", "."], tmp_path, {"KLT_ALIAS_NODES_PER_BYTE": "100"})
    assert code == 0 and out2 == out, err
    params = json.dumps([{"name": "alias-nodes-per-byte", "string": "100"}])
    code, out3, err, _ = rss_run(
        [str(binary), "generate"], tmp_path, {"ARGOCD_APP_PARAMETERS": params, "ARGOCD_APP_NAMESPACE": "default"}
    )
    assert code == 0, err
    assert "lol" in out3


def test_a_fifo_in_the_tree_is_refused_not_waited_on(binary, tmp_path):
    write_tree(tmp_path, {"hello.yaml": TASK_DEFINITION})
    os.mkfifo(tmp_path / "blocks.yaml")
    for cmd in (["render", "."], ["check", "."], ["generate"]):
        code, out, err, _ = rss_run([str(binary), *cmd], tmp_path, {"ARGOCD_APP_NAMESPACE": "default"})
        assert code == 2 and out == "", f"{cmd}: {code} {err}"
        assert "blocks.yaml: not a regular file" in err, err


def test_deep_directories_stop_at_the_limit(binary, tmp_path):
    deep = tmp_path
    for _ in range(70):
        deep = deep / "d"
    deep.mkdir(parents=True)
    (deep / "cm.yaml").write_text(CONFIG_MAP + "  a: b\n")
    code, out, err, _ = rss_run([str(binary), "render", "."], tmp_path)
    assert code == 2 and out == "", err
    assert "input limit max-dir-depth: more than 64 directory levels" in err, err
    code, out, err, _ = rss_run([str(binary), "render", "--max-dir-depth", "80", "."], tmp_path)
    assert code == 0 and "name: bomb" in out, err


def test_endless_input_is_cut_at_the_size_limit(binary, tmp_path):
    code, out, err, rss = rss_run([str(binary), "render", "/dev/zero"], tmp_path, {"KLT_MAX_INPUT_BYTES": "4Mi"})
    assert code == 2 and out == "", err
    assert "/dev/zero:1:1: error[KLT050]: input limit max-input-bytes" in err, err
    assert rss < RSS_BOUND_KB, rss
    # stdin of `generate -` (the kustomize variant's pipe) is bounded the same way.
    code, out, err, _ = rss_run(
        [str(binary), "generate", "-"], tmp_path, {"ARGOCD_APP_NAMESPACE": "d", "KLT_MAX_INPUT_BYTES": "1Ki"}, b"a: b\n" * 1000
    )
    assert code == 2 and out == "" and "<stdin>:1:1: error[KLT050]" in err, err


def test_many_bombs_under_the_document_budget_stop_at_the_input_budget(binary, tmp_path):
    # Each document expands to just under its own budget (4 nodes per byte); only the input-wide
    # budget (max-alias-nodes, 1,000,000 nodes) stops a stream of them. Memory stays bounded by it.
    unit = (
        CONFIG_MAP
        + "  a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
        + "  a1: &a1 [" + ", ".join(["*a0"] * 9) + "]\n"
        + "  b: [*a1, *a1, *a1, *a1, *a1]\n"
    )
    one = tmp_path / "one"
    write_tree(one, {"bomb.yaml": unit})
    code, _, err, _ = rss_run([str(binary), "render", "."], one)
    assert code == 0, f"one such document is within its budget: {err}"
    many = tmp_path / "many"
    write_tree(many, {"bombs.yaml": "".join("---\n" + unit.replace("name: bomb", f"name: bomb{i}") for i in range(2500))})
    code, out, err, rss = rss_run([str(binary), "render", "."], many)
    assert code == 2 and out == "", err
    assert "input limit max-alias-nodes: aliases expand the input by more than 1000000 nodes" in err, err
    assert rss < 192 * 1024, f"peak RSS {rss} KB"


def resource_list(items_yaml: str, function_config: str = "") -> str:
    text = "apiVersion: config.kubernetes.io/v1\nkind: ResourceList\nitems:\n" + items_yaml
    if function_config:
        text += "functionConfig:\n" + function_config
    return text


def indent(text: str, by: str) -> str:
    return "".join(by + line + "\n" for line in text.splitlines())


KRM_CONFIG = "apiVersion: klt-render.dev/v1alpha1\nkind: KltRender\nmetadata: {name: c}\n"
BOMB_CONFIG = KRM_CONFIG + "spec:\n  x:\n" + laughs(indent="    ")

# name -> (ResourceList on stdin, (legacy plugin config, legacy stdin stream) or None, expected)
KRM_ATTACKS = {
    "alias bomb in an item": (
        resource_list("  - " + indent(CONFIG_MAP + laughs(), "    ").lstrip()),
        (KRM_CONFIG, CONFIG_MAP + laughs()),
        "input limit alias-nodes-per-byte",
    ),
    "alias bomb in functionConfig": (
        resource_list("  []\n", indent(BOMB_CONFIG, "  ")),
        (BOMB_CONFIG, ""),
        "input limit alias-nodes-per-byte",
    ),
    "merge-key bomb in an item": (
        resource_list("  - " + indent(CONFIG_MAP.replace("data:\n", "x:\n") + merge_bomb(), "    ").lstrip()),
        (KRM_CONFIG, CONFIG_MAP.replace("data:\n", "x:\n") + merge_bomb()),
        "input limit alias-nodes-per-byte",
    ),
    "deep YAML nesting": (
        resource_list("  - a: " + "[" * 100_000 + "\n"),
        (KRM_CONFIG, "a: " + "[" * 100_000 + "\n"),
        "input limit max-depth",
    ),
    "deep JSON nesting": (
        '{"apiVersion":"config.kubernetes.io/v1","kind":"ResourceList","items":[' + "[" * 100_000 + "]" * 100_000 + "]}",
        None,
        "recursion limit exceeded",
    ),
}


@pytest.mark.parametrize("attack", sorted(KRM_ATTACKS))
def test_krm_refuses_hostile_resource_lists(binary, tmp_path, attack):
    text, legacy, expected = KRM_ATTACKS[attack]
    runs = [(["krm"], text)]
    if legacy:
        config, stream = legacy
        (tmp_path / "config.yaml").write_text(config)
        runs.append((["krm", "--legacy-config", "config.yaml"], stream))
    for args, stdin in runs:
        code, out, err, rss = rss_run([str(binary), *args], tmp_path, {}, stdin.encode())
        where = f"{attack} via {' '.join(args)}"
        assert code == 2 and out == "", f"{where}: exit {code}\n{err}"
        assert expected in err, f"{where}: {err}"
        assert rss < RSS_BOUND_KB, f"{where}: peak RSS {rss} KB"
