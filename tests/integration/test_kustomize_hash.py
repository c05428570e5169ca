"""The ConfigMap suffix of inline task code must equal what real kustomize computes.

For each code string: a KeptnTaskDefinition (lifecycle.keptn.sh/v1, ``spec.deno.inline.code``)
and a KeptnTask that runs it are rendered with klt-render, once written as YAML and once as JSON;
and a kustomization with ``configMapGenerator: [{name: keptnfn-<def>, files: [code=<file>]}]``
(the file holding the same bytes) is built with ``kubectl kustomize`` (kubectl's built-in
kustomize). Both must give the same ConfigMap name (so the same 10-character suffix) and the
same ``data.code``, equal to the original code.

A failure message also shows the suffix of the Python re-implementation of kustomize's hasher
from shared/reference/kustomize-krm-validation.md §1.5, to tell which side is off.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess

import pytest
import yaml

from conftest import KubeLoader, load_docs

DEFINITION = "hash-check"
BASE_NAME = f"keptnfn-{DEFINITION}"


def _ten_kb_script() -> str:
    lines = ["// generated: a long deno task, about 10 KB", "const results = [];"]
    i = 0
    while sum(len(line) + 1 for line in lines) < 10 * 1024:
        lines.append(f'results.push(await fetch("https://svc-{i}.example.invalid/healthz")'
                     f'.then((r) => r.status).catch(() => -1)); // check #{i}')
        i += 1
    lines.append('console.log(JSON.stringify({ results }));')
    return "\n".join(lines) + "\n"


DENO_SCRIPT = """\
const data = JSON.parse(Deno.env.get("DATA") ?? "{}");
const context = JSON.parse(Deno.env.get("KEPTN_CONTEXT") ?? "{}");

// Indented block, blank lines, quotes and a template literal.
if (!data.url) {
    console.error('missing "url" parameter');
    Deno.exit(1);
}

const res = await fetch(data.url, { headers: { "x-app": `${context.appName}@${context.appVersion}` } });
console.log(`status=${res.status} ok=${res.ok}`);
"""

CODES = {
    "plain-ascii": 'console.log("hello from klt-render");\n',
    "markup-and-unicode": '<tag a="1"> & ünïcødé ✓\nconsole.log("<b>&amp;</b> ünïcødé ✓ 🚀");\n',
    "tabs-cr-trailing-spaces-u2028": "\tif (x) {\r\n\t\treturn 1;   \r\n\t}\t\nlet s = 'a\u2028b\u2029c';  \n",
    "one-liner-no-newline": "x",
    "one-space": " ",
    "only-newline": "\n",
    "leading-indentation": "  indented first line\n    deeper\nnot indented\n",
    "trailing-blank-lines": "console.log(1);\n\n\n",
    "no-trailing-newline-multiline": "a\nb\nc",
    "multi-line-deno-script": DENO_SCRIPT,
    "10kb-script": _ten_kb_script(),
    "yaml-lookalike": "---\nkey: value\n# not a comment\n- item\n...\n'quoted' \"double\" |pipe >fold\n",
    "control-characters": "bell\x07 backspace\x08 formfeed\x0c esc\x1b[0m nul\x00 del\x7f nel\x85\n",
    "bom-and-nbsp": "\ufeffconst a = 1;\u00a0// nbsp\n",
}

# Strings that YAML (and so a KeptnTaskDefinition) cannot carry at all.
UNREPRESENTABLE = {
    "lone-surrogate": ("a\ud800b", "a lone UTF-16 surrogate is not a Unicode scalar value: it has "
                       "no UTF-8 encoding, so neither YAML nor JSON can carry it"),
    "invalid-utf8-bytes": (None, "kustomize puts a non-UTF-8 file into binaryData, but "
                           "inline.code is a YAML string and cannot hold raw bytes"),
}


# ---- Python reference hasher (reference §1.5), for diagnosis only -------------------------


def reference_suffix(data: dict) -> str:
    s = json.dumps({"data": data, "kind": "ConfigMap", "name": ""}, sort_keys=True,
                   separators=(",", ":"), ensure_ascii=False)
    for ch in "<>&\u2028\u2029":
        s = s.replace(ch, "\\u%04x" % ord(ch))
    digest = hashlib.sha256(s.encode("utf-8")).hexdigest()
    return digest[:10].translate(str.maketrans({"0": "g", "1": "h", "3": "k", "a": "m", "e": "t"}))


def test_reference_hasher_matches_documented_vector():
    # kubectl kustomize: literals FOO=bar, hello=world -> app-config-k9h8bf29t7 (reference §1.5)
    assert reference_suffix({"FOO": "bar", "hello": "world"}) == "k9h8bf29t7"


# ---- inputs ---------------------------------------------------------------------------------


def _documents(code: str):
    definition = {
        "apiVersion": "lifecycle.keptn.sh/v1",
        "kind": "KeptnTaskDefinition",
        "metadata": {"name": DEFINITION},
        "spec": {"deno": {"inline": {"code": code}}},
    }
    task = {
        "apiVersion": "lifecycle.keptn.sh/v1",
        "kind": "KeptnTask",
        "metadata": {"name": f"run-{DEFINITION}"},
        "spec": {
            "taskDefinition": DEFINITION,
            "context": {
                "appName": "hash-app",
                "appVersion": "1.0.0",
                "objectType": "App",
                "taskType": "pre",
                "workloadName": "",
                "workloadVersion": "",
            },
        },
    }
    return definition, task


class _LiteralDumper(yaml.SafeDumper):
    """Multi-line strings as literal blocks (``|``) where YAML allows it, as people write
    task code; PyYAML falls back to double quotes where a block cannot hold the string."""


_LiteralDumper.add_representer(
    str,
    lambda dumper, s: dumper.represent_scalar("tag:yaml.org,2002:str", s,
                                              style="|" if "\n" in s else None),
)


def write_yaml_input(directory, code):
    text = yaml.dump_all(_documents(code), Dumper=_LiteralDumper, allow_unicode=True,
                         sort_keys=False, width=1 << 20)
    # The dump must carry the code exactly (PyYAML's reader is YAML 1.1, like kubectl's).
    assert next(yaml.load_all(text, Loader=KubeLoader))["spec"]["deno"]["inline"]["code"] == code
    (directory / "task.yaml").write_bytes(text.encode("utf-8"))


def write_json_input(directory, code):
    definition, task = _documents(code)
    # Raw UTF-8 (not \u escapes) except for characters YAML forbids unescaped (JSON files are
    # read as YAML 1.2, whose printable set excludes C0/C1 controls and DEL).
    text = json.dumps(definition, ensure_ascii=False, indent=2)
    text = "".join(
        "\\u%04x" % ord(c) if (ord(c) == 0x7F or 0x80 <= ord(c) < 0xA0 and c != "\x85") else c
        for c in text
    )
    (directory / "definition.json").write_bytes((text + "\n").encode("utf-8"))
    (directory / "task.json").write_text(json.dumps(task) + "\n")


FLAVORS = {"yaml": write_yaml_input, "json": write_json_input}


# ---- kustomize ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def kubectl():
    path = shutil.which("kubectl")
    if not path:
        pytest.fail("kubectl is not on PATH: these tests need its built-in kustomize", pytrace=False)
    return path


_kustomize_cache: dict[str, tuple[str, str]] = {}


def kustomize_configmap(kubectl, tmp_path_factory, key: str, code: bytes):
    """(name, data.code) of ``kubectl kustomize`` for configMapGenerator files: [code=FILE];
    data.code is None when kustomize hashed the data but could not print it."""
    if key in _kustomize_cache:
        return _kustomize_cache[key]
    d = tmp_path_factory.mktemp(f"kustomize-{key}")
    (d / "code.txt").write_bytes(code)
    (d / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\n"
        "kind: Kustomization\n"
        "configMapGenerator:\n"
        f"- name: {BASE_NAME}\n"
        "  files:\n"
        "  - code=code.txt\n"
    )
    result = subprocess.run([kubectl, "kustomize", str(d)], capture_output=True, timeout=120,
                            check=False)
    stderr = result.stderr.decode("utf-8", "replace")
    if result.returncode != 0 and "control characters are not allowed" in stderr:
        # kustomize hashes first and then fails to print some control characters as YAML; its
        # error message still shows the object with the hashed name (reference §1.5).
        match = re.search(re.escape(BASE_NAME) + r"-[a-z0-9]{10}\b", stderr)
        assert match, f"kubectl kustomize failed without showing the name:\n{stderr}"
        _kustomize_cache[key] = (match.group(0), None)
        return _kustomize_cache[key]
    assert result.returncode == 0, f"kubectl kustomize failed:\n{stderr}"
    (cm,) = [doc.obj for doc in load_docs(result.stdout.decode("utf-8"))]
    assert cm["kind"] == "ConfigMap" and "binaryData" not in cm, cm
    _kustomize_cache[key] = (cm["metadata"]["name"], cm["data"]["code"])
    return _kustomize_cache[key]


# ---- tests ----------------------------------------------------------------------------------


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("key", CODES)
def test_suffix_matches_kubectl_kustomize(key, flavor, render, kubectl, tmp_path, tmp_path_factory):
    code = CODES[key]
    FLAVORS[flavor](tmp_path, code)
    exit_code, out, err = render(["."], cwd=tmp_path)
    assert exit_code == 0, f"klt-render failed for {key!r} ({flavor}):\n{err}"
    configmaps = [d.obj for d in load_docs(out)
                  if d.obj.get("kind") == "ConfigMap"
                  and d.obj["metadata"]["name"].startswith(BASE_NAME + "-")]
    assert len(configmaps) == 1, f"expected one {BASE_NAME}-* ConfigMap, got:\n{out}"
    cm = configmaps[0]
    ours_name, ours_code = cm["metadata"]["name"], cm["data"]["code"]

    kust_name, kust_code = kustomize_configmap(kubectl, tmp_path_factory, key, code.encode("utf-8"))
    # None: kustomize could not print the value (control characters), only its name.
    assert kust_code in (code, None), "kustomize changed the code (test bug?)"
    assert ours_code == code, (
        f"data.code differs from the input code\n  input:    {code!r}\n  rendered: {ours_code!r}")
    assert cm["data"] == {"code": code}, f"unexpected data keys: {sorted(cm['data'])}"
    assert ours_name == kust_name, (
        f"suffix mismatch for {key!r} ({flavor}): klt-render {ours_name}, kubectl kustomize "
        f"{kust_name}, reference hasher {BASE_NAME}-{reference_suffix({'code': code})}")


@pytest.mark.parametrize("key", UNREPRESENTABLE)
def test_unrepresentable_code(key):
    code, reason = UNREPRESENTABLE[key]
    if code is not None:
        with pytest.raises(UnicodeEncodeError):
            code.encode("utf-8")
    pytest.skip(reason)
