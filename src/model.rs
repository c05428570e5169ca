//! Typed views of the Keptn kinds we consume, read from positioned YAML in every served
//! version: KeptnTaskDefinition, KeptnApp, KeptnAppContext and hand-written KeptnTask, and the
//! Keptn phases a task runs in (shared by the Job builder and the Argo CD ordering).
//!
//! Structural problems (unknown fields, wrong types) are the schema check's job; this module
//! reads what Keptn's operator reads and reports the semantic problems its webhook and
//! controllers would trip over.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::rc::Rc;

use crate::diag::{Diagnostic, Severity};
use crate::document::{
    DETACHED, Doc, Pairs, borrowed_map, scalar_string, string_map, string_pairs,
};
use crate::yaml::{BlockText, Node, NodeKind, Pos};

pub const GROUP: &str = "lifecycle.keptn.sh";
/// klt-render's own annotation: `sequential` runs the tasks of each phase one after another.
pub const TASK_ORDER: &str = "klt-render.dev/task-order";

/// Where a task runs in the deployment of an app version. It lives here, with the other Keptn
/// concepts, so that `job` (which builds a phase's Jobs) and `waves` (which orders phases) both
/// depend on it without depending on each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    AppPre,
    WorkloadPre,
    WorkloadPost,
    AppPost,
}

impl Phase {
    pub fn label(self) -> &'static str {
        match self {
            Phase::AppPre => "app-pre",
            Phase::WorkloadPre => "workload-pre",
            Phase::WorkloadPost => "workload-post",
            Phase::AppPost => "app-post",
        }
    }
    pub fn is_pre(self) -> bool {
        matches!(self, Phase::AppPre | Phase::WorkloadPre)
    }
}

/// A value with the position it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spanned<T> {
    pub value: T,
    pub pos: Pos,
    /// Dotted field path, for messages.
    pub field: String,
}

/// A name a task or evaluation list gives, shared with the runs it makes: they outlive the
/// lists, which the render drops once every run is planned.
pub type Named = Rc<Spanned<String>>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    Deno,
    Python,
}

/// The object under `deno`, `python` or legacy `function`.
#[derive(Clone, Debug, Default)]
pub struct RuntimeSpec<'d> {
    /// Where the definition's tree held it, which the render drops once its model is read:
    /// inline code is the largest text a definition holds, and shared by every Job using it.
    pub inline: Option<Code<'d>>,
    /// Boxed, as is `secret`: a definition sets one code source, and an unboxed `Spanned`
    /// each made a runtime spec 300 bytes.
    pub http_url: Option<Box<Spanned<String>>>,
    pub config_map: Option<Box<Spanned<String>>>,
    pub function_ref: Option<Box<Spanned<String>>>,
    /// `parameters.map`, sorted by key: a map's tree node per definition cost half a kilobyte.
    /// Boxed slices, as is `cmd_parameters`: held for the whole render, never grown.
    pub parameters: Box<[(Cow<'d, str>, Cow<'d, str>)]>,
    pub secret: Option<Box<Spanned<String>>>,
    pub cmd_parameters: Box<str>,
    /// `spec.deno`, `spec.python` or `spec.function`.
    pub field: &'static str,
    pub pos: Pos,
}

impl RuntimeSpec<'_> {
    /// Keptn's "spec exists": something other than the zero value is set.
    pub fn is_empty(&self) -> bool {
        self.inline.is_none()
            && self.http_url.is_none()
            && self.config_map.is_none()
            && self.function_ref.is_none()
            && self.parameters.is_empty()
            && self.secret.is_none()
            && self.cmd_parameters.is_empty()
    }
}

/// Inline task code: the source's own text where it can be (a plain or quoted scalar, or a
/// literal block read back from its lines), a decoded copy otherwise.
#[derive(Clone, Debug)]
pub enum Code<'d> {
    Source(&'d str),
    Block(BlockText<'d>),
    Decoded(Rc<str>),
}

impl Code<'_> {
    pub fn text(&self) -> Cow<'_, str> {
        match self {
            Code::Source(s) => Cow::Borrowed(s),
            Code::Block(b) => Cow::Owned(b.decode()),
            Code::Decoded(s) => Cow::Borrowed(s),
        }
    }

    fn read<'d>(node: &Node<'d>, src: Option<(&'d str, u32)>) -> Option<Code<'d>> {
        let NodeKind::Str(value) = &node.kind else {
            return None;
        };
        if value.is_empty() {
            return None;
        }
        if let Cow::Borrowed(s) = value {
            return Some(Code::Source(s));
        }
        let block = src.and_then(|(text, line)| BlockText::find(text, line, node.pos, value));
        Some(block.map_or_else(|| Code::Decoded(Rc::from(&**value)), Code::Block))
    }
}

/// A runtime runner's spec is [`TaskDefinition::runtime`]: a copy here would double it.
/// A container runner is its subtree, kept when the rest of the definition's tree is dropped.
#[derive(Clone, Debug)]
pub enum Runner<'d> {
    Runtime(Lang),
    Container(Box<Node<'d>>),
}

#[derive(Debug)]
pub struct TaskDefinition<'d> {
    pub doc: &'d Doc<'d>,
    /// The runner Keptn picks, `None` when the definition is unusable (a diagnostic says why).
    pub runner: Option<Runner<'d>>,
    /// The deno (or legacy function) spec and the python spec as written; a functionRef
    /// parent is read through these (deno first), whatever the child's runner.
    /// Boxed: a definition has at most one of them, and each is hundreds of bytes.
    pub deno: Option<Box<RuntimeSpec<'d>>>,
    pub python: Option<Box<RuntimeSpec<'d>>>,
    pub has_function_ref: bool,
    pub retries: i64,
    pub timeout_seconds: i64,
    pub ttl_seconds: i64,
    pub service_account: Option<Box<str>>,
    pub automount_token: Option<bool>,
    /// Boxed: rarely set, and a JSON value is 72 bytes in every definition.
    pub image_pull_secrets: Option<Box<serde_json::Value>>,
    /// `metadata.labels` and `metadata.annotations`, which every Job of the definition carries.
    /// Boxed slices: mostly empty, and every definition is held for the whole render.
    pub labels: Box<[(String, String)]>,
    pub annotations: Box<[(String, String)]>,
}

impl<'d> TaskDefinition<'d> {
    /// The spec a runtime runner of `lang` runs: deno (or legacy function) or python.
    pub fn runtime(&self, lang: Lang) -> Option<&RuntimeSpec<'d>> {
        match lang {
            Lang::Deno => self.deno.as_deref(),
            Lang::Python => self.python.as_deref(),
        }
    }
}

#[derive(Debug)]
pub struct App<'d> {
    pub doc: &'d Doc<'d>,
    /// `spec` as Go JSON: app tasks run again whenever it changes (read here because the
    /// render drops the object's tree once its model is read).
    pub spec_json: Rc<str>,
    pub version: String,
    pub workloads: Vec<Spanned<(String, String)>>,
    /// Task lists of v1alpha1..v1alpha3, `None` in later versions.
    pub pre_tasks: Option<Vec<Named>>,
    pub post_tasks: Option<Vec<Named>>,
    /// Evaluation lists of v1alpha1..v1alpha3 (empty in later versions).
    pub pre_evaluations: Vec<Named>,
    pub post_evaluations: Vec<Named>,
    pub managed_by_keptn: bool,
}

#[derive(Debug)]
pub struct AppContext<'d> {
    pub doc: &'d Doc<'d>,
    pub pre_tasks: Vec<Named>,
    pub post_tasks: Vec<Named>,
    pub pre_evaluations: Vec<Named>,
    pub post_evaluations: Vec<Named>,
    /// Shared with the context of every run of the app.
    pub metadata: Rc<Pairs>,
    /// `metadata.annotations["klt-render.dev/task-order"]` as written.
    pub task_order: Option<Spanned<String>>,
    /// Where `metadata.name` is written, for findings about the name (the render drops the
    /// object's tree once this model is read).
    pub name_pos: Option<Pos>,
}

#[derive(Debug)]
pub struct HandTask<'d> {
    pub doc: &'d Doc<'d>,
    pub definition: Named,
    pub context: TaskContext,
    pub parameters: BTreeMap<String, String>,
    pub secret: Option<String>,
    pub check_type: String,
    pub retries: i64,
    pub timeout_seconds: i64,
}

/// Keptn's `TaskContext`; serialized by [`TaskContext::to_json`] exactly as Go does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskContext {
    pub workload_name: String,
    pub app_name: String,
    pub app_version: String,
    pub workload_version: String,
    pub task_type: String,
    pub object_type: String,
    /// Shared: every task run of an app or workload carries the same map.
    pub metadata: Rc<BTreeMap<String, String>>,
}

impl TaskContext {
    pub fn to_json(&self, with_metadata: bool) -> String {
        context_json(
            [
                &self.workload_name,
                &self.app_name,
                &self.app_version,
                &self.workload_version,
                &self.task_type,
                &self.object_type,
            ],
            with_metadata
                .then_some(&*self.metadata)
                .into_iter()
                .flatten(),
        )
    }
}

/// A [`TaskContext`] whose strings are shared (`Rc<str>`) by every run of an app or
/// workload: a copy of each per run was a sixth of a render's non-input memory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SharedContext {
    pub workload_name: Rc<str>,
    pub app_name: Rc<str>,
    pub app_version: Rc<str>,
    pub workload_version: Rc<str>,
    /// A KeptnTask's own; `None` for the runs the operator would make, whose task type is
    /// their phase's (`pre` or `post`): so the pre and post runs of an app or workload share
    /// one context.
    pub task_type: Option<Rc<str>>,
    pub object_type: Rc<str>,
    /// The app's metadata, shared by every run of the app.
    pub metadata: Rc<Pairs>,
    /// A workload's own metadata, which wins over the app's for equal keys: merged as the
    /// JSON is written, since a merged copy per workload added up to 11 blocks per app.
    pub overlay: Option<Rc<Pairs>>,
}

impl SharedContext {
    /// The same JSON as [`TaskContext::to_json`], for a run in `phase`.
    pub fn to_json(&self, phase: Phase, with_metadata: bool) -> String {
        let check = if phase.is_pre() { "pre" } else { "post" };
        let none = Pairs::new();
        let (base, overlay) = match (with_metadata, &self.overlay) {
            (false, _) => (&none, &none),
            (true, None) => (&*self.metadata, &none),
            (true, Some(o)) => (&*self.metadata, &**o),
        };
        context_json(
            [
                &self.workload_name,
                &self.app_name,
                &self.app_version,
                &self.workload_version,
                self.task_type.as_deref().unwrap_or(check),
                &self.object_type,
            ],
            merge_pairs(overlay, base),
        )
    }
}

/// Two lists of pairs sorted by key, as one: of equal keys, `first`'s.
fn merge_pairs<'m>(
    first: &'m Pairs,
    second: &'m Pairs,
) -> impl Iterator<Item = (&'m String, &'m String)> {
    let (mut a, mut b) = (first.iter().peekable(), second.iter().peekable());
    std::iter::from_fn(move || {
        let next = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) if y.0 < x.0 => b.next(),
            (Some(x), Some(y)) if y.0 == x.0 => {
                b.next();
                a.next()
            }
            (Some(_), _) => a.next(),
            (None, _) => b.next(),
        };
        next.map(|(k, v)| (k, v))
    })
}

impl From<&TaskContext> for SharedContext {
    fn from(c: &TaskContext) -> Self {
        SharedContext {
            workload_name: c.workload_name.as_str().into(),
            app_name: c.app_name.as_str().into(),
            app_version: c.app_version.as_str().into(),
            workload_version: c.workload_version.as_str().into(),
            task_type: Some(c.task_type.as_str().into()),
            object_type: c.object_type.as_str().into(),
            metadata: Rc::new(
                c.metadata
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
            overlay: None,
        }
    }
}

/// Go's `json.Marshal` of a `TaskContext`: its fields in declaration order.
fn context_json<'m>(
    fields: [&str; 6],
    metadata: impl Iterator<Item = (&'m String, &'m String)>,
) -> String {
    let names = [
        "workloadName",
        "appName",
        "appVersion",
        "workloadVersion",
        "taskType",
        "objectType",
    ];
    let pairs: [(&str, &str); 6] = std::array::from_fn(|i| (names[i], fields[i]));
    crate::gojson::struct_with_pairs(&pairs, ("metadata", metadata))
}

fn spanned_str(node: Option<&Node>, field: String) -> Option<Spanned<String>> {
    let node = node?;
    let value = scalar_string(node)?;
    (!value.is_empty()).then_some(Spanned {
        value,
        pos: node.pos,
        field,
    })
}

fn str_list(node: Option<&Node>, field: &str) -> Vec<Named> {
    let mut list: Vec<_> = node
        .and_then(Node::as_seq)
        .unwrap_or_default()
        .iter()
        .enumerate()
        .filter_map(|(i, n)| {
            scalar_string(n).map(|value| {
                Rc::new(Spanned {
                    value,
                    pos: n.pos,
                    field: format!("{field}[{i}]"),
                })
            })
        })
        .collect();
    // Held for the whole render: a collected Vec has room for four.
    list.shrink_to_fit();
    list
}

fn int_field(node: Option<&Node>, default: i64) -> i64 {
    match node.map(|n| &n.kind) {
        Some(NodeKind::Int(i)) => *i,
        Some(NodeKind::Float(f)) if f.fract() == 0.0 => *f as i64,
        _ => default,
    }
}

fn boxed<T>(v: Option<T>) -> Option<Box<T>> {
    v.map(Box::new)
}

fn read_runtime<'d>(
    node: &Node<'d>,
    field: &'static str,
    src: Option<(&'d str, u32)>,
) -> RuntimeSpec<'d> {
    let f = |rest: &str| format!("spec.{field}.{rest}");
    RuntimeSpec {
        inline: node
            .path(&["inline", "code"])
            .and_then(|n| Code::read(n, src)),
        http_url: boxed(spanned_str(
            node.path(&["httpRef", "url"]),
            f("httpRef.url"),
        )),
        config_map: boxed(spanned_str(
            node.path(&["configMapRef", "name"]),
            f("configMapRef.name"),
        )),
        function_ref: boxed(spanned_str(
            node.path(&["functionRef", "name"]),
            f("functionRef.name"),
        )),
        parameters: borrowed_map(node.path(&["parameters", "map"]))
            .into_iter()
            .collect(),
        secret: boxed(spanned_str(
            node.path(&["secureParameters", "secret"]),
            f("secureParameters.secret"),
        )),
        cmd_parameters: node
            .get("cmdParameters")
            .and_then(scalar_string)
            .unwrap_or_default()
            .into_boxed_str(),
        field,
        pos: node.pos,
    }
}

/// Parses a Go duration (`time.ParseDuration`) into whole seconds, truncated as Keptn does.
pub fn go_duration_seconds(s: &str) -> Option<i64> {
    let (neg, mut rest) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total_ns: f64 = 0.0;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_end];
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return None;
        }
        let value: f64 = num.parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total_ns += value * scale;
    }
    if total_ns > i64::MAX as f64 {
        return None;
    }
    let secs = (total_ns as i64) / 1_000_000_000;
    Some(if neg { -secs } else { secs })
}

fn timeout(doc: &Doc<'_>, spec: Option<&Node>, diags: &mut Vec<Diagnostic>) -> i64 {
    let Some(node) = spec.and_then(|s| s.get("timeout")) else {
        return 300;
    };
    // A number is the schema's finding (KLT005, whose help asks for a duration): one
    // finding for one mistake.
    if !matches!(node.kind, NodeKind::Str(_)) {
        return 300;
    }
    let text = scalar_string(node).unwrap_or_default();
    match go_duration_seconds(&text) {
        Some(secs) if secs >= 0 => secs,
        _ => {
            diags.push(doc.diag(
                "KLT013",
                Severity::Error,
                node.pos,
                Some("spec.timeout".into()),
                format!("timeout {text:?} is not a Go duration"),
                Some("write a duration such as \"90s\", \"5m\" or \"1h30m\" (units ns, us, ms, s, m, h)".into()),
            ));
            300
        }
    }
}

pub fn read_task_definition<'d>(
    doc: &'d Doc<'d>,
    diags: &mut Vec<Diagnostic>,
) -> TaskDefinition<'d> {
    let mut def = read_task_definition_detached(doc, &doc.root, diags);
    def.doc = doc;
    def
}

/// [`read_task_definition`] from `root`, the object's tree held apart from `doc`, while the
/// object loads: the model borrows nothing of the tree, and names [`DETACHED`] until the
/// caller sets [`TaskDefinition::doc`] to the loaded object (`doc` names it in diagnostics).
pub fn read_task_definition_detached<'d>(
    doc: &Doc<'d>,
    root: &Node<'d>,
    diags: &mut Vec<Diagnostic>,
) -> TaskDefinition<'d> {
    let src = doc.raw.map(|raw| (raw, doc.raw_line));
    let spec = root.get("spec");
    let present = |key: &str| spec.and_then(|s| s.get(key)).filter(|n| !n.is_null());
    let function = present("function").map(|n| Box::new(read_runtime(n, "function", src)));
    let deno = present("deno").map(|n| Box::new(read_runtime(n, "deno", src)));
    let python = present("python").map(|n| Box::new(read_runtime(n, "python", src)));
    let container = present("container");

    let mut runners: Vec<&str> = Vec::new();
    for (name, set) in [
        ("container", container.is_some()),
        ("deno", deno.is_some()),
        ("function", function.is_some()),
        ("python", python.is_some()),
    ] {
        if set {
            runners.push(name);
        }
    }
    // Keptn reads legacy `function` as deno.
    let deno_like = deno.or(function);
    let mut runner = None;
    let spec_pos = spec.map_or(root.pos, |s| s.pos);
    match runners.len() {
        0 => diags.push(doc.diag(
            "KLT010",
            Severity::Error,
            spec_pos,
            Some("spec".into()),
            "the task definition has no runner".into(),
            Some("set exactly one of spec.deno, spec.python or spec.container (Keptn's webhook rejects a definition without one)".into()),
        )),
        1 => {}
        _ => diags.push(doc.diag(
            "KLT011",
            Severity::Error,
            spec_pos,
            Some("spec".into()),
            format!("the task definition has {} runners: {}", runners.len(), runners.join(", ")),
            Some("keep exactly one runner; Keptn's webhook rejects more than one".into()),
        )),
    }
    if runners.len() == 1 {
        runner = if let Some(c) = container {
            Some(Runner::Container(Box::new(c.clone())))
        } else if deno_like.is_some() {
            Some(Runner::Runtime(Lang::Deno))
        } else {
            python.as_ref().map(|_| Runner::Runtime(Lang::Python))
        };
    }
    let runtime = match runner {
        Some(Runner::Runtime(Lang::Deno)) => deno_like.as_deref(),
        Some(Runner::Runtime(Lang::Python)) => python.as_deref(),
        _ => None,
    };
    if let Some(rt) = runtime {
        check_code_sources(doc, rt, diags);
    }
    let has_function_ref = deno_like
        .iter()
        .chain(python.iter())
        .any(|r| r.function_ref.is_some());
    TaskDefinition {
        doc: &DETACHED,
        runner,
        deno: deno_like,
        python,
        has_function_ref,
        retries: int_field(spec.and_then(|s| s.get("retries")), 10),
        timeout_seconds: timeout(doc, spec, diags),
        ttl_seconds: int_field(spec.and_then(|s| s.get("ttlSecondsAfterFinished")), 300),
        service_account: spec
            .and_then(|s| s.path(&["serviceAccount", "name"]))
            .and_then(scalar_string)
            .filter(|s| !s.is_empty())
            .map(String::into_boxed_str),
        automount_token: match spec
            .and_then(|s| s.path(&["automountServiceAccountToken", "type"]))
            .map(|n| &n.kind)
        {
            Some(NodeKind::Bool(b)) => Some(*b),
            _ => None,
        },
        image_pull_secrets: spec
            .and_then(|s| s.get("imagePullSecrets"))
            .filter(|n| !n.is_null())
            .map(|n| Box::new(n.to_json())),
        labels: string_pairs(root.path(&["metadata", "labels"])).into_boxed_slice(),
        annotations: string_pairs(root.path(&["metadata", "annotations"])).into_boxed_slice(),
    }
}

fn check_code_sources(doc: &Doc<'_>, rt: &RuntimeSpec<'_>, diags: &mut Vec<Diagnostic>) {
    let mut sources = Vec::new();
    if rt.function_ref.is_some() {
        sources.push("functionRef");
    }
    if rt.inline.is_some() {
        sources.push("inline");
    }
    if rt.config_map.is_some() {
        sources.push("configMapRef");
    }
    if rt.http_url.is_some() {
        sources.push("httpRef");
    }
    let field = rt.field;
    match sources.len() {
        0 => diags.push(doc.diag(
            "KLT012",
            Severity::Error,
            rt.pos,
            Some(format!("spec.{field}")),
            "the runner has no code".into(),
            Some(Cow::from(format!("set one of spec.{field}.inline.code, httpRef.url, configMapRef.name or functionRef.name (Keptn never starts a Job without code)"))),
        )),
        1 => {}
        _ => diags.push(doc.diag(
            "KLT019",
            Severity::Warning,
            rt.pos,
            Some(format!("spec.{field}")),
            format!(
                "several code sources ({}); Keptn runs only {}",
                sources.join(", "),
                sources[0]
            ),
            Some("remove the sources that are not used".into()),
        )),
    }
}

pub fn read_app<'d>(doc: &'d Doc<'d>) -> App<'d> {
    App {
        doc,
        ..read_app_detached(doc, &doc.root)
    }
}

/// [`read_app`] from the object's tree held apart from `doc`, naming [`DETACHED`] (see
/// [`read_task_definition_detached`]).
pub fn read_app_detached<'d>(doc: &Doc<'_>, root: &Node<'d>) -> App<'d> {
    let spec = root.get("spec");
    let get = |k: &str| spec.and_then(|s| s.get(k));
    let legacy = matches!(doc.version(), "v1alpha1" | "v1alpha2" | "v1alpha3");
    let mut workloads: Vec<_> = get("workloads")
        .and_then(Node::as_seq)
        .unwrap_or_default()
        .iter()
        .enumerate()
        .filter_map(|(i, w)| {
            let name = w.get("name").and_then(scalar_string)?;
            let version = w.get("version").and_then(scalar_string).unwrap_or_default();
            Some(Spanned {
                value: (name, version),
                pos: w.pos,
                field: format!("spec.workloads[{i}]"),
            })
        })
        .collect();
    workloads.shrink_to_fit();
    App {
        doc: &DETACHED,
        spec_json: spec
            .map_or_else(
                || "null".to_string(),
                |s| crate::gojson::value(&s.to_json()),
            )
            .into(),
        version: get("version").and_then(scalar_string).unwrap_or_default(),
        workloads,
        pre_tasks: legacy.then(|| str_list(get("preDeploymentTasks"), "spec.preDeploymentTasks")),
        post_tasks: legacy
            .then(|| str_list(get("postDeploymentTasks"), "spec.postDeploymentTasks")),
        pre_evaluations: str_list(
            get("preDeploymentEvaluations"),
            "spec.preDeploymentEvaluations",
        ),
        post_evaluations: str_list(
            get("postDeploymentEvaluations"),
            "spec.postDeploymentEvaluations",
        ),
        managed_by_keptn: string_map(root.path(&["metadata", "labels"]))
            .get("app.kubernetes.io/managed-by")
            .is_some_and(|v| v == "keptn"),
    }
}

pub fn read_app_context<'d>(doc: &'d Doc<'d>) -> AppContext<'d> {
    AppContext {
        doc,
        ..read_app_context_detached(&doc.root)
    }
}

/// [`read_app_context`] from the object's tree, naming [`DETACHED`] (see
/// [`read_task_definition_detached`]).
pub fn read_app_context_detached<'d>(root: &Node<'d>) -> AppContext<'d> {
    let spec = root.get("spec");
    let get = |k: &str| spec.and_then(|s| s.get(k));
    AppContext {
        doc: &DETACHED,
        name_pos: root.path(&["metadata", "name"]).map(|n| n.pos),
        pre_tasks: str_list(get("preDeploymentTasks"), "spec.preDeploymentTasks"),
        post_tasks: str_list(get("postDeploymentTasks"), "spec.postDeploymentTasks"),
        pre_evaluations: str_list(
            get("preDeploymentEvaluations"),
            "spec.preDeploymentEvaluations",
        ),
        post_evaluations: str_list(
            get("postDeploymentEvaluations"),
            "spec.postDeploymentEvaluations",
        ),
        metadata: Rc::new(string_pairs(get("metadata"))),
        task_order: spanned_str(
            root.path(&["metadata", "annotations", TASK_ORDER]),
            format!("metadata.annotations.{TASK_ORDER}"),
        ),
    }
}

/// Which not-rendered lists a Keptn object carries (promotion tasks).
pub fn unrendered_lists(spec: Option<&Node>) -> Vec<(String, Pos)> {
    let mut out = Vec::new();
    for key in ["promotionTasks"] {
        if let Some(n) = spec.and_then(|s| s.get(key))
            && n.as_seq().is_some_and(|s| !s.is_empty())
        {
            out.push((format!("spec.{key}"), n.pos));
        }
    }
    out
}

pub fn read_hand_task<'d>(doc: &'d Doc<'d>, diags: &mut Vec<Diagnostic>) -> Option<HandTask<'d>> {
    let task = read_hand_task_detached(doc, &doc.root, diags)?;
    Some(HandTask { doc, ..task })
}

/// [`read_hand_task`] from the object's tree held apart from `doc`, naming [`DETACHED`]
/// (see [`read_task_definition_detached`]).
pub fn read_hand_task_detached<'d>(
    doc: &Doc<'_>,
    root: &Node<'d>,
    diags: &mut Vec<Diagnostic>,
) -> Option<HandTask<'d>> {
    let spec = root.get("spec");
    let get = |k: &str| spec.and_then(|s| s.get(k));
    let Some(definition) = spanned_str(get("taskDefinition"), "spec.taskDefinition".into()) else {
        // A missing field is the schema check's finding; an empty name is ours.
        get("taskDefinition")?;
        diags.push(doc.diag(
            "KLT025",
            Severity::Error,
            spec.map_or(root.pos, |s| s.pos),
            Some("spec.taskDefinition".into()),
            "the KeptnTask names no task definition".into(),
            Some("set spec.taskDefinition to the name of a KeptnTaskDefinition".into()),
        ));
        return None;
    };
    let ctx = get("context");
    let c = |k: &str| {
        ctx.and_then(|c| c.get(k))
            .and_then(scalar_string)
            .unwrap_or_default()
    };
    // v1alpha1/v1alpha2 also had the names at the top of spec.
    let top = |k: &str| get(k).and_then(scalar_string).unwrap_or_default();
    let or = |a: String, b: String| if a.is_empty() { b } else { a };
    let context = TaskContext {
        workload_name: or(c("workloadName"), top("workload")),
        app_name: or(c("appName"), top("app")),
        app_version: or(c("appVersion"), top("appVersion")),
        workload_version: or(c("workloadVersion"), top("workloadVersion")),
        task_type: c("taskType"),
        object_type: c("objectType"),
        metadata: Rc::new(string_map(ctx.and_then(|c| c.get("metadata")))),
    };
    Some(HandTask {
        doc: &DETACHED,
        definition: definition.into(),
        context,
        parameters: string_map(get("parameters").and_then(|p| p.get("map"))),
        secret: get("secureParameters")
            .and_then(|s| s.get("secret"))
            .and_then(scalar_string)
            .filter(|s| !s.is_empty()),
        check_type: get("checkType").and_then(scalar_string).unwrap_or_default(),
        retries: int_field(get("retries"), 10),
        timeout_seconds: timeout(doc, spec, diags),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Pairs {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// A workload's metadata over the app's: the merge the context JSON is written from
    /// equals merging into one list, sorting, and keeping the workload's of equal keys.
    #[test]
    fn workload_metadata_wins_over_the_app_metadata() {
        let workload = pairs(&[("commit", "abc"), ("stage", "canary")]);
        let app = pairs(&[("cost", "cc-1"), ("stage", "dev"), ("team", "payments")]);
        let merged: Vec<(&String, &String)> = merge_pairs(&workload, &app).collect();
        let got: Vec<(&str, &str)> = merged
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("commit", "abc"),
                ("cost", "cc-1"),
                ("stage", "canary"),
                ("team", "payments")
            ]
        );
        let context = SharedContext {
            metadata: Rc::new(app),
            overlay: Some(Rc::new(workload)),
            ..SharedContext::default()
        };
        let json = context.to_json(Phase::WorkloadPre, true);
        assert!(
            json.ends_with(
                r#""metadata":{"commit":"abc","cost":"cc-1","stage":"canary","team":"payments"}}"#
            ),
            "{json}"
        );
        assert!(
            !context
                .to_json(Phase::WorkloadPre, false)
                .contains("canary")
        );
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration_seconds("5m"), Some(300));
        assert_eq!(go_duration_seconds("1500ms"), Some(1));
        assert_eq!(go_duration_seconds("1.5m"), Some(90));
        assert_eq!(go_duration_seconds("1h30m"), Some(5400));
        assert_eq!(go_duration_seconds("0"), Some(0));
        assert_eq!(go_duration_seconds("10"), None);
        assert_eq!(go_duration_seconds("5 m"), None);
        assert_eq!(go_duration_seconds("abc"), None);
        assert_eq!(go_duration_seconds(""), None);
    }

    #[test]
    fn context_json_matches_keptn_e2e() {
        let ctx = TaskContext {
            workload_name: "workload".into(),
            app_name: "podtato-head".into(),
            app_version: "1.0.0".into(),
            workload_version: "0.1.0".into(),
            metadata: Rc::new([("commit-id".to_string(), "1234".to_string())].into()),
            ..Default::default()
        };
        assert_eq!(
            ctx.to_json(true),
            r#"{"workloadName":"workload","appName":"podtato-head","appVersion":"1.0.0","workloadVersion":"0.1.0","taskType":"","objectType":"","metadata":{"commit-id":"1234"}}"#
        );
    }
}
