//! Properties of the render as a whole: determinism (file order, file names, file
//! boundaries, repetition), run-once-per-version naming, and secrecy.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use klt_render::{Options, SourceFile, render};
use proptest::prelude::*;

fn read_tree(dir: &Path, out: &mut Vec<SourceFile>) {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            read_tree(&p, out);
        } else {
            out.push(SourceFile {
                path: p.display().to_string(),
                text: fs::read_to_string(&p).unwrap(),
            });
        }
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every case that renders successfully: the bundled examples and the success fixtures,
/// each with the options its `args` file asks for.
fn success_cases() -> Vec<(String, Vec<SourceFile>, Options)> {
    let mut cases = Vec::new();
    for dir in fs::read_dir(root().join("examples")).unwrap() {
        let dir = dir.unwrap().path();
        let mut files = Vec::new();
        read_tree(&dir, &mut files);
        cases.push((dir.display().to_string(), files, Options::default()));
    }
    for dir in fs::read_dir(root().join("tests/fixtures/render")).unwrap() {
        let dir = dir.unwrap().path();
        if !dir.join("expected.yaml").exists() || dir.join("paths").exists() {
            continue;
        }
        let mut files = Vec::new();
        read_tree(&dir.join("input"), &mut files);
        let args: Vec<String> = fs::read_to_string(dir.join("args"))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect();
        cases.push((dir.display().to_string(), files, options_from(&args)));
    }
    cases.sort_by(|a, b| a.0.cmp(&b.0));
    cases
}

fn options_from(args: &[String]) -> Options {
    let mut o = Options::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--namespace" => o.namespace = it.next().cloned(),
            "--mode" => o.mode = it.next().unwrap().parse().unwrap(),
            "--profile" => o.profile = it.next().unwrap().parse().unwrap(),
            "--keep-keptn" => o.keep_keptn = true,
            "--records" => o.records = true,
            "--definition-namespace" => o.definition_namespace = it.next().cloned(),
            "--hook-delete-policy" => o.hook_delete_policy = it.next().unwrap().clone(),
            "--task-order" => {
                o.sequential = klt_render::options::parse_task_order(it.next().unwrap()).unwrap()
            }
            "--evaluator-image" => o.evaluator_image = it.next().unwrap().clone(),
            other => panic!("options_from does not know {other}"),
        }
    }
    o
}

fn yaml_of(files: &[SourceFile], opts: &Options) -> String {
    let out = render(files, opts);
    assert!(!out.has_errors(), "{:#?}", out.diagnostics);
    out.to_yaml()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Shuffled file order, renamed files and a second render give byte-identical output.
    #[test]
    fn file_order_and_names_do_not_matter(seed in any::<u64>(), rename in any::<bool>()) {
        for (name, files, opts) in success_cases() {
            let expected = yaml_of(&files, &opts);
            let mut shuffled = files.clone();
            // Fisher-Yates driven by the seed.
            let mut s = seed;
            for i in (1..shuffled.len()).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                shuffled.swap(i, (s >> 33) as usize % (i + 1));
            }
            if rename {
                for (i, f) in shuffled.iter_mut().enumerate() {
                    f.path = format!("z{}/{}-{}.yaml", seed % 7, (seed as usize + i * 31) % 97, i);
                }
            }
            let again = yaml_of(&shuffled, &opts);
            prop_assert_eq!(&expected, &again, "case {}", name);
            prop_assert_eq!(&expected, &yaml_of(&files, &opts), "second render of {}", name);
        }
    }
}

#[test]
fn file_boundaries_do_not_matter() {
    for (name, files, opts) in success_cases() {
        if files.iter().any(|f| f.path.ends_with(".json")) {
            continue; // a JSON file is one document and cannot be concatenated as YAML
        }
        let joined = SourceFile {
            path: "all.yaml".into(),
            text: files
                .iter()
                .map(|f| {
                    let sep = if f.text.ends_with('\n') { "" } else { "\n" };
                    format!("---\n{}{sep}", f.text)
                })
                .collect::<String>(),
        };
        assert_eq!(
            yaml_of(&files, &opts),
            yaml_of(&[joined], &opts),
            "case {name}"
        );
    }
}

// ---- run once per version: what changes a Job's name, and what does not ----

fn checkout() -> Vec<SourceFile> {
    let mut files = Vec::new();
    read_tree(&root().join("examples/checkout"), &mut files);
    files
}

fn edit(files: &[SourceFile], file: &str, from: &str, to: &str) -> Vec<SourceFile> {
    let mut files = files.to_vec();
    let f = files.iter_mut().find(|f| f.path.ends_with(file)).unwrap();
    assert!(f.text.contains(from), "{from:?} not in {file}");
    f.text = f.text.replacen(from, to, 1);
    files
}

/// Job names keyed by `phase/definition[/workload]`.
fn job_names(files: &[SourceFile]) -> BTreeMap<String, String> {
    let opts = Options::default();
    let out = render(files, &opts);
    assert!(!out.has_errors(), "{:#?}", out.diagnostics);
    let mut names = BTreeMap::new();
    for d in out
        .documents
        .iter()
        .filter(|d| d.generated && d.kind == "Job")
    {
        let chunk = &klt_render::yaml::split_stream(&d.text)[0];
        let job = klt_render::yaml::parse_document(chunk)
            .unwrap()
            .unwrap()
            .to_json();
        let l = &job["metadata"]["labels"];
        let key = format!(
            "{}/{}/{}",
            l["klt-render.dev/phase"].as_str().unwrap(),
            l["klt-render.dev/task-definition"].as_str().unwrap(),
            l["klt-render.dev/workload"].as_str().unwrap_or("")
        );
        names.insert(key, d.name.clone());
    }
    names
}

fn changed(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> Vec<String> {
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    a.iter()
        .filter(|(k, v)| b[*k] != **v)
        .map(|(k, _)| k.clone())
        .collect()
}

#[test]
fn job_names_fit_and_keep_the_definition_readable() {
    let names = job_names(&checkout());
    assert_eq!(names.len(), 4);
    for (key, name) in &names {
        assert!(name.len() <= 63, "{name}");
        let def = key.split('/').nth(1).unwrap();
        assert!(name.contains(def), "{name} should contain {def}");
    }
    // A definition name at the Kubernetes maximum still yields a valid Job name.
    let long = "d".repeat(250);
    let files = edit(
        &checkout(),
        "tasks.yaml",
        "name: smoke-test\n",
        &format!("name: {long}\n"),
    );
    let files = edit(
        &files,
        "workloads.yaml",
        "post-deployment-tasks: smoke-test",
        &format!("post-deployment-tasks: {long}"),
    );
    for name in job_names(&files).values() {
        assert!(name.len() <= 63, "{name} ({} chars)", name.len());
    }
}

#[test]
fn revision_bump_reruns_app_tasks_only() {
    let base = job_names(&checkout());
    let bumped = job_names(&edit(&checkout(), "app.yaml", "revision: 1", "revision: 2"));
    assert_eq!(
        changed(&base, &bumped),
        ["app-post/notify-release/", "app-pre/check-dependencies/"]
    );
}

/// Keptn names a KeptnWorkloadVersion `<app>-<workload>-<version>`: a new app version that
/// keeps every workload version re-runs the app's tasks and no workload's.
#[test]
fn app_version_bump_alone_reruns_app_tasks_only() {
    let base = job_names(&checkout());
    let bumped = job_names(&edit(
        &checkout(),
        "app.yaml",
        "  version: \"1.4.0\"\n  revision",
        "  version: \"1.4.1\"\n  revision",
    ));
    assert_eq!(
        changed(&base, &bumped),
        ["app-post/notify-release/", "app-pre/check-dependencies/"]
    );
}

#[test]
fn new_workload_version_reruns_that_workloads_tasks_and_the_app_tasks() {
    let files = edit(
        &checkout(),
        "workloads.yaml",
        "app.kubernetes.io/version: \"1.4.0\"",
        "app.kubernetes.io/version: \"1.5.0\"",
    );
    let files = edit(
        &files,
        "app.yaml",
        "version: \"1.4.0\"\n    - name: checkout-worker",
        "version: \"1.5.0\"\n    - name: checkout-worker",
    );
    assert_eq!(
        changed(&job_names(&checkout()), &job_names(&files)),
        [
            "app-post/notify-release/",
            "app-pre/check-dependencies/",
            "workload-post/smoke-test/checkout-checkout-api",
            "workload-pre/db-migrate/checkout-checkout-api",
        ]
    );
}

#[test]
fn code_and_parameter_changes_rerun_exactly_their_users() {
    let base = job_names(&checkout());
    // slack-notification's code is used through notify-release's functionRef.
    let code = edit(
        &checkout(),
        "tasks.yaml",
        "slack answered",
        "Slack answered",
    );
    assert_eq!(
        changed(&base, &job_names(&code)),
        ["app-post/notify-release/"]
    );
    let param = edit(
        &checkout(),
        "tasks.yaml",
        "url: http://checkout-api/healthz",
        "url: http://checkout-api/ready",
    );
    assert_eq!(
        changed(&base, &job_names(&param)),
        ["workload-post/smoke-test/checkout-checkout-api"]
    );
    // A referenced ConfigMap's code counts even though the ConfigMap's name stays.
    let cm = edit(
        &checkout(),
        "workloads.yaml",
        "migrating database",
        "migrating the database",
    );
    assert_eq!(
        changed(&base, &job_names(&cm)),
        ["workload-pre/db-migrate/checkout-checkout-api"]
    );
    let image = edit(
        &checkout(),
        "tasks.yaml",
        "curlimages/curl:8.11.1",
        "curlimages/curl:8.12.0",
    );
    assert_eq!(
        changed(&base, &job_names(&image)),
        ["app-pre/check-dependencies/"]
    );
}

#[test]
fn unrelated_changes_do_not_rerun_tasks() {
    let base = job_names(&checkout());
    let svc = edit(&checkout(), "workloads.yaml", "port: 80", "port: 8081");
    assert!(changed(&base, &job_names(&svc)).is_empty());
    // A new wave on an app resource moves the tasks' waves but not their names.
    let wave = edit(
        &checkout(),
        "workloads.yaml",
        "kind: Service\nmetadata:\n  name: checkout-api\n",
        "kind: Service\nmetadata:\n  name: checkout-api\n  annotations:\n    argocd.argoproj.io/sync-wave: \"5\"\n",
    );
    assert!(changed(&base, &job_names(&wave)).is_empty());
    let replicas = edit(&checkout(), "workloads.yaml", "replicas: 2", "replicas: 3");
    assert!(changed(&base, &job_names(&replicas)).is_empty());
}

/// `--namespace` (and Argo CD's destination namespace) only decides lookups, so it changes no
/// Job name; a namespace written into the objects (kustomize's `namespace:`) is part of each
/// Job, so every name changes once (the README says so).
#[test]
fn lookup_namespace_keeps_names_written_namespace_changes_them() {
    let mut files = Vec::new();
    read_tree(&root().join("examples/first-app"), &mut files);
    let names = |files: &[SourceFile], ns: Option<&str>| {
        let opts = Options {
            namespace: ns.map(String::from),
            ..Options::default()
        };
        let out = render(files, &opts);
        assert!(!out.has_errors(), "{:#?}", out.diagnostics);
        out.documents
            .iter()
            .filter(|d| d.generated && d.kind == "Job")
            .map(|d| d.name.clone())
            .collect::<Vec<_>>()
    };
    let plain = names(&files, None);
    assert_eq!(plain.len(), 2);
    assert_eq!(names(&files, Some("shop")), plain);
    assert_eq!(names(&files, Some("other")), plain);
    let written: Vec<SourceFile> = files
        .iter()
        .map(|f| SourceFile {
            text: f
                .text
                .replace("\n  name: ", "\n  namespace: shop\n  name: "),
            ..f.clone()
        })
        .collect();
    assert!(written[0].text.contains("namespace: shop"));
    let moved = names(&written, Some("shop"));
    assert_eq!(moved.len(), 2);
    assert!(
        moved.iter().all(|n| !plain.contains(n)),
        "{moved:?} vs {plain:?}"
    );
}

// ---- secrets ----

/// Secret values (and their base64 forms) of every fixture never reach a generated object,
/// a diagnostic or a Job name.
#[test]
fn secret_values_never_leak() {
    let mut cases = success_cases();
    for dir in fs::read_dir(root().join("tests/fixtures/render")).unwrap() {
        let dir = dir.unwrap().path();
        if dir.join("expected.yaml").exists() {
            continue;
        }
        let mut files = Vec::new();
        read_tree(&dir.join("input"), &mut files);
        cases.push((dir.display().to_string(), files, Options::default()));
    }
    let mut checked = 0;
    for (name, files, opts) in cases {
        let mut values = Vec::new();
        for f in &files {
            for chunk in klt_render::yaml::split_stream(&f.text) {
                let Ok(Some(node)) = klt_render::yaml::parse_document(&chunk) else {
                    continue;
                };
                if node.get("kind").and_then(|k| k.as_str()) != Some("Secret") {
                    continue;
                }
                for field in ["data", "stringData"] {
                    for e in node.get(field).and_then(|d| d.as_map()).unwrap_or_default() {
                        if let Some(v) = e.value.as_str().filter(|v| v.len() >= 4) {
                            values.push(v.to_string());
                        }
                    }
                }
            }
        }
        if values.is_empty() {
            continue;
        }
        checked += 1;
        let out = render(&files, &opts);
        let mut seen = String::new();
        for d in out.documents.iter().filter(|d| d.generated) {
            seen.push_str(&d.text);
        }
        for d in &out.diagnostics {
            seen.push_str(&d.one_line());
            seen.push_str(d.help.as_deref().unwrap_or(""));
        }
        for v in &values {
            assert!(!seen.contains(v.as_str()), "secret value of {name} leaked");
        }
    }
    assert!(checked >= 4, "only {checked} cases with secrets");
}
