"""deploy/argocd/: the kustomize overlay that adds the klt-render sidecar to argocd-repo-server,
and the example Application.

The overlay users apply (deploy/argocd/kustomization.yaml) takes Argo CD's install.yaml from
GitHub, which tests cannot fetch. The tests build a copy of it in a temp dir where that one
remote resource is replaced by deploy/argocd/test-base/ (a local stand-in of the
argocd-repo-server Deployment with the upstream `var-files`/`plugins` volumes and the
`copyutil` init container); everything else (namespace, the ./sidecar component, images) is
the users' file. Built with `kubectl kustomize` (kubectl's built-in kustomize), checked field
by field (argocd-cmp.md §1.3) and with kubernetes-validate in strict mode.

application.yaml is an Argo CD custom resource without a schema here: its fields are checked
by hand against the Application spec and plugin.yaml, and the env/parameters it sets are fed
to `klt-render generate` the way Argo CD would.
"""

from __future__ import annotations

import copy
import json
import os
import pathlib
import re
import shutil
import subprocess

import kubernetes_validate
import pytest
import yaml

from conftest import DNS_LABEL, DNS_SUBDOMAIN, K8S_VERSIONS, REPO, ensure_binary, load_docs

DEPLOY = REPO / "deploy" / "argocd"
UPSTREAM_INSTALL = re.compile(
    r"^https://raw\.githubusercontent\.com/argoproj/argo-cd/v3\.\d+\.\d+/manifests/(ha/)?install\.yaml$"
)
PLACEHOLDER_IMAGE = "ghcr.io/klt-render/klt-render"
SIDECAR = "klt-render"
REPO_SERVER = "argocd-repo-server"
EXPECTED_MOUNTS = {
    "/var/run/argocd": "var-files",
    "/home/argocd/cmp-server/plugins": "plugins",
    "/tmp": "cmp-tmp",
}
EXPECTED_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 999,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def users_overlay() -> dict:
    return yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())


def build(tmp_path: pathlib.Path, overlay: dict) -> list[dict]:
    """`kubectl kustomize` of `overlay` with the remote Argo CD install swapped for test-base/."""
    if shutil.which("kubectl") is None:
        pytest.fail("kubectl not on PATH (its built-in kustomize builds deploy/argocd/)", pytrace=False)
    overlay = copy.deepcopy(overlay)
    # kustomize refuses absolute paths to other kustomizations; relative ones may leave the root.
    rel = os.path.relpath(DEPLOY, tmp_path)
    overlay["resources"] = [
        f"{rel}/test-base" if UPSTREAM_INSTALL.match(r) else f"{rel}/{r}" for r in overlay.get("resources", [])
    ]
    overlay["components"] = [f"{rel}/{c}" for c in overlay.get("components", [])]
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(overlay, sort_keys=False))
    proc = subprocess.run(
        ["kubectl", "kustomize", str(tmp_path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, f"kubectl kustomize failed:\n{proc.stderr}"
    return [d.obj for d in load_docs(proc.stdout)]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> list[dict]:
    return build(tmp_path_factory.mktemp("overlay"), users_overlay())


def base_deployment() -> dict:
    docs = [d.obj for d in load_docs((DEPLOY / "test-base" / "argocd-repo-server.yaml").read_text())]
    return next(d for d in docs if d.get("kind") == "Deployment")


def repo_server(docs: list[dict]) -> dict:
    found = [d for d in docs if d.get("kind") == "Deployment" and d["metadata"]["name"] == REPO_SERVER]
    assert len(found) == 1, [f"{d.get('kind')}/{d['metadata'].get('name')}" for d in docs]
    return found[0]


def containers(deploy: dict) -> dict[str, dict]:
    return {c["name"]: c for c in deploy["spec"]["template"]["spec"]["containers"]}


def mounts(container: dict) -> dict[str, str]:
    return {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}


def volumes(deploy: dict) -> dict[str, dict]:
    return {v["name"]: v for v in deploy["spec"]["template"]["spec"]["volumes"]}


# ---------------------------------------------------------------------------------------------
# The overlay


def test_users_overlay_takes_upstream_install_and_the_sidecar_component():
    overlay = users_overlay()
    assert overlay["kind"] == "Kustomization"
    assert overlay.get("namespace") == "argocd"
    remote = [r for r in overlay.get("resources", []) if UPSTREAM_INSTALL.match(r)]
    assert len(remote) == 1 and overlay["resources"] == remote, overlay.get("resources")
    assert overlay.get("components") == ["sidecar"]
    images = {i["name"]: i for i in overlay.get("images", [])}
    assert PLACEHOLDER_IMAGE in images, "users set their registry with an `images:` entry"
    component = yaml.safe_load((DEPLOY / "sidecar" / "kustomization.yaml").read_text())
    assert component["kind"] == "Component"


def test_test_base_is_like_upstream(built):
    """The stand-in has what the sidecar relies on (argocd-cmp.md §1.3)."""
    base = base_deployment()
    spec = base["spec"]["template"]["spec"]
    vols = volumes(base)
    for name in ("var-files", "plugins", "tmp"):
        assert vols[name] == {"name": name, "emptyDir": {}}
    (copyutil,) = [c for c in spec["initContainers"] if c["name"] == "copyutil"]
    assert mounts(copyutil) == {"/var/run/argocd": "var-files"}
    assert "/var/run/argocd/argocd-cmp-server" in " ".join(copyutil["command"] + copyutil["args"])
    rs = containers(base)[REPO_SERVER]
    assert mounts(rs)["/tmp"] == "tmp"
    assert mounts(rs)["/home/argocd/cmp-server/plugins"] == "plugins"


def test_sidecar_container(built):
    overlay = users_overlay()
    image = {i["name"]: i for i in overlay["images"]}[PLACEHOLDER_IMAGE]
    deploy = repo_server(built)
    assert deploy["metadata"]["namespace"] == "argocd"
    sidecar = containers(deploy).get(SIDECAR)
    assert sidecar, f"no container {SIDECAR!r} in {sorted(containers(deploy))}"
    assert sidecar["image"] == f"{image.get('newName', PLACEHOLDER_IMAGE)}:{image['newTag']}"
    assert sidecar["command"] == ["/var/run/argocd/argocd-cmp-server"]
    assert "args" not in sidecar
    assert mounts(sidecar) == EXPECTED_MOUNTS
    assert len(sidecar["volumeMounts"]) == len(EXPECTED_MOUNTS)
    assert sidecar["securityContext"] == EXPECTED_SECURITY
    for kind in ("requests", "limits"):
        assert set(sidecar["resources"].get(kind, {})) == {"cpu", "memory"}, sidecar["resources"]
    # plugin.yaml is baked into the image, not mounted; no env needed.
    assert not any(p.startswith("/home/argocd/cmp-server/config") for p in mounts(sidecar))


def test_sidecar_tmp_is_its_own(built):
    deploy = repo_server(built)
    vols = volumes(deploy)
    c = containers(deploy)
    sidecar_tmp, repo_tmp = mounts(c[SIDECAR])["/tmp"], mounts(c[REPO_SERVER])["/tmp"]
    assert sidecar_tmp != repo_tmp
    assert vols[sidecar_tmp] == {"name": sidecar_tmp, "emptyDir": {}}
    assert sum(1 for c in c.values() if sidecar_tmp in mounts(c).values()) == 1
    # var-files and plugins are the pod's shared volumes, used by the same paths as upstream.
    assert mounts(c[REPO_SERVER])["/home/argocd/cmp-server/plugins"] == "plugins"


def test_patch_changes_nothing_else(built):
    base, deploy = base_deployment(), repo_server(built)
    spec, base_spec = deploy["spec"]["template"]["spec"], base["spec"]["template"]["spec"]
    assert containers(deploy)[REPO_SERVER] == containers(base)[REPO_SERVER]
    assert spec["initContainers"] == base_spec["initContainers"]
    assert {k: v for k, v in volumes(deploy).items() if k != "cmp-tmp"} == volumes(base)
    assert set(containers(deploy)) == {REPO_SERVER, SIDECAR}
    # The patch lists the sidecar first; kubectl logs/exec should still default to the repo-server.
    annotations = deploy["spec"]["template"]["metadata"].get("annotations", {})
    assert annotations.get("kubectl.kubernetes.io/default-container") == REPO_SERVER
    for container in [*spec["containers"], *spec["initContainers"]]:
        for mount in container.get("volumeMounts", []):
            assert mount["name"] in volumes(deploy), f"{container['name']}: no volume {mount['name']}"


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_overlay_output_is_valid_kubernetes_strict(built, version):
    for obj in built:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.absolute_path)
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} ({version}) at {path}: {e.message}")


def test_images_entry_sets_the_registry(tmp_path):
    overlay = users_overlay()
    overlay["images"] = [{"name": PLACEHOLDER_IMAGE, "newName": "registry.example.com/mirror/klt-render", "newTag": "9.9.9"}]
    deploy = repo_server(build(tmp_path, overlay))
    assert containers(deploy)[SIDECAR]["image"] == "registry.example.com/mirror/klt-render:9.9.9"


# ---------------------------------------------------------------------------------------------
# application.yaml

# Fields of the Application CRD (argoproj.io/v1alpha1) that this example may use.
APP_SPEC_FIELDS = {"project", "source", "sources", "destination", "syncPolicy", "ignoreDifferences", "info",
                   "revisionHistoryLimit", "sourceHydrator"}
SOURCE_FIELDS = {"repoURL", "path", "targetRevision", "chart", "helm", "kustomize", "directory", "plugin", "ref", "name"}
PLUGIN_FIELDS = {"name", "env", "parameters"}
DESTINATION_FIELDS = {"server", "name", "namespace"}
SYNC_POLICY_FIELDS = {"automated", "syncOptions", "retry", "managedNamespaceMetadata"}
AUTOMATED_FIELDS = {"prune", "selfHeal", "allowEmpty", "enabled"}


@pytest.fixture(scope="module")
def application() -> dict:
    docs = [d.obj for d in load_docs((DEPLOY / "application.yaml").read_text())]
    assert len(docs) == 1, "application.yaml holds one Application"
    return docs[0]


@pytest.fixture(scope="module")
def plugin() -> dict:
    return yaml.safe_load((REPO / "plugin.yaml").read_text())


def env_name(parameter: str) -> str:
    """The KLT_* variable of a plugin parameter (README: `deno-image` -> `KLT_DENO_IMAGE`)."""
    return "KLT_" + re.sub(r"[^A-Z0-9]", "_", parameter.upper())


def test_application_structure(application, plugin):
    app = application
    assert app["apiVersion"] == "argoproj.io/v1alpha1" and app["kind"] == "Application"
    assert set(app) == {"apiVersion", "kind", "metadata", "spec"}
    meta = app["metadata"]
    assert DNS_SUBDOMAIN.match(meta["name"]) and len(meta["name"]) <= 253
    assert meta["namespace"] == users_overlay()["namespace"], "Applications live in Argo CD's namespace"

    spec = app["spec"]
    assert set(spec) <= APP_SPEC_FIELDS, set(spec) - APP_SPEC_FIELDS
    assert isinstance(spec["project"], str) and spec["project"]

    source = spec["source"]
    assert "sources" not in spec
    assert set(source) <= SOURCE_FIELDS, set(source) - SOURCE_FIELDS
    assert re.match(r"^https://\S+$", source["repoURL"])
    assert source["targetRevision"]
    assert source["path"] == "examples/checkout"
    assert (REPO / source["path"]).is_dir()

    plug = source["plugin"]
    assert set(plug) <= PLUGIN_FIELDS, set(plug) - PLUGIN_FIELDS
    # plugin.yaml has no spec.version, so the socket (and the name to use) is metadata.name.
    assert "version" not in plugin["spec"]
    assert plug["name"] == plugin["metadata"]["name"] == "klt-render"

    announced = {p["name"]: p for p in plugin["spec"]["parameters"]["static"]}
    env = plug.get("env")
    assert env, "the example shows plugin env"
    for item in env:
        assert set(item) == {"name", "value"} and all(isinstance(v, str) for v in item.values()), item
        assert item["name"] in {env_name(n) for n in announced}, f"{item['name']} is no klt-render setting"
    params = plug.get("parameters")
    assert params, "the example shows plugin parameters"
    for item in params:
        assert item["name"] in announced, f"parameter {item['name']!r} is not announced in plugin.yaml"
        assert set(item) == {"name", "string"} and isinstance(item["string"], str), item
    names = {i["name"] for i in params} | {i["name"] for i in env}
    assert "mode" in names and "KLT_NAMESPACE" in names
    assert {i["name"]: i["value"] for i in env}["KLT_NAMESPACE"] == "$ARGOCD_APP_NAMESPACE"

    dest = spec["destination"]
    assert set(dest) <= DESTINATION_FIELDS and len({"server", "name"} & set(dest)) == 1, dest
    assert dest["namespace"] == "checkout" and DNS_LABEL.match(dest["namespace"])

    policy = spec["syncPolicy"]
    assert set(policy) <= SYNC_POLICY_FIELDS, set(policy) - SYNC_POLICY_FIELDS
    assert set(policy["automated"]) <= AUTOMATED_FIELDS
    assert policy["automated"]["prune"] is True
    assert "CreateNamespace=true" in policy["syncOptions"]
    assert all(isinstance(o, str) and re.match(r"^\w+=\w+$", o) for o in policy["syncOptions"])


def argocd_env(app: dict) -> dict[str, str]:
    """The generate env Argo CD builds for this Application (argocd-cmp.md §1.5, §1.6)."""
    src, dest = app["spec"]["source"], app["spec"]["destination"]
    env = {
        "ARGOCD_APP_NAME": app["metadata"]["name"],
        "ARGOCD_APP_NAMESPACE": dest["namespace"],
        "ARGOCD_APP_PROJECT_NAME": app["spec"]["project"],
        "ARGOCD_APP_SOURCE_PATH": src["path"],
        "ARGOCD_APP_SOURCE_REPO_URL": src["repoURL"],
        "ARGOCD_APP_SOURCE_TARGET_REVISION": src["targetRevision"],
    }
    build_env = dict(env)

    def expand(value: str) -> str:  # os.Expand-like: $VAR / ${VAR}; `$$` -> `$`
        return re.sub(
            r"\$(\$|\{(\w+)\}|(\w+))",
            lambda m: "$" if m.group(1) == "$" else build_env.get(m.group(2) or m.group(3), ""),
            value,
        )

    for item in src["plugin"].get("env", []):
        env[f"ARGOCD_ENV_{item['name']}"] = expand(item["value"])
    params = src["plugin"].get("parameters", [])
    env["ARGOCD_APP_PARAMETERS"] = json.dumps(params) if params else "null"
    for p in params:
        env["PARAM_" + re.sub(r"[^A-Z0-9_]", "_", p["name"].upper())] = p["string"]
    return env


def test_application_settings_are_accepted_by_generate(application, tmp_path):
    """Run generate with the env this Application produces, from a copy of its path."""
    env = argocd_env(application)
    assert env["ARGOCD_ENV_KLT_NAMESPACE"] == "checkout"
    checkout = tmp_path / "repo"
    shutil.copytree(REPO / application["spec"]["source"]["path"], checkout / application["spec"]["source"]["path"])
    binary = ensure_binary()
    run = lambda e: subprocess.run(
        [str(binary), "generate"], cwd=checkout / application["spec"]["source"]["path"],
        env=e, capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL,
    )
    proc = run(env)
    assert proc.returncode == 0, proc.stderr
    docs = [d.obj for d in load_docs(proc.stdout)]
    assert any(d.get("kind") == "Job" for d in docs)
    # namespace from the destination and mode waves are klt-render's defaults too.
    plain = {k: v for k, v in env.items() if not k.startswith(("ARGOCD_ENV_", "PARAM_"))}
    plain["ARGOCD_APP_PARAMETERS"] = "null"
    assert run(plain).stdout == proc.stdout
