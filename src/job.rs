//! One task run becomes one Job (and, for inline code, one ConfigMap), shaped exactly as
//! Keptn's operator shapes it (`job_utils.go`, `runtime_builder.go`, `container_builder.go`),
//! with a content-hashed name instead of a random one.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use crate::diag::{Diagnostic, Severity};
use crate::document::Doc;
use crate::hash;
use crate::model::{
    Code, HandTask, Lang, Named, Phase, Runner, RuntimeSpec, SharedContext, Spanned, TaskDefinition,
};
use crate::object::{self, Entries, Obj};
use crate::options::Options;
use crate::waves::Placement;
use crate::yaml::Node;

/// Label keys we put on generated objects.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "klt-render";
pub const LABEL_APP: &str = "klt-render.dev/app";
pub const LABEL_APP_VERSION: &str = "klt-render.dev/app-version";
pub const LABEL_WORKLOAD: &str = "klt-render.dev/workload";
pub const LABEL_VERSION: &str = "klt-render.dev/version";
pub const LABEL_PHASE: &str = "klt-render.dev/phase";
pub const LABEL_DEFINITION: &str = "klt-render.dev/task-definition";
pub const LABEL_RECORD: &str = "klt-render.dev/record";

/// One task to run: a definition, in a namespace, with a context.
#[derive(Debug)]
pub struct TaskRun<'d> {
    pub phase: Phase,
    /// The object whose task list (or KeptnTask) asked for this run.
    pub source: &'d Doc<'d>,
    /// Borrowed from the task list that names it.
    pub definition: Named,
    /// Namespace written on generated objects (`None`: the destination namespace).
    pub namespace: Option<String>,
    /// Namespace used for lookups.
    pub lookup_namespace: String,
    /// Shared by the runs of one app or workload phase.
    pub context: Rc<SharedContext>,
    pub app_version: Rc<str>,
    /// For app-level tasks, the KeptnApp spec (Go JSON). Keptn creates a new app version,
    /// and so runs the app tasks again, whenever that spec changes (a `revision` bump).
    pub app_spec: Option<Rc<str>>,
    /// The hand-written KeptnTask this run is; `None` for the tasks the operator would create.
    pub hand: Option<&'d HandTask<'d>>,
    /// Place in its phase's task list under sequential task order (0 otherwise): its wave.
    pub position: usize,
    /// An evaluation use (`definition` names a KeptnEvaluationDefinition), not a task.
    pub evaluation: bool,
}

impl<'d> TaskRun<'d> {
    /// Name prefix before the hash: a KeptnTask's name, else `pre-<definition>`,
    /// `post-<definition>` or, for evaluations, `<pre|post>-eval-<definition>` (made when
    /// asked: a copy in every run added up to half a megabyte per thousand apps).
    pub fn name_base(&self) -> Cow<'d, str> {
        if let Some(t) = self.hand {
            return Cow::Borrowed(&t.doc.name);
        }
        let check = if self.phase.is_pre() { "pre" } else { "post" };
        let eval = if self.evaluation { "-eval" } else { "" };
        Cow::Owned(format!("{check}{eval}-{}", self.definition.value))
    }

    /// retries and timeout of a hand-written KeptnTask (operator-made tasks copy the
    /// definition's).
    pub fn task_limits(&self) -> Option<(i64, i64)> {
        self.hand.map(|t| (t.retries, t.timeout_seconds))
    }
}

/// Objects by namespace and name. Every Job looks up definitions, ConfigMaps and Secrets
/// (twice: validated, then written); hashed per part, a lookup builds no key and compares no
/// long shared name prefixes.
pub struct ByName<'k, V> {
    /// Names borrowed from the input where they can be: a copy of each object's name as a
    /// key was one block per object.
    map: NameMap<String, NameMap<Cow<'k, str>, V>>,
}

/// SipHash with random keys (std's default), not a faster unkeyed hash: names come from
/// whatever a push holds, and colliding names must not make lookups quadratic.
type NameMap<K, V> = HashMap<K, V>;

impl<V> Default for ByName<'_, V> {
    fn default() -> Self {
        ByName {
            map: NameMap::default(),
        }
    }
}

impl<'k, V> ByName<'k, V> {
    /// A later object of the same namespace and name replaces the earlier one.
    pub fn insert(&mut self, namespace: String, name: impl Into<Cow<'k, str>>, value: V) {
        let names = self.map.entry(namespace).or_default();
        names.insert(name.into(), value);
    }

    pub fn get(&self, namespace: &str, name: &str) -> Option<&V> {
        self.map.get(namespace)?.get(name)
    }

    /// The names in `namespace`, sorted.
    pub fn names_in(&self, namespace: &str) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .map
            .get(namespace)
            .into_iter()
            .flat_map(|m| m.keys().map(|k| &**k))
            .collect();
        names.sort_unstable();
        names
    }
}

/// What the rest of the input offers for lookups.
pub struct Index<'a, 'd> {
    pub definitions: &'a ByName<'d, Box<TaskDefinition<'d>>>,
    pub config_maps: &'a ByName<'d, &'d Doc<'d>>,
    pub secrets: &'a ByName<'d, &'d Doc<'d>>,
    pub options: &'a Options,
    pub placement: &'a Placement,
    /// [`Index::definition_names`] per lookup namespace, listed once: many unknown names in
    /// one namespace would otherwise list all its definitions again for each of them.
    pub names: RefCell<BTreeMap<String, Rc<[&'a str]>>>,
    /// The ConfigMap suffix of each inline code, by the address of the runtime spec holding it
    /// (see [`Index::code_suffix`]): a Job is built twice (named, then written) and Jobs share
    /// code, and hashing the code was a tenth of building a Job. One short entry per code.
    pub code_suffixes: RefCell<HashMap<usize, String>>,
    /// What the did-you-means of missing names may still compare.
    pub suggestions: crate::suggest::Budget,
}

impl<'a, 'd> Index<'a, 'd> {
    /// Task namespace first, then the configured definition namespace (Keptn's fallback).
    pub fn definition(&self, ns: &str, name: &str) -> Option<&TaskDefinition<'d>> {
        self.definitions
            .get(ns, name)
            .or_else(|| {
                let fallback = self.options.definition_namespace.as_deref()?;
                self.definitions.get(fallback, name)
            })
            .map(Box::as_ref)
    }

    /// [`hash::code_configmap_suffix`] of `code`, hashed once per code. `spec` is the address
    /// of the runtime spec holding it: the index borrows the (boxed) definitions, so while it
    /// lives no two specs share an address and none changes its code.
    pub fn code_suffix(&self, spec: usize, code: &Code<'_>) -> String {
        if let Some(suffix) = self.code_suffixes.borrow().get(&spec) {
            return suffix.clone();
        }
        let suffix = hash::code_configmap_suffix(&code.text());
        self.code_suffixes.borrow_mut().insert(spec, suffix.clone());
        suffix
    }

    /// Names of the definitions in `ns` and the fallback namespace, in key order (ties in
    /// suggestions go to the first).
    pub fn definition_names(&self, ns: &str) -> Rc<[&'a str]> {
        if let Some(names) = self.names.borrow().get(ns) {
            return Rc::clone(names);
        }
        // In (namespace, name) order, as the suggestions always were.
        let mut spaces = vec![ns];
        if let Some(fallback) = self.options.definition_namespace.as_deref()
            && fallback != ns
        {
            spaces.push(fallback);
        }
        spaces.sort_unstable();
        let names: Rc<[&'a str]> = spaces
            .into_iter()
            .flat_map(|space| self.definitions.names_in(space))
            .collect();
        self.names
            .borrow_mut()
            .insert(ns.to_string(), Rc::clone(&names));
        names
    }
}

/// A rendered task's Job, as the stream is written: what else a record needs of it (app,
/// versions, definition, workload) is read from its [`TaskRun`].
#[derive(Debug)]
pub struct Rendered {
    pub phase: Phase,
    pub namespace: Option<String>,
    /// Boxed: held for every Job while the stream is written, never grown.
    pub job_name: Box<str>,
}

/// What a rendered task's Job needs before it starts; apart from [`Rendered`] because it only
/// decides what the render generates and moves, and is dropped before the stream is written.
#[derive(Debug)]
pub struct Needs<'d> {
    pub phase: Phase,
    /// For inline code, the ConfigMap holding the code (boxed: most Jobs have none, and
    /// every Job's needs are held at once).
    pub config_map: Option<Box<GeneratedConfigMap<'d>>>,
    /// Input objects the Job needs at start: `(kind, lookup namespace, name)` of a code
    /// ConfigMap, a SECURE_DATA or image pull Secret, or a ServiceAccount.
    pub uses: Vec<(&'static str, String, String)>,
}

/// The code is borrowed from the input's tree: it is held once, however many Jobs mount it.
#[derive(Debug, Clone)]
pub struct GeneratedConfigMap<'d> {
    pub name: String,
    pub namespace: Option<String>,
    pub code: Code<'d>,
    pub definition: &'d str,
}

/// The code and settings a runtime Job ends up with after functionRef and task merging.
struct Resolved<'d> {
    lang: Lang,
    params: BTreeMap<Cow<'d, str>, Cow<'d, str>>,
    secret: Option<Spanned<String>>,
    cmd: String,
    /// Mounted ConfigMap: generated (inline code) or referenced by name.
    config_map: Option<CodeMap<'d>>,
    url: Option<String>,
    uses: Vec<(&'static str, String, String)>,
}

enum CodeMap<'d> {
    /// `spec`: the address of the runtime spec that holds the code, naming it for
    /// [`Index::code_suffix`].
    Inline {
        definition: &'d str,
        code: Code<'d>,
        spec: usize,
    },
    Referenced {
        name: String,
        code: &'d str,
    },
}

/// Validates one task run and names its Job; the Job's text is made later by [`job_text`],
/// so that no render holds every Job text at once.
pub fn render_task<'d>(
    run: &TaskRun<'_>,
    index: &Index<'_, 'd>,
    diags: &mut Vec<Diagnostic>,
) -> Option<(Rendered, Needs<'d>)> {
    let own = own_label_values(run);
    let built = build(run, index, Pass::Name, &own, diags)?;
    let job_name = job_name(run, &built);
    if !is_dns_label(&job_name) {
        diags.push(invalid_name(run, &job_name));
        return None;
    }
    let rendered = Rendered {
        phase: run.phase,
        namespace: run.namespace.clone(),
        job_name: job_name.into_boxed_str(),
    };
    let needs = Needs {
        phase: run.phase,
        config_map: built.config_map.map(Box::new),
        uses: built.uses,
    };
    Some((rendered, needs))
}

/// The YAML text of a Job [`render_task`] accepted: the same object again, with its name.
pub fn job_text(run: &TaskRun<'_>, index: &Index<'_, '_>, rendered: &Rendered) -> String {
    let mut ignored = Vec::new();
    let own = own_label_values(run);
    let built =
        build(run, index, Pass::Write, &own, &mut ignored).expect("the run was rendered before");
    // Keptn labels a Job with the name of the KeptnTask it runs: a hand-written one's own
    // name; for the tasks the operator would create, the Job stands in for the KeptnTask.
    let task_name = match run.hand {
        Some(t) => &*t.doc.name,
        None => &*rendered.job_name,
    };
    let job = named(
        built.job,
        &rendered.job_name,
        task_name,
        index.placement,
        (run.phase, run.position),
    );
    job.to_yaml()
}

/// Why a Job is built: to name it, or to write it once named. Writing needs nothing that
/// only the name hashes.
#[derive(Clone, Copy, PartialEq)]
enum Pass {
    Name,
    Write,
}

/// A Job object without its name, and what the render keeps of it.
struct Built<'a, 'd> {
    job: Obj<'a>,
    /// What the name hashes besides the object: the code of a referenced ConfigMap.
    hash_extra: String,
    config_map: Option<GeneratedConfigMap<'d>>,
    uses: Vec<(&'static str, String, String)>,
}

/// The definition's labels overlaid with ours, in key order.
fn job_labels<'a>(def: &'a [(String, String)], own: &'a OwnLabels<'a>) -> Entries<'a> {
    let mut labels: Entries<'a> = Vec::with_capacity(own.len() + def.len());
    let ours = own.iter().map(|(k, v)| (*k, v.as_ref()));
    let theirs = def.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    labels.extend(ours.chain(theirs).map(|(k, v)| (k.into(), Obj::str(v))));
    // Stable, so that ours come first among equal keys and are the ones kept.
    labels.sort_by(|a, b| a.0.cmp(&b.0));
    labels.dedup_by(|later, first| later.0 == first.0);
    labels
}

/// The labels klt-render puts on a task's objects, in key order.
type OwnLabels<'r> = Vec<(&'static str, Cow<'r, str>)>;

/// `own`: the run's [`own_labels`], borrowed by the object (and by its pod template's copy).
fn build<'a, 'd>(
    run: &'a TaskRun<'_>,
    index: &'a Index<'_, 'd>,
    pass: Pass,
    own: &'a OwnLabels<'a>,
    diags: &mut Vec<Diagnostic>,
) -> Option<Built<'a, 'd>> {
    let opts = index.options;
    let ns = run.lookup_namespace.as_str();
    let Some(def) = index.definition(ns, &run.definition.value) else {
        diags.push(missing_definition(run, index));
        return None;
    };
    let runner = def.runner.as_ref()?;
    let context_json = run
        .context
        .to_json(run.phase, opts.profile.context_metadata);
    let mut uses = Vec::new();
    let (container, volume, config_map, hash_extra) = match runner {
        Runner::Container(node) => {
            let (c, v) = container_runner(node, context_json, def, opts, diags)?;
            (c, v, None, String::new())
        }
        Runner::Runtime(lang) => {
            let spec = def.runtime(*lang)?;
            let mut resolved = resolve_runtime(run, def, *lang, spec, (index, pass), diags)?;
            uses = std::mem::take(&mut resolved.uses);
            runtime_container(run, &resolved, context_json, (index, pass))
        }
    };
    let labels = Obj::Map(job_labels(&def.labels, own));
    let pod_spec = pod_spec(def, ns, opts, container, volume, &mut uses);
    let job_spec = job_spec(run, def, opts, labels.clone(), pod_spec);
    let mut metadata = Vec::with_capacity(4);
    if let Some(ns) = &run.namespace {
        metadata.push(("namespace".into(), Obj::str(ns.as_str())));
    }
    metadata.push(("labels".into(), labels));
    metadata.push((
        "annotations".into(),
        Obj::string_map(job_annotations(run, def)),
    ));
    let job = Obj::Map(vec![
        ("apiVersion".into(), Obj::str("batch/v1")),
        ("kind".into(), Obj::str("Job")),
        ("metadata".into(), Obj::Map(metadata)),
        ("spec".into(), job_spec),
    ]);
    Some(Built {
        job,
        hash_extra,
        config_map,
        uses,
    })
}

fn pod_spec<'a>(
    def: &'a TaskDefinition<'_>,
    ns: &str,
    opts: &Options,
    container: Obj<'a>,
    volume: Option<Obj<'a>>,
    uses: &mut Vec<(&'static str, String, String)>,
) -> Obj<'a> {
    let mut pod_spec: Entries<'a> = Vec::with_capacity(6);
    pod_spec.push(("restartPolicy".into(), Obj::str("OnFailure")));
    if opts.profile.pod_settings {
        if let Some(sa) = &def.service_account {
            pod_spec.push(("serviceAccountName".into(), Obj::str(&**sa)));
            uses.push(("ServiceAccount", ns.to_string(), sa.to_string()));
        }
        for name in def
            .image_pull_secrets
            .iter()
            .flat_map(|v| v.as_array().into_iter().flatten())
            .filter_map(|s| s["name"].as_str())
        {
            uses.push(("Secret", ns.to_string(), name.to_string()));
        }
        if let Some(a) = def.automount_token {
            pod_spec.push(("automountServiceAccountToken".into(), Obj::Bool(a)));
        }
        if let Some(s) = &def.image_pull_secrets {
            pod_spec.push(("imagePullSecrets".into(), Obj::Json((**s).clone())));
        }
    }
    if let Some(v) = volume {
        pod_spec.push(("volumes".into(), Obj::Seq(vec![v])));
    }
    pod_spec.push(("containers".into(), Obj::Seq(vec![container])));
    Obj::Map(pod_spec)
}

fn job_spec<'a>(
    run: &TaskRun<'_>,
    def: &'a TaskDefinition<'_>,
    opts: &Options,
    labels: Obj<'a>,
    pod_spec: Obj<'a>,
) -> Obj<'a> {
    let mut template_meta = vec![("labels".into(), labels)];
    if !def.annotations.is_empty() {
        template_meta.push((
            "annotations".into(),
            Obj::string_map(
                def.annotations
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            ),
        ));
    }
    let (retries, timeout) = run
        .task_limits()
        .unwrap_or((def.retries, def.timeout_seconds));
    let mut job_spec: Entries<'a> = Vec::with_capacity(4);
    job_spec.push(("backoffLimit".into(), Obj::Int(retries)));
    job_spec.push(("activeDeadlineSeconds".into(), Obj::Int(timeout)));
    if opts.profile.pod_settings && opts.mode == crate::options::Mode::Hooks {
        job_spec.push(("ttlSecondsAfterFinished".into(), Obj::Int(def.ttl_seconds)));
    }
    let template = vec![
        ("metadata".into(), Obj::Map(template_meta)),
        ("spec".into(), pod_spec),
    ];
    job_spec.push(("template".into(), Obj::Map(template)));
    Obj::Map(job_spec)
}

/// The definition's annotations minus Argo CD's own keys (ours decide ordering), overlaid
/// with the keptn.sh keys Keptn sets.
fn job_annotations<'a>(
    run: &'a TaskRun<'_>,
    def: &'a TaskDefinition<'_>,
) -> BTreeMap<&'a str, &'a str> {
    let mut annotations: BTreeMap<&str, &str> = def
        .annotations
        .iter()
        .filter(|(k, _)| !k.starts_with("argocd.argoproj.io/"))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let ctx = &run.context;
    annotations.insert("keptn.sh/app", &ctx.app_name);
    if ctx.workload_name.is_empty() {
        annotations.insert("keptn.sh/version", &ctx.app_version);
    } else {
        annotations.insert("keptn.sh/workload", &ctx.workload_name);
        annotations.insert("keptn.sh/version", &ctx.workload_version);
    }
    annotations
}

/// The name hashes everything that changes what runs, plus the app revision and the code of
/// a referenced ConfigMap (its name alone would not change with its content).
fn job_name(run: &TaskRun<'_>, built: &Built) -> String {
    let mut digest_input = built.job.to_go_json();
    if let Some(spec) = &run.app_spec {
        digest_input.push_str("\napp=");
        digest_input.push_str(spec);
    }
    digest_input.push_str(&built.hash_extra);
    format!(
        "{}-{}",
        truncate_name(&run.name_base(), 63 - 11),
        hash::short(digest_input.as_bytes())
    )
}

fn invalid_name(run: &TaskRun<'_>, job_name: &str) -> Diagnostic {
    run.source.diag(
        "KLT027",
        Severity::Error,
        run.definition.pos,
        Some(run.definition.field.clone()),
        format!(
            "the Job name {job_name:?} derived from {:?} is not a valid Kubernetes name",
            run.name_base()
        ),
        Some(
            "use lowercase letters, digits, '-' and '.' in task definition and KeptnTask names"
                .into(),
        ),
    )
}

/// The Job with its name (first in metadata, as in Keptn's Jobs) and ordering annotations.
fn named<'a>(
    mut job: Obj<'a>,
    job_name: &'a str,
    task_name: &'a str,
    placement: &'a Placement,
    (phase, position): (Phase, usize),
) -> Obj<'a> {
    let Some(Obj::Map(meta)) = job.get_mut("metadata") else {
        unreachable!("build writes metadata as a map");
    };
    meta.insert(0, ("name".into(), Obj::str(job_name)));
    if let Some((_, Obj::Map(ann))) = meta.iter_mut().find(|(k, _)| k == "annotations") {
        object::insert(ann, "keptn.sh/task-name", Obj::str(task_name));
        let wave = placement.task_wave(phase, position);
        for (k, v) in placement.ordering_annotations_at(wave, phase, true) {
            object::insert(ann, k, Obj::Str(v));
        }
    }
    job
}

/// "did you mean" a definition of lookup namespace `ns`, while the index's suggestion budget
/// lasts. The names of a namespace are listed (and kept) only then: with a fallback namespace,
/// each of many namespaces would list all of its definitions.
fn suggest_definition(index: &Index<'_, '_>, ns: &str, wanted: &str) -> Option<String> {
    if index.suggestions.spent() {
        return None;
    }
    let names = index.definition_names(ns);
    let near = index.suggestions.closest(wanted, || names.iter().copied());
    near.map(|s| format!("did you mean \"{s}\"?"))
}

fn missing_definition(run: &TaskRun<'_>, index: &Index<'_, '_>) -> Diagnostic {
    let wanted = &run.definition.value;
    let trimmed = wanted.trim();
    let suggestion = if trimmed != wanted
        && index.definition(&run.lookup_namespace, trimmed).is_some()
    {
        Some(format!(
            "the name has surrounding spaces; Keptn does not trim task lists, write \"{trimmed}\""
        ))
    } else {
        suggest_definition(index, &run.lookup_namespace, wanted)
    };
    let ns = namespace_phrase(&run.lookup_namespace);
    let help = suggestion.unwrap_or_else(|| {
        "add the KeptnTaskDefinition to the rendered paths, or fix the name (Keptn would wait for it forever)".into()
    });
    run.source.diag(
        "KLT020",
        Severity::Error,
        run.definition.pos,
        Some(run.definition.field.clone()),
        format!("task definition {wanted:?} not found in {ns}"),
        Some(Cow::from(help)),
    )
}

/// How messages name a lookup namespace (`""` stands for the unknown destination).
fn namespace_phrase(ns: &str) -> String {
    if ns.is_empty() {
        "the destination namespace".to_string()
    } else {
        format!("namespace {ns:?}")
    }
}

/// The labels klt-render puts on a task's objects. A ConfigMap's are made again from its
/// users' runs rather than kept from validation: labels kept for every Job, and freed when
/// ConfigMaps merge, left the heap so fragmented that writing the stream slowed by a sixth.
pub fn own_labels(run: &TaskRun<'_>) -> BTreeMap<&'static str, String> {
    let labels = own_label_values(run).into_iter();
    labels.map(|(k, v)| (k, v.into_owned())).collect()
}

/// [`own_labels`] borrowed from the run where they are valid as they stand (nearly always):
/// a Job built twice made a dozen label strings.
fn own_label_values<'r>(run: &'r TaskRun<'_>) -> OwnLabels<'r> {
    let mut l = Vec::with_capacity(8);
    l.push((LABEL_MANAGED_BY, Cow::Borrowed(MANAGED_BY)));
    let ctx = &run.context;
    let mut put = |k: &'static str, v: Option<Cow<'r, str>>| {
        if let Some(v) = v {
            l.push((k, v));
        }
    };
    let value = |v: &'r str| label_cow(v);
    put(LABEL_APP, value(&ctx.app_name));
    // A workload task belongs to its workload version only, as a KeptnWorkloadVersion is
    // named `<app>-<workload>-<version>`: nothing that only the app version holds may reach
    // its Job (labels are hashed into the name and sit in the immutable pod template), or an
    // app version bump alone would run every workload task again. Its TaskRecord lists it
    // by name instead.
    if !is_workload_phase(run.phase) {
        put(LABEL_APP_VERSION, value(&run.app_version));
        if let Some(record) = record_name(&ctx.app_name, &run.app_version) {
            put(LABEL_RECORD, label_value(&record).map(Cow::Owned));
        }
    }
    put(LABEL_DEFINITION, value(&run.definition.value));
    put(LABEL_PHASE, value(run.phase.label()));
    if !ctx.workload_name.is_empty() {
        put(LABEL_WORKLOAD, value(&ctx.workload_name));
        put(LABEL_VERSION, value(&ctx.workload_version));
    } else {
        put(LABEL_VERSION, value(&ctx.app_version));
    }
    l.sort_unstable_by_key(|(k, _)| *k);
    l
}

fn is_workload_phase(phase: Phase) -> bool {
    matches!(phase, Phase::WorkloadPre | Phase::WorkloadPost)
}

/// The name of the TaskRecord that tracks an app version: `<app>-<version>`, made a valid
/// DNS label; a long or altered name gets a hash so that different versions never collide.
pub fn record_name(app: &str, app_version: &str) -> Option<String> {
    if app.is_empty() {
        return None;
    }
    let raw = if app_version.is_empty() {
        app.to_string()
    } else {
        format!("{app}-{app_version}")
    };
    // Most are valid already (`checkout-1.4.0`): no lowercased and mapped copies.
    let edge = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let inner = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'.');
    let b = raw.as_bytes();
    if b.len() <= 63
        && b.first().is_some_and(|&c| edge(c))
        && b.last().is_some_and(|&c| edge(c))
        && b.iter().all(inner)
    {
        return Some(raw);
    }
    Some(record_name_mapped(&raw))
}

/// [`record_name`] of a name that is not a DNS label as it stands.
fn record_name_mapped(raw: &str) -> String {
    let clean: String = raw
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let clean = clean.trim_matches(['-', '.']).to_string();
    if clean == raw && clean.len() <= 63 {
        return clean;
    }
    let digest = hash::short(raw.as_bytes());
    let base = truncate_name(&clean, 63 - 11);
    format!("{base}-{digest}")
}

/// A valid label value for `v`: invalid characters become `-`, at most 63 characters.
pub fn label_value(v: &str) -> Option<String> {
    label_cow(v).map(Cow::into_owned)
}

/// [`label_value`], borrowing `v` when it is valid as it stands.
fn label_cow(v: &str) -> Option<Cow<'_, str>> {
    // Most values (names, versions) are valid already: no copy, no mapping.
    let edge = |c: u8| c.is_ascii_alphanumeric();
    let inner = |c: &u8| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.');
    let b = v.as_bytes();
    if b.len() <= 63
        && b.first().is_some_and(|&c| edge(c))
        && b.last().is_some_and(|&c| edge(c))
        && b.iter().all(inner)
    {
        return Some(Cow::Borrowed(v));
    }
    label_value_mapped(v).map(Cow::Owned)
}

/// [`label_value`] of a value that is not valid as it stands.
fn label_value_mapped(v: &str) -> Option<String> {
    let mapped: String = v
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    let trimmed = mapped.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    (!trimmed.is_empty()).then(|| trimmed.to_string())
}

/// A Job name must also be a valid label value (the pod label `job-name`): at most 63
/// lowercase alphanumerics, `-` or `.`, starting and ending alphanumeric.
pub fn is_dns_label(s: &str) -> bool {
    s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
}

/// Cuts a name to `max` characters without leaving a trailing `-` or `.`.
pub fn truncate_name(s: &str, max: usize) -> String {
    // Names are nearly always lowercase ASCII and short enough: one copy, not four.
    let b = s.as_bytes();
    let kept = |c: &u8| c.is_ascii() && !c.is_ascii_uppercase() && *c != b'_';
    if b.len() <= max && b.iter().all(kept) && !matches!(b.last(), Some(b'-' | b'.')) {
        return s.to_string();
    }
    truncate_name_mapped(s, max)
}

/// [`truncate_name`] of a name that changes.
fn truncate_name_mapped(s: &str, max: usize) -> String {
    let lowered = s.to_lowercase().replace('_', "-");
    let cut: String = lowered.chars().take(max).collect();
    cut.trim_end_matches(['-', '.']).to_string()
}

/// The code and settings a runtime Job runs with: the definition's, completed by the
/// definition its functionRef names, then by the task's own values.
fn resolve_runtime<'d>(
    run: &TaskRun<'_>,
    def: &TaskDefinition<'d>,
    lang: Lang,
    spec: &RuntimeSpec<'d>,
    (index, pass): (&Index<'_, 'd>, Pass),
    diags: &mut Vec<Diagnostic>,
) -> Option<Resolved<'d>> {
    let ns = run.lookup_namespace.as_str();
    let mut r = Resolved {
        lang,
        params: spec.parameters.iter().cloned().collect(),
        secret: spec.secret.as_deref().cloned(),
        cmd: spec.cmd_parameters.to_string(),
        config_map: None,
        url: None,
        uses: Vec::new(),
    };
    // The definition each resolved value came from, for messages about it.
    let mut secret_owner: &Doc<'_> = def.doc;
    let (owner, ospec) = match &spec.function_ref {
        Some(fref) => {
            let (parent, plang, pspec) = function_ref_target(def, fref, ns, index, diags)?;
            if merge_parent(&mut r, plang, pspec) {
                secret_owner = parent.doc;
            }
            (parent, pspec)
        }
        None => (def, spec),
    };
    resolve_code(&mut r, owner, ospec, ns, index, diags)?;
    if let Some(task) = apply_task_values(&mut r, run) {
        secret_owner = task;
    }
    // Written, the Job was checked when it was named; its messages were made then.
    if let Some(secret) = &r.secret
        && pass == Pass::Name
        && check_secret(run, secret_owner, secret, index, diags)
    {
        r.uses
            .push(("Secret", ns.to_string(), secret.value.clone()));
    }
    Some(r)
}

/// The definition a functionRef names, with the runtime spec Keptn reads of it (deno first,
/// whatever the child's runner). It must exist (KLT014), hold code and have no functionRef
/// itself (KLT015).
fn function_ref_target<'i, 'd>(
    def: &TaskDefinition<'d>,
    fref: &Spanned<String>,
    ns: &str,
    index: &'i Index<'_, 'd>,
    diags: &mut Vec<Diagnostic>,
) -> Option<(&'i TaskDefinition<'d>, Lang, &'i RuntimeSpec<'d>)> {
    let Some(parent) = index.definition(ns, &fref.value) else {
        let help = suggest_definition(index, ns, &fref.value).unwrap_or_else(|| {
            "add the referenced KeptnTaskDefinition to the rendered paths".into()
        });
        diags.push(def.doc.diag(
            "KLT014",
            Severity::Error,
            fref.pos,
            Some(fref.field.clone()),
            format!("functionRef names {:?}, which is not defined", fref.value),
            Some(Cow::from(help)),
        ));
        return None;
    };
    let Some((plang, pspec)) = parent
        .deno
        .as_deref()
        .filter(|d| !d.is_empty())
        .map(|d| (Lang::Deno, d))
        .or_else(|| {
            parent
                .python
                .as_deref()
                .filter(|p| !p.is_empty())
                .map(|p| (Lang::Python, p))
        })
    else {
        diags.push(def.doc.diag(
            "KLT015",
            Severity::Error,
            fref.pos,
            Some(fref.field.clone()),
            format!("functionRef target {:?} has no deno or python code", fref.value),
            Some("point functionRef at a deno or python definition with inline, httpRef or configMapRef code".into()),
        ));
        return None;
    };
    if parent.has_function_ref || std::ptr::eq(parent, def) {
        diags.push(def.doc.diag(
            "KLT015",
            Severity::Error,
            fref.pos,
            Some(fref.field.clone()),
            format!(
                "functionRef chain: {:?} refers to {:?}, which has a functionRef itself",
                def.doc.name, fref.value
            ),
            Some("Keptn follows only one level of functionRef; point directly at the definition that holds the code".into()),
        ));
        return None;
    }
    Some((parent, plang, pspec))
}

/// mergo without override: the child's non-empty values win, the parent fills the rest and
/// gives the language. `true` when the secret is the parent's.
fn merge_parent<'d>(r: &mut Resolved<'d>, plang: Lang, pspec: &RuntimeSpec<'d>) -> bool {
    for (k, v) in &pspec.parameters {
        let slot = r.params.entry(k.clone()).or_default();
        if slot.is_empty() {
            *slot = v.clone();
        }
    }
    let parent_secret = r.secret.is_none();
    if parent_secret {
        r.secret = pspec.secret.as_deref().cloned();
    }
    if r.cmd.is_empty() {
        r.cmd = pspec.cmd_parameters.to_string();
    }
    r.lang = plang;
    parent_secret
}

/// Where the code comes from: inline (a generated ConfigMap), a ConfigMap of the input
/// (KLT016 when it or its `code` key is missing) or a URL. `None` when there is no code,
/// which the definition-level KLT012 already reports.
fn resolve_code<'d>(
    r: &mut Resolved<'d>,
    owner: &TaskDefinition<'d>,
    ospec: &RuntimeSpec<'d>,
    ns: &str,
    index: &Index<'_, 'd>,
    diags: &mut Vec<Diagnostic>,
) -> Option<()> {
    if let Some(code) = &ospec.inline {
        r.config_map = Some(CodeMap::Inline {
            definition: &owner.doc.name,
            code: code.clone(),
            spec: std::ptr::from_ref(ospec) as usize,
        });
    } else if let Some(cm) = &ospec.config_map {
        let code = index
            .config_maps
            .get(ns, &cm.value)
            .and_then(|doc| doc.root.path(&["data", "code"]).and_then(Node::as_str));
        let Some(code) = code else {
            let present = index.config_maps.get(ns, &cm.value).is_some();
            diags.push(owner.doc.diag(
                "KLT016",
                Severity::Error,
                cm.pos,
                Some(cm.field.clone()),
                if present {
                    format!("ConfigMap {:?} has no key `code` under data", cm.value)
                } else {
                    format!("ConfigMap {:?} is not in the input ({})", cm.value, namespace_phrase(ns))
                },
                Some("add the ConfigMap with the task's code under data.code to the rendered paths, or use inline code".into()),
            ));
            return None;
        };
        r.uses.push(("ConfigMap", ns.to_string(), cm.value.clone()));
        r.config_map = Some(CodeMap::Referenced {
            name: cm.value.clone(),
            code,
        });
    } else {
        r.url = Some(ospec.http_url.as_ref()?.value.clone());
    }
    Some(())
}

/// Task-level values: parameters only fill gaps, a secret replaces the definition's. The
/// task's object when it set the secret.
fn apply_task_values<'r>(r: &mut Resolved<'_>, run: &'r TaskRun<'_>) -> Option<&'r Doc<'r>> {
    let task = run.hand?;
    for (k, v) in &task.parameters {
        let slot = r.params.entry(Cow::Owned(k.clone())).or_default();
        if slot.is_empty() {
            *slot = Cow::Owned(v.clone());
        }
    }
    let s = task.secret.as_ref()?;
    r.secret = Some(Spanned {
        value: s.clone(),
        pos: run.source.root.pos,
        field: "spec.secureParameters.secret".into(),
    });
    Some(run.source)
}

/// Checks the Secret a task reads; `true` when it is part of the input.
fn check_secret(
    run: &TaskRun<'_>,
    owner: &Doc<'_>,
    secret: &Spanned<String>,
    index: &Index<'_, '_>,
    diags: &mut Vec<Diagnostic>,
) -> bool {
    match index.secrets.get(&run.lookup_namespace, &secret.value) {
        Some(doc) => {
            let has = ["data", "stringData"]
                .iter()
                .any(|f| doc.root.get(f).and_then(|d| d.get("SECURE_DATA")).is_some());
            if !has {
                diags.push(doc.diag(
                    "KLT017",
                    Severity::Error,
                    doc.root.pos,
                    Some("data".into()),
                    format!(
                        "Secret {:?} has no key SECURE_DATA, which task definition {:?} reads",
                        secret.value, owner.name
                    ),
                    Some("Keptn passes only the key SECURE_DATA to the task; put the secret text (or JSON) under data.SECURE_DATA or stringData.SECURE_DATA".into()),
                ));
            }
            true
        }
        None => {
            diags.push(owner.diag(
            "KLT018",
            Severity::Warning,
            secret.pos,
            Some(secret.field.clone()),
            format!(
                "Secret {:?} is not in the input; it must exist in the cluster with key SECURE_DATA",
                secret.value
            ),
            Some("create it out of band (e.g. sealed-secrets, external-secrets) or add it to the rendered paths".into()),
            ));
            false
        }
    }
}

type Parts<'a, 'd> = (
    Obj<'a>,
    Option<Obj<'a>>,
    Option<GeneratedConfigMap<'d>>,
    String,
);

fn runtime_container<'a, 'd>(
    run: &TaskRun<'_>,
    r: &Resolved<'d>,
    context_json: String,
    (index, pass): (&'a Index<'_, 'd>, Pass),
) -> Parts<'a, 'd> {
    let opts = index.options;
    let (image, mount_path) = match r.lang {
        Lang::Deno => (opts.deno_image(), "/var/data/function.ts"),
        Lang::Python => (opts.python_image(), "/var/data/function.py"),
    };
    let (cm_name, generated, extra) = code_config_map(run, r, index, pass);
    let script = match (&cm_name, &r.url) {
        (Some(_), _) => mount_path.to_string(),
        (None, Some(url)) => url.clone(),
        (None, None) => String::new(),
    };
    let mut container = vec![
        ("name".into(), Obj::str("keptn-function-runner")),
        ("image".into(), Obj::str(image)),
        ("imagePullPolicy".into(), Obj::str("IfNotPresent")),
        ("env".into(), runtime_env(r, context_json, script, opts)),
    ];
    let volume = cm_name.map(|name| {
        let mount = vec![
            ("name".into(), Obj::str("function-mount")),
            ("readOnly".into(), Obj::Bool(true)),
            ("mountPath".into(), Obj::str(mount_path)),
            ("subPath".into(), Obj::str("code")),
        ];
        container.push(("volumeMounts".into(), Obj::Seq(vec![Obj::Map(mount)])));
        let source = vec![("name".into(), Obj::str(name))];
        Obj::Map(vec![
            ("name".into(), Obj::str("function-mount")),
            ("configMap".into(), Obj::Map(source)),
        ])
    });
    (Obj::Map(container), volume, generated, extra)
}

/// The ConfigMap the runner mounts its code from: its name, the generated ConfigMap for
/// inline code, and for a referenced one what the Job name hashes of its code (its name
/// alone would not change with the code).
fn code_config_map<'d>(
    run: &TaskRun<'_>,
    r: &Resolved<'d>,
    index: &Index<'_, 'd>,
    pass: Pass,
) -> (Option<String>, Option<GeneratedConfigMap<'d>>, String) {
    match &r.config_map {
        Some(CodeMap::Inline {
            definition,
            code,
            spec,
        }) => {
            let name = format!(
                "keptnfn-{}-{}",
                truncate_name(definition, 253 - 19),
                index.code_suffix(*spec, code)
            );
            let generated = GeneratedConfigMap {
                name: name.clone(),
                namespace: run.namespace.clone(),
                code: code.clone(),
                definition,
            };
            (Some(name), Some(generated), String::new())
        }
        Some(CodeMap::Referenced { name, code }) => {
            let extra = match pass {
                Pass::Name => format!("\nconfigmap-code={}", hash::short(code.as_bytes())),
                Pass::Write => String::new(),
            };
            (Some(name.clone()), None, extra)
        }
        None => (None, None, String::new()),
    }
}

/// The runner's env in Keptn's order: DATA (when there are parameters), the context,
/// CMD_ARGS, SECURE_DATA (when there is a secret), SCRIPT.
fn runtime_env<'a>(
    r: &Resolved<'_>,
    context_json: String,
    script: String,
    opts: &'a Options,
) -> Obj<'a> {
    let var = |name: &'a str, value: Option<String>| {
        let mut e: Entries<'a> = vec![("name".into(), Obj::str(name))];
        if let Some(v) = value {
            e.push(("value".into(), Obj::str(v)));
        }
        Obj::Map(e)
    };
    let mut env = Vec::with_capacity(5);
    if !r.params.is_empty() {
        env.push(var("DATA", Some(crate::gojson::string_map(&r.params))));
    }
    env.push(var(opts.profile.context_env, Some(context_json)));
    env.push(var("CMD_ARGS", (!r.cmd.is_empty()).then(|| r.cmd.clone())));
    if let Some(s) = &r.secret {
        let key_ref = vec![
            ("name".into(), Obj::str(s.value.clone())),
            ("key".into(), Obj::str("SECURE_DATA")),
        ];
        let from = vec![("secretKeyRef".into(), Obj::Map(key_ref))];
        env.push(Obj::Map(vec![
            ("name".into(), Obj::str("SECURE_DATA")),
            ("valueFrom".into(), Obj::Map(from)),
        ]));
    }
    env.push(var("SCRIPT", Some(script)));
    Obj::Seq(env)
}

/// The container a container runner defines, with KEPTN_CONTEXT set, and the emptyDir
/// volume its first mount names. `None` (KLT030) when a later mount names another volume.
fn container_runner<'a>(
    node: &'a Node<'_>,
    context_json: String,
    def: &TaskDefinition<'_>,
    opts: &Options,
    diags: &mut Vec<Diagnostic>,
) -> Option<(Obj<'a>, Option<Obj<'a>>)> {
    let mut container = Obj::from_node(node);
    let Obj::Map(fields) = &mut container else {
        return None;
    };
    // Keptn >= 0.10 sets KEPTN_CONTEXT on container runners (replacing a user entry).
    if opts.profile.container_context {
        set_context_env(fields, context_json)?;
    }
    let mounts = node
        .get("volumeMounts")
        .and_then(Node::as_seq)
        .unwrap_or_default();
    let volume = mounts.first().map(|first| {
        let name = first.get("name").and_then(Node::as_str).unwrap_or("");
        let size = node
            .path(&["resources", "limits", "memory"])
            .map_or(Obj::str("1Gi"), Obj::from_node);
        let empty_dir = vec![
            ("medium".into(), Obj::str("Memory")),
            ("sizeLimit".into(), size),
        ];
        Obj::Map(vec![
            ("name".into(), Obj::str(name)),
            ("emptyDir".into(), Obj::Map(empty_dir)),
        ])
    });
    check_mounts(mounts, def, diags)?;
    Some((container, volume))
}

/// Sets KEPTN_CONTEXT in the container's env as the operator does to its JSON map: an entry
/// of that name loses `valueFrom` (a swap removal, as serde_json's ordered map removes) and
/// gets the value; else one is added, and an env list too when there is none.
fn set_context_env(fields: &mut Entries<'_>, context_json: String) -> Option<()> {
    if !fields.iter().any(|(k, _)| k == "env") {
        fields.push(("env".into(), Obj::Seq(Vec::new())));
    }
    let Some(Obj::Seq(list)) = fields.iter_mut().find(|(k, _)| k == "env").map(|(_, v)| v) else {
        return Some(());
    };
    let named = |e: &Obj<'_>| matches!(e.get("name"), Some(Obj::Str(n)) if n == "KEPTN_CONTEXT");
    match list.iter_mut().find(|e| named(e)) {
        Some(Obj::Map(e)) => {
            if let Some(i) = e.iter().position(|(k, _)| k == "valueFrom") {
                e.swap_remove(i);
            }
            object::insert(e, "value", Obj::str(context_json));
        }
        Some(_) => return None,
        None => list.push(Obj::Map(vec![
            ("name".into(), Obj::str("KEPTN_CONTEXT")),
            ("value".into(), Obj::str(context_json)),
        ])),
    }
    Some(())
}

/// Keptn gives a container runner one volume, named after its first mount (KLT030).
fn check_mounts(
    mounts: &[Node],
    def: &TaskDefinition<'_>,
    diags: &mut Vec<Diagnostic>,
) -> Option<()> {
    let first = mounts
        .first()
        .and_then(|m| m.get("name"))
        .and_then(Node::as_str);
    for m in mounts.iter().skip(1) {
        let name = m.get("name").and_then(Node::as_str);
        if name != first {
            diags.push(def.doc.diag(
                "KLT030",
                Severity::Error,
                m.pos,
                Some("spec.container.volumeMounts".into()),
                format!(
                    "volume mount {:?} has no volume: Keptn provides one emptyDir, named after the first mount {:?}",
                    name.unwrap_or(""),
                    first.unwrap_or("")
                ),
                Some("mount everything from the first volume (use subPath), or use one mount".into()),
            ));
            return None;
        }
    }
    Some(())
}

/// The ConfigMap object for inline code, with its ordering annotations.
pub fn config_map_object<'a>(
    cm: &'a GeneratedConfigMap<'_>,
    labels: &'a BTreeMap<&'static str, String>,
    ordering: Vec<(&'static str, Cow<'a, str>)>,
) -> Obj<'a> {
    let mut metadata: Entries<'a> = vec![("name".into(), Obj::str(cm.name.as_str()))];
    if let Some(ns) = &cm.namespace {
        metadata.push(("namespace".into(), Obj::str(ns.as_str())));
    }
    let labels = labels.iter().map(|(k, v)| (*k, v.as_str()));
    metadata.push(("labels".into(), Obj::string_map(labels)));
    let annotations = ordering.into_iter().map(|(k, v)| (k.into(), Obj::Str(v)));
    metadata.push(("annotations".into(), Obj::Map(annotations.collect())));
    Obj::Map(vec![
        ("apiVersion".into(), Obj::str("v1")),
        ("kind".into(), Obj::str("ConfigMap")),
        ("metadata".into(), Obj::Map(metadata)),
        ("immutable".into(), Obj::Bool(true)),
        (
            "data".into(),
            Obj::Map(vec![("code".into(), Obj::Str(cm.code.text()))]),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The operator's edit of a container's env as first written here, on its JSON map.
    fn context_env_by_value(node: &Node, context_json: &str) -> Option<serde_json::Value> {
        use serde_json::json;
        let mut container = node.to_json();
        let obj = container.as_object_mut()?;
        let env = obj.entry("env").or_insert_with(|| json!([]));
        if let Some(list) = env.as_array_mut() {
            match list.iter_mut().find(|e| e["name"] == "KEPTN_CONTEXT") {
                Some(e) => {
                    let e = e.as_object_mut()?;
                    e.remove("valueFrom");
                    e.insert("value".into(), json!(context_json));
                }
                None => list.push(json!({"name": "KEPTN_CONTEXT", "value": context_json})),
            }
        }
        Some(container)
    }

    #[test]
    fn context_env_is_set_as_on_the_json_map() {
        let containers = [
            "name: c\nimage: i\n",
            "name: c\nenv: []\nimage: i\n",
            "env:\n- {name: A, value: '1'}\n- {name: KEPTN_CONTEXT, valueFrom: {x: 1}, a: 1, b: 2}\n",
            "env:\n- {valueFrom: {x: 1}, name: KEPTN_CONTEXT, value: old, z: 1}\n- {name: B}\n",
            "env:\n- {name: KEPTN_CONTEXT}\n- {name: KEPTN_CONTEXT, value: second}\n",
            "env: {name: KEPTN_CONTEXT}\n",
            "env: text\nresources: {limits: {memory: 1.5}}\n",
            "env:\n- just a string\n- [KEPTN_CONTEXT]\n- {name: 1.0}\n",
        ];
        let ctx = r#"{"appName":"a<b>"}"#;
        for text in containers {
            let chunk = &crate::yaml::split_stream(text)[0];
            let node = crate::yaml::parse_document(chunk).unwrap().unwrap();
            let mut ours = Obj::from_node(&node);
            let Obj::Map(fields) = &mut ours else {
                unreachable!()
            };
            set_context_env(fields, ctx.to_string()).unwrap();
            let theirs = Obj::Json(context_env_by_value(&node, ctx).unwrap());
            assert_eq!(ours.to_yaml(), theirs.to_yaml(), "{text}");
            assert_eq!(ours.to_go_json(), theirs.to_go_json(), "{text}");
        }
    }

    #[test]
    fn record_names() {
        assert_eq!(
            record_name("checkout", "1.4.0").as_deref(),
            Some("checkout-1.4.0")
        );
        assert_eq!(record_name("", "1.0"), None);
        let odd = record_name("shop", "1.0+build.7").unwrap();
        assert!(
            odd.starts_with("shop-1.0-build.7-") && odd.len() <= 63,
            "{odd}"
        );
        assert_ne!(record_name("shop", "1.0+x"), record_name("shop", "1.0-x"));
        let long = record_name(&"a".repeat(60), "1.0").unwrap();
        assert!(long.len() <= 63, "{long}");
    }

    proptest::proptest! {
        /// The shortcuts for values valid as they stand change nothing.
        #[test]
        fn valid_values_are_kept_as_the_mapping_would(s in "[a-zA-Z0-9._+ -]{0,70}") {
            proptest::prop_assert_eq!(label_value(&s), label_value_mapped(&s));
            for max in [0, 5, 52, 63] {
                proptest::prop_assert_eq!(truncate_name(&s, max), truncate_name_mapped(&s, max));
            }
            if !s.is_empty() {
                let raw = format!("{s}-1.0");
                proptest::prop_assert_eq!(record_name(&s, "1.0"), Some(record_name_mapped(&raw)));
                proptest::prop_assert_eq!(record_name(&s, ""), Some(record_name_mapped(&s)));
            }
        }
    }

    #[test]
    fn label_values_are_valid() {
        assert_eq!(label_value("1.0+build").as_deref(), Some("1.0-build"));
        assert_eq!(label_value("--x--").as_deref(), Some("x"));
        assert_eq!(label_value("+++"), None);
        assert_eq!(label_value(&"v".repeat(80)).map(|v| v.len()), Some(63));
    }
}
