//! Evaluation Jobs and sequential task order, as properties the golden fixtures cannot show
//! on their own: the Job name follows what the evaluator runs (query, provider, target) and
//! nothing else; sequential order moves waves but never names; a Secret a pre-evaluation
//! mounts exists before it; the evaluation waves leave a render without evaluations alone.

use std::collections::BTreeMap;
use std::path::Path;

use klt_render::document;
use klt_render::{Mode, Options, SourceFile, render};
use serde_json::Value;

/// An output document as JSON, read with the renderer's own YAML reader.
fn parse(text: &str) -> Value {
    let files = [SourceFile {
        path: "out".into(),
        text: text.into(),
    }];
    let mut diags = Vec::new();
    let docs = document::load(&files, &mut diags);
    assert!(diags.is_empty(), "{diags:?}");
    docs[0].root.to_json()
}

fn fixture(name: &str) -> Vec<SourceFile> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/render")
        .join(name)
        .join("input");
    let mut files: Vec<SourceFile> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            SourceFile {
                path: path.file_name().unwrap().to_string_lossy().into(),
                text: std::fs::read_to_string(&path).unwrap(),
            }
        })
        .collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files
}

fn edit(files: &[SourceFile], from: &str, to: &str) -> Vec<SourceFile> {
    let changed: Vec<SourceFile> = files
        .iter()
        .map(|f| SourceFile {
            path: f.path.clone(),
            text: f.text.replace(from, to),
        })
        .collect();
    assert_ne!(
        changed.iter().map(|f| &f.text).collect::<Vec<_>>(),
        files.iter().map(|f| &f.text).collect::<Vec<_>>(),
        "{from:?} is not in the input"
    );
    changed
}

/// Generated Job names with their wave, in output order.
fn jobs(files: &[SourceFile], opts: &Options) -> Vec<(String, String)> {
    let out = render(files, opts);
    assert!(!out.has_errors(), "{:?}", out.diagnostics);
    out.documents
        .iter()
        .filter(|d| d.generated && d.kind == "Job")
        .map(|d| {
            let obj: Value = parse(&d.text);
            let wave = obj["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]
                .as_str()
                .unwrap()
                .to_string();
            (d.name.clone(), wave)
        })
        .collect()
}

fn names(jobs: &[(String, String)]) -> Vec<&str> {
    let mut n: Vec<&str> = jobs.iter().map(|(n, _)| n.as_str()).collect();
    n.sort_unstable();
    n
}

#[test]
fn sequential_order_changes_waves_not_names() {
    let sequential = fixture("task-order-sequential");
    let parallel = edit(
        &sequential,
        "klt-render.dev/task-order: sequential",
        "klt-render.dev/task-order: parallel",
    );
    let opts = Options::default();
    let (seq, par) = (jobs(&sequential, &opts), jobs(&parallel, &opts));
    assert_eq!(names(&seq), names(&par));
    let par_names: Vec<String> = names(&par).iter().map(|s| s.to_string()).collect();
    let waves =
        |jobs: &[(String, String)]| -> BTreeMap<String, String> { jobs.iter().cloned().collect() };
    let (seq, par) = (waves(&seq), waves(&par));
    // Parallel: every app pre task in one wave; sequential: one wave each, in list order.
    let app_pre = [
        "pre-backup-8h782fhff6",
        "pre-migrate-fmmbh4fckm",
        "pre-warm-cache-b724db7c4m",
    ];
    let par_waves: Vec<&str> = app_pre.iter().map(|n| par[*n].as_str()).collect();
    assert_eq!(par_waves, ["-2", "-2", "-2"]);
    let seq_waves: Vec<i64> = app_pre.iter().map(|n| seq[*n].parse().unwrap()).collect();
    assert!(
        seq_waves.windows(2).all(|w| w[1] == w[0] + 1),
        "{seq_waves:?}"
    );
    // The option does for every list what the annotation does for one object.
    let by_option = Options {
        sequential: true,
        ..Options::default()
    };
    let all = jobs(&parallel, &by_option);
    assert_eq!(names(&all), par_names);
    assert_ne!(waves(&all), par);
}

#[test]
fn evaluation_job_names_follow_what_the_evaluator_runs() {
    let base = fixture("evaluations-v1");
    let opts = Options::default();
    let before = names(&jobs(&base, &opts))
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>();
    let eval_names = |v: &[String]| -> Vec<String> {
        v.iter().filter(|n| n.contains("-eval-")).cloned().collect()
    };
    for (from, to) in [
        ("evaluationTarget: \">1\"", "evaluationTarget: \">2\""),
        (
            "query: sum(kube_node_status_capacity",
            "query: avg(kube_node_status_capacity",
        ),
        (
            "targetServer: http://prometheus-k8s",
            "targetServer: http://prometheus-k9s",
        ),
        ("interval: 5m", "interval: 10m"),
        ("retries: 3", "retries: 4"),
    ] {
        let after = names(&jobs(&edit(&base, from, to), &opts))
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>();
        assert_ne!(eval_names(&before), eval_names(&after), "{from} -> {to}");
        // Task Jobs do not read evaluations: their names stay.
        let tasks = |v: &[String]| -> Vec<String> {
            v.iter()
                .filter(|n| !n.contains("-eval-"))
                .cloned()
                .collect()
        };
        assert_eq!(tasks(&before), tasks(&after), "{from} -> {to}");
    }
}

#[test]
fn a_secret_a_pre_evaluation_mounts_exists_before_it() {
    let secret = "---
apiVersion: v1
kind: Secret
metadata:
  name: prometheus-basic-auth
  namespace: podtato-kubectl
type: Opaque
";
    let mut files = fixture("evaluations-v1");
    files.push(SourceFile {
        path: "secret.yaml".into(),
        text: secret.into(),
    });
    for mode in [Mode::Waves, Mode::Hooks] {
        let opts = Options {
            mode,
            ..Options::default()
        };
        let out = render(&files, &opts);
        assert!(!out.has_errors(), "{:?}", out.diagnostics);
        let doc = out
            .documents
            .iter()
            .find(|d| d.kind == "Secret")
            .expect("the Secret passes through");
        let obj: Value = parse(&doc.text);
        let ann = &obj["metadata"]["annotations"];
        let wave: i64 = ann["argocd.argoproj.io/sync-wave"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            wave <= -4,
            "{mode:?}: the Secret is at wave {wave}, the first evaluation at -3"
        );
        if mode == Mode::Hooks {
            assert_eq!(ann["argocd.argoproj.io/hook"], "PreSync");
        }
    }
}

#[test]
fn hooks_mode_puts_evaluations_in_their_hook_phase() {
    let opts = Options {
        mode: Mode::Hooks,
        ..Options::default()
    };
    let out = render(&fixture("evaluations-v1"), &opts);
    assert!(!out.has_errors(), "{:?}", out.diagnostics);
    let mut seen = 0;
    for d in out.documents.iter().filter(|d| d.name.contains("-eval-")) {
        let obj: Value = parse(&d.text);
        let hook = obj["metadata"]["annotations"]["argocd.argoproj.io/hook"].as_str();
        let want = if d.name.starts_with("pre-") {
            "PreSync"
        } else {
            "PostSync"
        };
        assert_eq!(hook, Some(want), "{}", d.name);
        seen += 1;
    }
    assert_eq!(seen, 4);
}
