//! The Argo CD health check (deploy/argocd/health/klt-render.dev_TaskRecord.lua) run with
//! Lua 5.1 in a sandbox like Argo CD's (no string library), on fixture records and on
//! statuses the reconciler computes.

use std::path::{Path, PathBuf};

use klt_reconciler::TaskRecord;
use klt_reconciler::crd::{ExpectedTask, TaskRecordSpec};
use klt_reconciler::state::{JobObservation, compute_status};
use klt_reconciler::{TaskState, crd::TaskRecordStatus};
use mlua::{Lua, LuaOptions, StdLib, Value};
use serde_json::Value as Json;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn script() -> String {
    std::fs::read_to_string(repo().join("deploy/argocd/health/klt-render.dev_TaskRecord.lua"))
        .expect("the health script")
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/argocd-health")
}

fn to_lua(lua: &Lua, v: &Json) -> mlua::Result<Value> {
    Ok(match v {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Boolean(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Number(n.as_f64().unwrap_or(0.0)),
        },
        Json::String(s) => Value::String(lua.create_string(s)?),
        Json::Array(items) => {
            let t = lua.create_table()?;
            for (i, item) in items.iter().enumerate() {
                t.raw_set(i + 1, to_lua(lua, item)?)?;
            }
            Value::Table(t)
        }
        Json::Object(map) => {
            let t = lua.create_table()?;
            for (k, item) in map {
                t.raw_set(k.as_str(), to_lua(lua, item)?)?;
            }
            Value::Table(t)
        }
    })
}

/// Run the script on `obj` the way Argo CD does: a fresh VM with base, table and package
/// only, `obj` as a global, the returned table read as {status, message}.
fn health(obj: &Json) -> (String, String) {
    let lua = Lua::new_with(StdLib::TABLE | StdLib::PACKAGE, LuaOptions::default()).unwrap();
    lua.globals()
        .set("obj", to_lua(&lua, obj).unwrap())
        .unwrap();
    let t: mlua::Table = lua
        .load(script())
        .set_name("klt-render.dev_TaskRecord.lua")
        .eval()
        .unwrap_or_else(|e| panic!("script failed on {obj}: {e}"));
    let status: String = t.get("status").unwrap();
    let message: String = t.get("message").unwrap_or_default();
    (status, message)
}

fn load_yaml(path: &Path) -> Json {
    let text = std::fs::read_to_string(path).unwrap();
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn fixture_records() {
    let cases = load_yaml(&fixtures().join("health_test.yaml"));
    let cases = cases["tests"].as_array().unwrap();
    assert!(cases.len() >= 7);
    for case in cases {
        let input = case["inputPath"].as_str().unwrap();
        let obj = load_yaml(&fixtures().join(input));
        // The fixtures are real records.
        serde_json::from_value::<TaskRecord>(obj.clone())
            .unwrap_or_else(|e| panic!("{input} is not a TaskRecord: {e}"));
        let (status, message) = health(&obj);
        assert_eq!(
            status, case["healthStatus"]["status"],
            "{input}: message {message:?}"
        );
        assert_eq!(message, case["healthStatus"]["message"], "{input}");
    }
}

#[test]
fn argocd_cm_snippet_holds_the_same_script() {
    let cm = load_yaml(&repo().join("deploy/argocd/health/argocd-cm.yaml"));
    assert_eq!(cm["kind"], "ConfigMap");
    assert_eq!(cm["metadata"]["name"], "argocd-cm");
    let embedded = cm["data"]["resource.customizations.health.klt-render.dev_TaskRecord"]
        .as_str()
        .expect("the health key");
    assert_eq!(
        embedded,
        script(),
        "argocd-cm.yaml and the .lua file differ"
    );
}

fn obs(name: &str, phase: &str, state: TaskState, message: Option<&str>) -> JobObservation {
    JobObservation {
        name: name.into(),
        namespace: "shop".into(),
        uid: format!("uid-{name}"),
        record: "shop-1.0".into(),
        app: "shop".into(),
        app_version: "1.0".into(),
        definition: "notify".into(),
        phase: phase.into(),
        workload: None,
        evaluation: false,
        state,
        attempts: 1,
        start_time: None,
        end_time: None,
        message: message.map(String::from),
    }
}

fn record(status: TaskRecordStatus) -> Json {
    let mut r = TaskRecord::new(
        "shop-1.0",
        TaskRecordSpec {
            app: "shop".into(),
            app_version: "1.0".into(),
            tasks: vec![ExpectedTask {
                job: "post".into(),
                definition: "notify".into(),
                phase: "app-post".into(),
                workload: None,
            }],
        },
    );
    r.status = Some(status);
    serde_json::to_value(r).unwrap()
}

#[test]
fn statuses_the_reconciler_writes() {
    use TaskState::*;
    let spec = TaskRecordSpec {
        tasks: vec![ExpectedTask {
            job: "post".into(),
            definition: "notify".into(),
            phase: "app-post".into(),
            workload: None,
        }],
        ..Default::default()
    };
    let none: &[JobObservation] = &[];
    let fresh = compute_status(Some(&spec), none, None);
    assert_eq!(health(&record(fresh)).0, "Progressing");

    let pre_ok = [obs("pre", "app-pre", Succeeded, None)];
    let half = compute_status(Some(&spec), &pre_ok, None);
    assert_eq!(
        health(&record(half.clone())),
        (
            "Progressing".into(),
            "Running: 1 of 2 task(s) succeeded".into()
        )
    );

    let all = [
        obs("pre", "app-pre", Succeeded, None),
        obs("post", "app-post", Succeeded, None),
    ];
    let done = compute_status(Some(&spec), &all, Some(&half));
    assert_eq!(health(&record(done.clone())).0, "Healthy");
    // Pruned Jobs keep the record healthy.
    let pruned = compute_status(Some(&spec), none, Some(&done));
    assert_eq!(
        health(&record(pruned)),
        ("Healthy".into(), "2 of 2 task(s) succeeded".into())
    );

    let bad = [
        obs("pre", "app-pre", Succeeded, None),
        obs(
            "post",
            "app-post",
            Failed,
            Some("BackoffLimitExceeded: boom"),
        ),
    ];
    let failed = compute_status(Some(&spec), &bad, Some(&half));
    assert_eq!(
        health(&record(failed)),
        (
            "Degraded".into(),
            "task notify (app-post) Job post failed: BackoffLimitExceeded: boom".into()
        )
    );
}

#[test]
fn a_failed_evaluation_is_named_with_its_objective() {
    let spec = TaskRecordSpec::default();
    let summary = "evaluation cpu-free failed: objective available-cpus value 1.2 does not meet >2 (3 of 3 attempts)";
    let mut eval = obs(
        "pre-eval-cpu-free-x",
        "app-pre",
        TaskState::Failed,
        Some(summary),
    );
    eval.evaluation = true;
    eval.definition = "cpu-free".into();
    let jobs = [obs("pre", "app-pre", TaskState::Succeeded, None), eval];
    let st = compute_status(Some(&spec), &jobs, None);
    assert_eq!(
        health(&record(st)),
        (
            "Degraded".into(),
            format!("evaluation cpu-free (app-pre) Job pre-eval-cpu-free-x failed: {summary}")
        )
    );
}

#[test]
fn odd_objects_do_not_break_the_script() {
    for obj in [
        serde_json::json!({"status": {}}),
        serde_json::json!({"status": {"phase": "Failed"}}),
        serde_json::json!({"status": {"phase": "Failed", "tasks": [{"state": "Failed"}]}}),
        serde_json::json!({"status": {"phase": "Weird", "tasks": []}}),
    ] {
        let (status, _) = health(&obj);
        assert!(
            ["Progressing", "Degraded"].contains(&status.as_str()),
            "{obj}: {status}"
        );
    }
}
