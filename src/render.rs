//! The renderer: input documents and options in, ordered output documents and diagnostics
//! out. No filesystem, environment, clock or stdout here.
//!
//! Output order (documented in the README): app pre-deployment objects, workload
//! pre-deployment objects, every other input object, workload post-deployment objects, app
//! post-deployment objects. Within a phase ConfigMaps come before Jobs, each sorted by
//! namespace and name; input objects are sorted by kind rank, kind, group, namespace, name.
//! Nothing depends on file names or file order.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;

use serde_json::{Value, json};

use crate::diag::{Diagnostic, Severity};
use crate::document::{self, Doc, SourceFile};
use crate::job::{self, Index, TaskRun};
use crate::model::{self, AppContext, HandTask, Phase, Spanned, TaskContext, TaskDefinition};
use crate::options::{Mode, Options};
use crate::workload::{self, Workload};
use crate::yaml::{self, Entry, Node, NodeKind};

/// One output document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutDoc {
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    /// YAML text of the document, ending in a newline, without a `---` marker.
    pub text: String,
    pub generated: bool,
}

#[derive(Debug, Default)]
pub struct Output {
    /// Empty whenever `diagnostics` holds an error: a partial render must never reach Argo CD.
    pub documents: Vec<OutDoc>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Output {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    /// The documents as one YAML stream.
    pub fn to_yaml(&self) -> String {
        let mut out = Vec::with_capacity(self.documents.iter().map(|d| d.text.len() + 4).sum());
        self.write_yaml(&mut out)
            .expect("writing to a Vec cannot fail");
        String::from_utf8(out).expect("documents are UTF-8")
    }

    /// Writes the stream without building it in memory first.
    pub fn write_yaml(&self, w: &mut impl std::io::Write) -> std::io::Result<()> {
        for d in &self.documents {
            if !d.text.starts_with("---") {
                w.write_all(b"---\n")?;
            }
            w.write_all(d.text.as_bytes())?;
        }
        Ok(())
    }
}

use crate::waves::{ANN_HOOK, ANN_WAVE, Placement};

/// Renders into memory: every document's text at once. For tests and callers that inspect
/// the documents; commands that only write the stream use [`render_with`].
pub fn render(files: &[SourceFile], opts: &Options) -> Output {
    render_with(files, opts, |r| r.into_output())
}

/// Renders and hands the result to `finish` while the input's documents are still alive:
/// pass-through documents are borrowed from the input and generated ones are made one at a
/// time as [`Rendering::write_yaml`] writes them, so that no render holds its whole output.
/// Every check has run before `finish` is called: on an error there is nothing to write.
pub fn render_with<R>(
    files: &[SourceFile],
    opts: &Options,
    finish: impl FnOnce(Rendering<'_>) -> R,
) -> R {
    render_inspecting(files, opts, |_| {}, finish)
}

/// [`render_with`], showing `inspect` every input object with its whole tree as it is
/// loaded: `check`'s lints read trees the render cuts, and a second load of the input would
/// cost as much time and memory as the render itself.
pub fn render_inspecting<R>(
    files: &[SourceFile],
    opts: &Options,
    mut inspect: impl FnMut(&Doc<'_>),
    finish: impl FnOnce(Rendering<'_>) -> R,
) -> R {
    let mut diags = Vec::new();
    let mut workload_keys = Vec::new();
    let docs = document::load_each(files, &opts.limits, &mut diags, |i, doc, diags| {
        inspect(doc);
        check_metadata_maps(doc, diags);
        crate::workload_keys::check(doc, diags);
        if doc.group() != model::GROUP
            && workload::is_workload_kind(doc)
            && let Some(keys) = workload::derive_keys(doc)
        {
            warn_evaluations(doc, &keys, diags);
            workload_keys.push((i, keys));
        }
        if !keeps_tree(doc) {
            doc.root = ordering_tree(&doc.root);
        }
    });
    let mut workload_keys = workload_keys.into_iter().peekable();
    let dest = opts.namespace.as_deref();
    check_duplicates(&docs, dest, &mut diags);

    let mut definitions: job::ByName<Box<TaskDefinition<'_>>> = Default::default();
    let mut config_maps = job::ByName::default();
    let mut secrets = job::ByName::default();
    let mut apps = BTreeMap::new();
    let mut contexts: BTreeMap<(String, String), AppContext<'_>> = BTreeMap::new();
    let mut hand_tasks: Vec<HandTask<'_>> = Vec::new();
    let mut workloads: Vec<Workload<'_>> = Vec::new();
    let mut passthrough: Vec<&Doc<'_>> = Vec::new();

    for (i, doc) in docs.iter().enumerate() {
        let key = (doc.effective_namespace(dest), doc.name.to_string());
        if doc.group() == model::GROUP {
            if !check_keptn_schema(doc, &mut diags) {
                continue;
            }
            match &*doc.kind {
                "KeptnTaskDefinition" => {
                    let def = Box::new(model::read_task_definition(doc, &mut diags));
                    definitions.insert(key.0, key.1, def);
                }
                "KeptnApp" => {
                    warn_unrendered(doc, &mut diags);
                    apps.insert(key, model::read_app(doc));
                }
                "KeptnAppContext" => {
                    warn_unrendered(doc, &mut diags);
                    contexts.insert(key, model::read_app_context(doc));
                }
                "KeptnTask" => hand_tasks.extend(model::read_hand_task(doc, &mut diags)),
                _ if !opts.keep_keptn => diags.push(doc.diag(
                    "KLT026",
                    Severity::Warning,
                    doc.root.pos,
                    None,
                    format!("{} is not rendered and was dropped", doc.kind),
                    Some("klt-render renders task definitions, apps, app contexts and tasks; pass --keep-keptn to keep other Keptn objects".into()),
                )),
                _ => {}
            }
            if opts.keep_keptn {
                passthrough.push(doc);
            }
            continue;
        }
        passthrough.push(doc);
        // An object named only by generateName cannot be what a task refers to by name (and
        // two of them under one key would make the output depend on file order).
        let named = doc.root.path(&["metadata", "name"]).is_some();
        match (doc.group(), &*doc.kind) {
            ("", "ConfigMap" | "Secret") if !named => {}
            ("", "ConfigMap") => {
                config_maps.insert(key.0, key.1, doc);
            }
            ("", "Secret") => {
                secrets.insert(key.0, key.1, doc);
            }
            _ => {
                if let Some((_, keys)) = workload_keys.next_if(|(k, _)| *k == i) {
                    workloads.push(Workload { doc, keys });
                }
            }
        }
    }

    let mut runs = Vec::new();
    plan_apps(&apps, &contexts, &workloads, opts, &mut runs, &mut diags);
    for t in &hand_tasks {
        runs.push(hand_task_run(t, opts));
    }
    runs.shrink_to_fit();

    let placement = Placement::new(&passthrough, opts);
    placement.check_room(
        &passthrough,
        runs.iter().map(|r| r.phase),
        opts.records,
        &mut diags,
    );
    let index = Index {
        definitions: &definitions,
        config_maps: &config_maps,
        secrets: &secrets,
        options: opts,
        placement: &placement,
        names: Default::default(),
    };
    let rendered: Vec<(usize, job::Rendered<'_>)> = runs
        .iter()
        .enumerate()
        .filter_map(|(i, r)| job::render_task(r, &index, &mut diags).map(|j| (i, j)))
        .collect();

    crate::diag::redact_secrets(&mut diags, source_texts(files));
    crate::diag::finish(&mut diags);
    let (items, generated) = if diags.iter().any(Diagnostic::is_error) {
        Default::default()
    } else {
        assemble(&passthrough, &runs, rendered, &placement, opts)
    };
    finish(Rendering {
        diagnostics: diags,
        items,
        generated,
        runs: &runs,
        index: &index,
    })
}

/// A finished render: its diagnostics and, unless they hold an error, its documents in
/// output order, generated ones still unwritten.
pub struct Rendering<'r> {
    pub diagnostics: Vec<Diagnostic>,
    items: Vec<Placed<'r>>,
    generated: Generated<'r>,
    runs: &'r [TaskRun<'r>],
    index: &'r Index<'r, 'r>,
}

impl Rendering<'_> {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    /// How many documents the stream holds (none when there is an error).
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Writes the stream, making each generated document's text only as it is written.
    pub fn write_yaml(&self, w: &mut impl std::io::Write) -> std::io::Result<()> {
        for item in &self.items {
            let text = self.text(item);
            if !text.starts_with("---") {
                w.write_all(b"---\n")?;
            }
            w.write_all(text.as_bytes())?;
        }
        Ok(())
    }

    /// The stream as one string.
    pub fn to_yaml(&self) -> String {
        let mut out = Vec::new();
        self.write_yaml(&mut out)
            .expect("writing to a Vec cannot fail");
        String::from_utf8(out).expect("documents are UTF-8")
    }

    pub fn into_output(self) -> Output {
        let documents = self
            .items
            .iter()
            .map(|p| OutDoc {
                kind: p.kind.to_string(),
                namespace: p.namespace.as_deref().map(str::to_string),
                name: p.name.to_string(),
                text: self.text(p).into_owned(),
                generated: !matches!(p.body, Body::Input(_)),
            })
            .collect();
        Output {
            documents,
            diagnostics: self.diagnostics,
        }
    }

    fn text<'s>(&'s self, item: &'s Placed<'_>) -> Cow<'s, str> {
        match &item.body {
            Body::Input(text) => Cow::Borrowed(text),
            Body::Object(obj) => Cow::Owned(yaml::emit(obj)),
            Body::ConfigMap(i) => {
                let (phase, cm, labels) = &self.generated.config_maps[*i];
                let mut obj = job::config_map_object(cm, labels);
                self.index.placement.annotate(&mut obj, *phase, false);
                Cow::Owned(yaml::emit(&obj))
            }
            Body::Job(i) => {
                let (run, rendered) = &self.generated.jobs[*i];
                Cow::Owned(job::job_text(&self.runs[*run], self.index, rendered))
            }
        }
    }
}

fn warn_evaluations(doc: &Doc<'_>, keys: &workload::Keys, diags: &mut Vec<Diagnostic>) {
    for e in &keys.evaluations {
        diags.push(doc.diag(
            "KLT021",
            Severity::Warning,
            e.pos,
            Some(e.field.clone()),
            "evaluations are not rendered and will not run".into(),
            Some("run the check as a task (a Job) instead, or keep the Keptn metrics operator for it".into()),
        ));
    }
}

/// Whether the renderer reads an object's tree after loading it: Keptn objects become
/// models, ConfigMaps, Secrets and ServiceAccounts may be looked up or moved before a task,
/// and list items have no text of their own to pass through.
fn keeps_tree(doc: &Doc<'_>) -> bool {
    doc.group() == model::GROUP
        || doc.raw.is_none_or(|raw| raw.trim().is_empty())
        || (doc.group().is_empty()
            && matches!(&*doc.kind, "ConfigMap" | "Secret" | "ServiceAccount"))
}

/// What is read of a pass-through object after loading, at its positions: whether it has a
/// metadata.name (duplicates) and its Argo CD hook and wave annotations (ordering). Trees of
/// every input object were the largest part of a render's memory.
fn ordering_tree<'a>(root: &Node<'a>) -> Node<'a> {
    let pick = |node: &Node<'a>, keys: &[&str]| -> Vec<Entry<'a>> {
        node.as_map()
            .unwrap_or_default()
            .iter()
            .filter(|e| keys.contains(&e.key.as_ref()))
            .cloned()
            .collect()
    };
    let map = |entries: Vec<Entry<'a>>, pos| Node {
        kind: NodeKind::Map(entries),
        pos,
    };
    let Some(meta) = root.entry("metadata") else {
        return map(Vec::new(), root.pos);
    };
    let mut kept = pick(&meta.value, &["name"]);
    if let Some(ann) = meta.value.entry("annotations") {
        kept.push(Entry {
            key: ann.key.clone(),
            key_pos: ann.key_pos,
            value: map(pick(&ann.value, &[ANN_HOOK, ANN_WAVE]), ann.value.pos),
        });
    }
    map(
        vec![Entry {
            key: meta.key.clone(),
            key_pos: meta.key_pos,
            value: map(kept, meta.value.pos),
        }],
        root.pos,
    )
}

/// The input as `(path, text)`, as diagnostics name it.
pub fn source_texts(files: &[SourceFile]) -> impl Iterator<Item = (&str, &str)> {
    files.iter().map(|f| (f.path.as_str(), f.text.as_str()))
}

const RENDERED_KINDS: &[&str] = &[
    "KeptnApp",
    "KeptnAppContext",
    "KeptnTask",
    "KeptnTaskDefinition",
];
/// Real Keptn kinds that klt-render drops with a warning.
const NOT_RENDERED_KINDS: &[&str] = &[
    "KeptnAppCreationRequest",
    "KeptnAppVersion",
    "KeptnEvaluation",
    "KeptnEvaluationDefinition",
    "KeptnWorkload",
    "KeptnWorkloadInstance",
    "KeptnWorkloadVersion",
];

/// Strict CRD schema check of a Keptn object. `false` when the object cannot be read at all.
fn check_keptn_schema(doc: &Doc<'_>, diags: &mut Vec<Diagnostic>) -> bool {
    use crate::schema::Problem;
    let Some(issues) = crate::schema::check(&doc.api_version, &doc.kind, &doc.root) else {
        let versions = crate::schema::known_versions(&doc.kind);
        if versions.is_empty() {
            if NOT_RENDERED_KINDS.contains(&&*doc.kind) {
                return true; // a Keptn kind we do not render; the caller says so
            }
            let known = RENDERED_KINDS.iter().chain(NOT_RENDERED_KINDS).copied();
            diags.push(doc.diag(
                "KLT007",
                Severity::Error,
                doc.root.get("kind").map_or(doc.root.pos, |n| n.pos),
                Some("kind".into()),
                format!("{} is not a kind of {}", doc.kind, model::GROUP),
                Some(match crate::suggest::closest(&doc.kind, known) {
                    Some(k) => format!("did you mean {k:?}?"),
                    None => format!("use one of {}", RENDERED_KINDS.join(", ")),
                }),
            ));
            return false;
        }
        diags.push(doc.diag(
            "KLT006",
            Severity::Error,
            doc.root.get("apiVersion").map_or(doc.root.pos, |n| n.pos),
            Some("apiVersion".into()),
            format!("{} is not served as {}", doc.kind, doc.api_version),
            Some(format!(
                    "use one of: {}",
                    versions
                        .iter()
                        .map(|v| format!("{}/{v}", model::GROUP))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
        ));
        return false;
    };
    for issue in issues {
        let (code, message, help) = match issue.problem {
            Problem::UnknownField { hint } => {
                let key = issue.field.rsplit('.').next().unwrap_or(&issue.field);
                (
                    "KLT004",
                    format!("unknown field {key:?} in {}", doc.api_version),
                    Some(crate::schema::unknown_field_help(key, hint.as_ref())),
                )
            }
            Problem::WrongType { expected, found } => (
                "KLT005",
                format!("expected {expected}, found {found}"),
                Some(match expected {
                    "string" => "quote the value".to_string(),
                    "integer" | "object" | "array" => format!("write an {expected}"),
                    _ => format!("write a {expected}"),
                }),
            ),
            Problem::MissingRequired { name } => (
                "KLT005",
                format!("required field {name:?} is missing"),
                Some(format!("add {name}")),
            ),
        };
        diags.push(doc.diag(
            code,
            Severity::Error,
            issue.pos,
            Some(issue.field),
            message,
            help,
        ));
    }
    true
}

/// `metadata.labels` and `metadata.annotations` must be maps of scalars (or absent): the API
/// server rejects anything else, and klt-render copies them onto Jobs or adds its own keys to
/// them. (Unquoted numbers and booleans are `check`'s KLT043: they pass through as written.)
fn check_metadata_maps(doc: &Doc<'_>, diags: &mut Vec<Diagnostic>) {
    let article = |node: &yaml::Node| {
        let t = node.type_name();
        format!(
            "{} {t}",
            if t.starts_with(['a', 'i', 'o']) {
                "an"
            } else {
                "a"
            }
        )
    };
    for field in ["labels", "annotations"] {
        let Some(node) = doc.root.path(&["metadata", field]) else {
            continue;
        };
        let Some(entries) = node.as_map() else {
            if !node.is_null() {
                diags.push(doc.diag(
                    "KLT008",
                    Severity::Error,
                    node.pos,
                    Some(format!("metadata.{field}")),
                    format!(
                        "metadata.{field} is {}, not a map of strings; the API server rejects the object",
                        article(node)
                    ),
                    Some(format!(
                        "write {field} as `key: \"value\"` entries under metadata.{field}, or remove the field"
                    )),
                ));
            }
            continue;
        };
        for e in entries {
            if e.value.as_map().is_some() || e.value.as_seq().is_some() {
                diags.push(doc.diag(
                    "KLT008",
                    Severity::Error,
                    e.value.pos,
                    Some(format!("metadata.{field}.{}", e.key)),
                    format!(
                        "the value of {field} key {:?} is {}, not a string; the API server rejects the object",
                        e.key,
                        article(&e.value)
                    ),
                    Some("write the value as one quoted string (JSON text for structured data)".into()),
                ));
            }
        }
    }
}

fn check_duplicates(docs: &[Doc<'_>], dest: Option<&str>, diags: &mut Vec<Diagnostic>) {
    // Hashed, not ordered: an object is looked up once and the map is never walked.
    let mut seen: HashMap<(&str, &str, &str, &str), &Doc<'_>> = HashMap::with_capacity(docs.len());
    for doc in docs {
        if doc.root.path(&["metadata", "name"]).is_none() {
            continue; // generateName objects are distinct by design
        }
        let namespace = doc.namespace.as_deref().or(dest).unwrap_or("");
        let key = (doc.group(), &*doc.kind, namespace, &*doc.name);
        if let Some(first) = seen.get(&key) {
            diags.push(doc.diag(
                "KLT003",
                Severity::Error,
                doc.root.pos,
                Some("metadata.name".into()),
                format!(
                    "{} is declared twice; first at {}:{}",
                    doc.display(),
                    first.file,
                    first.root.pos.line
                ),
                Some("remove one of them, or give them different names or namespaces".into()),
            ));
        } else {
            seen.insert(key, doc);
        }
    }
}

fn warn_unrendered(doc: &Doc<'_>, diags: &mut Vec<Diagnostic>) {
    for (field, pos) in model::unrendered_lists(doc.root.get("spec")) {
        diags.push(doc.diag(
            "KLT021",
            Severity::Warning,
            pos,
            Some(field.clone()),
            format!("{field} is not rendered and will not run"),
            Some("evaluations need Keptn's metrics; promotion tasks are off in Keptn by default. Run checks as tasks instead".into()),
        ));
    }
}

/// The app version Keptn gives an app it creates itself (`computeVersionFromWorkloads`).
fn auto_app_version(wls: &[&Workload<'_>]) -> String {
    if let [only] = wls {
        return only.version.clone();
    }
    let mut s = String::new();
    for w in wls {
        s.push_str(&w.keptn_name());
        s.push('-');
        s.push_str(&w.version);
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(s.as_bytes());
    digest
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()[..10]
        .to_string()
}

fn plan_apps<'d>(
    apps: &'d BTreeMap<(String, String), model::App<'d>>,
    contexts: &'d BTreeMap<(String, String), AppContext<'d>>,
    workloads: &'d [Workload<'d>],
    opts: &Options,
    runs: &mut Vec<TaskRun<'d>>,
    diags: &mut Vec<Diagnostic>,
) {
    let dest = opts.namespace.as_deref();
    let mut by_app: BTreeMap<(String, String), Vec<&Workload<'d>>> = BTreeMap::new();
    for w in workloads {
        by_app
            .entry((w.doc.effective_namespace(dest), w.app.clone()))
            .or_default()
            .push(w);
    }
    for wls in by_app.values_mut() {
        wls.sort_by_key(|w| w.keptn_name());
    }
    let keys: BTreeSet<(String, String)> = by_app
        .keys()
        .chain(apps.keys())
        .chain(contexts.keys())
        .cloned()
        .collect();
    for key in keys {
        let wls = by_app.get(&key).map(Vec::as_slice).unwrap_or_default();
        let app = apps.get(&key).filter(|a| !a.managed_by_keptn);
        let ctx = contexts.get(&key);
        let (app_name, lookup_ns) = (key.1.clone(), key.0.clone());
        let version = match app {
            Some(a) => a.version.clone(),
            None if !wls.is_empty() => auto_app_version(wls),
            None => {
                if let Some(c) = ctx
                    && !(c.pre_tasks.is_empty() && c.post_tasks.is_empty())
                {
                    diags.push(c.doc.diag(
                        "KLT031",
                        Severity::Warning,
                        c.doc.root.pos,
                        None,
                        format!("no KeptnApp and no workload belongs to app {app_name:?}; its tasks are not rendered"),
                        Some("give the app's workloads keptn.sh/app (or app.kubernetes.io/part-of) with this name, or add a KeptnApp".into()),
                    ));
                }
                continue;
            }
        };
        if let Some(a) = app {
            check_app_workloads(a, wls, diags);
        }
        let app_spec: Option<Rc<str>> = app.map(|a| {
            a.doc
                .root
                .get("spec")
                .map_or_else(
                    || "null".to_string(),
                    |s| crate::gojson::value(&s.to_json()),
                )
                .into()
        });
        let namespace = app
            .and_then(|a| a.doc.namespace.as_deref())
            .or_else(|| ctx.and_then(|c| c.doc.namespace.as_deref()))
            .or_else(|| wls.iter().find_map(|w| w.doc.namespace.as_deref()))
            .map(str::to_string);

        // App task lists: a v1alpha KeptnApp's own lists, else the KeptnAppContext's.
        let legacy = app.filter(|a| {
            a.pre_tasks.as_ref().is_some_and(|l| !l.is_empty())
                || a.post_tasks.as_ref().is_some_and(|l| !l.is_empty())
        });
        let (pre, post, list_doc) = match (legacy, ctx) {
            (Some(a), Some(c)) if !(c.pre_tasks.is_empty() && c.post_tasks.is_empty()) => {
                diags.push(c.doc.diag(
                    "KLT022",
                    Severity::Error,
                    c.doc.root.pos,
                    Some("spec".into()),
                    format!("tasks of app {app_name:?} are listed both here and in {} ({})", a.doc.display(), a.doc.file),
                    Some("keep the lists in the KeptnAppContext only (Keptn 2 drops the KeptnApp's lists on conversion)".into()),
                ));
                continue;
            }
            (Some(a), _) => (
                a.pre_tasks.as_deref().unwrap_or_default(),
                a.post_tasks.as_deref().unwrap_or_default(),
                Some(a.doc),
            ),
            (None, Some(c)) => (&c.pre_tasks[..], &c.post_tasks[..], Some(c.doc)),
            (None, None) => (&[][..], &[][..], None),
        };
        let app_metadata = Rc::new(ctx.map(|c| c.metadata.clone()).unwrap_or_default());

        let mk = |phase: Phase,
                  source: &'d Doc<'d>,
                  def: &'d Spanned<String>,
                  context: TaskContext,
                  app_spec: Option<Rc<str>>| {
            let check = if phase.is_pre() { "pre" } else { "post" };
            TaskRun {
                phase,
                source,
                definition: def,
                namespace: namespace.clone(),
                lookup_namespace: lookup_ns.clone(),
                context,
                app_version: version.clone(),
                app_spec,
                name_base: format!("{check}-{}", def.value),
                task_parameters: BTreeMap::new(),
                task_secret: None,
                task_limits: None,
            }
        };
        let app_ctx = |task_type: &str| TaskContext {
            app_name: app_name.clone(),
            app_version: version.clone(),
            task_type: task_type.into(),
            object_type: opts.profile.app_object_type.into(),
            metadata: Rc::clone(&app_metadata),
            ..Default::default()
        };
        if let Some(src) = list_doc {
            for d in pre {
                runs.push(mk(Phase::AppPre, src, d, app_ctx("pre"), app_spec.clone()));
            }
        }
        for w in wls {
            let metadata = if w.metadata.is_empty() {
                Rc::clone(&app_metadata)
            } else {
                let mut merged = (*app_metadata).clone();
                merged.extend(w.metadata.clone());
                Rc::new(merged)
            };
            let wctx = |task_type: &str| TaskContext {
                workload_name: w.keptn_name(),
                app_name: app_name.clone(),
                app_version: String::new(),
                workload_version: w.version.clone(),
                task_type: task_type.into(),
                object_type: "Workload".into(),
                metadata: Rc::clone(&metadata),
            };
            for d in &w.pre_tasks {
                runs.push(mk(Phase::WorkloadPre, w.doc, d, wctx("pre"), None));
            }
            for d in &w.post_tasks {
                runs.push(mk(Phase::WorkloadPost, w.doc, d, wctx("post"), None));
            }
        }
        if let Some(src) = list_doc {
            for d in post {
                runs.push(mk(
                    Phase::AppPost,
                    src,
                    d,
                    app_ctx("post"),
                    app_spec.clone(),
                ));
            }
        }
    }
}

fn check_app_workloads(app: &model::App<'_>, wls: &[&Workload<'_>], diags: &mut Vec<Diagnostic>) {
    for w in wls {
        match app.workloads.iter().find(|l| l.value.0 == w.name) {
            None => diags.push(w.doc.diag(
                "KLT023",
                Severity::Error,
                w.pos,
                None,
                format!(
                    "workload {:?} belongs to app {:?}, but {} does not list it",
                    w.name,
                    w.app,
                    app.doc.display()
                ),
                Some(format!(
                    "add `- name: {}` with `version: \"{}\"` to spec.workloads of the KeptnApp (Keptn would hold this workload forever)",
                    w.name, w.version
                )),
            )),
            Some(listed) if listed.value.1 != w.version => diags.push(app.doc.diag(
                "KLT023",
                Severity::Error,
                listed.pos,
                Some(listed.field.clone()),
                format!(
                    "workload {:?} is listed with version {:?}, but {} has version {:?}",
                    w.name,
                    listed.value.1,
                    w.doc.display(),
                    w.version
                ),
                Some("make the versions equal: Keptn deploys a workload only in an app version that lists its exact version".into()),
            )),
            Some(_) => {}
        }
    }
    for listed in &app.workloads {
        if !wls.iter().any(|w| w.name == listed.value.0) {
            diags.push(app.doc.diag(
                "KLT024",
                Severity::Warning,
                listed.pos,
                Some(listed.field.clone()),
                format!("workload {:?} is listed but not in the input", listed.value.0),
                Some("its workload-level tasks cannot be rendered; render it together with the app".into()),
            ));
        }
    }
}

fn hand_task_run<'d>(t: &'d HandTask<'d>, opts: &Options) -> TaskRun<'d> {
    let dest = opts.namespace.as_deref();
    let phase = if t.check_type == "post" {
        Phase::AppPost
    } else {
        Phase::AppPre
    };
    TaskRun {
        phase,
        source: t.doc,
        definition: &t.definition,
        namespace: t.doc.namespace.as_deref().map(str::to_string),
        lookup_namespace: t.doc.effective_namespace(dest),
        context: t.context.clone(),
        app_version: t.context.app_version.clone(),
        app_spec: None,
        name_base: t.doc.name.to_string(),
        task_parameters: t.parameters.clone(),
        task_secret: t.secret.clone(),
        task_limits: Some((t.retries, t.timeout_seconds)),
    }
}

fn kind_rank(kind: &str) -> usize {
    const ORDER: &[&str] = &[
        "Namespace",
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Secret",
        "ConfigMap",
        "PersistentVolumeClaim",
        "Service",
    ];
    ORDER.iter().position(|k| *k == kind).unwrap_or(ORDER.len())
}

/// One TaskRecord (spec only) per app version, keyed by namespace and name; the status is
/// klt-reconciler's to write. It goes into a wave after everything else: Argo CD does not
/// wait for the health of the last wave, so the record never holds the sync back.
fn task_records(
    jobs: &Jobs<'_>,
    runs: &[TaskRun<'_>],
) -> BTreeMap<(Option<String>, String), Value> {
    // The record object without its tasks, and the tasks in record order.
    type Draft<'r> = (Value, Vec<(usize, &'r str, Value)>);
    let mut drafts: BTreeMap<(Option<String>, String), Draft<'_>> = BTreeMap::new();
    for (run, r) in jobs {
        let run = &runs[*run];
        let (app, app_version) = (&run.context.app_name, &run.app_version);
        let Some(name) = job::record_name(app, app_version) else {
            continue;
        };
        let (_, tasks) = drafts
            .entry((r.namespace.clone(), name.clone()))
            .or_insert_with(|| {
                let mut metadata = serde_json::Map::new();
                metadata.insert("name".into(), json!(name));
                if let Some(ns) = &r.namespace {
                    metadata.insert("namespace".into(), json!(ns));
                }
                let mut labels = BTreeMap::new();
                labels.insert(job::LABEL_MANAGED_BY, job::MANAGED_BY.to_string());
                for (k, v) in [(job::LABEL_APP, app), (job::LABEL_APP_VERSION, app_version)] {
                    if let Some(v) = job::label_value(v) {
                        labels.insert(k, v);
                    }
                }
                metadata.insert("labels".into(), json!(labels));
                let record = json!({
                    "apiVersion": "klt-render.dev/v1alpha1",
                    "kind": "TaskRecord",
                    "metadata": metadata,
                    "spec": {"app": app, "appVersion": app_version},
                });
                (record, Vec::new())
            });
        let mut task = serde_json::Map::new();
        task.insert("job".into(), json!(r.job_name));
        task.insert("definition".into(), json!(run.definition.value));
        task.insert("phase".into(), json!(r.phase.label()));
        if !run.context.workload_name.is_empty() {
            task.insert("workload".into(), json!(run.context.workload_name));
        }
        tasks.push((
            phase_rank(r.phase.label()),
            &r.job_name,
            Value::Object(task),
        ));
    }
    drafts
        .into_iter()
        .map(|(key, (mut record, mut tasks))| {
            // A stable sort, as before: equal keys keep the order of `jobs`.
            tasks.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
            let list: Vec<Value> = tasks.into_iter().map(|(_, _, t)| t).collect();
            if let Some(spec) = record.get_mut("spec").and_then(Value::as_object_mut) {
                spec.insert("tasks".into(), Value::Array(list));
            }
            (key, record)
        })
        .collect()
}

fn phase_rank(label: &str) -> usize {
    ["app-pre", "workload-pre", "workload-post", "app-post"]
        .iter()
        .position(|p| *p == label)
        .unwrap_or(4)
}

/// A generated ConfigMap, the earliest phase that mounts it and the labels all users share.
type SharedConfigMap<'r> = (Phase, job::GeneratedConfigMap<'r>, BTreeMap<String, String>);

/// An output document with what orders it: phase group, kind rank, API group; then kind,
/// namespace, name and (only for otherwise equal input objects) the text.
/// Input objects' names are borrowed: copies of them for every object of a large input
/// added up to megabytes.
struct Placed<'r> {
    group: usize,
    rank: usize,
    api_group: &'r str,
    kind: &'r str,
    namespace: Option<Cow<'r, str>>,
    name: Cow<'r, str>,
    body: Body<'r>,
}

/// What an output document's text is made from.
enum Body<'r> {
    /// An input object: its own text, or re-emitted when it had to change.
    Input(Cow<'r, str>),
    Object(Value),
    /// A generated ConfigMap (its index in [`Generated::config_maps`]), made into an object
    /// only as it is written.
    ConfigMap(usize),
    /// A Job: its index in [`Generated::jobs`].
    Job(usize),
}

impl Placed<'_> {
    fn key(&self) -> (usize, usize, &str, &str, &str, &str) {
        (
            self.group,
            self.rank,
            self.kind,
            self.api_group,
            self.namespace.as_deref().unwrap_or(""),
            &self.name,
        )
    }

    /// Generated objects never tie: they are keyed by namespace and name within their group.
    fn cmp(&self, other: &Placed<'_>) -> std::cmp::Ordering {
        self.key()
            .cmp(&other.key())
            .then_with(|| match (&self.body, &other.body) {
                (Body::Input(a), Body::Input(b)) => a.cmp(b),
                _ => std::cmp::Ordering::Equal,
            })
    }
}

/// Where each group of output documents goes: phase groups around the input objects (2).
fn phase_group(p: Phase) -> usize {
    match p {
        Phase::AppPre => 0,
        Phase::WorkloadPre => 1,
        Phase::WorkloadPost => 3,
        Phase::AppPost => 4,
    }
}

/// What generated documents are written from, held in lists that the output refers to by
/// index: a box per document cost an allocation each, and freeing the list they were moved
/// out of left a hole in the heap that slowed every allocation while writing.
#[derive(Default)]
struct Generated<'r> {
    jobs: Jobs<'r>,
    config_maps: Vec<SharedConfigMap<'r>>,
}

fn assemble<'r>(
    passthrough: &[&'r Doc<'r>],
    runs: &[TaskRun<'_>],
    rendered: Vec<(usize, job::Rendered<'r>)>,
    placement: &Placement,
    opts: &Options,
) -> (Vec<Placed<'r>>, Generated<'r>) {
    let (cms, jobs) = shared_config_maps(runs, rendered);
    // Jobs of equal name are equal, so the first of them stands for all.
    let used = used_inputs(&jobs);
    let mut out: Vec<Placed<'r>> = Vec::with_capacity(passthrough.len() + cms.len() + jobs.len());
    out.extend(
        passthrough
            .iter()
            .map(|d| input_document(d, &used, placement, opts)),
    );
    let mut config_maps = Vec::with_capacity(cms.len());
    for ((ns, name), shared) in cms {
        // In hooks mode every ConfigMap is a PreSync hook, so it exists before any Job.
        let group = if opts.mode == Mode::Hooks {
            0
        } else {
            phase_group(shared.0)
        };
        let body = Body::ConfigMap(config_maps.len());
        config_maps.push(shared);
        out.push(generated(group, 0, "ConfigMap", ns, name, body));
    }
    if opts.records {
        for ((ns, name), mut record) in task_records(&jobs, runs) {
            record["metadata"]["annotations"] =
                json!({ANN_WAVE: placement.record_wave().to_string()});
            out.push(generated(
                5,
                0,
                "TaskRecord",
                ns,
                name,
                Body::Object(record),
            ));
        }
    }
    for (i, (_, r)) in jobs.iter().enumerate() {
        let group = phase_group(r.phase);
        let (ns, name) = (r.namespace.clone(), r.job_name.clone());
        out.push(generated(group, 1, "Job", ns, name, Body::Job(i)));
    }
    out.sort_by(Placed::cmp);
    (out, Generated { jobs, config_maps })
}

fn generated<'r>(
    group: usize,
    rank: usize,
    kind: &'static str,
    namespace: Option<String>,
    name: String,
    body: Body<'r>,
) -> Placed<'r> {
    Placed {
        group,
        rank,
        api_group: "",
        kind,
        namespace: namespace.map(Cow::Owned),
        name: Cow::Owned(name),
        body,
    }
}

/// Input ConfigMaps and Secrets that task Jobs need, with the earliest phase that needs them:
/// they must exist before those Jobs start.
type Used<'a> = BTreeMap<(&'static str, &'a str, &'a str), Phase>;

fn used_inputs<'a>(jobs: &'a Jobs<'_>) -> Used<'a> {
    let mut used = Used::new();
    for (_, r) in jobs {
        for (kind, ns, name) in &r.uses {
            let e = used.entry((*kind, ns, name)).or_insert(r.phase);
            *e = (*e).min(r.phase);
        }
    }
    used
}

fn input_document<'r>(
    d: &'r Doc<'r>,
    used: &Used<'_>,
    placement: &Placement,
    opts: &Options,
) -> Placed<'r> {
    let dest = opts.namespace.as_deref();
    let ns = d.effective_namespace(dest);
    let needed_by = (d.group() == "")
        .then(|| used.get(&(&*d.kind, ns.as_str(), &*d.name)))
        .flatten();
    let moved = needed_by.and_then(|phase| placement.ready_before(d, *phase));
    let text = match (moved, d.raw) {
        (Some(obj), _) => Cow::Owned(yaml::emit(&obj)),
        // Verbatim: even trailing blank lines can be data (a `|+` block scalar).
        (None, Some(raw)) if !raw.trim().is_empty() => {
            if raw.ends_with('\n') {
                Cow::Borrowed(raw)
            } else {
                Cow::Owned(format!("{raw}\n"))
            }
        }
        (None, _) => Cow::Owned(yaml::emit(&d.root.to_json())),
    };
    Placed {
        group: 2,
        rank: kind_rank(&d.kind),
        api_group: d.group(),
        kind: &d.kind,
        namespace: d.namespace.as_deref().map(Cow::Borrowed),
        name: Cow::Borrowed(&d.name),
        body: Body::Input(text),
    }
}

/// The Jobs in namespace and name order, each once: a sorted list, not a map, so that their
/// names are not copied into keys.
type Jobs<'r> = Vec<(usize, job::Rendered<'r>)>;

/// ConfigMaps shared by several tasks (earliest phase; labels all users agree on), and the
/// Jobs keyed by namespace and name.
type SharedConfigMaps<'r> = BTreeMap<(Option<String>, String), SharedConfigMap<'r>>;

fn shared_config_maps<'r>(
    runs: &[TaskRun<'_>],
    rendered: Vec<(usize, job::Rendered<'r>)>,
) -> (SharedConfigMaps<'r>, Jobs<'r>) {
    let mut cms = SharedConfigMaps::new();
    let mut jobs = rendered;
    for (run, r) in &mut jobs {
        if let Some(cm) = r.config_map.take() {
            let mut labels = job::own_labels(&runs[*run]);
            labels.insert(job::LABEL_DEFINITION.into(), cm.definition.to_string());
            match cms.entry((cm.namespace.clone(), cm.name.clone())) {
                std::collections::btree_map::Entry::Vacant(v) => {
                    v.insert((r.phase, cm, labels));
                }
                std::collections::btree_map::Entry::Occupied(mut o) => {
                    let entry = o.get_mut();
                    entry.0 = entry.0.min(r.phase);
                    entry.2.retain(|k, v| labels.get(k) == Some(v));
                }
            }
        }
    }
    // Stable, so that of Jobs of equal name the first stays, as a map's first insert did.
    jobs.sort_by(|(_, a), (_, b)| (&a.namespace, &a.job_name).cmp(&(&b.namespace, &b.job_name)));
    jobs.dedup_by(|(_, b), (_, a)| (&a.namespace, &a.job_name) == (&b.namespace, &b.job_name));
    (cms, jobs)
}
