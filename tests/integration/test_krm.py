"""`klt-render krm` inside kustomize: KRM function, legacy exec plugin, name references.

- Golden ResourceLists (tests/fixtures/krm/resourcelist/<case>/): ``in.yaml`` on stdin of
  ``klt-render krm``; ``out.yaml`` is the expected stdout (empty: nothing on stdout) and
  ``stderr.txt`` the expected stderr. The exit status must be 2 exactly when stdout is empty or
  its ``results`` hold an error. ``KLT_BLESS=1`` rewrites out.yaml and stderr.txt.
- Real ``kubectl kustomize --enable-alpha-plugins`` (kustomize v5.5 inside kubectl) over the
  trees in tests/fixtures/krm/kustomize/, copied to a temp directory together with
  deploy/kustomize/keptn-name-references.yaml:
  the legacy exec plugin (deploy/kustomize/plugin/ installed under a temp XDG_CONFIG_HOME),
  the container KRM function through the ``docker`` stand-in in tests/fixtures/krm/docker/
  (runs the image ``klt-render:test`` with buildah when it exists, else the host binary),
  a base with overlays (which patches rename which Jobs), generator hash suffixes in both
  orders (klt-render inside the build; ``kubectl kustomize`` first, then ``klt-render render
  -``), and every field of the name-reference configuration.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess

import pytest
import yaml

from conftest import REPO, KubeLoader, child_env, load_docs

KRM = REPO / "tests" / "fixtures" / "krm"
CASES = KRM / "resourcelist"
TREES = KRM / "kustomize"
DOCKER_STAND_IN = KRM / "docker"
PLUGIN_HOME = REPO / "deploy" / "kustomize" / "plugin"
PLUGIN = PLUGIN_HOME / "klt-render.dev" / "v1alpha1" / "kltrender" / "KltRender"
NAME_REFERENCES = REPO / "deploy" / "kustomize" / "keptn-name-references.yaml"
IMAGE = "klt-render:test"
BLESS = os.environ.get("KLT_BLESS") == "1"
KEPTN = "lifecycle.keptn.sh"


# ---------------------------------------------------------------------------------------------
# helpers


def run_krm(binary, stdin: bytes, *args):
    r = subprocess.run(
        [str(binary), "krm", *args],
        input=stdin,
        capture_output=True,
        env=child_env(),
        timeout=120,
        check=False,
    )
    return r.returncode, r.stdout.decode("utf-8"), r.stderr.decode("utf-8")


def objects(text: str) -> list[dict]:
    return [d.obj for d in load_docs(text)]


def ident(obj) -> tuple[str, str, str]:
    meta = obj.get("metadata") or {}
    return obj["kind"], meta.get("namespace", ""), meta["name"]


def by_ident(objs) -> dict:
    out = {}
    for o in objs:
        assert ident(o) not in out, f"duplicate {ident(o)}"
        out[ident(o)] = o
    return out


def jobs(objs) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == "Job"}


def is_keptn(obj) -> bool:
    return str(obj.get("apiVersion", "")).split("/")[0] == KEPTN


@pytest.fixture
def tree(tmp_path):
    """Copy of tests/fixtures/krm/kustomize/ with the name-reference configuration dropped in
    wherever a kustomization lists it (kustomize reads no files outside a kustomization)."""
    root = tmp_path / "trees"
    shutil.copytree(TREES, root)
    for k in root.rglob("kustomization.yaml"):
        if "keptn-name-references.yaml" in k.read_text():
            shutil.copy(NAME_REFERENCES, k.parent / NAME_REFERENCES.name)
    return root


@pytest.fixture
def kustomize(binary, tmp_path):
    """``kustomize(dir) -> (exit, stdout, stderr)``: ``kubectl kustomize --enable-alpha-plugins``
    with the legacy plugin installed in a temp XDG_CONFIG_HOME, the docker stand-in and
    klt-render on PATH."""
    xdg = tmp_path / "xdg"
    shutil.copytree(PLUGIN_HOME, xdg / "kustomize" / "plugin")
    log = tmp_path / "docker.log"

    def _kustomize(directory, *flags, alpha=True):
        env = child_env(
            {
                "XDG_CONFIG_HOME": str(xdg),
                "PATH": os.pathsep.join(
                    [str(DOCKER_STAND_IN), str(pathlib.Path(binary).parent), os.environ["PATH"]]
                ),
                "KRM_HOST_BINARY": str(binary),
                "KRM_DOCKER_LOG": str(log),
            }
        )
        env.pop("KUSTOMIZE_PLUGIN_HOME", None)  # it would win over XDG_CONFIG_HOME
        cmd = ["kubectl", "kustomize", *(["--enable-alpha-plugins"] if alpha else []), *flags, str(directory)]
        r = subprocess.run(cmd, capture_output=True, env=env, timeout=300, check=False)
        return r.returncode, r.stdout.decode("utf-8"), r.stderr.decode("utf-8")

    _kustomize.docker_log = log
    return _kustomize


def build_ok(kustomize, directory) -> list[dict]:
    code, out, err = kustomize(directory)
    assert code == 0, f"kubectl kustomize {directory} failed:\n{err}"
    return objects(out)


def render_stdin(binary, text: str, *args, ok=True) -> tuple[list[dict], str]:
    r = subprocess.run(
        [str(binary), "render", *args, "-"],
        input=text.encode(),
        capture_output=True,
        env=child_env(),
        timeout=120,
        check=False,
    )
    assert (r.returncode == 0) == ok, r.stderr.decode()
    return objects(r.stdout.decode()), r.stderr.decode()


def refs(job) -> dict[str, set[str]]:
    """Names a Job's pod spec refers to: {"Secret": {...}, "ConfigMap": {...}}."""
    spec = job["spec"]["template"]["spec"]
    out = {"Secret": set(), "ConfigMap": set()}
    for c in spec.get("containers", []) + spec.get("initContainers", []):
        for e in c.get("env", []):
            vf = e.get("valueFrom") or {}
            if "secretKeyRef" in vf:
                out["Secret"].add(vf["secretKeyRef"]["name"])
            if "configMapKeyRef" in vf:
                out["ConfigMap"].add(vf["configMapKeyRef"]["name"])
        for e in c.get("envFrom", []):
            if "secretRef" in e:
                out["Secret"].add(e["secretRef"]["name"])
            if "configMapRef" in e:
                out["ConfigMap"].add(e["configMapRef"]["name"])
    for v in spec.get("volumes", []):
        if "secret" in v:
            out["Secret"].add(v["secret"]["secretName"])
        if "configMap" in v:
            out["ConfigMap"].add(v["configMap"]["name"])
    for s in spec.get("imagePullSecrets", []):
        out["Secret"].add(s["name"])
    return out


def assert_refs_resolve(objs):
    """Every Secret/ConfigMap a Job refers to is in the output, in the Job's namespace."""
    present = {(o["kind"], (o["metadata"].get("namespace") or "")): set() for o in objs}
    for o in objs:
        present[(o["kind"], o["metadata"].get("namespace") or "")].add(o["metadata"]["name"])
    for name, job in jobs(objs).items():
        ns = job["metadata"].get("namespace") or ""
        for kind, names in refs(job).items():
            missing = names - present.get((kind, ns), set())
            assert not missing, f"Job {name} refers to {kind} {sorted(missing)}, not in the output"


# ---------------------------------------------------------------------------------------------
# golden ResourceLists


def golden_cases():
    return sorted(p for p in CASES.iterdir() if p.is_dir()) if CASES.is_dir() else []


@pytest.mark.parametrize("case", golden_cases(), ids=lambda p: p.name)
def test_golden_resource_list(case, binary):
    stdin = (case / "in.yaml").read_bytes()
    code, out, err = run_krm(binary, stdin)
    if BLESS:
        (case / "out.yaml").write_text(out)
        (case / "stderr.txt").write_text(err)
    assert out == (case / "out.yaml").read_text(), f"stdout differs from {case.name}/out.yaml (KLT_BLESS=1 rewrites)"
    assert err == (case / "stderr.txt").read_text(), f"stderr differs from {case.name}/stderr.txt"

    if not out:
        assert code == 2 and err.startswith("klt-render krm: error: "), (code, err)
        return
    rl_out = yaml.load(out, Loader=KubeLoader)
    rl_in = yaml.load(stdin.decode(), Loader=KubeLoader)
    assert rl_out["kind"] == rl_in["kind"] and rl_out["apiVersion"] == rl_in["apiVersion"]
    assert "functionConfig" not in rl_out
    results = rl_out.get("results") or []
    for r in results:
        assert r["severity"] in ("error", "warning") and r["message"], r
        if "field" in r:
            assert "resourceRef" in r, r
    failed = any(r["severity"] == "error" for r in results)
    assert code == (2 if failed else 0), (code, results)
    items_in = rl_in.get("items") or []
    items_out = rl_out["items"]
    if failed:
        assert items_out == items_in, "on errors the input items come back unchanged"
        assert "error" in err
        return
    assert items_out or not items_in or all(
        i["metadata"].get("annotations", {}).get("config.kubernetes.io/local-config") == "true" for i in items_in
    ), "a non-empty input never comes back empty"
    # Everything that is not Keptn comes back (a Secret/ConfigMap a task needs may only have
    # moved to the task's wave or become a hook).
    out_ids = {ident(o): o for o in items_out}
    for item in items_in:
        if is_keptn(item) or item["metadata"].get("annotations", {}).get("config.kubernetes.io/local-config") == "true" and item["kind"] == "KltRender":
            continue
        got = out_ids.get(ident(item))
        assert got is not None, f"{ident(item)} was dropped"
        if got != item:
            assert item["kind"] in ("ConfigMap", "Secret", "ServiceAccount"), ident(item)
            strip = lambda o: {**o, "metadata": {**o["metadata"], "annotations": {k: v for k, v in o["metadata"].get("annotations", {}).items() if not k.startswith("argocd.argoproj.io/")}}}  # noqa: E731
            assert strip(got) == strip(item), f"{ident(item)} changed beyond its Argo CD annotations"


def test_golden_cases_exist():
    names = {p.name for p in golden_cases()}
    for must in ("checkout-example", "passthrough-unchanged", "error-undefined-definition", "empty-list"):
        assert must in names


def test_legacy_config_stream_round_trip(binary, tmp_path):
    """The legacy wire format by hand: config file argument, plain streams both ways."""
    config = tmp_path / "config.yaml"
    config.write_text("apiVersion: klt-render.dev/v1alpha1\nkind: KltRender\nmetadata:\n  name: k\nspec:\n  namespace: jobs\n")
    service = (
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n  annotations:\n"
        "    kustomize.config.k8s.io/id: |\n      kind: Service\n      name: s\n      version: v1\n"
    )
    code_cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: report-code\ndata:\n  code: print(1)\n"
    stdin = "---\n".join([(TREES / "same-level" / "tasks.yaml").read_text(), service, code_cm])
    code, out, err = run_krm(binary, stdin.encode(), "--legacy-config", str(config))
    assert code == 0, err
    assert 'warning[KLT018]: Secret "api-token" is not in the input' in err
    objs = objects(out)
    assert [o["kind"] for o in objs] == ["Job", "Service", "ConfigMap"]
    assert objs[1] == objects(service)[0], "returned as it came, kustomize's id annotation included"
    assert objs[2]["metadata"]["annotations"] == {"argocd.argoproj.io/sync-wave": "-2"}
    # argsOneLiner would add arguments: refused with a pointer to spec.
    code, out, err = run_krm(binary, stdin.encode(), "--legacy-config", str(config), "--", "--mode", "hooks")
    assert code == 2 and out == "" and "argsOneLiner" in err


# ---------------------------------------------------------------------------------------------
# the legacy exec plugin under kubectl kustomize


def test_plugin_wrapper_layout():
    assert PLUGIN.is_file() and os.access(PLUGIN, os.X_OK), f"{PLUGIN} must be an executable file"
    text = PLUGIN.read_text()
    assert text.startswith("#!/bin/sh\n")
    assert 'exec klt-render krm --legacy-config "$config" -- "$@"' in text


def test_legacy_plugin_transformer(kustomize, tree, binary):
    objs = build_ok(kustomize, tree / "overlays" / "legacy")
    kinds = sorted({o["kind"] for o in objs})
    assert not [o for o in objs if is_keptn(o)], "Keptn resources are consumed"
    assert kinds == ["ConfigMap", "Deployment", "Job", "Secret", "Service"], kinds
    assert sorted(jobs(objs)) == sorted(
        n for n in jobs(objs) if n.startswith(("pre-db-migrate-", "post-notify-", "post-smoke-test-"))
    )
    assert len(jobs(objs)) == 3
    assert_refs_resolve(objs)
    # No kustomize bookkeeping leaks into the output.
    for o in objs:
        for k in (o["metadata"].get("annotations") or {}):
            assert not k.startswith(("config.kubernetes.io/", "internal.config.kubernetes.io/", "kustomize.config.k8s.io/")), (ident(o), k)


def test_legacy_plugin_needs_alpha_plugins(kustomize, tree):
    code, out, err = kustomize(tree / "overlays" / "legacy", alpha=False)
    assert code != 0 and out == ""
    assert "external plugins disabled" in err


def test_legacy_plugin_error_reaches_kubectl_stderr(kustomize, tree):
    code, out, err = kustomize(tree / "overlays" / "broken")
    assert code != 0 and out == ""
    assert 'error[KLT020]: task definition "notfy" not found' in err, err
    assert 'did you mean "notify"?' in err
    assert "exit status 2" in err


def test_origin_annotations_name_the_file(kustomize, tree):
    # Without buildMetadata the message names the object only, and a note says how to get
    # file names; with it, kustomize's origin annotation gives the file the object came from.
    code, out, err = kustomize(tree / "overlays" / "broken")
    assert code != 0 and out == ""
    assert "(from " not in err, err
    assert "add `buildMetadata: [originAnnotations]` to the kustomization" in err, err
    k = tree / "overlays" / "broken" / "kustomization.yaml"
    k.write_text(k.read_text() + "buildMetadata: [originAnnotations]\n")
    code, out, err = kustomize(k.parent)
    assert code != 0 and out == ""
    line = next(l for l in err.splitlines() if "error[KLT020]" in l)
    assert line.endswith("(from ../../base/app.yaml)"), line
    assert "buildMetadata" not in err, err


def test_legacy_plugin_refuses_args_one_liner(kustomize, tree):
    config = tree / "overlays" / "legacy" / "klt-render.yaml"
    config.write_text(config.read_text() + "argsOneLiner: --mode hooks\n")
    code, out, err = kustomize(config.parent)
    assert code != 0 and out == ""
    assert "remove argsOneLiner/argsFromFile" in err, err


def test_as_generator_adds_nothing(kustomize, tree):
    objs = build_ok(kustomize, tree / "as-generator")
    assert sorted(o["kind"] for o in objs) == ["KeptnTask", "KeptnTaskDefinition"]


# ---------------------------------------------------------------------------------------------
# the KRM container function, through the docker stand-in


def image_command() -> list[str] | None:
    """Entrypoint + Cmd of klt-render:test in local container storage, or None."""
    if not shutil.which("buildah"):
        return None
    r = subprocess.run(["buildah", "inspect", "--type", "image", IMAGE], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        return None
    config = json.loads(r.stdout)["OCIv1"].get("config") or {}
    return (config.get("Entrypoint") or []) + (config.get("Cmd") or [])


def test_container_function(kustomize, tree):
    command = image_command()
    if command is not None:
        assert command[-1:] == ["krm"], (
            f"{IMAGE} runs {command} under `docker run {IMAGE}`; kustomize passes no arguments to "
            "a container function, so the image needs CMD [\"krm\"] to act as one"
        )
    objs = build_ok(kustomize, tree / "overlays" / "container")
    calls = kustomize.docker_log.read_text().splitlines()
    assert len(calls) == 1 and calls[0].split()[:2] == ["image" if command else "host", "run"], calls
    assert calls[0].endswith(" " + IMAGE)
    legacy = build_ok(kustomize, tree / "overlays" / "legacy")
    assert by_ident(objs) == by_ident(legacy), "container function and legacy plugin agree"


def test_container_function_error(kustomize, tree):
    overlay = tree / "overlays" / "broken"
    shutil.copy(tree / "overlays" / "container" / "klt-render.yaml", overlay / "klt-render.yaml")
    code, out, err = kustomize(overlay)
    assert code != 0 and out == ""
    assert 'error[KLT020]: task definition "notfy" not found' in err, err
    assert "couldn't execute function: exit status 2" in err


def test_kubectl_skips_exec_functions(kustomize, tree):
    """kubectl's kustomize has no --enable-exec: an exec function is skipped without a word."""
    code, out, err = kustomize(tree / "exec-function")
    assert code == 0, err
    assert sorted(o["kind"] for o in objects(out)) == ["KeptnTask", "KeptnTaskDefinition"]
    code, _, err = kustomize(tree / "exec-function", "--enable-exec")
    assert code != 0 and "unknown flag: --enable-exec" in err


# ---------------------------------------------------------------------------------------------
# base and overlays: which changes give Jobs new names


def test_overlay_patches_and_job_names(kustomize, tree):
    def names(overlay):
        objs = build_ok(kustomize, tree / "overlays" / overlay)
        assert_refs_resolve(objs)
        return {n.rsplit("-", 1)[0]: n for n in jobs(objs)}

    plain = names("legacy")
    assert sorted(plain) == ["post-notify", "post-smoke-test", "pre-db-migrate"]
    assert names("port-patch") == plain, "a Service port is nothing a task sees"
    params = names("params-patch")
    assert params["post-smoke-test"] != plain["post-smoke-test"], "changed parameters run the task again"
    assert {k: v for k, v in params.items() if k != "post-smoke-test"} == {
        k: v for k, v in plain.items() if k != "post-smoke-test"
    }
    secret = names("secret-patch")
    assert secret["post-notify"] != plain["post-notify"], "new Secret name, new Job name"
    assert {k: v for k, v in secret.items() if k != "post-notify"} == {
        k: v for k, v in plain.items() if k != "post-notify"
    }


# ---------------------------------------------------------------------------------------------
# generator hash suffixes, both orders


def test_generated_names_transformer_and_render_orders_agree(kustomize, tree, binary):
    inside = build_ok(kustomize, tree / "overlays" / "legacy")
    code, built, err = kustomize(tree / "base")
    assert code == 0, err
    after, _ = render_stdin(binary, built)
    assert_refs_resolve(inside)
    assert_refs_resolve(after)
    secret = next(o for o in inside if o["kind"] == "Secret")["metadata"]["name"]
    code_cm = next(o["metadata"]["name"] for o in inside if o["metadata"]["name"].startswith("db-migrate-code-"))
    assert secret.startswith("slack-webhook-") and len(secret) == len("slack-webhook-") + 10
    notify = next(j for n, j in jobs(inside).items() if n.startswith("post-notify-"))
    migrate = next(j for n, j in jobs(inside).items() if n.startswith("pre-db-migrate-"))
    assert refs(notify)["Secret"] == {secret}
    assert code_cm in refs(migrate)["ConfigMap"]
    # The same Jobs, names included, whichever runs first.
    assert jobs(inside) == jobs(after)
    assert by_ident(inside) == by_ident(after)


def test_generated_names_same_kustomization(kustomize, tree, binary):
    inside = build_ok(kustomize, tree / "same-level")
    assert_refs_resolve(inside)
    (job,) = jobs(inside).values()
    secret = next(o for o in inside if o["kind"] == "Secret")["metadata"]["name"]
    cm = next(o for o in inside if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("report-code-"))
    assert refs(job) == {"Secret": {secret}, "ConfigMap": {cm["metadata"]["name"]}}
    # kustomize first (with the name references), then render: the same Job.
    k = tree / "same-level" / "kustomization.yaml"
    k.write_text(k.read_text().replace("transformers:\n- klt-render.yaml\n", "configurations:\n- keptn-name-references.yaml\n"))
    shutil.copy(NAME_REFERENCES, k.parent)
    code, built, err = kustomize(k.parent)
    assert code == 0, err
    after, _ = render_stdin(binary, built)
    assert jobs(after) == jobs(inside)


def test_without_name_references_the_render_order_breaks(kustomize, tree, binary):
    """Negative control: without keptn-name-references.yaml kustomize renames the generated
    objects but not the definitions' references to them: the task code ConfigMap is "missing"
    (an error) and the Secret reference dangles (a warning, and a Job pointing at nothing)."""
    k = tree / "base" / "kustomization.yaml"
    k.write_text(k.read_text().replace("configurations:\n- keptn-name-references.yaml\n", ""))
    code, built, err = kustomize(tree / "base")
    assert code == 0, err
    _, stderr = render_stdin(binary, built, ok=False)
    assert 'error[KLT016]: ConfigMap "db-migrate-code" is not in the input' in stderr
    assert 'warning[KLT018]: Secret "slack-webhook" is not in the input' in stderr
    # With the code inline, the render succeeds, but the Job names a Secret that does not exist.
    built = built.replace("configMapRef:\n      name: db-migrate-code\n", "inline:\n      code: print(1)\n")
    after, _ = render_stdin(binary, built)
    notify = next(j for n, j in jobs(after).items() if n.startswith("post-notify-"))
    assert refs(notify)["Secret"] == {"slack-webhook"}
    with pytest.raises(AssertionError, match="not in the output"):
        assert_refs_resolve(after)


# ---------------------------------------------------------------------------------------------
# the name-reference configuration


def walk(node, path: list[str]):
    """Values at a kustomize fieldSpec path (lists are walked through)."""
    if isinstance(node, list):
        for n in node:
            yield from walk(n, path)
        return
    if not path:
        yield node
        return
    if isinstance(node, dict) and path[0] in node:
        yield from walk(node[path[0]], path[1:])


def test_name_reference_configuration_covers_every_field(kustomize, tree):
    """Built with namePrefix and generators, every field the configuration lists holds the
    final name of an object of the referenced kind; the fixture exercises every field."""
    config = yaml.safe_load(NAME_REFERENCES.read_text())
    objs = build_ok(kustomize, tree / "names")
    names = {}
    for o in objs:
        names.setdefault(o["kind"], set()).add(o["metadata"]["name"])
    for ref in config["nameReference"]:
        for spec in ref["fieldSpecs"]:
            values = [
                v
                for o in objs
                if o["kind"] == spec["kind"] and o["apiVersion"].split("/")[0] == spec["group"]
                for v in walk(o, spec["path"].split("/"))
            ]
            assert values, f"names/ does not exercise {spec['kind']} {spec['path']}"
            for v in (x for v in values for x in (v if isinstance(v, list) else [v])):
                assert v in names.get(ref["kind"], set()), f"{spec['kind']} {spec['path']} = {v!r}: no {ref['kind']} of that name"


def test_transformer_follows_renames_like_the_configuration(kustomize, tree, binary):
    """namePrefix runs before klt-render in the same kustomization: references are resolved
    through kustomize's previousNames the way the configuration resolves them after the build."""
    code, built, err = kustomize(tree / "names")
    assert code == 0, err
    after, _ = render_stdin(binary, built, "--namespace", "jobs")
    k = tree / "names" / "kustomization.yaml"
    k.write_text(k.read_text() + "transformers:\n- klt-render.yaml\n")
    inside = build_ok(kustomize, tree / "names")
    assert sorted(jobs(inside)) == sorted(jobs(after))
    assert len(jobs(inside)) >= 3
    assert jobs(inside) == jobs(after)
    assert_refs_resolve(inside)
