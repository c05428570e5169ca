"""Keptn documents against the real Keptn CRDs (shared/crds/keptn/), made strict like the API
server's strict field validation (reference kustomize-krm-validation.md §5.2): an object schema
with ``properties`` and neither ``additionalProperties`` nor
``x-kubernetes-preserve-unknown-fields`` rejects unknown keys. ``metadata`` (only ``type: object``
in the CRDs) is checked as strict ObjectMeta with kubernetes-validate's schema.

1. Every ``lifecycle.keptn.sh`` document in examples/, in the inputs of the success fixtures
   and in shared/examples/keptn-upstream/ must be valid: what we document and test as good
   input must be accepted by a real cluster.
2. Cross-check: for each error fixture whose expected.stderr reports ``error[KLT004]`` (unknown
   field) or ``error[KLT005]`` (wrong type / missing field), the offending Keptn document must
   be rejected by the CRD schema too, at (or around) the field the diagnostic names -- so
   klt-render's own schema check agrees with the CRD.
"""

from __future__ import annotations

import pathlib

import pytest

from conftest import (
    EXAMPLES,
    NoCRD,
    REPO,
    SHARED,
    crd_errors,
    describe,
    diagnostics,
    error_cases,
    is_keptn,
    keptn_crd_schemas,
    load_file,
    params_or_skip,
    success_cases,
    yaml_files,
)

CROSS_CHECKED = ("KLT004", "KLT005")


@pytest.fixture(scope="module")
def schemas(shared_dir):
    schemas = keptn_crd_schemas(shared_dir)
    kinds = {k for _, k in schemas}
    assert {"KeptnTaskDefinition", "KeptnTask", "KeptnApp", "KeptnAppContext"} <= kinds, kinds
    return schemas


def _rel(path: pathlib.Path) -> str:
    for base, label in ((REPO, ""), (SHARED, "shared/")):
        try:
            return label + str(path.relative_to(base))
        except ValueError:
            pass
    return str(path)


def _documents():
    """(id, path, doc-or-None, parse-error-or-None) for every Keptn document we call valid."""
    roots = [("examples", EXAMPLES)] if EXAMPLES.is_dir() else []
    roots += [(f"fixture-{c.name}", c.dir / "input") for c in success_cases() if (c.dir / "input").exists()]
    upstream = SHARED / "examples" / "keptn-upstream"
    if upstream.is_dir():
        roots.append(("upstream", upstream))
    items, ids = [], []
    for label, root in roots:
        for path in yaml_files(root):
            try:
                docs = load_file(path)
            except Exception as e:  # reported by the test, not at collection
                items.append((path, None, f"cannot parse: {e}"))
                ids.append(_rel(path))
                continue
            for doc in docs:
                if is_keptn(doc.obj):
                    items.append((path, doc, None))
                    ids.append(f"{_rel(path)}:{doc.first_line}:{describe(doc.obj)}")
    return params_or_skip(items, ids, "Keptn documents")


@pytest.mark.parametrize("item", _documents())
def test_keptn_document_matches_crd(item, schemas):
    path, doc, problem = item
    assert problem is None, f"{path}: {problem}"
    try:
        errors = crd_errors(doc.obj, schemas)
    except NoCRD as e:
        pytest.skip(f"{describe(doc.obj)}: {e}")
    assert not errors, f"{path}:{doc.first_line}: {describe(doc.obj)} is rejected by its CRD:\n" + \
        "\n".join(f"  {p or '<root>'}: {m}" for p, m in errors)


def test_upstream_examples_present(shared_dir):
    docs = [d for p in yaml_files(shared_dir / "examples" / "keptn-upstream") for d in load_file(p)]
    assert sum(is_keptn(d.obj) for d in docs) >= 5, "shared/examples/keptn-upstream looks empty"


# ---- cross-check of KLT004/KLT005 with the CRD ---------------------------------------------


def _cross_cases():
    cases = [c for c in error_cases()
             if any(f"error[{code}]" in c.expected_stderr for code in CROSS_CHECKED)]
    return params_or_skip(cases, [c.name for c in cases], f"error fixtures with {'/'.join(CROSS_CHECKED)}")


def _subject(subject: str | None):
    """'KeptnTaskDefinition ns/t, field spec.retries' -> ('KeptnTaskDefinition', 't', 'spec.retries')."""
    kind = name = field = None
    for part in (subject or "").split(", "):
        if part.startswith("field "):
            field = part[len("field "):]
        elif " " in part and kind is None:
            kind, name = part.split(" ", 1)
            name = name.rsplit("/", 1)[-1]
    return kind, name, field


def _related(a: str, b: str) -> bool:
    """Same field, or one contains the other (an unknown key is reported at its parent)."""
    if not a or not b:
        return True
    return a == b or any(x.startswith(y + sep) for x, y in ((a, b), (b, a)) for sep in ".[")


@pytest.mark.parametrize("case", _cross_cases())
def test_klt_schema_errors_agree_with_crd(case, schemas):
    checked, failures = 0, []
    for d in diagnostics(case.expected_stderr):
        if d["severity"] != "error" or d["code"] not in CROSS_CHECKED:
            continue
        kind, name, field = _subject(d["subject"])
        where = f"{d['path']}:{d['line']}:{d['col']} {d['code']} ({d['message']})"
        path = case.dir / d["path"]
        assert path.is_file(), f"{where}: no such input file {path}"
        line = int(d["line"])
        docs = [doc for doc in load_file(path) if doc.first_line <= line <= doc.last_line]
        if kind:
            docs = [doc for doc in docs if isinstance(doc.obj, dict) and doc.obj.get("kind") == kind
                    and (doc.obj.get("metadata") or {}).get("name") == name] or docs
        if not docs:
            failures.append(f"{where}: no document of {path.name} spans line {line}")
            continue
        keptn_docs = [doc for doc in docs if is_keptn(doc.obj)]
        if not keptn_docs:
            continue  # the diagnostic is about a non-Keptn object (e.g. a Deployment)
        checked += 1
        doc = keptn_docs[0]
        try:
            errors = crd_errors(doc.obj, schemas)
        except NoCRD as e:
            failures.append(f"{where}: {e}")
            continue
        if not errors:
            failures.append(f"{where}: klt-render rejects {describe(doc.obj)} but its CRD "
                            "(strict) accepts it")
        elif not any(_related(p, field) for p, _ in errors):
            failures.append(f"{where}: the CRD rejects {describe(doc.obj)} elsewhere than "
                            f"{field}: {errors}")
    if not checked and not failures:
        pytest.skip(f"{case.name}: no {'/'.join(CROSS_CHECKED)} error is about a Keptn document")
    assert not failures, "\n".join(failures)
