//! The controller: two watches (klt-render Jobs, TaskRecords) feed caches and a work queue of
//! record keys; workers reconcile one record at a time.
//!
//! Why not `kube::runtime::Controller`: it reconciles objects that exist in its cache, and a
//! record may have to be created (Jobs rendered without `records`). Here the queue is keyed by
//! the record's namespace/name, whether or not the record exists yet.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::archive;
use crate::crd::{API_VERSION, FIELD_MANAGER, KIND, TaskRecord, TaskRecordSpec, TaskRecordStatus};
use crate::evaluation;
use crate::events::EventQueue;
use crate::lease::Leadership;
use crate::queue::WorkQueue;
use crate::state::{self, JobObservation, RecordKey, Transition};

/// Settings of a reconciler run.
#[derive(Clone, Debug)]
pub struct Config {
    /// Watch one namespace only (`None`: all namespaces).
    pub namespace: Option<String>,
    /// Records reconciled at the same time (each record by one worker at a time).
    pub concurrency: usize,
    /// `reportingInstance` of events (the pod name).
    pub instance: Option<String>,
    /// First retry delay after a failed reconcile (doubles up to `max_backoff`).
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Give up on one reconcile after this long (it is retried with backoff).
    pub reconcile_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            namespace: None,
            concurrency: 4,
            instance: None,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(300),
            reconcile_timeout: Duration::from_secs(60),
        }
    }
}

pub use crate::shared::Shared;

/// How [`run`] ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Finish the reconciles in progress and publish the queued events (SIGTERM).
    Drain,
    /// Stop at once and write nothing more (the lease is lost).
    Abort,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("serializing the status: {0}")]
    Serialize(#[from] serde_json::Error),
    #[error("reconcile took longer than {0:?}")]
    Timeout(Duration),
    #[error("not the leader any more: nothing written")]
    NotLeader,
}

impl Error {
    /// A bounded label for the errors metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(s)) => match s.code {
                404 => "not_found",
                409 => "conflict",
                401 | 403 => "forbidden",
                422 => "invalid",
                429 => "throttled",
                500..=599 => "server",
                _ => "api",
            },
            Error::Kube(_) => "transport",
            Error::Serialize(_) => "serialize",
            Error::Timeout(_) => "timeout",
            Error::NotLeader => "not_leader",
        }
    }
}

/// The klt-render Jobs, reduced to [`JobObservation`]s and indexed by record.
///
/// A Job has one record of its own (from its labels), and may also be listed by name in the
/// spec of other records: a workload task's Job is listed by the record of every app version
/// that keeps that workload version.
#[derive(Default)]
pub struct JobIndex {
    by_record: HashMap<RecordKey, BTreeMap<String, Arc<JobObservation>>>,
    by_job: HashMap<(String, String), RecordKey>,
    /// Per record, the Jobs its spec lists; and the reverse.
    listings: HashMap<RecordKey, Vec<String>>,
    listed_by: HashMap<(String, String), BTreeSet<RecordKey>>,
    /// Observations of a relist in progress (between `Init` and `InitDone`).
    relist: Option<Vec<JobObservation>>,
    len: usize,
}

impl JobIndex {
    pub fn jobs_for(&self, key: &RecordKey) -> Vec<Arc<JobObservation>> {
        self.by_record
            .get(key)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The Jobs of a record: its own and those its spec lists by name.
    pub fn jobs_of_record(&self, key: &RecordKey) -> Vec<Arc<JobObservation>> {
        let mut jobs: BTreeMap<String, Arc<JobObservation>> =
            self.by_record.get(key).cloned().unwrap_or_default();
        for name in self.listings.get(key).into_iter().flatten() {
            if let Some(j) = self.job(&key.namespace, name) {
                jobs.entry(name.clone()).or_insert(j);
            }
        }
        jobs.into_values().collect()
    }

    fn job(&self, ns: &str, name: &str) -> Option<Arc<JobObservation>> {
        let key = self.by_job.get(&(ns.to_string(), name.to_string()))?;
        self.by_record.get(key)?.get(name).cloned()
    }

    /// Whether some record other than the Job's own lists it.
    pub fn is_listed(&self, job: &JobObservation) -> bool {
        let own = job.key();
        self.listed_by
            .get(&(job.namespace.clone(), job.name.clone()))
            .is_some_and(|keys| keys.iter().any(|k| *k != own))
    }

    /// Record that `key`'s spec lists these Jobs (replacing what it listed before); `None`
    /// when the record is gone. Returns nothing to queue: the record's own change is queued.
    pub fn set_listing(&mut self, key: &RecordKey, jobs: Option<Vec<String>>) {
        for name in self.listings.remove(key).into_iter().flatten() {
            let id = (key.namespace.clone(), name);
            if let Some(keys) = self.listed_by.get_mut(&id) {
                keys.remove(key);
                if keys.is_empty() {
                    self.listed_by.remove(&id);
                }
            }
        }
        let Some(jobs) = jobs.filter(|j| !j.is_empty()) else {
            return;
        };
        for name in &jobs {
            self.listed_by
                .entry((key.namespace.clone(), name.clone()))
                .or_default()
                .insert(key.clone());
        }
        self.listings.insert(key.clone(), jobs);
    }

    /// The own records of the Jobs a record lists.
    fn listed_jobs_of(&self, key: &RecordKey) -> Vec<RecordKey> {
        let names = self.listings.get(key).into_iter().flatten();
        let own = names.filter_map(|n| self.by_job.get(&(key.namespace.clone(), n.clone())));
        own.filter(|k| *k != key).cloned().collect()
    }

    /// Forget the listings of records that no longer exist (deleted while not watching).
    pub fn keep_listings(&mut self, present: &BTreeSet<RecordKey>) {
        let gone: Vec<RecordKey> = self
            .listings
            .keys()
            .filter(|k| !present.contains(k))
            .cloned()
            .collect();
        for k in gone {
            self.set_listing(&k, None);
        }
    }

    /// Records whose spec lists this Job.
    fn listing_keys(&self, ns: &str, name: &str) -> impl Iterator<Item = RecordKey> + '_ {
        self.listed_by
            .get(&(ns.to_string(), name.to_string()))
            .into_iter()
            .flatten()
            .cloned()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn record_keys(&self) -> impl Iterator<Item = &RecordKey> {
        self.by_record.keys()
    }

    fn remove(&mut self, ns: &str, name: &str) -> Option<RecordKey> {
        let key = self.by_job.remove(&(ns.to_string(), name.to_string()))?;
        if let Some(m) = self.by_record.get_mut(&key) {
            if m.remove(name).is_some() {
                self.len -= 1;
            }
            if m.is_empty() {
                self.by_record.remove(&key);
            }
        }
        Some(key)
    }

    /// Insert or replace; returns the keys whose records change (empty if nothing did).
    fn upsert(&mut self, obs: JobObservation) -> Vec<RecordKey> {
        let key = obs.key();
        let id = (obs.namespace.clone(), obs.name.clone());
        let mut touched = Vec::new();
        if let Some(old_key) = self.by_job.get(&id).cloned() {
            if old_key == key {
                let unchanged = self
                    .by_record
                    .get(&key)
                    .and_then(|m| m.get(&obs.name))
                    .is_some_and(|o| **o == obs);
                if unchanged {
                    return touched;
                }
            } else {
                self.remove(&id.0, &id.1);
                touched.push(old_key);
            }
        }
        let m = self.by_record.entry(key.clone()).or_default();
        if m.insert(obs.name.clone(), Arc::new(obs)).is_none() {
            self.len += 1;
        }
        self.by_job.insert(id, key.clone());
        touched.push(key);
        touched
    }

    /// Apply one watch event; returns the record keys to reconcile: the Job's own record
    /// and every record that lists it.
    pub fn apply(&mut self, event: watcher::Event<Job>) -> Vec<RecordKey> {
        let job = match &event {
            watcher::Event::Apply(j) | watcher::Event::Delete(j) => {
                Some((j.namespace().unwrap_or_default(), j.name_any()))
            }
            _ => None,
        };
        let mut keys = self.apply_own(event);
        if let Some((ns, name)) = job.filter(|_| !keys.is_empty()) {
            keys.extend(self.listing_keys(&ns, &name));
            keys.sort();
            keys.dedup();
        }
        keys
    }

    fn apply_own(&mut self, event: watcher::Event<Job>) -> Vec<RecordKey> {
        match event {
            watcher::Event::Apply(job) => match state::observe(&job) {
                Some(obs) => self.upsert(obs),
                // Labels changed so that it is no longer ours (or never was).
                None => self
                    .remove(&job.namespace().unwrap_or_default(), &job.name_any())
                    .into_iter()
                    .collect(),
            },
            watcher::Event::Delete(job) => self
                .remove(&job.namespace().unwrap_or_default(), &job.name_any())
                .into_iter()
                .collect(),
            watcher::Event::Init => {
                self.relist = Some(Vec::new());
                Vec::new()
            }
            watcher::Event::InitApply(job) => {
                if let Some(obs) = state::observe(&job) {
                    self.relist.get_or_insert_with(Vec::new).push(obs);
                }
                Vec::new()
            }
            watcher::Event::InitDone => {
                let fresh = self.relist.take().unwrap_or_default();
                let mut keys: BTreeSet<RecordKey> = self.by_record.keys().cloned().collect();
                self.by_record.clear();
                self.by_job.clear();
                self.len = 0;
                for obs in fresh {
                    keys.insert(obs.key());
                    self.upsert(obs);
                }
                keys.extend(self.listings.keys().cloned());
                // Every record whose Jobs may have changed while we were not watching.
                keys.into_iter().collect()
            }
        }
    }
}

fn record_key(r: &TaskRecord) -> RecordKey {
    RecordKey {
        namespace: r.namespace().unwrap_or_default(),
        name: r.name_any(),
    }
}

fn listed_jobs(r: &TaskRecord) -> Vec<String> {
    r.spec.tasks.iter().map(|t| t.job.clone()).collect()
}

/// Publisher tasks of events (the events of one record keep their order).
const EVENT_SHARDS: usize = 4;

/// Everything a reconcile needs.
pub struct Ctx {
    pub client: Client,
    pub records: Store<TaskRecord>,
    pub jobs: Arc<std::sync::RwLock<JobIndex>>,
    /// Task events, published off the reconcile path.
    pub events: EventQueue,
    pub shared: Arc<Shared>,
    /// Checked before every write: a replica that lost the lease writes nothing.
    pub leadership: Leadership,
    /// The last status this process wrote (or found current) per record, with the record's
    /// uid: the cache of records may lag behind our own writes, and comparing with a stale
    /// status would repeat events.
    written: std::sync::Mutex<HashMap<RecordKey, (String, TaskRecordStatus)>>,
    /// Archived copies to create for pruned records (see [`archive`]), by record.
    tombstones: std::sync::Mutex<HashMap<RecordKey, TaskRecord>>,
    /// The failure summary of failed evaluation Jobs, by Job uid (read once from the pods).
    objectives: std::sync::Mutex<HashMap<String, String>>,
}

impl Ctx {
    pub fn new(
        client: Client,
        records: Store<TaskRecord>,
        jobs: Arc<std::sync::RwLock<JobIndex>>,
        shared: Arc<Shared>,
        instance: Option<String>,
        leadership: Leadership,
    ) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.to_string(),
            instance,
        };
        Ctx {
            events: EventQueue::start(
                Recorder::new(client.clone(), reporter),
                Arc::clone(&shared),
                leadership.clone(),
                EVENT_SHARDS,
            ),
            client,
            records,
            jobs,
            shared,
            leadership,
            written: Default::default(),
            tombstones: Default::default(),
            objectives: Default::default(),
        }
    }

    /// `Err(NotLeader)` once the lease is lost (the reconcile ends before writing).
    fn may_write(&self) -> Result<(), Error> {
        if self.leadership.is_leading() {
            Ok(())
        } else {
            Err(Error::NotLeader)
        }
    }

    fn jobs_for(&self, key: &RecordKey) -> Vec<Arc<JobObservation>> {
        self.jobs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .jobs_of_record(key)
    }

    /// The Jobs with the message of each failed evaluation replaced by its pod's summary
    /// (which names the failing objective), when the pods still tell it. A pod list that
    /// fails leaves the Job condition's message: the next reconcile tries again.
    async fn with_objectives(&self, jobs: Vec<Arc<JobObservation>>) -> Vec<Arc<JobObservation>> {
        let mut out = Vec::with_capacity(jobs.len());
        for j in jobs {
            if !(j.evaluation && j.state == crate::crd::TaskState::Failed) {
                out.push(j);
                continue;
            }
            match self.objective(&j).await {
                Some(msg) => {
                    let mut o = (*j).clone();
                    o.message = Some(msg);
                    out.push(Arc::new(o));
                }
                None => out.push(j),
            }
        }
        out
    }

    async fn objective(&self, job: &JobObservation) -> Option<String> {
        let cached = self
            .objectives
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&job.uid)
            .cloned();
        if cached.is_some() {
            return cached;
        }
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &job.namespace);
        let lp = ListParams::default().labels(&evaluation::pod_selector(&job.uid));
        let list = match pods.list(&lp).await {
            Ok(l) => l,
            Err(e) => {
                warn!(job = %job.name, error = %e, "listing the evaluation's pods");
                return None;
            }
        };
        let msg = evaluation::failure_message(&list.items)?;
        self.objectives
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(job.uid.clone(), msg.clone());
        Some(msg)
    }

    /// Whether every one of these Jobs is listed by another record (then their own record,
    /// a workload version's, is not created: the app versions' records track them).
    fn all_listed(&self, jobs: &[Arc<JobObservation>]) -> bool {
        let index = self.jobs.read().unwrap_or_else(|e| e.into_inner());
        jobs.iter().all(|j| index.is_listed(j))
    }

    fn written(&self, key: &RecordKey) -> Option<(String, TaskRecordStatus)> {
        self.written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    /// A record was deleted: whether an archived copy of it is to be made (then it is kept
    /// until [`reconcile`] creates it, and the Jobs stay listed by it meanwhile).
    pub fn record_deleted(&self, record: &TaskRecord) -> bool {
        let key = record_key(record);
        let last = match (self.written(&key), record.uid()) {
            (Some((uid, status)), Some(u)) if uid == u => Some(status),
            _ => record.status.clone(),
        };
        if !archive::should_archive(record, last.as_ref()) {
            return false;
        }
        let copy = archive::archived_copy(record, last);
        self.tombstones
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, copy);
        true
    }

    fn take_tombstone(&self, key: &RecordKey) -> Option<TaskRecord> {
        self.tombstones
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key)
    }

    fn keep_tombstone(&self, key: &RecordKey, copy: TaskRecord) {
        self.tombstones
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.clone())
            .or_insert(copy);
    }

    fn remember(&self, key: &RecordKey, entry: Option<(String, TaskRecordStatus)>) {
        let mut w = self.written.lock().unwrap_or_else(|e| e.into_inner());
        match entry {
            Some(e) => w.insert(key.clone(), e),
            None => w.remove(key),
        };
    }
}

/// The spec of a record the reconciler creates itself: app and version from the Job labels
/// (the expected task list is klt-render's to give; without it the Jobs seen are listed).
pub fn spec_from_jobs(jobs: &[Arc<JobObservation>]) -> TaskRecordSpec {
    let first = jobs.iter().min_by(|a, b| a.name.cmp(&b.name));
    TaskRecordSpec {
        app: first.map(|j| j.app.clone()).unwrap_or_default(),
        app_version: first.map(|j| j.app_version.clone()).unwrap_or_default(),
        tasks: Vec::new(),
    }
}

fn new_record(key: &RecordKey, jobs: &[Arc<JobObservation>]) -> TaskRecord {
    let spec = spec_from_jobs(jobs);
    let mut labels = BTreeMap::new();
    labels.insert(
        "app.kubernetes.io/created-by".to_string(),
        FIELD_MANAGER.to_string(),
    );
    for (k, v) in [
        (state::LABEL_APP, &spec.app),
        (state::LABEL_APP_VERSION, &spec.app_version),
    ] {
        if !v.is_empty() {
            labels.insert(k.to_string(), v.clone());
        }
    }
    TaskRecord {
        metadata: ObjectMeta {
            name: Some(key.name.clone()),
            namespace: Some(key.namespace.clone()),
            labels: Some(labels),
            ..Default::default()
        },
        spec,
        status: None,
    }
}

async fn get_or_create(
    ctx: &Ctx,
    api: &Api<TaskRecord>,
    key: &RecordKey,
    jobs: &[Arc<JobObservation>],
) -> Result<TaskRecord, Error> {
    let pp = PostParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..Default::default()
    };
    ctx.may_write()?;
    match api.create(&pp, &new_record(key, jobs)).await {
        Ok(r) => {
            info!(record = %key, "created record from Job labels");
            ctx.shared.metrics.records_created.inc();
            Ok(r)
        }
        // Created meanwhile (by Argo CD, or by us before our cache saw it).
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(api.get(&key.name).await?),
        Err(e) => Err(e.into()),
    }
}

/// Create the archived copy of a pruned record; returns it with the status to carry over, or
/// `None` when it cannot be made for good (the namespace is going away, say): then its Jobs
/// are no longer listed by it. Someone (Argo CD, rolling back) may have created the record
/// again meanwhile: that one is reconciled as usual.
async fn archive_record(
    ctx: &Ctx,
    api: &Api<TaskRecord>,
    key: &RecordKey,
    copy: TaskRecord,
) -> Result<Option<(TaskRecord, Option<TaskRecordStatus>)>, Error> {
    let pp = PostParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..Default::default()
    };
    if let Err(e) = ctx.may_write() {
        ctx.keep_tombstone(key, copy);
        return Err(e);
    }
    match api.create(&pp, &copy).await {
        Ok(r) => {
            info!(record = %key, "archived the pruned record");
            ctx.shared.metrics.records_archived.inc();
            Ok(Some((r, copy.status)))
        }
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(Some((api.get(&key.name).await?, None))),
        Err(kube::Error::Api(s)) if matches!(s.code, 403 | 404 | 422) => {
            warn!(record = %key, error = %s.message, "cannot archive the pruned record");
            ctx.jobs
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .set_listing(key, None);
            Ok(None)
        }
        Err(e) => {
            ctx.keep_tombstone(key, copy);
            Err(e.into())
        }
    }
}

fn job_ref(namespace: &str, t: &crate::crd::TaskStatus) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: Some(t.job.clone()),
        namespace: Some(namespace.to_string()),
        uid: t.job_uid.clone(),
        ..Default::default()
    }
}

/// Reconcile one record: read its Jobs from the cache, compute the status, write it if it
/// changed (server-side apply, forced: the status is ours), then count metrics and queue
/// events for the task transitions (published by [`EventQueue`] without holding up the
/// next reconcile).
pub async fn reconcile(ctx: &Ctx, key: &RecordKey) -> Result<(), Error> {
    let jobs = ctx.with_objectives(ctx.jobs_for(key)).await;
    let api: Api<TaskRecord> = Api::namespaced(ctx.client.clone(), &key.namespace);
    let cached = ctx
        .records
        .get(&ObjectRef::new(&key.name).within(&key.namespace));
    let mut archived_status = None;
    let record: Arc<TaskRecord> = match (cached, ctx.take_tombstone(key)) {
        (Some(r), _) => r,
        (None, Some(copy)) => match archive_record(ctx, &api, key, copy).await? {
            Some((r, last)) => {
                archived_status = last;
                Arc::new(r)
            }
            None => return Ok(()),
        },
        (None, None) if jobs.is_empty() || ctx.all_listed(&jobs) => {
            ctx.remember(key, None);
            return Ok(());
        }
        (None, None) => Arc::new(get_or_create(ctx, &api, key, &jobs).await?),
    };
    if record.metadata.deletion_timestamp.is_some() {
        debug!(record = %key, "record is being deleted");
        return Ok(());
    }
    let uid = record.uid().unwrap_or_default();
    let prev = match (archived_status, ctx.written(key)) {
        (Some(last), _) => Some(last),
        (None, Some((u, status))) if u == uid => Some(status),
        _ => record.status.clone(),
    };
    let next = state::compute_status(
        Some(&record.spec),
        jobs.iter().map(|j| j.as_ref()),
        prev.as_ref(),
    );
    if record.status.as_ref() != Some(&next) {
        let patch = json!({"apiVersion": API_VERSION, "kind": KIND, "status": next});
        ctx.may_write()?;
        api.patch_status(
            &key.name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
        ctx.shared.metrics.status_writes.inc();
        debug!(record = %key, phase = next.phase.as_str(), "status written");
    }
    let changes = state::transitions(prev.as_ref(), &next);
    ctx.remember(key, Some((uid, next.clone())));
    if changes.is_empty() {
        return Ok(());
    }
    let regarding = record.object_ref(&());
    for (kind, task) in changes {
        let metrics = &ctx.shared.metrics;
        match kind.outcome() {
            None => metrics.task_started(&task.phase),
            Some(outcome) => {
                metrics.task_finished(&task.phase, outcome, state::duration_seconds(task))
            }
        }
        info!(
            record = %key,
            job = %task.job,
            definition = %task.definition,
            phase = %task.phase,
            state = task.state.as_str(),
            attempts = task.attempts,
            "task {}",
            match kind {
                Transition::Started => "started",
                Transition::Succeeded => "succeeded",
                Transition::Failed => "failed",
            }
        );
        let event = KubeEvent {
            type_: if kind == Transition::Failed {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: kind.reason().to_string(),
            note: Some(state::event_note(kind, task)),
            action: "Observe".to_string(),
            secondary: Some(job_ref(&key.namespace, task)),
        };
        ctx.events.publish(key, event, regarding.clone());
    }
    Ok(())
}

/// Run the reconciler until `stop` completes: watches, workers, then a drain of the reconciles
/// in progress ([`Stop::Drain`]) or an immediate stop ([`Stop::Abort`]). Every write first
/// checks `leadership`.
pub async fn run(
    client: Client,
    config: Config,
    shared: Arc<Shared>,
    leadership: Leadership,
    stop: impl Future<Output = Stop> + Send + 'static,
) -> Result<(), Error> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let (jobs_api, records_api): (Api<Job>, Api<TaskRecord>) = match &config.namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };
    let queue: Arc<WorkQueue<RecordKey>> = WorkQueue::new(config.base_backoff, config.max_backoff);
    let index = Arc::new(std::sync::RwLock::new(JobIndex::default()));
    let (record_store, record_writer) = reflector::store::<TaskRecord>();
    let ctx = Arc::new(Ctx::new(
        client.clone(),
        record_store.clone(),
        Arc::clone(&index),
        Arc::clone(&shared),
        config.instance.clone(),
        leadership,
    ));
    let (jobs_ready_tx, jobs_ready) = watch::channel(false);
    let (records_ready_tx, records_ready) = watch::channel(false);

    // Jobs: reduce each to an observation as it arrives (the full object is dropped).
    let jobs_task = {
        let queue = Arc::clone(&queue);
        let index = Arc::clone(&index);
        let shared = Arc::clone(&shared);
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let cfg = watcher::Config::default().labels(state::JOB_SELECTOR);
            let mut stream = watcher(jobs_api, cfg).default_backoff().boxed();
            loop {
                let ev = tokio::select! {
                    ev = stream.next() => ev,
                    _ = stop.wait_for(|s| *s) => break,
                };
                let Some(ev) = ev else { break };
                match ev {
                    Ok(ev) => {
                        let done = matches!(ev, watcher::Event::InitDone);
                        let (keys, len) = {
                            let mut idx = index.write().unwrap_or_else(|e| e.into_inner());
                            let keys = idx.apply(ev);
                            (keys, idx.len())
                        };
                        shared.metrics.watched_jobs.set(len as i64);
                        for k in keys {
                            queue.add(k);
                        }
                        if done {
                            debug!(jobs = len, "jobs listed");
                            let _ = jobs_ready_tx.send(true);
                        }
                    }
                    Err(e) => warn!(error = %e, "watching Jobs"),
                }
            }
        })
    };

    // Records: a reflector cache; any change (or a relist) queues the record.
    let records_task = {
        let queue = Arc::clone(&queue);
        let index = Arc::clone(&index);
        let ctx = Arc::clone(&ctx);
        let store = record_store.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let mut stream = watcher(records_api, watcher::Config::default())
                .default_backoff()
                .modify(|r: &mut TaskRecord| r.managed_fields_mut().clear())
                .reflect(record_writer)
                .boxed();
            loop {
                let ev = tokio::select! {
                    ev = stream.next() => ev,
                    _ = stop.wait_for(|s| *s) => break,
                };
                let Some(ev) = ev else { break };
                match ev {
                    Ok(watcher::Event::Apply(r) | watcher::Event::InitApply(r)) => {
                        let key = record_key(&r);
                        // Before the record is queued, so that its listed Jobs are known
                        // when anything reconciles.
                        index
                            .write()
                            .unwrap_or_else(|e| e.into_inner())
                            .set_listing(&key, Some(listed_jobs(&r)));
                        queue.add(key);
                    }
                    Ok(watcher::Event::Delete(r)) => {
                        let key = record_key(&r);
                        // Pruned by Argo CD: its copy keeps listing the Jobs.
                        if ctx.record_deleted(&r) {
                            queue.add(key);
                            continue;
                        }
                        let listed = {
                            let mut idx = index.write().unwrap_or_else(|e| e.into_inner());
                            let listed = idx.listed_jobs_of(&key);
                            idx.set_listing(&key, None);
                            listed
                        };
                        queue.add(key);
                        // Their own records may now have to be created.
                        for k in listed {
                            queue.add(k);
                        }
                    }
                    Ok(watcher::Event::Init) => {}
                    Ok(watcher::Event::InitDone) => {
                        // Records deleted while we were not watching: their Jobs say so.
                        let present: BTreeSet<RecordKey> =
                            store.state().iter().map(|r| record_key(r)).collect();
                        let keys: Vec<RecordKey> = {
                            let mut idx = index.write().unwrap_or_else(|e| e.into_inner());
                            idx.keep_listings(&present);
                            idx.record_keys().cloned().collect()
                        };
                        for k in keys {
                            queue.add(k);
                        }
                        debug!(records = store.len(), "records listed");
                        let _ = records_ready_tx.send(true);
                    }
                    Err(e) => warn!(error = %e, "watching TaskRecords"),
                }
            }
        })
    };

    // Workers start once both caches are filled, so that existing records are not
    // mistaken for missing ones.
    let mut workers = Vec::new();
    for _ in 0..config.concurrency.max(1) {
        let queue = Arc::clone(&queue);
        let ctx = Arc::clone(&ctx);
        let mut stop = stop_rx.clone();
        let mut jobs_ready = jobs_ready.clone();
        let mut records_ready = records_ready.clone();
        let timeout = config.reconcile_timeout;
        workers.push(tokio::spawn(async move {
            let ready = async {
                let _ = jobs_ready.wait_for(|r| *r).await;
                let _ = records_ready.wait_for(|r| *r).await;
            };
            tokio::select! {
                _ = ready => {},
                _ = stop.wait_for(|s| *s) => return,
            }
            ctx.shared.ready.store(true, Ordering::SeqCst);
            loop {
                let key = tokio::select! {
                    k = queue.next() => k,
                    _ = stop.wait_for(|s| *s) => return,
                };
                let start = Instant::now();
                let result = tokio::time::timeout(timeout, reconcile(&ctx, &key))
                    .await
                    .unwrap_or(Err(Error::Timeout(timeout)));
                let metrics = &ctx.shared.metrics;
                metrics.reconciles.inc();
                metrics
                    .reconcile_duration
                    .observe(start.elapsed().as_secs_f64());
                match result {
                    Ok(()) => queue.forget(&key),
                    Err(e) => {
                        metrics.reconcile_error(e.metric_label());
                        let delay = queue.failed(&key);
                        warn!(record = %key, error = %e, retry_in_ms = delay.as_millis() as u64, "reconcile failed");
                        queue.add_after(key.clone(), delay);
                    }
                }
                queue.done(&key);
                metrics.queue_depth.set(queue.len() as i64);
            }
        }));
    }
    info!(
        namespace = config.namespace.as_deref().unwrap_or("(all)"),
        concurrency = config.concurrency,
        "reconciler started"
    );

    let how = stop.await;
    shared.ready.store(false, Ordering::SeqCst);
    let _ = stop_tx.send(true);
    match how {
        Stop::Drain => {
            info!("shutting down: finishing reconciles in progress");
            for w in workers {
                let _ = w.await;
            }
            ctx.events.close(Duration::from_secs(10)).await;
        }
        Stop::Abort => {
            info!("stopping at once: reconciles in progress are dropped");
            for w in &workers {
                w.abort();
            }
            ctx.events.abort();
        }
    }
    let _ = jobs_task.await;
    let _ = records_task.await;
    info!("reconciler stopped");
    Ok(())
}
