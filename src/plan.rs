//! `plan`: what Argo CD will run, read back from a render's output. For each app (and its
//! version), the steps in the order Argo CD's sync takes them (PreSync hooks, the sync phase
//! wave by wave, PostSync hooks), each a task Job (definition, runner, phase, workload, and
//! whether it runs on this commit), an evaluation Job (its definition, runner `evaluation`)
//! or one of the user's objects; then the objects of no app.
//!
//! It reads the rendered objects only, not the renderer's internals: what it shows is what
//! Argo CD receives. Formatting (table, JSON, Mermaid) is here too, as pure functions of the
//! plan; the adapter decides width and colour.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::document::{self, SourceFile};
use crate::evaluation_job::{LABEL_EVALUATION, LABEL_KIND};
use crate::job::{LABEL_APP, LABEL_DEFINITION, LABEL_PHASE, LABEL_WORKLOAD};
use crate::render::OutDoc;
use crate::waves::{ANN_HOOK, ANN_WAVE};
use crate::workload;

/// Where in a sync a step runs: Argo CD runs PreSync hooks, then the sync phase, then
/// PostSync hooks, each by wave.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    PreSync,
    Sync,
    PostSync,
}

impl Stage {
    pub fn label(self) -> &'static str {
        match self {
            Stage::PreSync => "PreSync",
            Stage::Sync => "Sync",
            Stage::PostSync => "PostSync",
        }
    }
}

/// Whether a task Job runs on this commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runs {
    /// No previous render to compare with: Argo CD creates it if the cluster lacks it.
    Once,
    /// Its name is not in the previous render: it runs on this commit.
    New,
    /// The previous render had the same Job: Argo CD leaves it alone, nothing runs.
    Unchanged,
    /// A hook: it runs on every sync.
    EverySync,
}

impl Runs {
    pub fn label(self) -> &'static str {
        match self {
            Runs::Once => "runs once",
            Runs::New => "runs (new)",
            Runs::Unchanged => "unchanged",
            Runs::EverySync => "every sync",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Runs::Once => "once",
            Runs::New => "new",
            Runs::Unchanged => "unchanged",
            Runs::EverySync => "every-sync",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Task {
    pub definition: String,
    /// `deno`, `python` or `container`.
    pub runner: &'static str,
    pub phase: String,
    pub workload: Option<String>,
    pub runs: Runs,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub stage: Stage,
    pub wave: i64,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    /// Set for task Jobs.
    pub task: Option<Task>,
}

/// The steps of one app, or (`app: None`) of the objects that belong to no app.
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    pub app: Option<String>,
    pub namespace: Option<String>,
    pub version: Option<String>,
    pub steps: Vec<Step>,
    /// Generated code ConfigMaps labelled with this app (one shared by several apps is
    /// counted in [`Plan::code_configmaps`] only).
    pub code_configmaps: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub groups: Vec<Group>,
    /// Generated code ConfigMaps (not steps of their own: they exist before their tasks).
    pub code_configmaps: usize,
    /// Whether a previous render was given.
    pub compared: bool,
}

/// Names of the Jobs in a previous render, by namespace (`""`: the destination) and name.
pub fn job_names(previous: &str) -> BTreeSet<(String, String)> {
    let files = [SourceFile {
        path: "previous".into(),
        text: previous.to_string(),
    }];
    let mut diags = Vec::new();
    document::load(&files, &mut diags)
        .iter()
        .filter(|d| d.kind == "Job")
        .map(|d| (ns_key(d.namespace.as_deref()), d.name.to_string()))
        .collect()
}

fn ns_key(ns: Option<&str>) -> String {
    ns.unwrap_or_default().to_string()
}

/// The images that tell a runtime task's runner (the render's: a profile's or a mirror).
#[derive(Clone, Copy, Debug)]
pub struct RunnerImages<'a> {
    pub deno: &'a str,
    pub python: &'a str,
}

impl<'a> RunnerImages<'a> {
    pub fn of(opts: &'a crate::Options) -> Self {
        RunnerImages {
            deno: opts.deno_image(),
            python: opts.python_image(),
        }
    }
}

/// The plan of a successful render's documents, compared with a previous render's Job names
/// when given.
pub fn build(
    docs: &[OutDoc],
    previous: Option<&BTreeSet<(String, String)>>,
    images: RunnerImages<'_>,
) -> Plan {
    let mut groups: BTreeMap<(u8, String, String), Group> = BTreeMap::new();
    let mut code_configmaps = 0;
    for out in docs {
        if out.generated && out.kind == "ConfigMap" && !is_sync_gate(out) {
            code_configmaps += 1;
            count_configmap(&mut groups, out);
            continue;
        }
        each_object(out, |doc, json| {
            let step = step_of(doc, json, out.generated, previous, images);
            let (app, version) = owner(doc, json, step.task.is_some());
            add_step(&mut groups, step, app, version);
        });
    }
    let mut groups: Vec<Group> = groups.into_values().collect();
    for g in &mut groups {
        // Stable: within a wave the render's canonical order stays.
        g.steps.sort_by_key(|s| (s.stage, s.wave));
    }
    Plan {
        groups,
        code_configmaps,
        compared: previous.is_some(),
    }
}

/// The ConfigMap after an app version's post Jobs (see the render's sync gates): a step of
/// its own, not task code.
fn is_sync_gate(out: &OutDoc) -> bool {
    let mut gate = false;
    each_object(out, |_, json| {
        gate = label(json, LABEL_KIND) == Some(crate::render::SYNC_GATE);
    });
    gate
}

/// Counts a code ConfigMap for the app on its label (one shared by apps that disagree has
/// none).
fn count_configmap(groups: &mut BTreeMap<(u8, String, String), Group>, out: &OutDoc) {
    each_object(out, |doc, json| {
        let Some(app) = label(json, LABEL_APP) else {
            return;
        };
        let key = (0, app.to_string(), ns_key(doc.namespace.as_deref()));
        groups
            .entry(key)
            .or_insert_with(|| {
                new_group(
                    Some(app.to_string()),
                    doc.namespace.as_deref().map(str::to_string),
                )
            })
            .code_configmaps += 1;
    });
}

/// Calls `f` with each object of one rendered document (a List gives several) and its JSON.
fn each_object(out: &OutDoc, mut f: impl FnMut(&document::Doc<'_>, &Value)) {
    let files = [SourceFile {
        path: "render".into(),
        text: out.text.clone(),
    }];
    let mut diags = Vec::new();
    for doc in document::load(&files, &mut diags) {
        f(&doc, &doc.root.to_json());
    }
}

fn new_group(app: Option<String>, namespace: Option<String>) -> Group {
    Group {
        namespace: if app.is_some() { namespace } else { None },
        app,
        version: None,
        steps: Vec::new(),
        code_configmaps: 0,
    }
}

fn add_step(
    groups: &mut BTreeMap<(u8, String, String), Group>,
    step: Step,
    app: Option<String>,
    version: Option<String>,
) {
    let ns = step.namespace.clone();
    let key = (
        u8::from(app.is_none()),
        app.clone().unwrap_or_default(),
        if app.is_some() {
            ns_key(ns.as_deref())
        } else {
            String::new()
        },
    );
    let group = groups.entry(key).or_insert_with(|| new_group(app, ns));
    if group.version.is_none() {
        group.version = version;
    }
    group.steps.push(step);
}

fn annotation<'v>(json: &'v Value, key: &str) -> Option<&'v str> {
    json["metadata"]["annotations"][key].as_str()
}

fn label<'v>(json: &'v Value, key: &str) -> Option<&'v str> {
    json["metadata"]["labels"][key].as_str()
}

fn step_of(
    doc: &document::Doc<'_>,
    json: &Value,
    generated: bool,
    previous: Option<&BTreeSet<(String, String)>>,
    images: RunnerImages<'_>,
) -> Step {
    let hook = annotation(json, ANN_HOOK);
    let stage = match hook {
        Some(h) if h.split(',').any(|h| h.trim() == "PreSync") => Stage::PreSync,
        Some(h) if h.split(',').any(|h| h.trim() == "PostSync") => Stage::PostSync,
        _ => Stage::Sync,
    };
    // Argo CD reads a wave that does not parse as 0.
    let wave = annotation(json, ANN_WAVE)
        .and_then(|w| w.trim().parse().ok())
        .unwrap_or(0);
    let task = (generated && doc.kind == "Job").then(|| {
        let id = (ns_key(doc.namespace.as_deref()), doc.name.to_string());
        let runs = match (hook, previous) {
            (Some(_), _) => Runs::EverySync,
            (None, None) => Runs::Once,
            (None, Some(p)) if p.contains(&id) => Runs::Unchanged,
            (None, Some(_)) => Runs::New,
        };
        // An evaluation Job names its evaluation definition; its "runner" is the evaluator.
        let evaluation = label(json, LABEL_KIND) == Some("evaluation");
        Task {
            definition: label(json, LABEL_DEFINITION)
                .or_else(|| label(json, LABEL_EVALUATION))
                .unwrap_or_default()
                .into(),
            runner: if evaluation {
                "evaluation"
            } else {
                runner_of(json, images)
            },
            phase: label(json, LABEL_PHASE).unwrap_or_default().into(),
            workload: label(json, LABEL_WORKLOAD).map(str::to_string),
            runs,
        }
    });
    Step {
        stage,
        wave,
        kind: doc.kind.to_string(),
        namespace: doc.namespace.as_deref().map(str::to_string),
        name: doc.name.to_string(),
        task,
    }
}

/// The runner by the image of the Job's first container: the render's runtime images, else
/// Keptn's runtime image names.
fn runner_of(job: &Value, images: RunnerImages<'_>) -> &'static str {
    let image = job["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or_default();
    if image == images.deno {
        return "deno";
    }
    if image == images.python {
        return "python";
    }
    let repo = image.split(['@', ':']).next().unwrap_or_default();
    match repo.rsplit('/').next() {
        Some("deno-runtime") => "deno",
        Some("python-runtime") => "python",
        _ => "container",
    }
}

/// The app an object belongs to, and the app version it tells (app task Jobs and records
/// carry it; a workload task's Job does not, on purpose).
fn owner(doc: &document::Doc<'_>, json: &Value, is_task: bool) -> (Option<String>, Option<String>) {
    let non_empty = |s: Option<&str>| s.filter(|s| !s.is_empty()).map(str::to_string);
    if is_task {
        let app = non_empty(label(json, LABEL_APP));
        let version = match label(json, LABEL_WORKLOAD) {
            None => non_empty(annotation(json, "keptn.sh/version")),
            Some(_) => None,
        };
        return (app, version);
    }
    if doc.kind == "ConfigMap" && label(json, LABEL_KIND) == Some(crate::render::SYNC_GATE) {
        let data = &json["data"];
        return (
            non_empty(data["app"].as_str()),
            non_empty(data["appVersion"].as_str()),
        );
    }
    if doc.kind == "TaskRecord" {
        let spec = &json["spec"];
        return (
            non_empty(spec["app"].as_str()),
            non_empty(spec["appVersion"].as_str()),
        );
    }
    match workload::derive_keys(doc) {
        Some(keys) if !keys.app.is_empty() => (Some(keys.app), None),
        _ => (None, None),
    }
}

// ---- formats ---------------------------------------------------------------------------

/// How the table is drawn: the adapter knows the terminal.
#[derive(Clone, Copy, Debug, Default)]
pub struct Style {
    /// Columns available (`None`: no limit, e.g. not a terminal).
    pub width: Option<usize>,
    pub color: bool,
}

fn group_title(g: &Group) -> String {
    match &g.app {
        None => "objects of no app".to_string(),
        Some(app) => {
            let mut t = format!("app {app}");
            if let Some(v) = &g.version {
                let _ = write!(t, " {v}");
            }
            if let Some(ns) = &g.namespace {
                let _ = write!(t, " (namespace {ns})");
            }
            t
        }
    }
}

fn when(s: &Step) -> String {
    match s.stage {
        Stage::Sync => format!("wave {}", s.wave),
        stage => format!("{} {}", stage.label(), s.wave),
    }
}

/// The reviewer's sentence: which tasks run on this commit, per app version.
pub fn summary(plan: &Plan) -> Vec<String> {
    let mut lines = Vec::new();
    for g in &plan.groups {
        let Some(app) = &g.app else { continue };
        let tasks: Vec<&Task> = g.steps.iter().filter_map(|s| s.task.as_ref()).collect();
        if tasks.is_empty() {
            continue;
        }
        let title = match &g.version {
            Some(v) => format!("{app} {v}"),
            None => app.clone(),
        };
        let running: Vec<String> = tasks
            .iter()
            .filter(|t| t.runs != Runs::Unchanged)
            .map(|t| task_title(t))
            .collect();
        let line = if running.is_empty() {
            format!("{title}: no task runs")
        } else if plan.compared {
            format!("{title}: re-runs {}", running.join(", "))
        } else {
            format!("{title}: runs {}", running.join(", "))
        };
        lines.push(line);
    }
    lines
}

/// `notify (shop-web pre)`, `notify (app post)`: the same definition often runs in two
/// phases, and the sentence must tell them apart.
fn task_title(t: &Task) -> String {
    let when = t.phase.rsplit('-').next().unwrap_or(&t.phase);
    match &t.workload {
        Some(w) => format!("{} ({w} {when})", t.definition),
        None => format!("{} (app {when})", t.definition),
    }
}

/// One line per app for a terminal after a render: its task Jobs, code ConfigMaps and the
/// waves (or hook stages) they use.
pub fn render_summary(plan: &Plan) -> Vec<String> {
    plan.groups
        .iter()
        .filter_map(|g| {
            let app = g.app.as_ref()?;
            let tasks: Vec<&Step> = g.steps.iter().filter(|s| s.task.is_some()).collect();
            let mut whens: Vec<String> = Vec::new();
            for s in &tasks {
                let w = when(s);
                if !whens.contains(&w) {
                    whens.push(w);
                }
            }
            let title = match &g.version {
                Some(v) => format!("{app} {v}"),
                None => app.clone(),
            };
            let place = if whens.is_empty() {
                String::new()
            } else {
                format!(" ({})", whens.join(", "))
            };
            // Evaluation Jobs are counted apart, and only where there are any.
            let evaluations = tasks
                .iter()
                .filter(|s| s.task.as_ref().is_some_and(|t| t.runner == "evaluation"))
                .count();
            let jobs = if evaluations == 0 {
                format!("{} task Job(s)", tasks.len())
            } else {
                format!(
                    "{} task Job(s) and {evaluations} evaluation Job(s)",
                    tasks.len() - evaluations
                )
            };
            Some(format!(
                "{title}: {jobs}{place}, {} code ConfigMap(s)",
                g.code_configmaps
            ))
        })
        .collect()
}

/// The terminal table.
pub fn table(plan: &Plan, style: Style) -> String {
    let mut out = String::new();
    for g in &plan.groups {
        let rows: Vec<[String; 6]> = g.steps.iter().map(row).collect();
        let _ = writeln!(out, "{}", paint(&group_title(g), "1", style.color));
        let header = ["WHEN", "OBJECT", "TASK", "RUNNER", "WORKLOAD", "RUNS"].map(String::from);
        let widths = column_widths(&header, &rows, style.width);
        let _ = writeln!(
            out,
            "  {}",
            paint(&cells(&header, &widths), "2", style.color)
        );
        for (r, step) in rows.iter().zip(&g.steps) {
            let line = cells(r, &widths);
            let color = match step.task.as_ref().map(|t| t.runs) {
                Some(Runs::New) => "33",
                Some(Runs::Unchanged) => "2",
                _ => "",
            };
            let _ = writeln!(out, "  {}", paint(&line, color, style.color));
        }
        out.push('\n');
    }
    let mut notes = summary(plan);
    if plan.code_configmaps > 0 {
        notes.push(format!(
            "({} code ConfigMap(s), each before the tasks that mount it)",
            plan.code_configmaps
        ));
    }
    for note in notes {
        out.push_str(&wrap(&note, style.width));
    }
    out
}

/// Word-wraps a note to the width, continuation lines indented by two.
fn wrap(text: &str, width: Option<usize>) -> String {
    let Some(width) = width else {
        return format!("{text}\n");
    };
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split(' ') {
        if !line.trim().is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            out.push_str(line.trim_end());
            out.push('\n');
            line = String::from("  ");
        } else if !line.trim().is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push_str(&line);
    out.push('\n');
    out
}

fn row(s: &Step) -> [String; 6] {
    let object = format!("{} {}", s.kind, s.name);
    match &s.task {
        None => [
            when(s),
            object,
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        ],
        Some(t) => [
            when(s),
            object,
            format!("{} {}", t.phase, t.definition),
            t.runner.to_string(),
            t.workload.clone().unwrap_or_default(),
            t.runs.label().to_string(),
        ],
    }
}

/// Widths that fit: OBJECT gives way first (Job names end in long hashes), then WORKLOAD,
/// then TASK, each down to a floor; WHEN, RUNNER and RUNS are never shortened.
fn column_widths(header: &[String; 6], rows: &[[String; 6]], limit: Option<usize>) -> [usize; 6] {
    let mut w = [0usize; 6];
    for r in std::iter::once(header).chain(rows) {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let Some(limit) = limit else { return w };
    // Two spaces of indent and two between columns.
    let mut excess = (w.iter().sum::<usize>() + 2 * 6).saturating_sub(limit);
    for (col, floor) in [(1, 16), (4, 10), (2, 16)] {
        let cut = excess.min(w[col].saturating_sub(floor));
        w[col] -= cut;
        excess -= cut;
    }
    w
}

fn cells(r: &[String; 6], widths: &[usize; 6]) -> String {
    let mut line = String::new();
    for (i, (c, w)) in r.iter().zip(widths).enumerate() {
        let c = fit(c, *w);
        if i + 1 == r.len() {
            line.push_str(&c);
        } else {
            let _ = write!(line, "{c:<w$}  ");
        }
    }
    line.trim_end().to_string()
}

fn fit(s: &str, w: usize) -> String {
    if s.chars().count() <= w {
        return s.to_string();
    }
    let mut t: String = s.chars().take(w.saturating_sub(1)).collect();
    t.push('…');
    t
}

fn paint(s: &str, code: &str, on: bool) -> String {
    if on && !code.is_empty() {
        format!("\x1b[{code}m{s}\x1b[0m")
    } else {
        s.to_string()
    }
}

/// The plan as JSON (for tools): groups, steps in order, and the summary lines.
pub fn to_json(plan: &Plan) -> Value {
    let groups: Vec<Value> = plan
        .groups
        .iter()
        .map(|g| {
            let steps: Vec<Value> = g.steps.iter().map(step_json).collect();
            json!({
                "app": g.app,
                "version": g.version,
                "namespace": g.namespace,
                "steps": steps,
            })
        })
        .collect();
    json!({
        "groups": groups,
        "codeConfigMaps": plan.code_configmaps,
        "compared": plan.compared,
        "summary": summary(plan),
    })
}

fn step_json(s: &Step) -> Value {
    let mut v = json!({
        "stage": s.stage.label(),
        "wave": s.wave,
        "kind": s.kind,
        "namespace": s.namespace,
        "name": s.name,
    });
    if let Some(t) = &s.task {
        v["task"] = json!({
            "definition": t.definition,
            "runner": t.runner,
            "phase": t.phase,
            "workload": t.workload,
            "runs": t.runs.key(),
        });
    }
    v
}

/// A Mermaid flowchart (GitHub renders it in a PR comment): one box per app, in it one box
/// per wave in sync order, tasks that run on this commit highlighted.
pub fn mermaid(plan: &Plan) -> String {
    let mut out = String::from("flowchart TD\n");
    let (mut new, mut unchanged) = (Vec::new(), Vec::new());
    let mut n = 0usize;
    for (gi, g) in plan.groups.iter().enumerate() {
        let _ = writeln!(out, "  subgraph g{gi}[\"{}\"]", label_text(&group_title(g)));
        out.push_str("    direction TB\n");
        let mut waves: Vec<String> = Vec::new();
        for (wi, chunk) in g
            .steps
            .chunk_by(|a, b| (a.stage, a.wave) == (b.stage, b.wave))
            .enumerate()
        {
            let id = format!("g{gi}w{wi}");
            let _ = writeln!(
                out,
                "    subgraph {id}[\"{}\"]",
                label_text(&when(&chunk[0]))
            );
            for s in chunk {
                let _ = writeln!(out, "      n{n}[\"{}\"]", label_text(&node_text(s)));
                match s.task.as_ref().map(|t| t.runs) {
                    Some(Runs::New | Runs::Once | Runs::EverySync) => new.push(format!("n{n}")),
                    Some(Runs::Unchanged) => unchanged.push(format!("n{n}")),
                    None => {}
                }
                n += 1;
            }
            out.push_str("    end\n");
            waves.push(id);
        }
        if waves.len() > 1 {
            let _ = writeln!(out, "    {}", waves.join(" --> "));
        }
        out.push_str("  end\n");
    }
    out.push_str("  classDef runs fill:#fff3bf,stroke:#e67700\n");
    out.push_str("  classDef unchanged fill:#f1f3f5,stroke:#adb5bd,color:#868e96\n");
    for (class, ids) in [("runs", &new), ("unchanged", &unchanged)] {
        if !ids.is_empty() {
            let _ = writeln!(out, "  class {} {class}", ids.join(","));
        }
    }
    out
}

fn node_text(s: &Step) -> String {
    match &s.task {
        None => format!("{} {}", s.kind, s.name),
        Some(t) => {
            let mut text = format!(
                "{} {}<br/>{} · {}",
                t.phase,
                t.definition,
                t.runner,
                t.runs.label()
            );
            if let Some(w) = &t.workload {
                let _ = write!(text, "<br/>{w}");
            }
            text
        }
    }
}

/// Text inside a quoted Mermaid label: quotes and markup characters as entity codes.
fn label_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("#quot;"),
            '#' => out.push_str("#35;"),
            '<' if !s.contains("<br/>") => out.push_str("#lt;"),
            '>' if !s.contains("<br/>") => out.push_str("#gt;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(kind: &str, name: &str, generated: bool, text: &str) -> OutDoc {
        OutDoc {
            kind: kind.into(),
            namespace: None,
            name: name.into(),
            text: text.into(),
            generated,
        }
    }

    const IMAGES: RunnerImages<'static> = RunnerImages {
        deno: "mirror.example/deno:1",
        python: "mirror.example/python:1",
    };

    #[test]
    fn runners_by_the_renders_images() {
        let job = |image: &str| serde_json::json!({"spec": {"template": {"spec": {"containers": [{"image": image}]}}}});
        assert_eq!(runner_of(&job("mirror.example/python:1"), IMAGES), "python");
        assert_eq!(
            runner_of(&job("ghcr.io/keptn/deno-runtime:v3"), IMAGES),
            "deno"
        );
        assert_eq!(runner_of(&job("curlimages/curl:8"), IMAGES), "container");
    }

    const JOB: &str = "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: pre-x-1\n  labels:\n    klt-render.dev/app: shop\n    klt-render.dev/phase: app-pre\n    klt-render.dev/task-definition: x\n  annotations:\n    keptn.sh/version: \"2.0\"\n    argocd.argoproj.io/sync-wave: \"-1\"\nspec:\n  template:\n    spec:\n      containers:\n      - image: ghcr.io/keptn/deno-runtime:v2.0.0\n";
    const DEPLOY: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  template:\n    metadata:\n      labels:\n        app.kubernetes.io/part-of: shop\n        app.kubernetes.io/name: web\n        app.kubernetes.io/version: \"1\"\n";
    const SVC: &str = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  annotations:\n    argocd.argoproj.io/sync-wave: \"bad\"\n";

    #[test]
    fn evaluation_jobs_are_steps_named_by_their_definition() {
        let eval = "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: pre-eval-cpus-1\n  labels:\n    klt-render.dev/app: shop\n    klt-render.dev/phase: app-pre\n    klt-render.dev/evaluation-definition: cpus\n    klt-render.dev/kind: evaluation\n  annotations:\n    keptn.sh/version: \"2.0\"\n    argocd.argoproj.io/sync-wave: \"-2\"\nspec:\n  template:\n    spec:\n      containers:\n      - image: ghcr.io/klt-render/klt-evaluate:0.1.0\n";
        let docs = [
            out("Job", "pre-eval-cpus-1", true, eval),
            out("Job", "pre-x-1", true, JOB),
        ];
        let plan = build(&docs, None, IMAGES);
        let steps: Vec<(&str, &str, i64)> = plan.groups[0]
            .steps
            .iter()
            .map(|s| {
                let t = s.task.as_ref().unwrap();
                (t.definition.as_str(), t.runner, s.wave)
            })
            .collect();
        assert_eq!(steps, [("cpus", "evaluation", -2), ("x", "deno", -1)]);
        assert_eq!(
            render_summary(&plan),
            [
                "shop 2.0: 1 task Job(s) and 1 evaluation Job(s) (wave -2, wave -1), 0 code ConfigMap(s)"
            ]
        );
    }

    #[test]
    fn steps_are_grouped_by_app_and_ordered_by_wave() {
        let docs = [
            out("Service", "web", false, SVC),
            out("Deployment", "web", false, DEPLOY),
            out("Job", "pre-x-1", true, JOB),
        ];
        let plan = build(&docs, None, IMAGES);
        assert_eq!(plan.groups.len(), 2);
        let shop = &plan.groups[0];
        assert_eq!(
            (shop.app.as_deref(), shop.version.as_deref()),
            (Some("shop"), Some("2.0"))
        );
        let order: Vec<(&str, i64)> = shop
            .steps
            .iter()
            .map(|s| (s.kind.as_str(), s.wave))
            .collect();
        assert_eq!(order, [("Job", -1), ("Deployment", 0)]);
        let t = shop.steps[0].task.as_ref().unwrap();
        assert_eq!((t.runner, t.runs), ("deno", Runs::Once));
        // A wave that does not parse counts as 0, as in Argo CD.
        assert_eq!(plan.groups[1].app, None);
        assert_eq!(plan.groups[1].steps[0].wave, 0);
    }

    #[test]
    fn a_previous_render_tells_what_runs_again() {
        let docs = [out("Job", "pre-x-1", true, JOB)];
        let same = job_names(&format!("---\n{JOB}"));
        assert_eq!(
            build(&docs, Some(&same), IMAGES).groups[0].steps[0]
                .task
                .as_ref()
                .unwrap()
                .runs,
            Runs::Unchanged
        );
        let plan = build(&docs, Some(&BTreeSet::new()), IMAGES);
        assert_eq!(
            plan.groups[0].steps[0].task.as_ref().unwrap().runs,
            Runs::New
        );
        assert_eq!(summary(&plan), ["shop 2.0: re-runs x (app pre)"]);
    }

    #[test]
    fn narrow_tables_shorten_object_names() {
        let plan = build(
            &[out(
                "Job",
                "pre-x-1",
                true,
                &JOB.replace("pre-x-1", &"p".repeat(80)),
            )],
            None,
            IMAGES,
        );
        let wide = table(&plan, Style::default());
        let narrow = table(
            &plan,
            Style {
                width: Some(70),
                color: false,
            },
        );
        assert!(wide.lines().any(|l| l.contains(&"p".repeat(80))));
        assert!(narrow.lines().all(|l| l.chars().count() <= 70), "{narrow}");
        assert!(!narrow.contains('\x1b'));
        assert!(
            table(
                &plan,
                Style {
                    width: None,
                    color: true
                }
            )
            .contains("\x1b[1m")
        );
    }

    #[test]
    fn mermaid_labels_are_escaped() {
        assert_eq!(label_text("a \"b\" #c"), "a #quot;b#quot; #35;c");
    }
}
