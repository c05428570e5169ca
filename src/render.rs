//! The renderer: input documents and options in, ordered output documents and diagnostics
//! out. No filesystem, environment, clock or stdout here.
//!
//! Output order (documented in the README): app pre-deployment objects, workload
//! pre-deployment objects, every other input object, workload post-deployment objects, app
//! post-deployment objects. Within a phase ConfigMaps come before Jobs, each sorted by
//! namespace and name; input objects are sorted by kind rank, kind, group, namespace, name.
//! Nothing depends on file names or file order.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use serde_json::{Value, json};

use crate::by_app::{AppKey, ByApp};
use crate::diag::{Diagnostic, Severity};
use crate::document::{self, Doc, SourceFile};
use crate::evaluation::{self, Catalog};
use crate::evaluation_job::{self, EvaluationJob};
use crate::job::{self, Index, TaskRun};
use crate::model::{
    self, AppContext, HandTask, Named, Phase, SharedContext, Spanned, TaskDefinition,
};
use crate::options::{Mode, Options};
use crate::sort_key;
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

use crate::waves::{ANN_HOOK, ANN_WAVE, Layout, Placement};

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
    inspect: impl FnMut(&Doc<'_>),
    finish: impl FnOnce(Rendering<'_>) -> R,
) -> R {
    let mut diags = Vec::new();
    let (docs, loaded) = load_inputs(files, opts, inspect, &mut diags);
    check_duplicates(&docs, opts.namespace.as_deref(), &mut diags);
    let mut inputs = Inputs::read(&docs, loaded, opts, &mut diags);
    let app_runs = plan_runs(&mut inputs, opts, &mut diags);
    let inputs = inputs;
    let (runs, eval_runs) = split_evaluations(all_runs(app_runs, &inputs, opts));

    let placement =
        Placement::new(&inputs.passthrough, opts).with_layout(layout(&runs, &eval_runs));
    placement.check_room(
        &inputs.passthrough,
        runs.iter().chain(&eval_runs).map(|r| r.phase),
        opts.records,
        &mut diags,
    );
    let index = Index {
        definitions: &inputs.definitions,
        config_maps: &inputs.config_maps,
        secrets: &inputs.secrets,
        options: opts,
        placement: &placement,
        names: Default::default(),
        code_suffixes: Default::default(),
        suggestions: Default::default(),
    };
    // Validated and named now, written later: every error is known before the first byte.
    // Sized to the runs: collected, it doubled past them.
    let mut rendered: Vec<(usize, job::Rendered)> = Vec::with_capacity(runs.len());
    let mut needs: Vec<(usize, job::Needs<'_>)> = Vec::with_capacity(runs.len());
    for (i, run) in runs.iter().enumerate() {
        if let Some((r, n)) = job::render_task(run, &index, &mut diags) {
            rendered.push((i, r));
            needs.push((i, n));
        }
    }
    let evaluations = render_evaluations(
        &eval_runs,
        &inputs.evaluations,
        &placement,
        opts,
        &mut diags,
    );

    finish_diagnostics(&mut diags, files);
    let (items, generated) = if diags.iter().any(Diagnostic::is_error) {
        Default::default()
    } else {
        let evaluations = (evaluations, &eval_runs[..]);
        assemble(
            &inputs.passthrough,
            &runs,
            (rendered, needs),
            evaluations,
            &placement,
            opts,
        )
    };
    finish(Rendering {
        diagnostics: diags,
        items,
        generated,
        runs: &runs,
        index: &index,
    })
}

/// What was read of the objects as they loaded, by their index in the object list: the
/// workloads' Keptn keys and the Keptn objects' models.
struct Loaded<'a> {
    workload_keys: Vec<(usize, workload::Keys)>,
    keptn: Vec<(usize, KeptnRead<'a>)>,
}

/// A Keptn object as it was read while loading, its model not yet attached to the object
/// (it names [`document::DETACHED`] until [`Inputs::read_keptn`] does).
enum KeptnRead<'a> {
    /// Its schema check failed: nothing more is read of it.
    Invalid,
    /// Boxed, as are the others: the list of what was read held one entry per Keptn object
    /// with room for the largest model, and at 10,000 apps it was the render's peak.
    Definition(Box<TaskDefinition<'a>>),
    App(Box<model::App<'a>>),
    Context(Box<AppContext<'a>>),
    Task(Option<Box<HandTask<'a>>>),
    /// A Keptn kind without a model here; its tree stays whole.
    Other,
}

/// Loads every object, reading what workloads ask of Keptn and the Keptn models as each is
/// read, and cutting the trees the render does not read again (see [`keeps_tree`] and
/// [`cut_tree`]): all Keptn trees alive at once were the peak of a render's memory.
fn load_inputs<'a>(
    files: &'a [SourceFile],
    opts: &Options,
    mut inspect: impl FnMut(&Doc<'_>),
    diags: &mut Vec<Diagnostic>,
) -> (Vec<Doc<'a>>, Loaded<'a>) {
    let mut loaded = Loaded {
        workload_keys: Vec::new(),
        keptn: Vec::new(),
    };
    let docs = document::load_each(files, &opts.limits, diags, |i, doc, diags| {
        inspect(doc);
        check_metadata_maps(doc, diags);
        crate::workload_keys::check(doc, diags);
        if doc.group() == model::GROUP || evaluation::is_metrics_kind(doc) {
            loaded.keptn.push((i, read_keptn_tree(doc, opts, diags)));
            return;
        }
        if workload::is_workload_kind(doc)
            && let Some(keys) = workload::derive_keys(doc)
        {
            loaded.workload_keys.push((i, keys));
        }
        if !keeps_tree(doc) {
            doc.root = ordering_tree(&doc.root);
        }
    });
    (docs, loaded)
}

/// Checks a Keptn object's schema and reads its model from the whole tree, which
/// [`cut_tree`] has taken out of `doc` and which is dropped on return.
fn read_keptn_tree<'a>(
    doc: &mut Doc<'a>,
    opts: &Options,
    diags: &mut Vec<Diagnostic>,
) -> KeptnRead<'a> {
    let tree = cut_tree(doc, opts);
    let doc: &Doc<'a> = doc;
    let root = tree.as_ref().unwrap_or(&doc.root);
    if !check_keptn_schema(doc, root, diags) {
        return KeptnRead::Invalid;
    }
    match &*doc.kind {
        "KeptnTaskDefinition" => KeptnRead::Definition(Box::new(
            model::read_task_definition_detached(doc, root, diags),
        )),
        "KeptnApp" => {
            warn_unrendered(doc, root, diags);
            KeptnRead::App(Box::new(model::read_app_detached(doc, root)))
        }
        "KeptnAppContext" => {
            warn_unrendered(doc, root, diags);
            KeptnRead::Context(Box::new(model::read_app_context_detached(root)))
        }
        "KeptnTask" => {
            KeptnRead::Task(model::read_hand_task_detached(doc, root, diags).map(Box::new))
        }
        _ => KeptnRead::Other,
    }
}

/// The input sorted by what the render does with it: Keptn models, what tasks look up, the
/// workloads that ask for tasks, and the objects that pass through.
#[derive(Default)]
struct Inputs<'d> {
    definitions: job::ByName<'d, Box<TaskDefinition<'d>>>,
    config_maps: job::ByName<'d, &'d Doc<'d>>,
    secrets: job::ByName<'d, &'d Doc<'d>>,
    /// KeptnApps and contexts by app key, in input order ([`ByApp`] sorts them once).
    apps: Vec<(AppKey, Box<model::App<'d>>)>,
    contexts: Vec<(AppKey, Box<AppContext<'d>>)>,
    hand_tasks: Vec<HandTask<'d>>,
    evaluations: Catalog<'d>,
    workloads: Vec<Workload<'d>>,
    passthrough: Vec<&'d Doc<'d>>,
}

impl<'d> Inputs<'d> {
    fn read(
        docs: &'d [Doc<'d>],
        loaded: Loaded<'d>,
        opts: &Options,
        diags: &mut Vec<Diagnostic>,
    ) -> Self {
        // Every workload's keys were read as it loaded (workload kinds are never Keptn
        // objects, ConfigMaps or Secrets); collected in place, in the keys' own buffer.
        let workloads = loaded.workload_keys.into_iter();
        let workloads = workloads.map(|(i, keys)| Workload {
            doc: &docs[i],
            keys,
        });
        let mut inputs = Inputs {
            workloads: workloads.collect(),
            passthrough: Vec::with_capacity(match opts.keep_keptn {
                true => docs.len(),
                false => docs.len() - loaded.keptn.len(),
            }),
            ..Inputs::default()
        };
        let mut keptn = loaded.keptn.into_iter().peekable();
        for (i, doc) in docs.iter().enumerate() {
            let key = (
                doc.effective_namespace(opts.namespace.as_deref()),
                doc.name.clone(),
            );
            if doc.group() == model::GROUP || evaluation::is_metrics_kind(doc) {
                if let Some((_, read)) = keptn.next_if(|(k, _)| *k == i) {
                    inputs.read_keptn(doc, read, key, opts, diags);
                }
                continue;
            }
            inputs.passthrough.push(doc);
            // An object named only by generateName cannot be what a task refers to by name
            // (and two of them under one key would make the output depend on file order).
            match (doc.group(), &*doc.kind) {
                ("", "ConfigMap" | "Secret") if !doc.named => {}
                ("", "ConfigMap") => inputs.config_maps.insert(key.0, key.1, doc),
                ("", "Secret") => inputs.secrets.insert(key.0, key.1, doc),
                _ => {}
            }
        }
        inputs
    }

    /// Attaches a model read while loading to its object; other Keptn kinds are dropped
    /// (KLT026) or, with `--keep-keptn`, passed through.
    fn read_keptn(
        &mut self,
        doc: &'d Doc<'d>,
        read: KeptnRead<'d>,
        key: (String, Cow<'d, str>),
        opts: &Options,
        diags: &mut Vec<Diagnostic>,
    ) {
        match read {
            KeptnRead::Invalid => return,
            KeptnRead::Definition(mut def) => {
                def.doc = doc;
                self.definitions.insert(key.0, key.1, def);
            }
            KeptnRead::App(app) => {
                let key = (key.0, key.1.into_owned());
                let mut app = app;
                app.doc = doc;
                self.apps.push((key, app));
            }
            KeptnRead::Context(ctx) => {
                let key = (key.0, key.1.into_owned());
                let mut ctx = ctx;
                ctx.doc = doc;
                self.contexts.push((key, ctx));
            }
            KeptnRead::Task(task) => self.hand_tasks.extend(task.map(|t| HandTask { doc, ..*t })),
            KeptnRead::Other => self.read_other(doc, key, opts, diags),
        }
        if opts.keep_keptn {
            self.passthrough.push(doc);
        }
    }

    /// A Keptn kind without a model of its own: evaluations and metrics are read from the
    /// tree (which they keep), other kinds are dropped (KLT026).
    fn read_other(
        &mut self,
        doc: &'d Doc<'d>,
        key: (String, Cow<'d, str>),
        opts: &Options,
        diags: &mut Vec<Diagnostic>,
    ) {
        match &*doc.kind {
            "KeptnEvaluationDefinition" | "KeptnMetric" | "KeptnMetricsProvider" => {
                self.evaluations.read(doc, key.0, diags);
            }
            _ if !opts.keep_keptn => diags.push(doc.diag(
                "KLT026",
                Severity::Warning,
                doc.root.pos,
                None,
                format!("{} is not rendered and was dropped", doc.kind),
                Some("klt-render renders task definitions, apps, app contexts, tasks and evaluation definitions; pass --keep-keptn to keep other Keptn objects".into()),
            )),
            _ => {}
        }
    }
}

/// The apps' task runs, in app key order. The apps, app contexts and workloads are taken out of `inputs` and dropped on return: the
/// runs share what they need of them, and holding them while the Jobs were made and written
/// was a tenth of the render's peak.
fn plan_runs<'d>(
    inputs: &mut Inputs<'d>,
    opts: &Options,
    diags: &mut Vec<Diagnostic>,
) -> Vec<TaskRun<'d>> {
    let apps = ByApp::last_of_each(std::mem::take(&mut inputs.apps));
    let contexts = ByApp::last_of_each(std::mem::take(&mut inputs.contexts));
    let mut workloads = std::mem::take(&mut inputs.workloads);
    workloads.shrink_to_fit();
    // Sized once, to at most one run per name listed: grown by doubling while the models
    // were alive, the list was the render's peak.
    let mut runs = Vec::with_capacity(listed_names(&apps, &contexts, &workloads));
    plan_apps(&apps, &contexts, &workloads, opts, &mut runs, diags);
    drop((apps, contexts, workloads));
    runs
}

/// How many task and evaluation names the apps, contexts and workloads list.
fn listed_names(
    apps: &ByApp<Box<model::App<'_>>>,
    contexts: &ByApp<Box<AppContext<'_>>>,
    workloads: &[Workload<'_>],
) -> usize {
    let apps = apps.values().map(|a| {
        let tasks = a
            .pre_tasks
            .iter()
            .chain(&a.post_tasks)
            .map(Vec::len)
            .sum::<usize>();
        tasks + a.pre_evaluations.len() + a.post_evaluations.len()
    });
    let lengths = |lists: [&Vec<Named>; 4]| lists.iter().map(|l| l.len()).sum::<usize>();
    let contexts = contexts.values().map(|c| {
        lengths([
            &c.pre_tasks,
            &c.post_tasks,
            &c.pre_evaluations,
            &c.post_evaluations,
        ])
    });
    let workloads = workloads.iter().map(|w| {
        lengths([
            &w.pre_tasks,
            &w.post_tasks,
            &w.pre_evaluations,
            &w.post_evaluations,
        ])
    });
    apps.chain(contexts).chain(workloads).sum()
}

/// Every task run: the apps' (in app key order), then hand-written KeptnTasks' (which the
/// runs borrow).
fn all_runs<'d>(
    mut runs: Vec<TaskRun<'d>>,
    inputs: &'d Inputs<'d>,
    opts: &Options,
) -> Vec<TaskRun<'d>> {
    runs.extend(inputs.hand_tasks.iter().map(|t| hand_task_run(t, opts)));
    runs.shrink_to_fit();
    runs
}

/// Secret values redacted, then put in order (see [`crate::diag::finish`]).
fn finish_diagnostics(diags: &mut Vec<Diagnostic>, files: &[SourceFile]) {
    crate::diag::redact_secrets(diags, source_texts(files));
    crate::diag::finish(diags);
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
            .map(|p| {
                let id = self.generated.identity(&p.body);
                OutDoc {
                    kind: id.kind.to_string(),
                    namespace: id.namespace.map(str::to_string),
                    name: id.name.to_string(),
                    text: self.text(p).into_owned(),
                    generated: !matches!(p.body, Body::Input(..) | Body::Moved(..)),
                }
            })
            .collect();
        Output {
            documents,
            diagnostics: self.diagnostics,
        }
    }

    /// The labels all runs that mount a generated ConfigMap agree on.
    fn shared_labels(
        &self,
        cm: &job::GeneratedConfigMap<'_>,
        users: &[usize],
    ) -> BTreeMap<&'static str, String> {
        let labels_of = |run: &usize| {
            let mut labels = job::own_labels(&self.runs[*run]);
            labels.insert(job::LABEL_DEFINITION, cm.definition.to_string());
            labels
        };
        let mut shared = labels_of(&users[0]);
        for other in users[1..].iter().map(labels_of) {
            shared.retain(|k, v| other.get(k) == Some(v));
        }
        shared
    }

    fn text<'s>(&'s self, item: &'s Placed<'_>) -> Cow<'s, str> {
        match &item.body {
            Body::Input(d) => input_text(d),
            Body::Moved(d, phase) => {
                let placement = self.index.placement;
                let obj = placement.ready_before(d, *phase).expect("it was moved");
                Cow::Owned(yaml::emit(&obj))
            }
            Body::Record(r) => Cow::Owned(yaml::emit(&r.object)),
            Body::SyncGate(g) => {
                let names = g.post.iter().map(|p| match *p {
                    PostJob::Task(i) => &*self.generated.jobs[i].1.job_name,
                    PostJob::Evaluation(i) => self.generated.evaluations[i].name.as_str(),
                });
                let wave = self.index.placement.record_wave();
                Cow::Owned(yaml::emit(&sync_gate_object(g, wave, names.collect())))
            }
            Body::ConfigMap(i) => {
                let (phase, cm, users) = &self.generated.config_maps[*i];
                let labels = self.shared_labels(cm, users);
                let ordering = self.index.placement.ordering_annotations(*phase, false);
                Cow::Owned(job::config_map_object(cm, &labels, ordering).to_yaml())
            }
            Body::Job(i) => {
                let (run, rendered) = &self.generated.jobs[*i];
                Cow::Owned(job::job_text(&self.runs[*run], self.index, rendered))
            }
            Body::Evaluation(i) => Cow::Owned(yaml::emit(&self.generated.evaluations[*i].object)),
        }
    }
}

/// Takes a Keptn object's tree out of `doc`, leaving what [`ordering_tree`] keeps, when the
/// object is one whose model copies what it needs (other Keptn kinds keep their tree) and
/// does not pass through as a tree (a `kind: List` item under `--keep-keptn`).
fn cut_tree<'a>(doc: &mut Doc<'a>, opts: &Options) -> Option<Node<'a>> {
    let read_whole = matches!(
        &*doc.kind,
        "KeptnTaskDefinition" | "KeptnApp" | "KeptnAppContext" | "KeptnTask"
    );
    let passes_as_tree = opts.keep_keptn && doc.raw.is_none_or(|raw| raw.trim().is_empty());
    if !read_whole || passes_as_tree {
        return None;
    }
    // Nothing reads a dropped Keptn object's tree again; one that passes through verbatim
    // (`--keep-keptn`) is still ordered by its annotations.
    let stub = if opts.keep_keptn {
        ordering_tree(&doc.root)
    } else {
        Node {
            kind: NodeKind::Map(Vec::new()),
            pos: doc.root.pos,
        }
    };
    Some(std::mem::replace(&mut doc.root, stub))
}

/// Whether the renderer reads an object's tree after loading it: Keptn objects become
/// models, ConfigMaps, Secrets and ServiceAccounts may be looked up or moved before a task,
/// and list items have no text of their own to pass through.
fn keeps_tree(doc: &Doc<'_>) -> bool {
    doc.group() == model::GROUP
        || evaluation::is_metrics_kind(doc)
        || doc.raw.is_none_or(|raw| raw.trim().is_empty())
        || (doc.group().is_empty()
            && matches!(&*doc.kind, "ConfigMap" | "Secret" | "ServiceAccount"))
}

/// What is read of a pass-through object after loading, at its positions: its Argo CD hook
/// and wave annotations (ordering); whether it has a metadata.name is [`Doc::named`]. Trees
/// of every input object were the largest part of a render's memory.
fn ordering_tree<'a>(root: &Node<'a>) -> Node<'a> {
    let pick = |node: &Node<'a>, keys: &[&str]| -> Vec<Entry<'a>> {
        node.as_map()
            .unwrap_or_default()
            .iter()
            .filter(|e| keys.contains(&e.key.as_ref()))
            .cloned()
            .collect()
    };
    // Exactly sized: a collected Vec starts at four entries, and every object has a stub.
    let map = |mut entries: Vec<Entry<'a>>, pos| {
        entries.shrink_to_fit();
        Node {
            kind: NodeKind::Map(entries),
            pos,
        }
    };
    let Some(meta) = root.entry("metadata") else {
        return map(Vec::new(), root.pos);
    };
    let mut kept = Vec::new();
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
    "KeptnEvaluationDefinition",
    "KeptnTask",
    "KeptnTaskDefinition",
];
/// Real Keptn kinds that klt-render drops with a warning.
const NOT_RENDERED_KINDS: &[&str] = &[
    "KeptnAppCreationRequest",
    "KeptnAppVersion",
    "KeptnEvaluation",
    "KeptnEvaluationProvider",
    "KeptnWorkload",
    "KeptnWorkloadInstance",
    "KeptnWorkloadVersion",
];

/// Strict CRD schema check of a Keptn object. `false` when the object cannot be read at all.
fn check_keptn_schema(doc: &Doc<'_>, root: &Node<'_>, diags: &mut Vec<Diagnostic>) -> bool {
    use crate::schema::Problem;
    let Some(issues) = crate::schema::check(&doc.api_version, &doc.kind, root) else {
        let versions = crate::schema::known_versions(&doc.kind);
        if versions.is_empty() {
            if NOT_RENDERED_KINDS.contains(&&*doc.kind) {
                return true; // a Keptn kind we do not render; the caller says so
            }
            let known = RENDERED_KINDS.iter().chain(NOT_RENDERED_KINDS).copied();
            diags.push(doc.diag(
                "KLT007",
                Severity::Error,
                root.get("kind").map_or(root.pos, |n| n.pos),
                Some("kind".into()),
                format!("{} is not a kind of {}", doc.kind, model::GROUP),
                Some(Cow::Owned(
                    match crate::suggest::closest(&doc.kind, known) {
                        Some(k) => format!("did you mean {k:?}?"),
                        None => format!("use one of {}", RENDERED_KINDS.join(", ")),
                    },
                )),
            ));
            return false;
        }
        diags.push(doc.diag(
            "KLT006",
            Severity::Error,
            root.get("apiVersion").map_or(root.pos, |n| n.pos),
            Some("apiVersion".into()),
            format!("{} is not served as {}", doc.kind, doc.api_version),
            Some(Cow::from(format!(
                    "use one of: {}",
                    versions
                        .iter()
                        .map(|v| format!("{}/{v}", doc.group()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))),
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
                    "string" if is_duration_field(&issue.field) => {
                        "write a Go duration as a string, such as \"300s\", \"5m\" or \"1h30m\""
                            .to_string()
                    }
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
            help.map(Cow::Owned),
        ));
    }
    true
}

/// Fields that hold a Go duration: a bare number there needs a unit, not just quotes.
fn is_duration_field(field: &str) -> bool {
    matches!(field.rsplit('.').next(), Some("timeout" | "retryInterval"))
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
                    Some(Cow::from(format!(
                        "write {field} as `key: \"value\"` entries under metadata.{field}, or remove the field"
                    ))),
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
        if !doc.named {
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

fn warn_unrendered(doc: &Doc<'_>, root: &Node<'_>, diags: &mut Vec<Diagnostic>) {
    for (field, pos) in model::unrendered_lists(root.get("spec")) {
        diags.push(doc.diag(
            "KLT021",
            Severity::Warning,
            pos,
            Some(field.clone()),
            format!("{field} is not rendered and will not run"),
            Some("promotion tasks are off in Keptn by default; run the step as a post-deployment task instead".into()),
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

/// Task runs of every app: each app key (namespace, name) that has a KeptnApp, a
/// KeptnAppContext or workloads, in key order.
fn plan_apps<'d>(
    apps: &ByApp<Box<model::App<'d>>>,
    contexts: &ByApp<Box<AppContext<'d>>>,
    workloads: &[Workload<'d>],
    opts: &Options,
    runs: &mut Vec<TaskRun<'d>>,
    diags: &mut Vec<Diagnostic>,
) {
    let by_app = workloads_by_app(workloads, opts.namespace.as_deref());
    // Walked twice, not collected: the apps that exist are known before the first is planned.
    let near = NearApps::new(app_keys(apps, contexts, &by_app));
    for app_found in app_keys(apps, contexts, &by_app) {
        let (key, app, ctx, wls) = app_found;
        let parts = AppParts {
            app: app.filter(|a| !a.managed_by_keptn),
            ctx,
            wls,
            near: near.to(&app_found),
        };
        plan_app(key, &parts, opts, runs, diags);
    }
}

/// An app key with its KeptnApp, context and workloads, each if any.
type AppFound<'a, 'd> = (
    &'a AppKey,
    Option<&'a model::App<'d>>,
    Option<&'a AppContext<'d>>,
    &'a [&'a Workload<'d>],
);

/// Every app key that has a KeptnApp, a context or workloads, in key order, with what it has:
/// the three sorted lists walked side by side, not searched for every key.
fn app_keys<'a, 'd>(
    apps: &'a ByApp<Box<model::App<'d>>>,
    contexts: &'a ByApp<Box<AppContext<'d>>>,
    by_app: &'a ByApp<Vec<&'a Workload<'d>>>,
) -> impl Iterator<Item = AppFound<'a, 'd>> {
    let (mut apps, mut contexts, mut by_app) = (
        apps.iter().peekable(),
        contexts.iter().peekable(),
        by_app.iter().peekable(),
    );
    std::iter::from_fn(move || {
        let next = [
            apps.peek().map(|(k, _)| *k),
            contexts.peek().map(|(k, _)| *k),
            by_app.peek().map(|(k, _)| *k),
        ];
        let key = next.into_iter().flatten().min()?;
        let app = apps.next_if(|(k, _)| *k == key).map(|(_, a)| &**a);
        let ctx = contexts.next_if(|(k, _)| *k == key).map(|(_, c)| &**c);
        let wls = by_app.next_if(|(k, _)| *k == key).map(|(_, w)| &w[..]);
        Some((key, app, ctx, wls.unwrap_or_default()))
    })
}

/// What one app is made of in the input. A KeptnApp that Keptn manages itself counts as
/// none: Keptn derives that app from its workloads.
struct AppParts<'a, 'd> {
    app: Option<&'a model::App<'d>>,
    ctx: Option<&'a AppContext<'d>>,
    wls: &'a [&'a Workload<'d>],
    /// Another app of the namespace whose name is close to this one's, for an app that has
    /// only a context: a context named `shop-context` for the workloads of `shop`.
    near: Option<&'a str>,
}

/// The apps that have workloads or a KeptnApp, by lookup namespace: what an app that has
/// only a context may have meant. Listed once: listing them again for every such app made
/// many of them quadratic.
struct NearApps<'a> {
    real: BTreeMap<&'a str, Vec<&'a str>>,
    suggestions: crate::suggest::Budget,
}

impl<'a> NearApps<'a> {
    fn new<'d: 'a>(found: impl Iterator<Item = AppFound<'a, 'd>>) -> Self {
        let mut real: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (k, app, _, wls) in found {
            if app.is_some() || !wls.is_empty() {
                real.entry(&k.0).or_default().push(&k.1);
            }
        }
        NearApps {
            real,
            suggestions: Default::default(),
        }
    }

    /// The name of another app in the lookup namespace, with workloads or a KeptnApp, that
    /// is close to this app's name (a typo, or the name with a word added or removed); none
    /// for an app that has workloads or a KeptnApp itself.
    fn to(&self, &((ns, name), app, _, wls): &AppFound<'_, '_>) -> Option<&'a str> {
        if app.is_some() || !wls.is_empty() {
            return None;
        }
        let real = self.real.get(ns.as_str())?;
        self.suggestions.closest(name, || real.iter().copied())
    }
}

/// Workloads by app key, each app's in Keptn name order.
fn workloads_by_app<'w, 'd>(
    workloads: &'w [Workload<'d>],
    dest: Option<&str>,
) -> ByApp<Vec<&'w Workload<'d>>> {
    let keyed = workloads
        .iter()
        .map(|w| ((w.doc.effective_namespace(dest), w.app.clone()), w));
    let mut by_app = ByApp::grouped(keyed.collect());
    for wls in by_app.values_mut() {
        wls.sort_by_key(|w| w.keptn_name());
    }
    by_app
}

/// The runs of one app, in Keptn's order: app pre-deployment tasks, each workload's pre and
/// post tasks, app post-deployment tasks.
fn plan_app<'d>(
    (lookup_ns, app_name): &(String, String),
    parts: &AppParts<'_, 'd>,
    opts: &Options,
    runs: &mut Vec<TaskRun<'d>>,
    diags: &mut Vec<Diagnostic>,
) {
    let Some(version) = app_version(app_name, parts, diags) else {
        return;
    };
    if let Some(a) = parts.app {
        check_app_workloads(a, parts.wls, diags);
    }
    let plan = AppPlan::new((lookup_ns, app_name), version, parts, opts);
    let Some((pre, post, list_doc)) = app_task_lists(app_name, parts, diags) else {
        return;
    };
    let ctx = parts.ctx;
    let seq = sequential(
        ctx.and_then(|c| c.task_order.as_ref()),
        ctx.map(|c| c.doc),
        opts,
        diags,
    );
    let (pre_evals, post_evals) = app_evaluation_lists(parts);
    if let Some(src) = list_doc {
        let pre = pre.iter().enumerate();
        runs.extend(pre.map(|(i, d)| in_order(plan.app_run(Phase::AppPre, src, d), seq, i)));
    }
    for (src, d) in pre_evals {
        runs.push(as_evaluation(plan.app_run(Phase::AppPre, src, d)));
    }
    for w in parts.wls {
        let seq = sequential(w.task_order.as_ref(), Some(w.doc), opts, diags);
        plan.workload_runs(w, seq, runs);
    }
    if let Some(src) = list_doc {
        let post = post.iter().enumerate();
        runs.extend(post.map(|(i, d)| in_order(plan.app_run(Phase::AppPost, src, d), seq, i)));
    }
    for (src, d) in post_evals {
        runs.push(as_evaluation(plan.app_run(Phase::AppPost, src, d)));
    }
}

/// The app's evaluation lists with the object holding each: a v1alpha KeptnApp's own, and
/// the KeptnAppContext's.
fn app_evaluation_lists<'a, 'd>(
    parts: &AppParts<'a, 'd>,
) -> (EvaluationList<'a, 'd>, EvaluationList<'a, 'd>) {
    let mut pre = Vec::new();
    let mut post = Vec::new();
    for (doc, p, q) in parts
        .app
        .map(|a| (a.doc, &a.pre_evaluations, &a.post_evaluations))
        .into_iter()
        .chain(
            parts
                .ctx
                .map(|c| (c.doc, &c.pre_evaluations, &c.post_evaluations)),
        )
    {
        pre.extend(p.iter().map(|d| (doc, d)));
        post.extend(q.iter().map(|d| (doc, d)));
    }
    (pre, post)
}

/// Evaluation list entries with the object that lists them.
type EvaluationList<'a, 'd> = Vec<(&'d Doc<'d>, &'a Named)>;

/// Whether an object's tasks run one after another: its `klt-render.dev/task-order`
/// annotation, else the `task-order` option.
fn sequential(
    order: Option<&Spanned<String>>,
    doc: Option<&Doc<'_>>,
    opts: &Options,
    diags: &mut Vec<Diagnostic>,
) -> bool {
    let (Some(order), Some(doc)) = (order, doc) else {
        return opts.sequential;
    };
    crate::options::parse_task_order(&order.value).unwrap_or_else(|message| {
        diags.push(doc.diag(
            "KLT066",
            Severity::Error,
            order.pos,
            Some(order.field.clone()),
            message,
            Some("write \"sequential\" (one task after another, each in its own wave) or \"parallel\" (Keptn's default)".into()),
        ));
        opts.sequential
    })
}

/// A task run at its place in a sequential list (its wave; the name does not change).
fn in_order(mut run: TaskRun<'_>, sequential: bool, position: usize) -> TaskRun<'_> {
    if sequential {
        run.position = position;
    }
    run
}

/// The run of an evaluation use: named `<pre|post>-eval-<definition>` like Keptn's
/// KeptnEvaluations.
fn as_evaluation(mut run: TaskRun<'_>) -> TaskRun<'_> {
    run.evaluation = true;
    run
}

/// Task runs and evaluation runs apart: they are rendered by different builders.
fn split_evaluations(runs: Vec<TaskRun<'_>>) -> (Vec<TaskRun<'_>>, Vec<TaskRun<'_>>) {
    if !runs.iter().any(|r| r.evaluation) {
        return (runs, Vec::new());
    }
    runs.into_iter().partition(|r| !r.evaluation)
}

/// The waves a render needs beyond one per phase: sequential positions and evaluations.
fn layout(runs: &[TaskRun<'_>], evaluations: &[TaskRun<'_>]) -> Layout {
    let mut layout = Layout::default();
    for r in runs {
        let slot = Layout::slot(r.phase);
        let width = i64::try_from(r.position)
            .unwrap_or(i64::MAX)
            .saturating_add(1);
        layout.task_waves[slot] = layout.task_waves[slot].max(width);
    }
    for e in evaluations {
        layout.evaluations[Layout::slot(e.phase)] = true;
    }
    layout
}

/// One Job per evaluation use, validated and named, in namespace and name order, each once.
fn render_evaluations(
    runs: &[TaskRun<'_>],
    catalog: &Catalog<'_>,
    placement: &Placement,
    opts: &Options,
    diags: &mut Vec<Diagnostic>,
) -> Vec<(usize, EvaluationJob)> {
    let fallback = opts.definition_namespace.as_deref();
    let mut jobs: Vec<(usize, EvaluationJob)> = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        let u = evaluation::Use {
            source: run.source,
            name: &run.definition,
            namespace: &run.lookup_namespace,
        };
        let Some(resolved) = catalog.resolve(&u, fallback, diags) else {
            continue;
        };
        jobs.extend(evaluation_job::render(run, &resolved, opts, placement, diags).map(|j| (i, j)));
    }
    jobs.sort_by(|(_, a), (_, b)| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    jobs.dedup_by(|(_, b), (_, a)| (&a.namespace, &a.name) == (&b.namespace, &b.name));
    jobs
}

/// The app version: the KeptnApp's, else the one Keptn derives from the workloads. `None`
/// when the app has neither (its context's tasks cannot run: KLT031).
fn app_version(
    app_name: &str,
    parts: &AppParts<'_, '_>,
    diags: &mut Vec<Diagnostic>,
) -> Option<String> {
    if let Some(a) = parts.app {
        return Some(a.version.clone());
    }
    if !parts.wls.is_empty() {
        return Some(auto_app_version(parts.wls));
    }
    if let Some(c) = parts.ctx
        && !(c.pre_tasks.is_empty()
            && c.post_tasks.is_empty()
            && c.pre_evaluations.is_empty()
            && c.post_evaluations.is_empty())
    {
        let name_pos = c.name_pos;
        diags.push(c.doc.diag(
            "KLT031",
            Severity::Warning,
            name_pos.unwrap_or(c.doc.root.pos),
            name_pos.map(|_| "metadata.name".to_string()),
            format!("no KeptnApp and no workload belongs to app {app_name:?}; its tasks are not rendered"),
            Some(match parts.near {
                Some(near) => Cow::Owned(format!("a KeptnAppContext takes the name of its app: did you mean {near:?}? (workloads or a KeptnApp of app {near:?} are in the input)")),
                None => "give the app's workloads keptn.sh/app (or app.kubernetes.io/part-of) with this name, or add a KeptnApp".into(),
            }),
        ));
    }
    None
}

/// The namespace written on the app's generated objects: the first one written on the
/// KeptnApp, the KeptnAppContext or a workload.
fn app_namespace(parts: &AppParts<'_, '_>) -> Option<String> {
    parts
        .app
        .and_then(|a| a.doc.namespace.as_deref())
        .or_else(|| parts.ctx.and_then(|c| c.doc.namespace.as_deref()))
        .or_else(|| parts.wls.iter().find_map(|w| w.doc.namespace.as_deref()))
        .map(str::to_string)
}

/// A task list of an app, borrowed from the object that holds it.
type TaskList<'a> = &'a [Named];

/// The app's pre and post task lists and the object they come from: a v1alpha KeptnApp's
/// own lists, else the KeptnAppContext's. `None` when both hold lists (KLT022).
fn app_task_lists<'a, 'd>(
    app_name: &str,
    parts: &AppParts<'a, 'd>,
    diags: &mut Vec<Diagnostic>,
) -> Option<(TaskList<'a>, TaskList<'a>, Option<&'d Doc<'d>>)> {
    let legacy = parts.app.filter(|a| {
        a.pre_tasks.as_ref().is_some_and(|l| !l.is_empty())
            || a.post_tasks.as_ref().is_some_and(|l| !l.is_empty())
    });
    Some(match (legacy, parts.ctx) {
        (Some(a), Some(c)) if !(c.pre_tasks.is_empty() && c.post_tasks.is_empty()) => {
            diags.push(c.doc.diag(
                "KLT022",
                Severity::Error,
                c.doc.root.pos,
                Some("spec".into()),
                format!("tasks of app {app_name:?} are listed both here and in {} ({})", a.doc.display(), a.doc.file),
                Some("keep the lists in the KeptnAppContext only (Keptn 2 drops the KeptnApp's lists on conversion)".into()),
            ));
            return None;
        }
        (Some(a), _) => (
            a.pre_tasks.as_deref().unwrap_or_default(),
            a.post_tasks.as_deref().unwrap_or_default(),
            Some(a.doc),
        ),
        (None, Some(c)) => (&c.pre_tasks[..], &c.post_tasks[..], Some(c.doc)),
        (None, None) => (&[][..], &[][..], None),
    })
}

/// What every task run of one app version shares.
struct AppPlan {
    name: Rc<str>,
    lookup_namespace: String,
    namespace: Option<String>,
    version: Rc<str>,
    /// The KeptnApp spec (Go JSON) that app-level Job names hash.
    spec: Option<Rc<str>>,
    /// The KeptnAppContext's metadata, shared by every run's context.
    metadata: Rc<document::Pairs>,
    words: Words,
    /// Shared by the app-level runs.
    context: Rc<SharedContext>,
}

/// The fixed context strings, made once per app and shared by its runs.
struct Words {
    workload: Rc<str>,
    empty: Rc<str>,
}

impl Words {
    fn new() -> Self {
        Words {
            workload: "Workload".into(),
            empty: Rc::default(),
        }
    }
}

impl AppPlan {
    fn new(
        (lookup_ns, app_name): (&str, &str),
        version: String,
        parts: &AppParts<'_, '_>,
        opts: &Options,
    ) -> Self {
        let words = Words::new();
        let metadata: Rc<document::Pairs> = parts
            .ctx
            .map(|c| Rc::clone(&c.metadata))
            .unwrap_or_default();
        let (name, version): (Rc<str>, Rc<str>) = (app_name.into(), version.into());
        let object_type: Rc<str> = opts.profile.app_object_type.into();
        // Every app-level run of the app version shares it (their phase gives the task type).
        let context = Rc::new(SharedContext {
            workload_name: Rc::clone(&words.empty),
            app_name: Rc::clone(&name),
            app_version: Rc::clone(&version),
            workload_version: Rc::clone(&words.empty),
            task_type: None,
            object_type,
            metadata: Rc::clone(&metadata),
            overlay: None,
        });
        AppPlan {
            name,
            lookup_namespace: lookup_ns.to_string(),
            namespace: app_namespace(parts),
            version,
            spec: parts.app.map(|a| Rc::clone(&a.spec_json)),
            metadata,
            words,
            context,
        }
    }

    fn run<'d>(
        &self,
        phase: Phase,
        source: &'d Doc<'d>,
        def: &Named,
        context: Rc<SharedContext>,
        app_spec: Option<Rc<str>>,
    ) -> TaskRun<'d> {
        TaskRun {
            phase,
            source,
            definition: Rc::clone(def),
            namespace: self.namespace.clone(),
            lookup_namespace: self.lookup_namespace.clone(),
            context,
            app_version: Rc::clone(&self.version),
            app_spec,
            hand: None,
            position: 0,
            evaluation: false,
        }
    }

    /// An app-level run: its context names the app version and carries the app's metadata.
    fn app_run<'d>(&self, phase: Phase, source: &'d Doc<'d>, def: &Named) -> TaskRun<'d> {
        let context = Rc::clone(&self.context);
        self.run(phase, source, def, context, self.spec.clone())
    }

    /// A workload's pre and post runs: their context names the workload and carries the
    /// app's metadata overlaid with the workload's.
    fn workload_runs<'d>(&self, w: &Workload<'d>, seq: bool, runs: &mut Vec<TaskRun<'d>>) {
        let overlay = (!w.metadata.is_empty()).then(|| Rc::clone(&w.metadata));
        let (name, version): (Rc<str>, Rc<str>) =
            (w.keptn_name().into(), w.version.as_str().into());
        // One context, shared by the workload's tasks and evaluations of both phases.
        let context = Rc::new(SharedContext {
            workload_name: name,
            app_name: Rc::clone(&self.name),
            app_version: Rc::clone(&self.words.empty),
            workload_version: version,
            task_type: None,
            object_type: Rc::clone(&self.words.workload),
            metadata: Rc::clone(&self.metadata),
            overlay,
        });
        let pre_run = |d| self.run(Phase::WorkloadPre, w.doc, d, Rc::clone(&context), None);
        let post_run = |d| self.run(Phase::WorkloadPost, w.doc, d, Rc::clone(&context), None);
        for (i, d) in w.pre_tasks.iter().enumerate() {
            runs.push(in_order(pre_run(d), seq, i));
        }
        for d in &w.pre_evaluations {
            runs.push(as_evaluation(pre_run(d)));
        }
        for (i, d) in w.post_tasks.iter().enumerate() {
            runs.push(in_order(post_run(d), seq, i));
        }
        for d in &w.post_evaluations {
            runs.push(as_evaluation(post_run(d)));
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
                Some(Cow::from(format!(
                    "add `- name: {}` with `version: \"{}\"` to spec.workloads of the KeptnApp (Keptn would hold this workload forever)",
                    w.name, w.version
                ))),
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
        definition: Rc::clone(&t.definition),
        namespace: t.doc.namespace.as_deref().map(str::to_string),
        lookup_namespace: t.doc.effective_namespace(dest),
        context: Rc::new(SharedContext::from(&t.context)),
        app_version: t.context.app_version.as_str().into(),
        app_spec: None,
        hand: Some(t),
        position: 0,
        evaluation: false,
    }
}

fn kind_rank(kind: &str) -> u8 {
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
    ORDER.iter().position(|k| *k == kind).unwrap_or(ORDER.len()) as u8
}

/// One TaskRecord (spec only) per app version, keyed by namespace and name; the status is
/// klt-reconciler's to write. It goes into a wave after everything else: Argo CD does not
/// wait for the health of the last wave, so the record never holds the sync back.
/// Evaluation Jobs are listed after the tasks of their phase, in the same entry format (the
/// TaskRecord CRD declares no more fields; the reconciler tells an evaluation by its Job's
/// `klt-render.dev/kind: evaluation` label).
fn task_records(
    jobs: &Jobs,
    runs: &[TaskRun<'_>],
    (evaluations, eval_runs): (&[(usize, EvaluationJob)], &[TaskRun<'_>]),
) -> BTreeMap<(Option<String>, String), Value> {
    // The record object without its tasks, and the tasks in record order.
    type Draft<'r> = (Value, Vec<((usize, bool), &'r str, Value)>);
    let mut drafts: BTreeMap<(Option<String>, String), Draft<'_>> = BTreeMap::new();
    let tasks = jobs
        .iter()
        .map(|(run, r)| (&runs[*run], &r.namespace, &*r.job_name, r.phase, false));
    let evals = evaluations.iter().map(|(run, e)| {
        (
            &eval_runs[*run],
            &e.namespace,
            e.name.as_str(),
            e.phase,
            true,
        )
    });
    for (run, namespace, job_name, phase, is_eval) in tasks.chain(evals) {
        let (app, app_version) = (&*run.context.app_name, &*run.app_version);
        let Some(name) = job::record_name(app, app_version) else {
            continue;
        };
        let (_, tasks) = drafts
            .entry((namespace.clone(), name.clone()))
            .or_insert_with(|| {
                let mut metadata = serde_json::Map::new();
                metadata.insert("name".into(), json!(name));
                if let Some(ns) = namespace {
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
        task.insert("job".into(), json!(job_name));
        task.insert("definition".into(), json!(run.definition.value));
        task.insert("phase".into(), json!(phase.label()));
        if !run.context.workload_name.is_empty() {
            task.insert("workload".into(), json!(&*run.context.workload_name));
        }
        tasks.push((
            (phase_rank(phase.label()), is_eval),
            job_name,
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

/// A ConfigMap per app version that has post-deployment Jobs, in the wave after them, when
/// no TaskRecord is there. gitops-engine ends a sync Succeeded once its last wave is applied,
/// without waiting for that wave's health: with nothing after the post Jobs, a failing post
/// task or evaluation would leave the sync Succeeded. Argo CD waits for a wave's health before
/// the next one, so this object makes their failure the sync's. Its data lists the post Jobs'
/// (content-hashed) names, so it changes whenever one of them is new and is applied even with
/// `ApplyOutOfSyncOnly`.
fn sync_gates(
    jobs: &Jobs,
    runs: &[TaskRun<'_>],
    (evaluations, eval_runs): (&[(usize, EvaluationJob)], &[TaskRun<'_>]),
) -> Vec<SyncGate> {
    let mut gates: BTreeMap<(Option<String>, String), SyncGate> = BTreeMap::new();
    let tasks = jobs
        .iter()
        .enumerate()
        .map(|(i, (run, r))| (&runs[*run], &r.namespace, r.phase, PostJob::Task(i)));
    let evals = evaluations.iter().enumerate().map(|(i, (run, e))| {
        (
            &eval_runs[*run],
            &e.namespace,
            e.phase,
            PostJob::Evaluation(i),
        )
    });
    for (run, namespace, phase, post) in tasks.chain(evals) {
        let (app, version) = (&*run.context.app_name, &*run.app_version);
        let Some(record) = job::record_name(app, version).filter(|_| !phase.is_pre()) else {
            continue;
        };
        let name = format!("{record}-sync-gate");
        gates
            .entry((namespace.clone(), name))
            .or_insert_with_key(|(namespace, name)| SyncGate {
                namespace: namespace.clone(),
                name: name.clone(),
                app: app.to_string(),
                version: version.to_string(),
                post: Vec::new(),
            })
            .post
            .push(post);
    }
    gates.into_values().collect()
}

/// An app version's sync gate, kept small until it is written: the post Jobs by index.
struct SyncGate {
    namespace: Option<String>,
    name: String,
    app: String,
    version: String,
    post: Vec<PostJob>,
}

/// A post-deployment Job: its index in [`Generated::jobs`] or [`Generated::evaluations`].
#[derive(Clone, Copy)]
enum PostJob {
    Task(usize),
    Evaluation(usize),
}

/// The `klt-render.dev/kind` label of a sync gate.
pub const SYNC_GATE: &str = "sync-gate";

/// The gate as written: labels, the wave after the post Jobs, and their names in order.
fn sync_gate_object(gate: &SyncGate, wave: i64, mut post_jobs: Vec<&str>) -> Value {
    let (app, version) = (gate.app.as_str(), gate.version.as_str());
    let mut metadata = serde_json::Map::new();
    metadata.insert("name".into(), json!(gate.name));
    if let Some(ns) = &gate.namespace {
        metadata.insert("namespace".into(), json!(ns));
    }
    let mut labels = BTreeMap::new();
    labels.insert(job::LABEL_MANAGED_BY, job::MANAGED_BY.to_string());
    for (k, v) in [(job::LABEL_APP, app), (job::LABEL_APP_VERSION, version)] {
        if let Some(v) = job::label_value(v) {
            labels.insert(k, v);
        }
    }
    labels.insert(crate::evaluation_job::LABEL_KIND, SYNC_GATE.to_string());
    metadata.insert("labels".into(), json!(labels));
    metadata.insert("annotations".into(), json!({ANN_WAVE: wave.to_string()}));
    post_jobs.sort_unstable();
    post_jobs.dedup();
    let jobs = post_jobs;
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata,
        "data": {"app": app, "appVersion": version, "postJobs": jobs.join("\n") + "\n"},
    })
}

fn phase_rank(label: &str) -> usize {
    ["app-pre", "workload-pre", "workload-post", "app-post"]
        .iter()
        .position(|p| *p == label)
        .unwrap_or(4)
}

/// A generated ConfigMap, the earliest phase that mounts it and the runs that mount it (its
/// labels are those all of them agree on, made as it is written).
type SharedConfigMap<'r> = (Phase, job::GeneratedConfigMap<'r>, Vec<usize>);

/// An output document: its phase group and kind rank, and what it is made from. Its name and
/// the rest of its sort key are read from its body: copies of them for every output document
/// added up to megabytes.
struct Placed<'r> {
    group: u8,
    rank: u8,
    /// An input object's place among the input objects in output order ([`input_ranks`]);
    /// 0 for generated objects, ordered by their index in a sorted list or by their names.
    seq: u32,
    body: Body<'r>,
}

/// What an output document's text is made from.
enum Body<'r> {
    /// An input object, written as its own text ([`input_text`]).
    Input(&'r Doc<'r>),
    /// An input object a task needs at this phase, moved to exist before it starts
    /// ([`Placement::ready_before`]).
    Moved(&'r Doc<'r>, Phase),
    Record(Box<Record>),
    /// An app version's sync gate, made into an object only as it is written.
    SyncGate(Box<SyncGate>),
    /// A generated ConfigMap (its index in [`Generated::config_maps`]), made into an object
    /// only as it is written.
    ConfigMap(usize),
    /// A Job: its index in [`Generated::jobs`].
    Job(usize),
    /// An evaluation Job: its index in [`Generated::evaluations`].
    Evaluation(usize),
}

/// A TaskRecord object with the namespace and name it is sorted by.
struct Record {
    namespace: Option<String>,
    name: String,
    object: Value,
}

/// What names an output document.
struct Identity<'s> {
    kind: &'s str,
    api_group: &'s str,
    namespace: Option<&'s str>,
    name: &'s str,
}

/// Where each group of output documents goes: phase groups around the input objects (2).
fn phase_group(p: Phase) -> u8 {
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
    jobs: Jobs,
    config_maps: Vec<SharedConfigMap<'r>>,
    evaluations: Vec<EvaluationJob>,
}

impl Generated<'_> {
    fn identity<'s>(&'s self, body: &'s Body<'_>) -> Identity<'s> {
        let generated = |kind, namespace: &'s Option<String>, name: &'s str| Identity {
            kind,
            api_group: "",
            namespace: namespace.as_deref(),
            name,
        };
        match body {
            Body::Input(d) | Body::Moved(d, _) => Identity {
                kind: &d.kind,
                api_group: d.group(),
                namespace: d.namespace.as_deref(),
                name: &d.name,
            },
            Body::Record(r) => generated("TaskRecord", &r.namespace, &r.name),
            Body::SyncGate(g) => generated("ConfigMap", &g.namespace, &g.name),
            Body::ConfigMap(i) => {
                let cm = &self.config_maps[*i].1;
                generated("ConfigMap", &cm.namespace, &cm.name)
            }
            Body::Job(i) => {
                let r = &self.jobs[*i].1;
                generated("Job", &r.namespace, &r.job_name)
            }
            Body::Evaluation(i) => {
                let e = &self.evaluations[*i];
                generated("Job", &e.namespace, &e.name)
            }
        }
    }

    /// Output order: phase group, kind rank, kind, API group, namespace, name; input objects
    /// that tie on all of these by their text. Generated objects never tie (they are keyed
    /// by namespace and name within their group), and objects that tie on everything are
    /// written alike, so an unstable sort writes the same stream as a stable one.
    fn order(&self, a: &Placed<'_>, b: &Placed<'_>) -> std::cmp::Ordering {
        // Group and rank first: most comparisons of one list of every group end there, before
        // the names are looked up.
        (a.group, a.rank)
            .cmp(&(b.group, b.rank))
            .then_with(|| match (&a.body, &b.body) {
                // The Jobs and ConfigMaps are listed in output order already (`output_keys`),
                // one per name, and the input objects are ranked: all but a few comparisons
                // end here, without reading a name.
                (Body::Job(i), Body::Job(j)) | (Body::ConfigMap(i), Body::ConfigMap(j)) => i.cmp(j),
                (Body::Input(_) | Body::Moved(..), Body::Input(_) | Body::Moved(..)) => {
                    a.seq.cmp(&b.seq)
                }
                _ => self.sort_key(a).cmp(&self.sort_key(b)),
            })
    }

    fn sort_key<'s>(&'s self, p: &'s Placed<'_>) -> (&'s str, &'s str, &'s str, &'s str) {
        let id = self.identity(&p.body);
        let ns = id.namespace.unwrap_or("");
        (id.kind, id.api_group, ns, id.name)
    }
}

/// Evaluation Jobs with the runs they were made from.
type Evaluations<'e> = (Vec<(usize, EvaluationJob)>, &'e [TaskRun<'e>]);

fn assemble<'r>(
    passthrough: &[&'r Doc<'r>],
    runs: &[TaskRun<'_>],
    (rendered, needs): (Jobs, Vec<(usize, job::Needs<'r>)>),
    (mut evaluations, eval_runs): Evaluations<'_>,
    placement: &Placement,
    opts: &Options,
) -> (Vec<Placed<'r>>, Generated<'r>) {
    let jobs = sorted_jobs(rendered);
    let (config_maps, mut uses) = config_maps_and_uses(&jobs, needs);
    for (_, e) in &mut evaluations {
        uses.extend(
            std::mem::take(&mut e.uses)
                .into_iter()
                .map(|u| (e.phase, u)),
        );
    }
    let used = used_inputs(&uses);
    let last = last_wave(&jobs, runs, (&evaluations[..], eval_runs), placement, opts);
    // One list for every group, sized once and sorted in place (group first): groups
    // concatenated into a new list held both at once, the render's peak.
    let mut out: Vec<Placed<'r>> = Vec::with_capacity(
        passthrough.len() + config_maps.len() + last.len() + jobs.len() + evaluations.len(),
    );
    let ranks = input_ranks(passthrough);
    out.extend(
        passthrough
            .iter()
            .zip(ranks)
            .map(|(d, seq)| input_document(d, seq, &used, placement, opts)),
    );
    drop(used);
    drop(uses);
    for (i, (phase, _, _)) in config_maps.iter().enumerate() {
        // In hooks mode every ConfigMap is a PreSync hook, so it exists before any Job.
        let group = if opts.mode == Mode::Hooks {
            0
        } else {
            phase_group(*phase)
        };
        out.push(generated(group, 0, Body::ConfigMap(i)));
    }
    out.extend(last);
    for (i, (_, r)) in jobs.iter().enumerate() {
        out.push(generated(phase_group(r.phase), 1, Body::Job(i)));
    }
    let mut evaluation_jobs = Vec::with_capacity(evaluations.len());
    for (_, e) in evaluations {
        let body = Body::Evaluation(evaluation_jobs.len());
        out.push(generated(phase_group(e.phase), 1, body));
        evaluation_jobs.push(e);
    }
    let generated = Generated {
        jobs,
        config_maps,
        evaluations: evaluation_jobs,
    };
    out.sort_unstable_by(|a, b| generated.order(a, b));
    (out, generated)
}

fn generated(group: u8, rank: u8, body: Body<'_>) -> Placed<'_> {
    Placed {
        group,
        rank,
        seq: 0,
        body,
    }
}

/// Each input object's place in output order among the input objects: by kind, API group,
/// namespace and name, and objects equal in all of these by their text.
fn input_ranks(passthrough: &[&Doc<'_>]) -> Vec<u32> {
    let keys = sort_key::Packed::new(passthrough.iter().map(|d| {
        let fields = [
            &d.kind,
            d.group(),
            d.namespace.as_deref().unwrap_or(""),
            &d.name,
        ];
        fields.map(str::as_bytes)
    }));
    keys.ranks(|a, b| input_text(passthrough[a]).cmp(&input_text(passthrough[b])))
}

/// What follows the post-deployment Jobs: the records, or in waves mode the sync gates.
fn last_wave<'r>(
    jobs: &Jobs,
    runs: &[TaskRun<'_>],
    evals: (&[(usize, EvaluationJob)], &[TaskRun<'_>]),
    placement: &Placement,
    opts: &Options,
) -> Vec<Placed<'r>> {
    if opts.records {
        let wave = placement.record_wave().to_string();
        let records = task_records(jobs, runs, evals).into_iter();
        records
            .map(|((namespace, name), mut object)| {
                object["metadata"]["annotations"] = json!({ ANN_WAVE: wave });
                let record = Record {
                    namespace,
                    name,
                    object,
                };
                generated(5, 0, Body::Record(Box::new(record)))
            })
            .collect()
    } else if opts.mode == Mode::Waves {
        let gates = sync_gates(jobs, runs, evals).into_iter();
        gates
            .map(|gate| generated(5, 0, Body::SyncGate(Box::new(gate))))
            .collect()
    } else {
        Vec::new()
    }
}

/// `(kind, lookup namespace, name)` of input objects Jobs need, with the Job's phase.
type Uses = Vec<(Phase, (&'static str, String, String))>;

/// Input ConfigMaps and Secrets that task Jobs need, with the earliest phase that needs them:
/// they must exist before those Jobs start.
type Used<'a> = BTreeMap<(&'static str, &'a str, &'a str), Phase>;

fn used_inputs<'a>(uses: &'a [(Phase, (&'static str, String, String))]) -> Used<'a> {
    let mut used = Used::new();
    for (phase, (kind, ns, name)) in uses {
        let e = used.entry((*kind, ns, name)).or_insert(*phase);
        *e = (*e).min(*phase);
    }
    used
}

fn input_document<'r>(
    d: &'r Doc<'r>,
    seq: u32,
    used: &Used<'_>,
    placement: &Placement,
    opts: &Options,
) -> Placed<'r> {
    let dest = opts.namespace.as_deref();
    let ns = d.effective_namespace(dest);
    let needed_by = (d.group() == "")
        .then(|| used.get(&(&*d.kind, ns.as_str(), &*d.name)))
        .flatten();
    // A moved object is emitted again only as it is written: its text held until then
    // weighed as much as the object itself.
    let moved = needed_by.filter(|phase| placement.ready_before(d, **phase).is_some());
    let body = match moved {
        Some(phase) => Body::Moved(d, *phase),
        None => Body::Input(d),
    };
    Placed {
        group: 2,
        rank: kind_rank(&d.kind),
        seq,
        body,
    }
}

/// An input object's own text, ending in a newline: verbatim (even trailing blank lines can
/// be data, in a `|+` block scalar), or emitted from its tree when it has no text of its own
/// (an item of a `kind: List`). Made as it is written, so that the output list holds none.
fn input_text<'r>(d: &'r Doc<'r>) -> Cow<'r, str> {
    match d.raw {
        Some(raw) if !raw.trim().is_empty() => {
            if raw.ends_with('\n') {
                Cow::Borrowed(raw)
            } else {
                Cow::Owned(format!("{raw}\n"))
            }
        }
        _ => Cow::Owned(yaml::emit(&d.root.to_json())),
    }
}

/// The Jobs in namespace and name order, each once: a sorted list, not a map, so that their
/// names are not copied into keys.
type Jobs = Vec<(usize, job::Rendered)>;

/// Generated objects' keys in output order among their kind ([`Generated::order`]: namespace
/// as written, `""` when none, then name), with the rare `namespace: ""` after no namespace.
/// Lists sorted by them need no name lookups to be ordered in the output: their indices are.
fn output_keys<'a, I>(objects: I) -> sort_key::Packed
where
    I: ExactSizeIterator<Item = (&'a Option<String>, &'a str)> + Clone,
{
    sort_key::Packed::new(objects.map(|(namespace, name)| {
        let ns = namespace.as_deref().unwrap_or("");
        let written: &[u8] = if namespace.is_some() { b"1" } else { b"" };
        [ns.as_bytes(), name.as_bytes(), written]
    }))
}

/// Of Jobs of equal name the first run stays, as a map's first insert did: the run index
/// breaks ties. Ranked by packed keys and arranged in place: a stable sort's scratch buffer
/// of n Jobs was once the render's peak, and comparing the Jobs' own names missed the cache.
fn sorted_jobs(mut jobs: Jobs) -> Jobs {
    let keys = output_keys(jobs.iter().map(|(_, r)| (&r.namespace, &*r.job_name)));
    let ranks = keys.ranks(|a, b| jobs[a].0.cmp(&jobs[b].0));
    drop(keys);
    sort_key::arrange(&mut jobs, ranks);
    jobs.dedup_by(|(_, b), (_, a)| (&a.namespace, &a.job_name) == (&b.namespace, &b.job_name));
    jobs
}

/// The ConfigMaps the Jobs share, in namespace and name order, and the input objects the
/// Jobs need with the phase of the Job. Jobs of equal name are equal, so the first of them
/// stands for all: only its uses count, as they did when they were kept with it.
fn config_maps_and_uses<'r>(
    jobs: &Jobs,
    needs: Vec<(usize, job::Needs<'r>)>,
) -> (Vec<SharedConfigMap<'r>>, Uses) {
    let mut kept = vec![false; needs.last().map_or(0, |(i, _)| i + 1)];
    for (i, _) in jobs {
        kept[*i] = true;
    }
    let mut generated = Vec::new();
    let mut uses = Vec::new();
    for (run, n) in needs {
        if kept[run] {
            uses.extend(n.uses.into_iter().map(|u| (n.phase, u)));
        }
        if let Some(cm) = n.config_map {
            generated.push((run, n.phase, *cm));
        }
    }
    (shared_config_maps(generated), uses)
}

/// ConfigMaps of equal namespace and name as one: the first run's, at the earliest phase,
/// with every run that mounts it. A sorted list, not a map keyed by copies of the names.
fn shared_config_maps(
    mut generated: Vec<(usize, Phase, job::GeneratedConfigMap<'_>)>,
) -> Vec<SharedConfigMap<'_>> {
    let keys = output_keys(
        generated
            .iter()
            .map(|(_, _, cm)| (&cm.namespace, &*cm.name)),
    );
    let ranks = keys.ranks(|a, b| generated[a].0.cmp(&generated[b].0));
    drop(keys);
    sort_key::arrange(&mut generated, ranks);
    let mut shared: Vec<SharedConfigMap<'_>> = Vec::new();
    for (run, phase, cm) in generated {
        match shared.last_mut() {
            Some(last) if last.1.namespace == cm.namespace && last.1.name == cm.name => {
                last.0 = last.0.min(phase);
                last.2.push(run);
            }
            _ => shared.push((phase, cm, vec![run])),
        }
    }
    shared.shrink_to_fit();
    shared
}
