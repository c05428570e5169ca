//! Sync waves at the ends of Argo CD's range (it reads them with `strconv.Atoi`, int64): the
//! task waves around the app's waves never wrap. Either every task wave fits, and pre tasks
//! come before the workload and post tasks after it, or the render fails with KLT028 at the
//! annotation that leaves no room.

use std::process::Command;

use klt_render::{Mode, Options, SourceFile, render};

/// An app with tasks in all four phases and one workload at `wave`.
fn app(wave: &str) -> Vec<SourceFile> {
    let text = format!(
        "apiVersion: lifecycle.keptn.sh/v1
kind: KeptnTaskDefinition
metadata:
  name: hello
  namespace: shop
spec:
  deno:
    inline:
      code: console.log(1)
---
apiVersion: lifecycle.keptn.sh/v1
kind: KeptnAppContext
metadata:
  name: shop
  namespace: shop
spec:
  preDeploymentTasks: [hello]
  postDeploymentTasks: [hello]
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
  namespace: shop
  annotations:
    argocd.argoproj.io/sync-wave: \"{wave}\"
spec:
  selector:
    matchLabels: {{app: api}}
  template:
    metadata:
      labels: {{app: api}}
      annotations:
        keptn.sh/app: shop
        keptn.sh/workload: api
        keptn.sh/version: \"1.0\"
        keptn.sh/pre-deployment-tasks: hello
        keptn.sh/post-deployment-tasks: hello
    spec:
      containers:
        - name: api
          image: ghcr.io/example/api:1.0
"
    );
    vec![SourceFile {
        path: "app.yaml".into(),
        text,
    }]
}

/// `(phase label, wave)` of every generated Job, TaskRecord and code ConfigMap.
fn waves(yaml: &str) -> Vec<(String, i128)> {
    let mut out = Vec::new();
    for chunk in klt_render::yaml::split_stream(yaml) {
        let Ok(Some(node)) = klt_render::yaml::parse_document(&chunk) else {
            continue;
        };
        let json = node.to_json();
        let meta = &json["metadata"];
        let Some(wave) = meta["annotations"]["argocd.argoproj.io/sync-wave"].as_str() else {
            continue;
        };
        let label = meta["labels"]["klt-render.dev/phase"]
            .as_str()
            .or(meta["labels"]["klt-render.dev/kind"].as_str())
            .unwrap_or(json["kind"].as_str().unwrap_or(""));
        out.push((label.to_string(), wave.parse().expect("an integer wave")));
    }
    out
}

fn render_at(wave: &str, records: bool, mode: Mode) -> klt_render::Output {
    let opts = Options {
        records,
        mode,
        ..Options::default()
    };
    render(&app(wave), &opts)
}

fn assert_room_error(wave: &str, records: bool, mode: Mode) {
    let out = render_at(wave, records, mode);
    assert!(out.documents.is_empty(), "{wave}: rendered");
    let found: Vec<String> = out.diagnostics.iter().map(|d| d.one_line()).collect();
    assert!(
        found.iter().any(
            |l| l.starts_with("app.yaml:26:35: error[KLT028]: sync wave ")
                && l.contains(&format!("sync wave {wave} "))
                && l.ends_with(
                    "[Deployment shop/api, field metadata.annotations.argocd.argoproj.io/sync-wave]"
                )
        ),
        "{wave}: {found:#?}"
    );
}

/// Renders, and every task wave is an int64 on the right side of the workload's wave.
fn assert_ordered(wave: &str, records: bool, mode: Mode) {
    let out = render_at(wave, records, mode);
    assert!(
        !out.has_errors(),
        "{wave}: {:#?}",
        out.diagnostics
            .iter()
            .map(|d| d.one_line())
            .collect::<Vec<_>>()
    );
    let w: i128 = wave.parse().unwrap();
    let found = waves(&out.to_yaml());
    assert!(found.iter().any(|(l, _)| l == "app-pre"), "{found:?}");
    for (label, at) in &found {
        assert!(
            i64::try_from(*at).is_ok(),
            "{wave}: {label} at {at} is no int64"
        );
        match label.as_str() {
            "app-pre" => assert_eq!(*at, w - 2, "{wave}: {found:?}"),
            "workload-pre" => assert_eq!(*at, w - 1, "{wave}: {found:?}"),
            "workload-post" => assert_eq!(*at, w + 1, "{wave}: {found:?}"),
            "app-post" => assert_eq!(*at, w + 2, "{wave}: {found:?}"),
            "TaskRecord" | "sync-gate" => assert_eq!(*at, w + 3, "{wave}: {found:?}"),
            "Deployment" => assert_eq!(*at, w, "{wave}: {found:?}"),
            _ => {}
        }
    }
}

const MIN: i64 = i64::MIN;
const MAX: i64 = i64::MAX;

#[test]
fn lowest_waves_leave_room_for_the_pre_tasks_or_fail() {
    for mode in [Mode::Waves, Mode::Hooks] {
        assert_room_error(&MIN.to_string(), false, mode);
        assert_room_error(&(MIN + 1).to_string(), false, mode);
        assert_ordered(&(MIN + 2).to_string(), false, mode);
        assert_ordered(&(MIN + 3).to_string(), false, mode);
    }
}

#[test]
fn highest_waves_leave_room_for_the_post_tasks_or_fail() {
    for mode in [Mode::Waves, Mode::Hooks] {
        assert_room_error(&MAX.to_string(), false, mode);
        assert_room_error(&(MAX - 1).to_string(), false, mode);
    }
    // PostSync hooks need no gate after them.
    assert_ordered(&(MAX - 2).to_string(), false, Mode::Hooks);
    // In waves mode the record, or else the sync gate, takes one more wave.
    for records in [true, false] {
        assert_room_error(&(MAX - 2).to_string(), records, Mode::Waves);
        assert_ordered(&(MAX - 3).to_string(), records, Mode::Waves);
    }
    let gates = waves(&render_at(&(MAX - 3).to_string(), false, Mode::Waves).to_yaml());
    assert!(
        gates.contains(&("sync-gate".to_string(), i128::from(MAX))),
        "{gates:?}"
    );
}

#[test]
fn waves_out_of_int64_are_wave_zero_as_in_argo_cd() {
    // strconv.Atoi fails, and Argo CD uses wave 0: so do we.
    for wave in ["-9223372036854775809", "9223372036854775808"] {
        let out = render_at(wave, false, Mode::Waves);
        assert!(!out.has_errors(), "{wave}");
        let found = waves(&out.to_yaml());
        assert!(found.contains(&("app-pre".to_string(), -2)), "{found:?}");
    }
}

#[test]
fn only_the_phases_that_run_need_room() {
    // Without app tasks, a workload at MIN + 1 leaves room for its own pre task.
    let files = app(&(MIN + 1).to_string());
    let text = files[0]
        .text
        .replace("preDeploymentTasks: [hello]", "preDeploymentTasks: []")
        .replace("postDeploymentTasks: [hello]", "postDeploymentTasks: []");
    let out = render(
        &[SourceFile {
            path: "app.yaml".into(),
            text,
        }],
        &Options::default(),
    );
    assert!(!out.has_errors(), "{:?}", out.diagnostics);
}

#[test]
fn the_cli_refuses_the_lowest_wave_without_output() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("wave_range");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("app.yaml"), &app(&MIN.to_string())[0].text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_klt-render"))
        .current_dir(&dir)
        .args(["render", "app.yaml"])
        .env_remove("KLT_NAMESPACE")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(out.stdout.is_empty());
    assert!(stderr.contains("error[KLT028]"), "{stderr}");
}
