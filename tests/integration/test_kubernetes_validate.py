"""Rendered output must be valid Kubernetes: kubernetes-validate in strict mode (unknown fields are
errors), plus the API-server rules that JSON schemas cannot express (names, label values,
restartPolicy, ConfigMap keys and size, references between the generated objects).

Cases: every ``examples/<name>/`` (rendered as is, with ``--mode hooks`` and with
``--profile klt-0.9``) and every ``tests/fixtures/render/<case>/`` that has an ``expected.yaml``.

Kubernetes versions: each object is validated against two bundled schema sets,
``K8S_VERSIONS`` in conftest.py:
* 1.33 -- the oldest minor we target. A strict check against an old schema catches fields that
  only newer clusters know (Job ``managedBy``/``successPolicy`` arrived in 1.30-1.33, pod-level
  ``resources`` in 1.34, ...), which an older API server would reject under strict field
  validation. 1.33 is also the floor of the Rust ``k8s-openapi`` crate (feature ``earliest``).
* 1.37 -- the newest schema kubernetes-validate 1.37.0 bundles, to catch anything removed or
  re-typed since.
Kinds without a bundled schema (Keptn CRDs from ``--keep-keptn``, Argo Rollouts, ...) only warn,
as kubernetes-validate itself does.
"""

from __future__ import annotations

import re
import warnings

import kubernetes_validate
import pytest

from conftest import (
    DNS_LABEL,
    DNS_SUBDOMAIN,
    K8S_VERSIONS,
    describe,
    example_case,
    example_dirs,
    load_docs,
    params_or_skip,
    success_cases,
)

EXAMPLE_VARIANTS = {"": [], "-hooks": ["--mode", "hooks"], "-klt-0.9": ["--profile", "klt-0.9"]}


def _cases():
    items, ids = [], []
    for path in example_dirs():
        for suffix, extra in EXAMPLE_VARIANTS.items():
            items.append((example_case(path), extra))
            ids.append(f"example-{path.name}{suffix}")
    for case in success_cases():
        items.append((case, []))
        ids.append(f"fixture-{case.name}")
    return params_or_skip(items, ids, "examples/*/ or success fixtures")


CASES = _cases()


@pytest.fixture(scope="module")
def rendered(binary):
    """Render each case once per module: {id(case, args): docs}."""
    cache = {}

    def get(case, extra):
        key = (case.dir, tuple(extra))
        if key not in cache:
            code, out, err = case.render(binary, *extra)
            cmd = f"(cd {case.dir} && klt-render render {' '.join(case.args + extra + case.paths)})"
            assert code == 0, f"{cmd} exited {code}\n{err}"
            assert out.strip(), f"{cmd} exited 0 but printed nothing on stdout\n{err}"
            docs = [d.obj for d in load_docs(out)]
            assert docs, f"{cmd}: stdout holds no YAML document"
            bad = [d for d in docs if not isinstance(d, dict) or "kind" not in d]
            assert not bad, f"{cmd}: stdout has documents that are not objects: {bad[:3]}"
            cache[key] = docs
        return cache[key]

    return get


@pytest.mark.parametrize("case_args", CASES)
def test_kubernetes_validate_strict(case_args, rendered):
    case, extra = case_args
    docs = rendered(case, extra)
    failures, unknown = [], []
    for obj in docs:
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.SchemaNotFoundError:
                unknown.append(f"{obj.get('apiVersion')} {obj.get('kind')}")
                break
            except kubernetes_validate.ValidationError as e:
                path = ".".join(map(str, e.absolute_path)) or "<root>"
                failures.append(f"{describe(obj)} against {version}: {path}: {e.message}")
    for kind in sorted(set(unknown)):
        if kind.split()[-1] in ("Job", "ConfigMap"):
            failures.append(f"no schema for {kind}: generated objects must be core kinds")
        else:
            warnings.warn(f"{case.name}: no Kubernetes schema for {kind} (not validated)")
    assert not failures, "kubernetes-validate --strict rejected:\n" + "\n".join(failures)


# ---- API-server rules kubernetes-validate does not check (reference §5.1, §6) ----------------

LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
CONFIGMAP_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


def _check_name(problems, what, name, label=False):
    if not isinstance(name, str) or not name:
        problems.append(f"{what}: missing name")
        return
    limit, rx = (63, DNS_LABEL) if label else (253, DNS_SUBDOMAIN)
    if len(name) > limit or not rx.match(name):
        problems.append(f"{what}: {name!r} is not a DNS-1123 {'label' if label else 'subdomain'} "
                        f"(<= {limit} chars)")


def _check_key(problems, what, key):
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not DNS_SUBDOMAIN.match(prefix)):
        problems.append(f"{what}: key {key!r} has an invalid prefix")
    if len(name) > 63 or not QUALIFIED_NAME.match(name):
        problems.append(f"{what}: key {key!r} is not a qualified name")


def _check_meta(problems, what, meta):
    for key, value in (meta.get("labels") or {}).items():
        _check_key(problems, f"{what} label", key)
        if not isinstance(value, str) or len(value) > 63 or not LABEL_VALUE.match(value):
            problems.append(f"{what}: label {key}={value!r} is not a valid label value")
    annotations = meta.get("annotations") or {}
    for key in annotations:
        _check_key(problems, f"{what} annotation", key)
    if sum(len(k) + len(str(v)) for k, v in annotations.items()) > 256 * 1024:
        problems.append(f"{what}: annotations exceed 256 KiB")


def api_server_problems(docs) -> list[str]:
    problems = []
    configmaps = {
        ((d.get("metadata") or {}).get("namespace"), (d.get("metadata") or {}).get("name"))
        for d in docs
        if d.get("kind") == "ConfigMap"
    }
    for obj in docs:
        kind, meta = obj.get("kind"), obj.get("metadata") or {}
        what = describe(obj)
        if kind not in ("Job", "ConfigMap"):
            continue
        if meta.get("namespace") is not None:
            _check_name(problems, f"{what} namespace", meta["namespace"], label=True)
        _check_meta(problems, what, meta)
        if kind == "ConfigMap":
            _check_name(problems, what, meta.get("name"))
            data, binary = obj.get("data") or {}, obj.get("binaryData") or {}
            for key in [*data, *binary]:
                if len(key) > 253 or not CONFIGMAP_KEY.match(key) or key in (".", "..") \
                        or key.startswith(".."):
                    problems.append(f"{what}: invalid data key {key!r}")
            size = sum(len(v.encode()) for v in data.values() if isinstance(v, str))
            if size > 1024 * 1024:
                problems.append(f"{what}: data is {size} bytes, over the 1 MiB limit")
            continue
        # Job: the API server copies the name into the pod labels job-name and
        # batch.kubernetes.io/job-name, which are capped at 63 characters.
        _check_name(problems, what, meta.get("name"), label=True)
        template = (obj.get("spec") or {}).get("template") or {}
        _check_meta(problems, f"{what} pod template", template.get("metadata") or {})
        pod = template.get("spec") or {}
        if pod.get("restartPolicy") not in ("Never", "OnFailure"):
            problems.append(f"{what}: restartPolicy {pod.get('restartPolicy')!r} "
                            "(a Job needs Never or OnFailure)")
        containers = [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]
        if not pod.get("containers"):
            problems.append(f"{what}: no containers")
        names = [c.get("name") for c in containers]
        if len(set(names)) != len(names):
            problems.append(f"{what}: duplicate container names {names}")
        for c in containers:
            _check_name(problems, f"{what} container", c.get("name"), label=True)
            if not c.get("image"):
                problems.append(f"{what}: container {c.get('name')!r} has no image")
        volumes = {v.get("name") for v in pod.get("volumes") or []}
        for c in containers:
            for mount in c.get("volumeMounts") or []:
                if mount.get("name") not in volumes:
                    problems.append(f"{what}: volumeMount {mount.get('name')!r} has no volume")
        for v in pod.get("volumes") or []:
            ref = (v.get("configMap") or {}).get("name")
            # Generated code ConfigMaps must be generated alongside the Job.
            if ref and ref.startswith("keptnfn-") and (meta.get("namespace"), ref) not in configmaps:
                problems.append(f"{what}: volume {v.get('name')!r} refers to ConfigMap {ref!r}, "
                                "which is not in the output (same namespace)")
    return problems


@pytest.mark.parametrize("case_args", CASES)
def test_api_server_rules(case_args, rendered):
    case, extra = case_args
    problems = api_server_problems(rendered(case, extra))
    assert not problems, "the API server would reject:\n" + "\n".join(problems)
