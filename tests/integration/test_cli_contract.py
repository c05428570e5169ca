"""The CLI contract: exit codes, streams, refusal of symlinks that leave the input tree, and
output that depends only on the content of the inputs (not on runs, file names or file order).

* exit 0: a YAML stream on stdout; warnings may be on stderr.
* exit 2: diagnostics ``path:line:col: error[KLTnnn]: ...`` on stderr, nothing on stdout.
"""

from __future__ import annotations

import pathlib
import random
import re
import shutil

import pytest

from conftest import (
    Case,
    diagnostics,
    error_cases,
    example_case,
    example_dirs,
    params_or_skip,
    run_binary,
    success_cases,
    yaml_files,
)

DIAG_LINE = re.compile(r"^(?P<path>.+?):(?P<line>\d+):(?P<col>\d+): (error|warning)\[KLT\d{3}\]: ")

TASK_DEFINITION = """\
apiVersion: lifecycle.keptn.sh/v1
kind: KeptnTaskDefinition
metadata:
  name: hello
spec:
  deno:
    inline:
      code: |
        console.log("hello");
"""

KEPTN_TASK = """\
apiVersion: lifecycle.keptn.sh/v1
kind: KeptnTask
metadata:
  name: hello-once
spec:
  taskDefinition: hello
  context:
    appName: app
    appVersion: "1.0.0"
    objectType: App
    taskType: pre
    workloadName: ""
    workloadVersion: ""
"""


def good_input(directory: pathlib.Path) -> pathlib.Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "definition.yaml").write_text(TASK_DEFINITION)
    (directory / "task.yaml").write_text(KEPTN_TASK)
    return directory


def assert_failed(result, what):
    code, out, err = result
    assert code == 2, f"{what}: exit {code}, expected 2\nstderr:\n{err}"
    assert out == "", f"{what}: stdout must be empty on errors, got:\n{out[:500]}"
    assert err.strip(), f"{what}: exit 2 without a message on stderr"
    return err


# ---- errors ---------------------------------------------------------------------------------


def test_good_input_renders(render, tmp_path):
    code, out, err = render([good_input(tmp_path / "in")])
    assert code == 0, err
    assert "kind: Job" in out and "kind: ConfigMap" in out, out


BROKEN_YAML = {
    # name: (text, line of the mistake)
    "unterminated-quote": (TASK_DEFINITION.replace('console.log("hello");', "x").replace(
        "  name: hello", '  name: "hello'), 4),
    "bad-indentation": (TASK_DEFINITION + "   stray: [1, 2\n", 10),
    "unclosed-flow-map": (TASK_DEFINITION.replace("  deno:", "  deno: {inline: {code: x}"), 6),
}


@pytest.mark.parametrize("name", BROKEN_YAML)
def test_yaml_syntax_error(name, render, tmp_path):
    text, mistake_line = BROKEN_YAML[name]
    good_input(tmp_path / "in")
    (tmp_path / "in" / "definition.yaml").write_text(text)
    for path in ("in", "in/definition.yaml", str(tmp_path / "in" / "definition.yaml")):
        err = assert_failed(render([path], cwd=tmp_path), f"render {path}")
        diags = [d for d in diagnostics(err) if d["severity"] == "error"]
        assert diags, f"no path:line:col diagnostic on stderr:\n{err}"
        d = diags[0]
        expected_path = path if path.endswith(".yaml") else f"{path}/definition.yaml"
        assert d["path"] == expected_path, f"diagnostic names {d['path']!r}, not {expected_path!r}"
        n_lines = text.count("\n") + 1
        assert 1 <= int(d["line"]) <= n_lines and int(d["col"]) >= 1, d
        # The position may point where the parser noticed the mistake, which can be later
        # (e.g. at the end of the file for an unterminated quote) but never before it.
        assert int(d["line"]) >= mistake_line - 1, f"line {d['line']} is before the mistake:\n{err}"


def test_missing_path(render, tmp_path):
    good_input(tmp_path / "in")
    for paths in (["does-not-exist.yaml"], ["in", "does-not-exist.yaml"], ["no-such-dir/"]):
        err = assert_failed(render(paths, cwd=tmp_path), f"render {paths}")
        missing = paths[-1].rstrip("/")
        assert missing in err, f"the message does not name {missing!r}:\n{err}"


@pytest.mark.parametrize("target", ["file", "directory"])
def test_symlink_outside_input_tree_is_refused(target, render, tmp_path):
    tree = good_input(tmp_path / "tree")
    outside = good_input(tmp_path / "outside")
    (outside / "task.yaml").unlink()
    link = tree / "linked"
    if target == "file":
        link = link.with_suffix(".yaml")
        link.symlink_to(outside / "definition.yaml")
        (tree / "definition.yaml").unlink()
    else:
        link.symlink_to(outside, target_is_directory=True)
    # Relative and absolute spellings of the tree, and a relative symlink target.
    for paths in (["tree"], [str(tree)]):
        err = assert_failed(render(paths, cwd=tmp_path), f"render {paths} with {link.name} -> {target}")
        assert "symlink" in err.lower(), f"the message does not mention the symlink:\n{err}"
        assert link.name in err, f"the message does not name {link.name}:\n{err}"
    link.unlink()
    rel = link.parent / link.name
    rel.symlink_to(pathlib.Path("..") / "outside" / ("definition.yaml" if target == "file" else ""))
    err = assert_failed(render(["tree"], cwd=tmp_path), "relative symlink")
    assert "symlink" in err.lower(), err


def test_stdin_is_read_with_dash(render, tmp_path):
    good_input(tmp_path / "in")
    from_files = render(["in"], cwd=tmp_path)
    from_stdin = render(["-"], cwd=tmp_path, stdin=(TASK_DEFINITION + "---\n" + KEPTN_TASK).encode())
    assert from_files[0] == 0 and from_stdin[0] == 0, (from_files[2], from_stdin[2])
    assert from_stdin[1] == from_files[1]


# ---- error fixtures: the diagnostics point into real files ----------------------------------


def _error_params():
    cases = error_cases()
    return params_or_skip(cases, [c.name for c in cases], "error fixtures")


@pytest.mark.parametrize("case", _error_params())
def test_error_fixture_contract(case, binary):
    err = assert_failed(case.render(binary), case.name)
    lines = [line for line in err.splitlines() if DIAG_LINE.match(line)]
    assert any("error[" in line for line in lines), f"no path:line:col error line:\n{err}"
    for d in diagnostics(err):
        path = case.dir / d["path"]
        if not path.is_file():
            continue  # e.g. a diagnostic about stdin or a directory
        n_lines = len(path.read_bytes().splitlines()) + 1
        assert 1 <= int(d["line"]) <= n_lines, f"{d['path']}:{d['line']} is past the end of the file"
        assert int(d["col"]) >= 1, d


# ---- determinism ------------------------------------------------------------------------------


def _render_cases():
    items, ids = [], []
    for path in example_dirs():
        items.append(example_case(path))
        ids.append(f"example-{path.name}")
    for case in success_cases():
        items.append(case)
        ids.append(f"fixture-{case.name}")
    return items, ids


RENDER_CASES = params_or_skip(*_render_cases(), "examples or success fixtures")


def _input_root(case: Case) -> pathlib.Path:
    return case.dir if case.paths == ["."] else case.dir / "input"


def _extra_paths(case: Case) -> list[str]:
    """The case's paths other than its input tree, made absolute."""
    return [str((case.dir / p).resolve()) for p in case.paths if p not in (".", "input")]


def _render_copy(binary, case: Case, tmp_path, names):
    """Copy the case's input files into tmp_path/input under new names (names(list of relative
    paths) -> new relative paths) and render that copy with the case's arguments."""
    root = _input_root(case)
    files = yaml_files(root) if root.exists() else []
    rel = [str(p.relative_to(root)) if root.is_dir() else p.name for p in files]
    dest = tmp_path / "input"
    for src, new in zip(files, names(rel)):
        target = dest / new
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
    paths = (["input"] if files else []) + _extra_paths(case)
    return run_binary(binary, paths, *case.args, cwd=tmp_path), len(files)


@pytest.mark.parametrize("case", RENDER_CASES)
def test_render_twice_is_byte_identical(case, binary):
    first = case.render(binary)
    second = case.render(binary)
    assert first[0] == 0, first[2]
    assert first[1], "a success case printed nothing on stdout"
    assert second == first


def _flat(rel: str) -> str:
    return rel.replace("/", "__")


def _reversed_names(rel):
    # Sorting the new names gives the reverse of the original order.
    n = len(rel)
    return [f"{n - i:03d}-{_flat(r)}" for i, r in enumerate(rel)]


def _shuffled_names(seed):
    def names(rel):
        order = list(range(len(rel)))
        random.Random(seed).shuffle(order)
        # The extension stays (the renderer reads *.yaml, *.yml, *.json).
        return [f"z{order[i]:03d}-{_flat(r)}" for i, r in enumerate(rel)]

    return names


def _nested_names(rel):
    # Deeper directories, reversed.
    n = len(rel)
    return [f"d{n - i}/sub/{_flat(r)}" for i, r in enumerate(rel)]


RENAMINGS = {
    "reversed": _reversed_names,
    "shuffled-1": _shuffled_names(1),
    "shuffled-2": _shuffled_names(2),
    "nested-reversed": _nested_names,
}


@pytest.mark.parametrize("renaming", RENAMINGS)
@pytest.mark.parametrize("case", RENDER_CASES)
def test_file_names_and_order_do_not_matter(case, renaming, binary, tmp_path):
    reference = case.render(binary)
    assert reference[0] == 0, reference[2]
    (code, out, err), n_files = _render_copy(binary, case, tmp_path, RENAMINGS[renaming])
    if n_files < 2 and renaming != "nested-reversed":
        pytest.skip(f"{case.name}: a single input file has no order to change")
    assert code == 0, f"the renamed copy failed:\n{err}"
    assert out == reference[1], _first_difference(reference[1], out)


def _split_documents(text: str) -> list[str]:
    """Split a YAML stream at its document markers (lines starting with ---)."""
    docs, current = [], []
    for line in text.splitlines(keepends=True):
        if re.match(r"^---(\s|$)", line) and current:
            docs.append("".join(current))
            current = []
        current.append(line)
    docs.append("".join(current))
    return [d for d in docs if d.strip() and not all(
        l.strip() in ("", "---", "...") or l.lstrip().startswith("#") for l in d.splitlines())]


@pytest.mark.parametrize("case", RENDER_CASES)
def test_one_document_per_file_reversed(case, binary, tmp_path):
    """Every YAML document in its own file, the files in reverse order: same output."""
    reference = case.render(binary)
    assert reference[0] == 0, reference[2]
    root = _input_root(case)
    pieces = []
    for path in (yaml_files(root) if root.exists() else []):
        if path.suffix == ".json":
            pieces.append((path.suffix, path.read_text(encoding="utf-8")))
        else:
            pieces += [(path.suffix, d) for d in _split_documents(path.read_text(encoding="utf-8"))]
    if len(pieces) < 2:
        pytest.skip(f"{case.name}: fewer than two documents")
    dest = tmp_path / "input"
    dest.mkdir()
    n = len(pieces)
    for i, (suffix, text) in enumerate(pieces):
        if not text.startswith("---"):
            text = "---\n" + text
        (dest / f"{n - i:03d}{suffix}").write_text(text, encoding="utf-8")
    code, out, err = run_binary(binary, ["input", *_extra_paths(case)], *case.args, cwd=tmp_path)
    assert code == 0, f"the split copy failed:\n{err}"
    assert out == reference[1], _first_difference(reference[1], out)


@pytest.mark.parametrize("case", RENDER_CASES)
def test_path_spelling_does_not_matter(case, binary, repo_root):
    """Rendering from another directory, with absolute paths, gives the same stdout."""
    reference = case.render(binary)
    assert reference[0] == 0, reference[2]
    paths = [str((case.dir / p).resolve()) for p in case.paths]
    other = run_binary(binary, paths, *case.args, cwd=repo_root)
    assert other[0] == 0, other[2]
    assert other[1] == reference[1], _first_difference(reference[1], other[1])


def _first_difference(expected: str, actual: str) -> str:
    e, a = expected.splitlines(), actual.splitlines()
    i = next((i for i, (x, y) in enumerate(zip(e, a)) if x != y), min(len(e), len(a)))
    ctx = lambda lines: "\n".join(f"    {line}" for line in lines[max(i - 2, 0):i + 4])
    return (f"stdout differs at line {i + 1} ({len(e)} vs {len(a)} lines)\n"
            f"  original:\n{ctx(e)}\n  changed:\n{ctx(a)}")
