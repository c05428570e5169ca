//! deploy/reconciler: the committed CRD is what `klt-reconciler crd` prints, the kustomization
//! builds with `kubectl kustomize`, passes kubernetes-validate in strict mode, and keeps the
//! promises of the README (least-privilege RBAC, non-root, read-only root filesystem, probes).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Print past libtest's output capture, so that a skip is visible in a passing run.
fn skip(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[test]
fn crd_yaml_is_generated() {
    let committed = std::fs::read_to_string(repo().join("deploy/reconciler/crd.yaml")).unwrap();
    let printed = Command::new(env!("CARGO_BIN_EXE_klt-reconciler"))
        .arg("crd")
        .output()
        .unwrap();
    assert!(printed.status.success());
    let printed = String::from_utf8(printed.stdout).unwrap();
    assert_eq!(printed, klt_reconciler::crd::crd_yaml());
    assert!(
        committed == printed,
        "deploy/reconciler/crd.yaml is stale; regenerate it with\n  \
         cargo run -p klt-reconciler -- crd > deploy/reconciler/crd.yaml"
    );
}

/// `kubectl kustomize deploy/reconciler`, or `None` (with a note) without kubectl.
fn kustomize() -> Option<String> {
    let out = match Command::new("kubectl")
        .args(["kustomize", "deploy/reconciler"])
        .current_dir(repo())
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            skip(&format!(
                "SKIP: kubectl not runnable ({e}); deploy/reconciler not built"
            ));
            return None;
        }
    };
    assert!(
        out.status.success(),
        "kubectl kustomize deploy/reconciler failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).unwrap())
}

fn docs(text: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(text)
        .unwrap()
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind}"))
}

#[test]
fn kustomization_builds_and_keeps_its_promises() {
    let Some(out) = kustomize() else { return };
    let docs = docs(&out);
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    for k in [
        "Namespace",
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
        "Service",
    ] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }

    // RBAC: exactly what the reconciler uses.
    let role = find(&docs, "ClusterRole");
    let mut rules: Vec<String> = role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| {
            let groups = r["apiGroups"].as_array().unwrap().clone();
            let resources = r["resources"].as_array().unwrap().clone();
            let verbs = r["verbs"].as_array().unwrap().clone();
            groups.into_iter().flat_map(move |g| {
                let verbs = verbs.clone();
                resources.clone().into_iter().flat_map(move |res| {
                    let g = g.clone();
                    verbs.clone().into_iter().map(move |v| {
                        format!(
                            "{}/{} {}",
                            g.as_str().unwrap(),
                            res.as_str().unwrap(),
                            v.as_str().unwrap()
                        )
                    })
                })
            })
        })
        .collect();
    rules.sort();
    let mut want = vec![
        "batch/jobs get",
        "batch/jobs list",
        "batch/jobs watch",
        "/pods list",
        "klt-render.dev/taskrecords get",
        "klt-render.dev/taskrecords list",
        "klt-render.dev/taskrecords watch",
        "klt-render.dev/taskrecords create",
        "klt-render.dev/taskrecords/status get",
        "klt-render.dev/taskrecords/status patch",
        "events.k8s.io/events create",
        "events.k8s.io/events patch",
    ];
    want.sort();
    assert_eq!(rules, want);
    let binding = find(&docs, "ClusterRoleBinding");
    assert_eq!(binding["subjects"][0]["namespace"], "klt-reconciler");
    assert_eq!(binding["subjects"][0]["name"], "klt-reconciler");

    // Leader election: one Lease in the reconciler's namespace, by name.
    let role = find(&docs, "Role");
    assert_eq!(role["metadata"]["namespace"], "klt-reconciler");
    let rules = role["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 2, "{rules:?}");
    assert_eq!(rules[0]["apiGroups"][0], "coordination.k8s.io");
    assert_eq!(rules[0]["resources"][0], "leases");
    assert_eq!(rules[0]["verbs"], serde_json::json!(["create"]));
    assert_eq!(
        rules[1]["resourceNames"],
        serde_json::json!(["klt-reconciler"])
    );
    assert_eq!(rules[1]["verbs"], serde_json::json!(["get", "update"]));
    let rb = find(&docs, "RoleBinding");
    assert_eq!(rb["roleRef"]["name"], role["metadata"]["name"]);
    assert_eq!(rb["subjects"][0]["name"], "klt-reconciler");

    // The Deployment: non-root, read-only root fs, resources, probes on /healthz and /readyz.
    let deploy = find(&docs, "Deployment");
    let pod = &deploy["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["serviceAccountName"], "klt-reconciler");
    // Two replicas behind a Lease; a rolling update never drops below them.
    assert_eq!(deploy["spec"]["replicas"], 2);
    assert_eq!(deploy["spec"]["strategy"]["type"], "RollingUpdate");
    assert_eq!(
        deploy["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"],
        0
    );
    let c = &pod["containers"][0];
    let env = |name: &str| {
        c["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("env {name}"))
            .clone()
    };
    assert_eq!(
        env("POD_NAME")["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name"
    );
    assert_eq!(
        env("KLT_RECONCILER_LEASE_NAMESPACE")["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );
    assert_eq!(env("KLT_RECONCILER_LEASE_NAME")["value"], "klt-reconciler");
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
    assert!(c["resources"]["requests"]["memory"].is_string());
    assert!(c["resources"]["limits"]["memory"].is_string());
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    let svc = find(&docs, "Service");
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], "http-metrics");
    let pod_labels = &deploy["spec"]["template"]["metadata"]["labels"];
    for (k, v) in svc["spec"]["selector"].as_object().unwrap() {
        assert_eq!(
            &pod_labels[k], v,
            "Service selector {k} does not match the pods"
        );
    }
}

/// kubernetes-validate from the test venv (`./scripts/test.sh` creates `.venv`), or on PATH.
fn kubernetes_validate() -> Option<PathBuf> {
    let venv = repo().join(".venv/bin/kubernetes-validate");
    if venv.is_file() {
        return Some(venv);
    }
    Command::new("kubernetes-validate")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|_| PathBuf::from("kubernetes-validate"))
}

#[test]
fn manifests_pass_kubernetes_validate_strict() {
    let Some(validate) = kubernetes_validate() else {
        skip("SKIP: kubernetes-validate not found (run ./scripts/test.sh once to create .venv)");
        return;
    };
    let Some(out) = kustomize() else { return };
    let dir = std::env::temp_dir().join(format!("klt-reconciler-validate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let built = dir.join("reconciler.yaml");
    std::fs::write(&built, out).unwrap();
    let cm = repo().join("deploy/argocd/health/argocd-cm.yaml");
    for version in ["1.33.0", "1.37.0"] {
        let res = Command::new(&validate)
            .args(["--strict", "--quiet", "-k", version])
            .arg(&built)
            .arg(&cm)
            .output()
            .unwrap();
        assert!(
            res.status.success(),
            "kubernetes-validate --strict -k {version} failed:\n{}{}",
            String::from_utf8_lossy(&res.stdout),
            String::from_utf8_lossy(&res.stderr)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
