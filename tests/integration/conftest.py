"""Shared plumbing for the integration tests (run by ./scripts/test.sh with the venv's python).

Fixtures: ``repo_root``, ``shared_dir``, ``binary`` (target/debug/klt-render, built when missing
or older than the sources) and ``render(paths, *args, cwd=None) -> (exit_code, stdout, stderr)``.

The test modules also import the plain helpers below (``from conftest import ...``): case
discovery must happen at collection time, for parametrization.

Environment: ``KLT_SHARED`` overrides where shared/ is (default ``$REPO/../shared``);
``KLT_RENDER_BIN`` overrides the binary (then nothing is built).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import pathlib
import re
import subprocess
from typing import Iterator

import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
SHARED = pathlib.Path(os.environ.get("KLT_SHARED") or REPO.parent / "shared").resolve()
FIXTURES = REPO / "tests" / "fixtures" / "render"
EXAMPLES = REPO / "examples"
KEPTN_GROUP = "lifecycle.keptn.sh"
# The metrics kinds evaluations read; their CRDs (and the evaluation definition's) are vendored.
METRICS_GROUP = "metrics.keptn.sh"
METRICS_KINDS = ("KeptnMetric", "KeptnMetricsProvider")
VENDORED_CRDS = REPO / "tests" / "crds" / "keptn-evaluations"
YAML_SUFFIXES = (".yaml", ".yml", ".json")


def shared_problem() -> str | None:
    """Why shared/ is unusable, or None."""
    if not SHARED.is_dir():
        return (
            f"shared directory not found: {SHARED}\n"
            "The tests need the project's shared/ (Keptn CRDs, upstream examples) beside the "
            "repository, i.e. $REPO/../shared, or its location in the environment variable "
            "KLT_SHARED."
        )
    if not (SHARED / "crds" / "keptn").is_dir():
        return f"{SHARED} has no crds/keptn/ (wrong KLT_SHARED?)"
    return None


def pytest_sessionstart(session):
    problem = shared_problem()
    if problem:
        raise pytest.UsageError(problem)


# ---------------------------------------------------------------------------------------------
# The binary


def binary_path() -> pathlib.Path:
    override = os.environ.get("KLT_RENDER_BIN")
    if override:
        return pathlib.Path(override).resolve()
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
    if not target.is_absolute():
        target = REPO / target
    return target / "debug" / "klt-render"


def _newest_source_mtime() -> float:
    files = [REPO / "Cargo.toml", REPO / "Cargo.lock", *(REPO / "src").rglob("*")]
    return max((f.stat().st_mtime for f in files if f.is_file()), default=0.0)


def ensure_binary() -> pathlib.Path:
    path = binary_path()
    if os.environ.get("KLT_RENDER_BIN"):
        assert path.is_file(), f"KLT_RENDER_BIN={path} does not exist"
        return path
    if not path.is_file() or path.stat().st_mtime < _newest_source_mtime():
        result = subprocess.run(
            ["cargo", "build", "--locked", "--quiet", "--bin", "klt-render"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            pytest.fail(f"cargo build failed:\n{result.stderr}", pytrace=False)
    assert path.is_file(), f"cargo build did not produce {path}"
    return path


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The caller's environment without KLT_* (they are the CLI's option variables)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KLT_")}
    env.update(extra or {})
    return env


def run_binary(binary, paths, *args, cwd=None, stdin: bytes | None = None):
    """Run ``klt-render render ARGS... PATHS...``; return (exit_code, stdout, stderr) as str.

    Streams are decoded as strict UTF-8 without newline translation, so a ``\\r`` in the
    output stays a ``\\r``.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    cmd = [str(binary), "render", *map(str, args), *map(str, paths)]
    result = subprocess.run(
        cmd,
        cwd=cwd,
        input=stdin if stdin is not None else b"",
        capture_output=True,
        env=child_env(),
        timeout=120,
        check=False,
    )
    return (
        result.returncode,
        result.stdout.decode("utf-8"),
        result.stderr.decode("utf-8"),
    )


@pytest.fixture(scope="session")
def repo_root() -> pathlib.Path:
    return REPO


@pytest.fixture(scope="session")
def shared_dir() -> pathlib.Path:
    problem = shared_problem()
    if problem:
        pytest.fail(problem, pytrace=False)
    return SHARED


@pytest.fixture(scope="session")
def binary() -> pathlib.Path:
    return ensure_binary()


@pytest.fixture(scope="session")
def render(binary):
    """``render(paths, *args, cwd=None, stdin=None) -> (exit_code, stdout, stderr)``."""

    def _render(paths, *args, cwd=None, stdin=None):
        return run_binary(binary, paths, *args, cwd=cwd, stdin=stdin)

    return _render


# ---------------------------------------------------------------------------------------------
# Cases: examples/<name>/ and tests/fixtures/render/<case>/


def arg_lines(path: pathlib.Path) -> list[str]:
    """One argument per line; blank lines and # comments ignored (as tests/golden.rs does)."""
    if not path.is_file():
        return []
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


@dataclasses.dataclass(frozen=True)
class Case:
    """A fixture case, rendered like tests/golden.rs does: from inside the case directory,
    ``render ARGS input PATHS``."""

    name: str
    dir: pathlib.Path

    @property
    def args(self) -> list[str]:
        return arg_lines(self.dir / "args")

    @property
    def paths(self) -> list[str]:
        paths = ["input"] if (self.dir / "input").exists() else []
        return paths + arg_lines(self.dir / "paths")

    @property
    def success(self) -> bool:
        return (self.dir / "expected.yaml").is_file()

    @property
    def expected_stderr(self) -> str:
        path = self.dir / "expected.stderr"
        return path.read_text() if path.is_file() else ""

    def render(self, binary, *extra_args):
        return run_binary(binary, self.paths, *self.args, *extra_args, cwd=self.dir)


def fixture_cases() -> list[Case]:
    if not FIXTURES.is_dir():
        return []
    return [Case(p.name, p) for p in sorted(FIXTURES.iterdir()) if p.is_dir()]


def success_cases() -> list[Case]:
    return [c for c in fixture_cases() if c.success]


def error_cases() -> list[Case]:
    return [c for c in fixture_cases() if not c.success and (c.dir / "expected.stderr").is_file()]


def example_dirs() -> list[pathlib.Path]:
    if not EXAMPLES.is_dir():
        return []
    return [p for p in sorted(EXAMPLES.iterdir()) if p.is_dir()]


def example_case(path: pathlib.Path) -> Case:
    """An example renders as ``render [ARGS] .`` from inside its directory (optional args)."""
    return ExampleCase(path.name, path)


class ExampleCase(Case):
    @property
    def paths(self) -> list[str]:
        return ["."]


def params_or_skip(items, ids, what: str):
    """pytest params, or one skipped param that says why when there is nothing to test yet."""
    if items:
        return [pytest.param(item, id=i) for item, i in zip(items, ids)]
    return [pytest.param(None, id="none", marks=pytest.mark.skip(reason=f"no {what} yet"))]


# ---------------------------------------------------------------------------------------------
# YAML as Kubernetes reads it


class KubeLoader(yaml.SafeLoader):
    """PyYAML's safe loader (YAML 1.1 typing: yes/no/on/off are booleans, as in sigs.k8s.io/yaml)
    minus timestamps, which the Kubernetes decoder keeps as strings."""


KubeLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in copy.deepcopy(yaml.SafeLoader.yaml_implicit_resolvers).items()
}


@dataclasses.dataclass
class Doc:
    obj: object
    path: pathlib.Path
    first_line: int  # 1-based, inclusive
    last_line: int


def load_docs(text: str, path: pathlib.Path = pathlib.Path("<stdin>")) -> list[Doc]:
    """Every non-empty document of a YAML stream with its line range; ``kind: *List`` objects
    are expanded into their items (which inherit the List's line range)."""
    loader = KubeLoader(text)
    docs = []
    try:
        while loader.check_node():
            node = loader.get_node()
            obj = loader.construct_document(node)
            if obj is None:
                continue
            first, last = node.start_mark.line + 1, node.end_mark.line + 1
            docs.extend(Doc(o, path, first, last) for o in expand_lists(obj))
    finally:
        loader.dispose()
    return docs


def expand_lists(obj) -> Iterator[object]:
    if (
        isinstance(obj, dict)
        and isinstance(obj.get("kind"), str)
        and obj["kind"].endswith("List")
        and isinstance(obj.get("items"), list)
    ):
        for item in obj["items"]:
            yield from expand_lists(item)
    else:
        yield obj


def load_file(path: pathlib.Path) -> list[Doc]:
    return load_docs(path.read_text(encoding="utf-8"), path)


def yaml_files(root: pathlib.Path) -> list[pathlib.Path]:
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name.endswith(YAML_SUFFIXES))


def is_keptn(obj) -> bool:
    if not (isinstance(obj, dict) and isinstance(obj.get("apiVersion"), str)):
        return False
    group = obj["apiVersion"].split("/")[0]
    return group == KEPTN_GROUP or (group == METRICS_GROUP and obj.get("kind") in METRICS_KINDS)


def describe(obj) -> str:
    if not isinstance(obj, dict):
        return repr(obj)[:60]
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    name = meta.get("name", "?")
    if meta.get("namespace"):
        name = f"{meta['namespace']}/{name}"
    return f"{obj.get('kind', '?')}/{name}"


# ---------------------------------------------------------------------------------------------
# Keptn CRDs -> strict JSON Schema (reference: shared/reference/kustomize-krm-validation.md §5.2)


def strict_schema(schema):
    """openAPIV3Schema -> JSON Schema (draft 4) that rejects unknown fields the way the API
    server's strict field validation does: every object schema with ``properties`` and neither
    ``additionalProperties`` nor ``x-kubernetes-preserve-unknown-fields`` gets
    ``additionalProperties: false``; int-or-string and nullable are translated."""
    if isinstance(schema, list):
        return [strict_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    s = {k: strict_schema(v) for k, v in schema.items()}
    if s.pop("x-kubernetes-int-or-string", False):
        s.pop("type", None)
        s.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if s.pop("nullable", False) and "type" in s:
        s["type"] = [s["type"], "null"]
    if s.pop("x-kubernetes-preserve-unknown-fields", False):
        s.pop("additionalProperties", None)
    elif "properties" in s and "additionalProperties" not in s:
        s["additionalProperties"] = False
    return s


def keptn_crd_schemas(shared: pathlib.Path = SHARED) -> dict[tuple[str, str], dict]:
    """{(apiVersion, kind): strict schema} for every served version of every Keptn CRD."""
    schemas = {}
    paths = sorted((shared / "crds" / "keptn").glob("*.yaml")) + sorted(VENDORED_CRDS.glob("*.yaml"))
    for path in paths:
        for crd in yaml.safe_load_all(path.read_text()):
            if not isinstance(crd, dict) or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                if version.get("served", True):
                    key = (f"{group}/{version['name']}", kind)
                    schemas[key] = strict_schema(version["schema"]["openAPIV3Schema"])
    return schemas


def json_path(path) -> str:
    """deque(['spec', 'workloads', 0, 'name']) -> 'spec.workloads[0].name'."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def crd_errors(obj, schemas) -> list[tuple[str, str]]:
    """[(field path, message)] of a Keptn object against its CRD (empty = valid).

    Raises NoCRD when shared/crds/keptn/ has no CRD for the kind at all."""
    import jsonschema
    import kubernetes_validate

    key = (obj.get("apiVersion"), obj.get("kind"))
    if not any(k == obj.get("kind") for _, k in schemas):
        raise NoCRD(f"no CRD for kind {obj.get('kind')} in shared/crds/keptn/")
    if key not in schemas:
        served = sorted(v for v, k in schemas if k == obj.get("kind"))
        return [("apiVersion", f"no served CRD version {key[0]} for kind {key[1]} (served: {served})")]
    validator = jsonschema.Draft4Validator(schemas[key])
    errors = [(json_path(e.absolute_path), e.message) for e in validator.iter_errors(obj)]
    # The CRD schema says only `metadata: {type: object}`; the API server still decodes it
    # strictly as ObjectMeta. Check it with kubernetes-validate's strict ObjectMeta.
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        probe = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}
        try:
            kubernetes_validate.validate(probe, K8S_VERSIONS[0], strict=True)
        except kubernetes_validate.ValidationError as e:
            errors.append((json_path(e.absolute_path), e.message))
        # Custom resource names are DNS-1123 subdomains, namespaces DNS-1123 labels.
        name, namespace = meta.get("name"), meta.get("namespace")
        if not isinstance(name, str) or len(name) > 253 or not DNS_SUBDOMAIN.match(name):
            errors.append(("metadata.name", f"{name!r} is not a DNS-1123 subdomain"))
        if namespace is not None and (
            not isinstance(namespace, str) or len(namespace) > 63 or not DNS_LABEL.match(namespace)
        ):
            errors.append(("metadata.namespace", f"{namespace!r} is not a DNS-1123 label"))
    return sorted(errors)


class NoCRD(Exception):
    """The kind has no CRD in shared/crds/keptn/ at all (e.g. KeptnEvaluationDefinition)."""


DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


# Kubernetes versions whose (strict) schemas the generated objects must satisfy, see
# test_kubernetes_validate.py for why these two.
K8S_VERSIONS = ("1.33.0", "1.37.0")


# ---------------------------------------------------------------------------------------------
# Diagnostics

DIAG_RE = re.compile(
    r"^(?P<path>[^\n]+?):(?P<line>\d+):(?P<col>\d+): (?P<severity>error|warning)\[(?P<code>KLT\d+)\]: "
    r"(?P<message>.*?)(?: \[(?P<subject>[^\]]*)\])?$",
    re.MULTILINE,
)


def diagnostics(stderr: str) -> list[dict]:
    return [m.groupdict() for m in DIAG_RE.finditer(stderr)]

