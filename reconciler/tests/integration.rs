//! Integration tests against a real kube-apiserver (testenv/). They run only when
//! `KUBECONFIG` is testenv's (`$KUBE_TESTENV_DIR/kubeconfig`, as `eval "$(testenv/run.sh)"`
//! sets it); otherwise each test prints SKIP and passes, so they never touch a real cluster.
//!
//!   reconciler/tests/run-integration.sh      # builds and starts testenv, runs these, stops it
//!
//! There is no kubelet or job controller: the tests write Job status through the `/status`
//! subresource, the way the job controller would. Every test has its own namespace and its own
//! reconciler (watching that namespace only), so they can run in parallel.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use klt_reconciler::crd::TaskRecord;
use klt_reconciler::election::Timing;
use klt_reconciler::{Config, Leadership, LeaseConfig, Shared, Stop, TaskState};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::KubeConfigOptions;
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, CustomResourceExt, ResourceExt};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const T0: &str = "2026-01-01T10:00:00Z";
const T1: &str = "2026-01-01T10:00:42Z";
const WAIT: Duration = Duration::from_secs(45);

// ---- waiting: every wait names the test and what it waited for -------------------------

/// The running test: libtest runs each test on a thread named after it, and `#[tokio::test]`
/// runs the test (and the tasks it spawns) on that thread.
fn test_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("(unnamed test thread)")
        .to_string()
}

/// Panic for a wait that ran out of time.
fn timed_out(what: &str, after: Duration, last: &dyn std::fmt::Debug) -> ! {
    panic!(
        "{}: timed out after {after:?} waiting for {what}; last seen: {last:?}",
        test_name()
    )
}

/// Poll `probe` every 100 ms until it gives `Ok`, for at most `within`; on time-out, panic
/// naming the test, `what`, and the last `Err` the probe gave.
async fn eventually_within<T, L: std::fmt::Debug>(
    what: &str,
    within: Duration,
    mut probe: impl AsyncFnMut() -> Result<T, L>,
) -> T {
    let start = Instant::now();
    loop {
        let last = match probe().await {
            Ok(v) => return v,
            Err(l) => l,
        };
        if start.elapsed() > within {
            timed_out(what, within, &last);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn eventually<T, L: std::fmt::Debug>(
    what: &str,
    probe: impl AsyncFnMut() -> Result<T, L>,
) -> T {
    eventually_within(what, WAIT, probe).await
}

/// Await `fut` for at most `within`, or panic naming the test and `what`.
async fn within<T>(what: &str, within: Duration, fut: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(within, fut).await {
        Ok(v) => v,
        Err(_) => timed_out(what, within, &"(still pending)"),
    }
}

#[tokio::test]
async fn waits_name_their_test() {
    assert_eq!(test_name(), "waits_name_their_test");
    let msg = tokio::spawn(async {
        let r = std::panic::AssertUnwindSafe(eventually_within(
            "the impossible",
            Duration::from_millis(150),
            async || Err::<(), _>("nope"),
        ));
        futures::FutureExt::catch_unwind(r).await
    });
    let err = msg.await.unwrap().unwrap_err();
    let text = err.downcast_ref::<String>().unwrap();
    assert!(
        text.starts_with("waits_name_their_test: timed out after 150ms waiting for the impossible; last seen: \"nope\""),
        "{text}"
    );
}

// ---- environment -----------------------------------------------------------------------

struct Env {
    client: Client,
    config: kube::Config,
}

/// Print past libtest's output capture, so that a skip is visible in a passing run.
fn skip(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The testenv client, or `None` (with a SKIP line) when KUBECONFIG is not testenv's.
async fn testenv(test: &str) -> Option<Env> {
    let env = testenv_or_none(test).await;
    if env.is_none() && std::env::var_os("KLT_RECONCILER_IT_REQUIRED").is_some_and(|v| v == "1") {
        panic!("{test}: KLT_RECONCILER_IT_REQUIRED=1 but testenv is not usable (see SKIP above)");
    }
    env
}

async fn testenv_or_none(test: &str) -> Option<Env> {
    let dir = std::env::var_os("KUBE_TESTENV_DIR");
    let kubeconfig = std::env::var_os("KUBECONFIG");
    let (Some(dir), Some(kubeconfig)) = (dir, kubeconfig) else {
        skip(&format!(
            "SKIP {test}: needs the testenv API server (run reconciler/tests/run-integration.sh, \
             or eval \"$(testenv/run.sh)\" first)"
        ));
        return None;
    };
    let want = std::path::Path::new(&dir).join("kubeconfig");
    let same = match (
        std::fs::canonicalize(&want),
        std::fs::canonicalize(&kubeconfig),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if !same {
        skip(&format!(
            "SKIP {test}: KUBECONFIG ({}) is not testenv's ({}); not touching another cluster",
            kubeconfig.to_string_lossy(),
            want.display()
        ));
        return None;
    }
    let config = kube::Config::from_kubeconfig(&KubeConfigOptions::default())
        .await
        .expect("testenv kubeconfig");
    let client = Client::try_from(config.clone()).expect("client");
    install_crd(&client).await;
    Some(Env { client, config })
}

macro_rules! testenv_or_skip {
    ($name:expr) => {
        match testenv($name).await {
            Some(env) => env,
            None => return,
        }
    };
}

async fn install_crd(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = TaskRecord::crd();
    let name = crd.name_any();
    crds.patch(
        &name,
        &PatchParams::apply("klt-it").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("install the CRD");
    within(
        "the TaskRecord CRD to be established",
        WAIT,
        await_condition(crds, &name, conditions::is_crd_established()),
    )
    .await
    .expect("watching the CRD");
}

async fn namespace(client: &Client, test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let name = format!("it-{test}-{:x}", nanos % 0xfffff);
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
    name
}

// ---- the reconciler in this process ------------------------------------------------------

struct Running {
    stop: Option<oneshot::Sender<()>>,
    handle: JoinHandle<Result<(), String>>,
    shared: Arc<Shared>,
}

fn start(client: Client, ns: &str) -> Running {
    let shared = Arc::new(Shared::default());
    let (tx, rx) = oneshot::channel::<()>();
    let config = Config {
        namespace: Some(ns.to_string()),
        concurrency: 2,
        instance: Some("it".into()),
        base_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(2),
        ..Config::default()
    };
    let run = klt_reconciler::run(
        client,
        config,
        Arc::clone(&shared),
        Leadership::always(),
        async move {
            let _ = rx.await;
            Stop::Drain
        },
    );
    let handle = tokio::spawn(async move { run.await.map_err(|e| e.to_string()) });
    Running {
        stop: Some(tx),
        handle,
        shared,
    }
}

/// Fast election timing for tests: 3 s lease, 2 s renew deadline, 0.2 s retry.
fn fast_timing() -> Timing {
    Timing {
        lease_duration: Duration::from_secs(3),
        renew_deadline: Duration::from_secs(2),
        retry_period: Duration::from_millis(200),
    }
}

/// A replica with leader election, in this process, identified as `identity`.
fn start_elected(client: Client, ns: &str, identity: &str) -> Running {
    let shared = Arc::new(Shared::default());
    let (tx, rx) = oneshot::channel::<()>();
    let config = Config {
        namespace: Some(ns.to_string()),
        concurrency: 2,
        instance: Some(identity.into()),
        base_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(2),
        ..Config::default()
    };
    let lease = LeaseConfig {
        name: "klt-reconciler".into(),
        namespace: ns.to_string(),
        identity: identity.to_string(),
        timing: fast_timing(),
    };
    let run = klt_reconciler::run_elected(client, config, lease, Arc::clone(&shared), async move {
        let _ = rx.await;
    });
    let handle = tokio::spawn(async move { run.await.map_err(|e| e.to_string()) });
    Running {
        stop: Some(tx),
        handle,
        shared,
    }
}

impl Running {
    async fn ready(&self) {
        eventually(
            "the in-process reconciler's caches to fill",
            async || match self.shared.ready.load(Ordering::SeqCst) {
                true => Ok(()),
                false => Err("not ready"),
            },
        )
        .await
    }

    /// Graceful stop (what SIGTERM does in the binary).
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        within(
            "the in-process reconciler to stop",
            Duration::from_secs(15),
            &mut self.handle,
        )
        .await
        .expect("task")
        .expect("run");
    }

    fn metric(&self, series: &str) -> f64 {
        metric(&self.shared.metrics.encode(), series)
    }
}

/// The value of one series (`name{labels}` as printed), 0 when absent.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0.0)
}

// ---- objects ------------------------------------------------------------------------------

struct TaskJob<'a> {
    name: &'a str,
    phase: &'a str,
    definition: &'a str,
    workload: Option<&'a str>,
    app: &'a str,
    version: &'a str,
    record_label: bool,
    /// A workload task as klt-render renders it: no app version (no app-version or record
    /// label), the workload's version instead.
    workload_version: Option<&'a str>,
}

fn task<'a>(name: &'a str, phase: &'a str) -> TaskJob<'a> {
    TaskJob {
        name,
        phase,
        definition: "notify",
        workload: None,
        app: "checkout",
        version: "1.4.0",
        record_label: true,
        workload_version: None,
    }
}

async fn create_job(client: &Client, ns: &str, t: TaskJob<'_>) -> Job {
    let mut labels = BTreeMap::from([
        ("app.kubernetes.io/managed-by", "klt-render".to_string()),
        ("klt-render.dev/app", t.app.to_string()),
        ("klt-render.dev/app-version", t.version.to_string()),
        ("klt-render.dev/phase", t.phase.to_string()),
        ("klt-render.dev/task-definition", t.definition.to_string()),
        ("app.kubernetes.io/instance", "argocd-app".to_string()),
    ]);
    if let Some(v) = t.workload_version {
        labels.remove("klt-render.dev/app-version");
        labels.insert("klt-render.dev/version", v.to_string());
    } else if t.record_label {
        labels.insert("klt-render.dev/record", format!("{}-{}", t.app, t.version));
    }
    if let Some(w) = t.workload {
        labels.insert("klt-render.dev/workload", w.to_string());
    }
    let job: Job = serde_json::from_value(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": t.name, "labels": labels},
        "spec": {
            "backoffLimit": 2,
            "activeDeadlineSeconds": 600,
            "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "task", "image": "ghcr.io/keptn/deno-runtime:v3.0.1"}]
            }}
        }
    }))
    .unwrap();
    Api::<Job>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &job)
        .await
        .expect("create job")
}

async fn job_status(client: &Client, ns: &str, name: &str, status: Value) {
    Api::<Job>::namespaced(client.clone(), ns)
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await
        .unwrap_or_else(|e| panic!("job {name} status: {e}"));
}

fn running() -> Value {
    json!({"startTime": T0, "active": 1})
}

fn retrying() -> Value {
    json!({"startTime": T0, "active": 1, "failed": 1})
}

fn succeeded() -> Value {
    json!({
        "startTime": T0, "active": 0, "succeeded": 1, "completionTime": T1,
        "conditions": [
            {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": T1},
            {"type": "Complete", "status": "True", "lastTransitionTime": T1}
        ]
    })
}

fn failed() -> Value {
    let cond = |ty: &str| {
        json!({"type": ty, "status": "True", "lastTransitionTime": T1,
               "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"})
    };
    json!({
        "startTime": T0, "active": 0, "failed": 3,
        "conditions": [cond("FailureTarget"), cond("Failed")]
    })
}

async fn create_record(client: &Client, ns: &str, tasks: Value) {
    create_record_of(client, ns, "1.4.0", tasks).await
}

async fn create_record_of(client: &Client, ns: &str, app_version: &str, tasks: Value) {
    let record: TaskRecord = serde_json::from_value(json!({
        "apiVersion": "klt-render.dev/v1alpha1",
        "kind": "TaskRecord",
        "metadata": {"name": format!("checkout-{app_version}"), "labels": {"app.kubernetes.io/managed-by": "klt-render"}},
        "spec": {"app": "checkout", "appVersion": app_version, "tasks": tasks}
    }))
    .unwrap();
    Api::<TaskRecord>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &record)
        .await
        .expect("create record");
}

async fn delete_job(client: &Client, ns: &str, name: &str) {
    // Background: gone at once (orphan or foreground would wait for testenv's absent
    // garbage collector to remove their finalizer).
    Api::<Job>::namespaced(client.clone(), ns)
        .delete(name, &DeleteParams::background())
        .await
        .expect("delete job");
}

// ---- waiting and reading ------------------------------------------------------------------

fn task_of<'a>(r: &'a TaskRecord, job: &str) -> Option<&'a klt_reconciler::TaskStatus> {
    r.status.as_ref()?.tasks.iter().find(|t| t.job == job)
}

fn state_of(r: &TaskRecord, job: &str) -> Option<TaskState> {
    task_of(r, job).map(|t| t.state)
}

async fn wait_record(
    client: &Client,
    ns: &str,
    name: &str,
    what: &str,
    ok: impl Fn(&TaskRecord) -> bool,
) -> TaskRecord {
    let api: Api<TaskRecord> = Api::namespaced(client.clone(), ns);
    let what = format!("record {ns}/{name} to be {what}");
    eventually(&what, async || match api.get_opt(name).await {
        Ok(Some(r)) if ok(&r) => Ok(r),
        Ok(Some(r)) => Err(format!(
            "status {}",
            serde_json::to_string_pretty(&r.status).unwrap()
        )),
        Ok(None) => Err("no record".to_string()),
        Err(e) => Err(format!("reading it: {e}")),
    })
    .await
}

/// How often each (reason, Job) was reported in the namespace (event series counted).
async fn events(client: &Client, ns: &str) -> BTreeMap<(String, String), i32> {
    let list = Api::<Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .expect("list events");
    let mut out = BTreeMap::new();
    for e in list {
        let reason = e.reason.clone().unwrap_or_default();
        let job = e
            .related
            .as_ref()
            .and_then(|r| r.name.clone())
            .unwrap_or_default();
        let n = e.series.as_ref().map(|s| s.count).unwrap_or(1);
        *out.entry((reason, job)).or_insert(0) += n;
    }
    out
}

fn ev(list: &[(&str, &str)]) -> BTreeMap<(String, String), i32> {
    let mut out = BTreeMap::new();
    for (r, j) in list {
        *out.entry((r.to_string(), j.to_string())).or_insert(0) += 1;
    }
    out
}

/// Wait until the events are exactly `want`, then make sure no more arrive.
async fn expect_events(client: &Client, ns: &str, want: &[(&str, &str)]) {
    let want = ev(want);
    let what = format!("exactly the events {want:?} in {ns}");
    eventually(&what, async || {
        let got = events(client, ns).await;
        if got == want { Ok(()) } else { Err(got) }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        events(client, ns).await,
        want,
        "{}: events after a pause",
        test_name()
    );
}

// ---- tests ---------------------------------------------------------------------------------

fn spec_tasks() -> Value {
    json!([
        {"job": "pre-notify", "definition": "notify", "phase": "app-pre"},
        {"job": "pre-check", "definition": "check", "phase": "workload-pre", "workload": "api"},
        {"job": "post-notify", "definition": "notify", "phase": "app-post"}
    ])
}

#[tokio::test]
async fn task_lifecycle_events_and_metrics() {
    let env = testenv_or_skip!("task_lifecycle_events_and_metrics");
    let c = &env.client;
    let ns = namespace(c, "lifecycle").await;
    // As klt-render --records renders it (Argo CD applies it in the last wave).
    create_record(c, &ns, spec_tasks()).await;
    let rec = start(c.clone(), &ns);
    rec.ready().await;
    let r = wait_record(
        c,
        &ns,
        "checkout-1.4.0",
        "listing the expected tasks",
        |r| r.status.as_ref().is_some_and(|s| s.tasks.len() == 3),
    )
    .await;
    let s = r.status.as_ref().unwrap();
    assert_eq!(s.phase, TaskState::Pending);
    assert_eq!(s.observed_jobs, 0);
    assert!(
        s.tasks
            .iter()
            .all(|t| t.message.as_deref() == Some("Job not created yet"))
    );

    create_job(c, &ns, task("pre-notify", "app-pre")).await;
    job_status(c, &ns, "pre-notify", running()).await;
    let r = wait_record(c, &ns, "checkout-1.4.0", "running", |r| {
        state_of(r, "pre-notify") == Some(TaskState::Running)
    })
    .await;
    assert_eq!(r.status.as_ref().unwrap().phase, TaskState::Running);
    assert_eq!(r.status.as_ref().unwrap().observed_jobs, 1);

    job_status(c, &ns, "pre-notify", succeeded()).await;
    let r = wait_record(c, &ns, "checkout-1.4.0", "pre-notify succeeded", |r| {
        state_of(r, "pre-notify") == Some(TaskState::Succeeded)
    })
    .await;
    let t = task_of(&r, "pre-notify").unwrap();
    assert_eq!(t.attempts, 1);
    assert_eq!(t.start_time.as_ref().unwrap().0.to_string(), T0);
    assert_eq!(t.end_time.as_ref().unwrap().0.to_string(), T1);
    assert_eq!(r.status.as_ref().unwrap().pre, Some(TaskState::Running));

    let mut check = task("pre-check", "workload-pre");
    check.workload = Some("api");
    check.definition = "check";
    create_job(c, &ns, check).await;
    job_status(c, &ns, "pre-check", running()).await;
    job_status(c, &ns, "pre-check", retrying()).await;
    job_status(c, &ns, "pre-check", failed()).await;
    let r = wait_record(c, &ns, "checkout-1.4.0", "failed", |r| {
        r.status
            .as_ref()
            .is_some_and(|s| s.phase == TaskState::Failed)
    })
    .await;
    let s = r.status.as_ref().unwrap();
    assert_eq!(s.pre, Some(TaskState::Failed));
    assert_eq!(s.post, Some(TaskState::Pending));
    let t = task_of(&r, "pre-check").unwrap();
    assert_eq!(t.attempts, 3);
    assert_eq!(t.workload.as_deref(), Some("api"));
    assert_eq!(
        t.message.as_deref(),
        Some("BackoffLimitExceeded: Job has reached the specified backoff limit")
    );

    // pre-check may be seen running (or not) before it failed: its start event is optional.
    let got = eventually("the TaskFailed event of pre-check", async || {
        let got = events(c, &ns).await;
        match got.contains_key(&("TaskFailed".to_string(), "pre-check".to_string())) {
            true => Ok(got),
            false => Err(got),
        }
    })
    .await;
    let mut want = vec![
        ("TaskStarted", "pre-notify"),
        ("TaskSucceeded", "pre-notify"),
        ("TaskFailed", "pre-check"),
    ];
    if got.contains_key(&("TaskStarted".to_string(), "pre-check".to_string())) {
        want.push(("TaskStarted", "pre-check"));
    }
    expect_events(c, &ns, &want).await;
    let list = Api::<Event>::namespaced(c.clone(), &ns)
        .list(&ListParams::default())
        .await
        .unwrap();
    let failed_ev = list
        .items
        .iter()
        .find(|e| e.reason.as_deref() == Some("TaskFailed"))
        .unwrap();
    assert_eq!(failed_ev.type_.as_deref(), Some("Warning"));
    assert_eq!(
        failed_ev.regarding.as_ref().unwrap().kind.as_deref(),
        Some("TaskRecord")
    );
    assert_eq!(failed_ev.regarding.as_ref().unwrap().uid, r.metadata.uid);
    assert!(
        failed_ev.note.as_deref().unwrap().contains(
            "task check (workload-pre, workload api) Job pre-check failed after 3 attempt(s)"
        ),
        "{:?}",
        failed_ev.note
    );

    // Metrics.
    assert_eq!(
        rec.metric("klt_reconciler_task_results_total{phase=\"app-pre\",outcome=\"succeeded\"}"),
        1.0
    );
    assert_eq!(
        rec.metric("klt_reconciler_task_results_total{phase=\"workload-pre\",outcome=\"failed\"}"),
        1.0
    );
    assert_eq!(
        rec.metric(
            "klt_reconciler_task_duration_seconds_count{phase=\"app-pre\",outcome=\"succeeded\"}"
        ),
        1.0
    );
    assert_eq!(
        rec.metric(
            "klt_reconciler_task_duration_seconds_sum{phase=\"app-pre\",outcome=\"succeeded\"}"
        ),
        42.0
    );
    assert_eq!(
        rec.metric("klt_reconciler_task_starts_total{phase=\"app-pre\"}"),
        1.0
    );
    assert!(rec.metric("klt_reconciler_reconciles_total") >= 4.0);
    assert!(rec.metric("klt_reconciler_reconcile_duration_seconds_count") >= 4.0);
    assert_eq!(rec.metric("klt_reconciler_watched_jobs"), 2.0);
    rec.stop().await;
}

#[tokio::test]
async fn restarts_do_not_repeat_events() {
    let env = testenv_or_skip!("restarts_do_not_repeat_events");
    let c = &env.client;
    let ns = namespace(c, "restart").await;
    let first = start(c.clone(), &ns);
    first.ready().await;
    create_job(c, &ns, task("pre-notify", "app-pre")).await;
    job_status(c, &ns, "pre-notify", running()).await;
    wait_record(c, &ns, "checkout-1.4.0", "running", |r| {
        state_of(r, "pre-notify") == Some(TaskState::Running)
    })
    .await;
    expect_events(c, &ns, &[("TaskStarted", "pre-notify")]).await;
    first.stop().await;

    // While no reconciler runs: pre-notify finishes, post-notify starts.
    job_status(c, &ns, "pre-notify", succeeded()).await;
    create_job(c, &ns, task("post-notify", "app-post")).await;
    job_status(c, &ns, "post-notify", running()).await;

    let second = start(c.clone(), &ns);
    second.ready().await;
    wait_record(c, &ns, "checkout-1.4.0", "caught up", |r| {
        state_of(r, "pre-notify") == Some(TaskState::Succeeded)
            && state_of(r, "post-notify") == Some(TaskState::Running)
    })
    .await;
    expect_events(
        c,
        &ns,
        &[
            ("TaskStarted", "pre-notify"),
            ("TaskSucceeded", "pre-notify"),
            ("TaskStarted", "post-notify"),
        ],
    )
    .await;
    // The second process counted what it saw happen, not what the first had counted.
    assert_eq!(
        second.metric("klt_reconciler_task_results_total{phase=\"app-pre\",outcome=\"succeeded\"}"),
        1.0
    );
    assert_eq!(
        second.metric("klt_reconciler_task_starts_total{phase=\"app-pre\"}"),
        0.0
    );
    assert_eq!(
        second.metric("klt_reconciler_task_starts_total{phase=\"app-post\"}"),
        1.0
    );
    second.stop().await;

    // A restart in a steady state writes nothing and tells nothing.
    let third = start(c.clone(), &ns);
    third.ready().await;
    // Its first reconcile, not a fixed pause (a loaded machine can take longer than that).
    eventually("the third process' first reconcile", async || {
        match third.metric("klt_reconciler_reconciles_total") {
            n if n >= 1.0 => Ok(()),
            n => Err(n),
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(third.metric("klt_reconciler_status_writes_total"), 0.0);
    assert_eq!(third.metric("klt_reconciler_events_published_total"), 0.0);
    third.stop().await;
    expect_events(
        c,
        &ns,
        &[
            ("TaskStarted", "pre-notify"),
            ("TaskSucceeded", "pre-notify"),
            ("TaskStarted", "post-notify"),
        ],
    )
    .await;
}

#[tokio::test]
async fn deleted_jobs_keep_their_last_state() {
    let env = testenv_or_skip!("deleted_jobs_keep_their_last_state");
    let c = &env.client;
    let ns = namespace(c, "deleted").await;
    create_record(c, &ns, spec_tasks()).await;
    let rec = start(c.clone(), &ns);
    rec.ready().await;
    for (name, phase) in [("pre-notify", "app-pre"), ("post-notify", "app-post")] {
        create_job(c, &ns, task(name, phase)).await;
    }
    job_status(c, &ns, "pre-notify", succeeded()).await;
    job_status(c, &ns, "post-notify", running()).await;
    wait_record(c, &ns, "checkout-1.4.0", "observed", |r| {
        state_of(r, "pre-notify") == Some(TaskState::Succeeded)
            && state_of(r, "post-notify") == Some(TaskState::Running)
    })
    .await;

    // Argo CD prunes the finished Job; someone deletes the running one.
    delete_job(c, &ns, "pre-notify").await;
    delete_job(c, &ns, "post-notify").await;
    let r = wait_record(c, &ns, "checkout-1.4.0", "marking deleted Jobs", |r| {
        r.status.as_ref().is_some_and(|s| {
            s.observed_jobs == 0 && s.tasks.iter().filter(|t| t.job_deleted).count() == 2
        })
    })
    .await;
    let pre = task_of(&r, "pre-notify").unwrap();
    assert_eq!(pre.state, TaskState::Succeeded);
    assert_eq!(pre.end_time.as_ref().unwrap().0.to_string(), T1);
    let post = task_of(&r, "post-notify").unwrap();
    assert_eq!(post.state, TaskState::Running);
    assert_eq!(
        post.message.as_deref(),
        Some("Job deleted before it finished")
    );
    assert!(
        !task_of(&r, "pre-check").unwrap().job_deleted,
        "never had a Job"
    );

    // Still there after a restart (the record, not the Jobs, is the memory).
    rec.stop().await;
    let again = start(c.clone(), &ns);
    again.ready().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r2 = Api::<TaskRecord>::namespaced(c.clone(), &ns)
        .get("checkout-1.4.0")
        .await
        .unwrap();
    assert_eq!(r2.status, r.status);
    assert_eq!(again.metric("klt_reconciler_status_writes_total"), 0.0);
    again.stop().await;
}

/// Argo CD prunes an app version's record once that version leaves Git: the reconciler
/// re-creates it as an archived copy (no Argo CD tracking, status kept), which goes on
/// recording its Jobs as they are pruned too. A record without tracking stays deleted.
#[tokio::test]
async fn pruned_records_are_archived_with_their_history() {
    let env = testenv_or_skip!("pruned_records_are_archived_with_their_history");
    let c = &env.client;
    let ns = namespace(c, "archive").await;
    let records: Api<TaskRecord> = Api::namespaced(c.clone(), &ns);
    // As Argo CD applies a rendered record: tracking annotation and instance label.
    let tracked: TaskRecord = serde_json::from_value(json!({
        "apiVersion": "klt-render.dev/v1alpha1",
        "kind": "TaskRecord",
        "metadata": {
            "name": "checkout-1.4.0",
            "labels": {"app.kubernetes.io/managed-by": "klt-render", "app.kubernetes.io/instance": "checkout"},
            "annotations": {
                "argocd.argoproj.io/tracking-id": format!("checkout:klt-render.dev/TaskRecord:{ns}/checkout-1.4.0"),
                "argocd.argoproj.io/sync-wave": "7",
                "keptn.sh/app": "checkout"
            }
        },
        "spec": {"app": "checkout", "appVersion": "1.4.0", "tasks": spec_tasks()}
    }))
    .unwrap();
    records
        .create(&PostParams::default(), &tracked)
        .await
        .unwrap();
    let rec = start(c.clone(), &ns);
    rec.ready().await;
    create_job(c, &ns, task("pre-notify", "app-pre")).await;
    let mut wl = task("pre-check", "workload-pre");
    wl.definition = "check";
    wl.workload = Some("api");
    wl.workload_version = Some("2.0.0");
    create_job(c, &ns, wl).await;
    create_job(c, &ns, task("post-notify", "app-post")).await;
    job_status(c, &ns, "pre-notify", succeeded()).await;
    job_status(c, &ns, "pre-check", succeeded()).await;
    job_status(c, &ns, "post-notify", failed()).await;
    let before = wait_record(c, &ns, "checkout-1.4.0", "Failed", |r| {
        r.status
            .as_ref()
            .is_some_and(|s| s.phase == TaskState::Failed && s.observed_jobs == 3)
    })
    .await;

    // Argo CD's prune: the record first (reverse wave order), then its Jobs.
    records
        .delete("checkout-1.4.0", &DeleteParams::background())
        .await
        .unwrap();
    for job in ["pre-notify", "pre-check", "post-notify"] {
        delete_job(c, &ns, job).await;
    }
    let after = wait_record(
        c,
        &ns,
        "checkout-1.4.0",
        "archived with every Job deleted",
        |r| {
            r.metadata.uid != before.metadata.uid
                && r.status.as_ref().is_some_and(|s| {
                    s.observed_jobs == 0 && s.tasks.iter().filter(|t| t.job_deleted).count() == 3
                })
        },
    )
    .await;
    let labels = after.labels();
    assert_eq!(
        labels.get("klt-render.dev/archived").map(String::as_str),
        Some("true")
    );
    assert!(
        !labels.contains_key("app.kubernetes.io/instance"),
        "{labels:?}"
    );
    let annotations = after.annotations();
    assert!(
        annotations
            .keys()
            .all(|k| !k.starts_with("argocd.argoproj.io/")),
        "{annotations:?}"
    );
    assert_eq!(
        annotations.get("klt-render.dev/archived-from-uid"),
        before.metadata.uid.as_ref()
    );
    assert_eq!(after.spec, before.spec);
    let (was, now) = (
        before.status.clone().unwrap(),
        after.status.clone().unwrap(),
    );
    assert_eq!(now.phase, TaskState::Failed);
    for t in &was.tasks {
        let kept = task_of(&after, &t.job).unwrap();
        assert_eq!(
            (
                kept.state,
                kept.attempts,
                &kept.end_time,
                &kept.message,
                &kept.job_uid
            ),
            (t.state, t.attempts, &t.end_time, &t.message, &t.job_uid),
            "{}",
            t.job
        );
    }
    // The workload Job stayed listed by the copy: no record of its own was made.
    assert!(records.get_opt("api-2.0.0").await.unwrap().is_none());
    assert_eq!(rec.metric("klt_reconciler_records_archived_total"), 1.0);
    assert_eq!(rec.metric("klt_reconciler_records_created_total"), 0.0);
    // One event per transition, none repeated by the copy.
    expect_events(
        c,
        &ns,
        &[
            ("TaskSucceeded", "pre-notify"),
            ("TaskSucceeded", "pre-check"),
            ("TaskFailed", "post-notify"),
        ],
    )
    .await;

    // Deleting the copy (no tracking) is final.
    records
        .delete("checkout-1.4.0", &DeleteParams::background())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(records.get_opt("checkout-1.4.0").await.unwrap().is_none());
    assert_eq!(rec.metric("klt_reconciler_records_archived_total"), 1.0);
    rec.stop().await;
}

/// An evaluation Job (`klt-render.dev/kind: evaluation`) is recorded next to the tasks; when
/// it fails, the entry's message is its pod's termination message (klt-evaluate's summary,
/// naming the failing objective), not the Job condition's.
#[tokio::test]
async fn evaluations_are_recorded_with_the_failing_objective() {
    let env = testenv_or_skip!("evaluations_are_recorded_with_the_failing_objective");
    let c = &env.client;
    let ns = namespace(c, "evaluation").await;
    create_record(
        c,
        &ns,
        json!([
            {"job": "pre-notify", "definition": "notify", "phase": "app-pre"},
            {"job": "pre-eval-cpu-free", "definition": "cpu-free", "phase": "app-pre"},
            {"job": "post-eval-errors", "definition": "errors", "phase": "app-post"}
        ]),
    )
    .await;
    let rec = start(c.clone(), &ns);
    rec.ready().await;
    create_job(c, &ns, task("pre-notify", "app-pre")).await;
    let mut evals = Vec::new();
    for (name, def, phase) in [
        ("pre-eval-cpu-free", "cpu-free", "app-pre"),
        ("post-eval-errors", "errors", "app-post"),
    ] {
        let mut t = task(name, phase);
        t.definition = def;
        let job = create_job(c, &ns, t).await;
        // As klt-render labels an evaluation Job.
        Api::<Job>::namespaced(c.clone(), &ns)
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {
                    "klt-render.dev/task-definition": null,
                    "klt-render.dev/evaluation-definition": def,
                    "klt-render.dev/kind": "evaluation"
                }}})),
            )
            .await
            .unwrap();
        evals.push(job);
    }
    job_status(c, &ns, "pre-notify", succeeded()).await;
    job_status(c, &ns, "post-eval-errors", succeeded()).await;
    // The failed evaluation's pod, as the Job controller and the kubelet leave it.
    let summary = "evaluation cpu-free failed: objective available-cpus value 1.2 does not meet >2 (11 of 11 attempts)";
    let uid = evals[0].metadata.uid.clone().unwrap();
    let pods: Api<Pod> = Api::namespaced(c.clone(), &ns);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "pre-eval-cpu-free-x7k2p", "labels": {
            "batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": "pre-eval-cpu-free"
        }},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "evaluator", "image": "ghcr.io/klt-render/klt-evaluate:0.1.0"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    pods.patch_status(
        "pre-eval-cpu-free-x7k2p",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Failed", "containerStatuses": [{
            "name": "evaluator", "image": "ghcr.io/klt-render/klt-evaluate:0.1.0", "imageID": "",
            "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 1, "reason": "Error", "message": format!("available-cpus: 1.2 (target >2): fail\n{summary}\n")}}
        }]}})),
    )
    .await
    .unwrap();
    let mut eval_failed = failed();
    eval_failed["failed"] = json!(1);
    job_status(c, &ns, "pre-eval-cpu-free", eval_failed).await;

    let r = wait_record(c, &ns, "checkout-1.4.0", "Failed by the evaluation", |r| {
        r.status
            .as_ref()
            .is_some_and(|s| s.phase == TaskState::Failed)
            && state_of(r, "post-eval-errors") == Some(TaskState::Succeeded)
    })
    .await;
    let failed_eval = task_of(&r, "pre-eval-cpu-free").unwrap();
    assert!(failed_eval.evaluation);
    assert_eq!(failed_eval.definition, "cpu-free");
    assert_eq!(failed_eval.state, TaskState::Failed);
    assert_eq!(failed_eval.attempts, 1);
    assert_eq!(failed_eval.message.as_deref(), Some(summary));
    let passed = task_of(&r, "post-eval-errors").unwrap();
    assert!(passed.evaluation && passed.message.is_none());
    let notify = task_of(&r, "pre-notify").unwrap();
    assert!(!notify.evaluation);
    let status = r.status.as_ref().unwrap();
    assert_eq!(
        (status.pre, status.post),
        (Some(TaskState::Failed), Some(TaskState::Succeeded))
    );
    // The Event says evaluation and names the objective.
    let list = Api::<Event>::namespaced(c.clone(), &ns)
        .list(&ListParams::default())
        .await
        .unwrap();
    eventually("the TaskFailed event of the evaluation", async || {
        let list = Api::<Event>::namespaced(c.clone(), &ns).list(&ListParams::default()).await.unwrap();
        let note = list.items.iter().find(|e| e.reason.as_deref() == Some("TaskFailed")).and_then(|e| e.note.clone());
        match note {
            Some(n) if n.starts_with("evaluation cpu-free (app-pre) Job pre-eval-cpu-free failed after 1 attempt(s): ") && n.ends_with(summary) => Ok(()),
            other => Err(other),
        }
    })
    .await;
    drop(list);

    // Pruned with its pods: the entry keeps the objective.
    delete_job(c, &ns, "pre-eval-cpu-free").await;
    pods.delete("pre-eval-cpu-free-x7k2p", &DeleteParams::background())
        .await
        .unwrap();
    let r = wait_record(
        c,
        &ns,
        "checkout-1.4.0",
        "marking the evaluation deleted",
        |r| task_of(r, "pre-eval-cpu-free").is_some_and(|t| t.job_deleted),
    )
    .await;
    assert_eq!(
        task_of(&r, "pre-eval-cpu-free").unwrap().message.as_deref(),
        Some(summary)
    );
    rec.stop().await;
}

#[tokio::test]
async fn record_is_created_from_job_labels() {
    let env = testenv_or_skip!("record_is_created_from_job_labels");
    let c = &env.client;
    let ns = namespace(c, "create").await;
    let rec = start(c.clone(), &ns);
    rec.ready().await;
    // No record label (an older render): the name is derived from app and app-version the
    // way klt-render names records (here with a hash: "Shop" is not a valid name).
    let mut t = task("pre-notify", "app-pre");
    t.record_label = false;
    t.app = "Shop";
    t.version = "2.0";
    create_job(c, &ns, t).await;
    let name = klt_reconciler::state::record_name("Shop", "2.0").unwrap();
    assert!(name.starts_with("shop-2.0-"), "{name}");
    let name = name.as_str();
    let r = wait_record(c, &ns, name, "created with the Job", |r| {
        state_of(r, "pre-notify") == Some(TaskState::Pending)
    })
    .await;
    assert_eq!(r.spec.app, "Shop");
    assert_eq!(r.spec.app_version, "2.0");
    assert!(r.spec.tasks.is_empty());
    let labels = r.labels();
    assert_eq!(
        labels
            .get("app.kubernetes.io/created-by")
            .map(String::as_str),
        Some("klt-reconciler")
    );
    assert!(
        !labels.contains_key("app.kubernetes.io/instance"),
        "no Argo CD tracking label"
    );
    assert!(r.owner_references().is_empty());
    assert_eq!(rec.metric("klt_reconciler_records_created_total"), 1.0);

    // Deleted while its Job exists: created again.
    Api::<TaskRecord>::namespaced(c.clone(), &ns)
        .delete(name, &DeleteParams::default())
        .await
        .unwrap();
    let r2 = wait_record(c, &ns, name, "re-created", |x| {
        x.metadata.uid != r.metadata.uid && x.status.is_some()
    })
    .await;
    assert_eq!(r2.status.unwrap().observed_jobs, 1);
    rec.stop().await;
}

/// A workload task's Job carries no app version: the records of two app versions that keep
/// the workload's version both list it and both see its state; no record of its own is made
/// while one lists it, and one is made (the workload version's) once none does.
#[tokio::test]
async fn workload_jobs_are_shared_by_the_records_that_list_them() {
    let env = testenv_or_skip!("workload_jobs_are_shared_by_the_records_that_list_them");
    let c = &env.client;
    let ns = namespace(c, "shared").await;
    let rec = start(c.clone(), &ns);
    rec.ready().await;
    let listed = |app_job: &str| {
        json!([
            {"job": app_job, "definition": "notify", "phase": "app-pre"},
            {"job": "pre-db-migrate", "definition": "db-migrate", "phase": "workload-pre", "workload": "checkout-checkout-api"}
        ])
    };
    create_record_of(c, &ns, "1.4.0", listed("pre-notify-a")).await;
    create_record_of(c, &ns, "1.4.1", listed("pre-notify-b")).await;
    let mut wl = task("pre-db-migrate", "workload-pre");
    wl.definition = "db-migrate";
    wl.workload = Some("checkout-checkout-api");
    wl.workload_version = Some("1.4.0");
    create_job(c, &ns, wl).await;
    job_status(c, &ns, "pre-db-migrate", succeeded()).await;
    for v in ["1.4.0", "1.4.1"] {
        wait_record(
            c,
            &ns,
            &format!("checkout-{v}"),
            "holding the shared Job",
            |r| state_of(r, "pre-db-migrate") == Some(TaskState::Succeeded),
        )
        .await;
    }
    let own = "checkout-checkout-api-1.4.0";
    let records: Api<TaskRecord> = Api::namespaced(c.clone(), &ns);
    assert!(
        records.get_opt(own).await.unwrap().is_none(),
        "no record of its own while listed"
    );
    assert_eq!(rec.metric("klt_reconciler_records_created_total"), 0.0);

    for v in ["1.4.0", "1.4.1"] {
        records
            .delete(&format!("checkout-{v}"), &DeleteParams::default())
            .await
            .unwrap();
    }
    let r = wait_record(c, &ns, own, "created once no record lists the Job", |r| {
        state_of(r, "pre-db-migrate") == Some(TaskState::Succeeded)
    })
    .await;
    assert_eq!(
        (r.spec.app.as_str(), r.spec.app_version.as_str()),
        ("checkout-checkout-api", "1.4.0")
    );
    rec.stop().await;
}

#[tokio::test]
async fn another_writer_of_the_status_is_overruled() {
    let env = testenv_or_skip!("another_writer_of_the_status_is_overruled");
    let c = &env.client;
    let ns = namespace(c, "conflict").await;
    create_record(c, &ns, spec_tasks()).await;
    let rec = start(c.clone(), &ns);
    rec.ready().await;
    create_job(c, &ns, task("pre-notify", "app-pre")).await;
    job_status(c, &ns, "pre-notify", running()).await;
    wait_record(c, &ns, "checkout-1.4.0", "running", |r| {
        state_of(r, "pre-notify") == Some(TaskState::Running)
    })
    .await;
    // Someone else claims the status (an update takes the fields over from our manager).
    let api: Api<TaskRecord> = Api::namespaced(c.clone(), &ns);
    api.patch_status(
        "checkout-1.4.0",
        &PatchParams {
            field_manager: Some("intruder".into()),
            ..Default::default()
        },
        &Patch::Merge(json!({"status": {"phase": "Succeeded", "tasks": []}})),
    )
    .await
    .unwrap();
    // The reconciler's forced apply takes them back.
    let r = wait_record(c, &ns, "checkout-1.4.0", "restored", |r| {
        r.status
            .as_ref()
            .is_some_and(|s| s.phase == TaskState::Running && s.tasks.len() == 3)
    })
    .await;
    let managers: Vec<String> = r
        .metadata
        .managed_fields
        .unwrap_or_default()
        .iter()
        .filter(|m| m.subresource.as_deref() == Some("status"))
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(
        managers.contains(&"klt-reconciler".to_string()),
        "{managers:?}"
    );
    // No event was repeated: the reconciler remembers what it wrote.
    expect_events(c, &ns, &[("TaskStarted", "pre-notify")]).await;
    rec.stop().await;
}

// ---- watch disconnects: the reconciler talks to the API server through a proxy we cut -----

struct Proxy {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    /// Connections passed through so far.
    accepted: Arc<std::sync::atomic::AtomicUsize>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accepted: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
        let accept = tokio::spawn({
            let up = Arc::clone(&up);
            let accepted = Arc::clone(&accepted);
            let conns = Arc::clone(&conns);
            async move {
                loop {
                    let Ok((mut inbound, _)) = listener.accept().await else {
                        return;
                    };
                    if !up.load(Ordering::SeqCst) {
                        drop(inbound); // refused while down
                        continue;
                    }
                    accepted.fetch_add(1, Ordering::SeqCst);
                    let h = tokio::spawn(async move {
                        if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    conns.lock().unwrap().push(h);
                }
            }
        });
        Proxy {
            addr,
            up,
            accepted,
            conns,
            accept,
        }
    }

    /// Drop every open connection (watches included) and refuse new ones.
    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for h in self.conns.lock().unwrap().drain(..) {
            h.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        for h in self.conns.lock().unwrap().drain(..) {
            h.abort();
        }
    }
}

/// The API server's address.
async fn upstream(env: &Env) -> SocketAddr {
    let uri = &env.config.cluster_url;
    let host = uri.host().unwrap();
    let port = uri.port_u16().unwrap_or(443);
    tokio::net::lookup_host((host, port))
        .await
        .unwrap()
        .next()
        .unwrap()
}

/// A client that reaches the API server through `proxy`.
fn proxied(env: &Env, proxy: &Proxy) -> Client {
    let mut cfg = env.config.clone();
    cfg.cluster_url = format!("https://{}", proxy.addr).parse().unwrap();
    if cfg.tls_server_name.is_none() {
        cfg.tls_server_name = env.config.cluster_url.host().map(String::from);
    }
    Client::try_from(cfg).unwrap()
}

#[tokio::test]
async fn watch_disconnects_are_survived() {
    let env = testenv_or_skip!("watch_disconnects_are_survived");
    let c = &env.client;
    let ns = namespace(c, "disconnect").await;
    let proxy = Proxy::start(upstream(&env).await).await;
    let proxied = proxied(&env, &proxy);

    create_record(c, &ns, spec_tasks()).await;
    let rec = start(proxied, &ns);
    rec.ready().await;
    create_job(c, &ns, task("pre-notify", "app-pre")).await;
    create_job(c, &ns, task("post-notify", "app-post")).await;
    job_status(c, &ns, "pre-notify", running()).await;
    job_status(c, &ns, "post-notify", succeeded()).await;
    wait_record(c, &ns, "checkout-1.4.0", "running", |r| {
        state_of(r, "pre-notify") == Some(TaskState::Running)
            && state_of(r, "post-notify") == Some(TaskState::Succeeded)
    })
    .await;
    // Events follow status writes: wait for them too, or the cut below can catch one in flight
    // (events are best effort, and a restarted watch does not repeat a transition it has
    // already written).
    expect_events(
        c,
        &ns,
        &[
            ("TaskStarted", "pre-notify"),
            ("TaskSucceeded", "post-notify"),
        ],
    )
    .await;

    proxy.cut();
    // While the reconciler is cut off: a Job finishes, one is deleted, one appears.
    job_status(c, &ns, "pre-notify", succeeded()).await;
    delete_job(c, &ns, "post-notify").await;
    let mut check = task("pre-check", "workload-pre");
    check.workload = Some("api");
    create_job(c, &ns, check).await;
    job_status(c, &ns, "pre-check", running()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.cut(); // connections that slipped in during the pause
    let before = proxy.accepted.load(Ordering::SeqCst);
    proxy.restore();

    let r = wait_record(
        c,
        &ns,
        "checkout-1.4.0",
        "caught up after the outage",
        |r| {
            state_of(r, "pre-notify") == Some(TaskState::Succeeded)
                && task_of(r, "post-notify").is_some_and(|t| t.job_deleted)
                && state_of(r, "pre-check") == Some(TaskState::Running)
        },
    )
    .await;
    assert_eq!(r.status.as_ref().unwrap().observed_jobs, 2);
    assert!(
        proxy.accepted.load(Ordering::SeqCst) > before,
        "the reconciler reconnected"
    );
    expect_events(
        c,
        &ns,
        &[
            ("TaskStarted", "pre-notify"),
            ("TaskSucceeded", "post-notify"),
            ("TaskSucceeded", "pre-notify"),
            ("TaskStarted", "pre-check"),
        ],
    )
    .await;
    rec.stop().await;
}

// ---- RBAC: the reconciler runs as the ServiceAccount of deploy/reconciler -----------------

async fn access(
    client: &Client,
    verb: &str,
    group: &str,
    resource: &str,
    ns: Option<&str>,
) -> bool {
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.into()),
                group: Some(group.into()),
                resource: Some(resource.into()),
                namespace: ns.map(String::from),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<SelfSubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .expect("access review")
        .status
        .is_some_and(|s| s.allowed)
}

#[tokio::test]
async fn deploy_rbac_is_enough_and_no_more() {
    let env = testenv_or_skip!("deploy_rbac_is_enough_and_no_more");
    let c = &env.client;
    let ns = namespace(c, "rbac").await;
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let text = std::fs::read_to_string(repo.join("deploy/reconciler/rbac.yaml")).unwrap();
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
    let mut role: ClusterRole = serde_json::from_value(
        docs.iter()
            .find(|d| d["kind"] == "ClusterRole")
            .unwrap()
            .clone(),
    )
    .unwrap();
    let role_name = format!("klt-it-{ns}");
    role.metadata.name = Some(role_name.clone());
    let pp = PatchParams::apply("klt-it").force();
    Api::<ClusterRole>::all(c.clone())
        .patch(&role_name, &pp, &Patch::Apply(&role))
        .await
        .unwrap();
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "klt-reconciler"}})).unwrap();
    Api::<ServiceAccount>::namespaced(c.clone(), &ns)
        .create(&PostParams::default(), &sa)
        .await
        .unwrap();
    let binding: ClusterRoleBinding = serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": role_name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role_name},
        "subjects": [{"kind": "ServiceAccount", "name": "klt-reconciler", "namespace": ns}]
    }))
    .unwrap();
    Api::<ClusterRoleBinding>::all(c.clone())
        .patch(&role_name, &pp, &Patch::Apply(&binding))
        .await
        .unwrap();
    // The leader-election Role, bound in the test namespace (kustomize puts it in the
    // reconciler's namespace).
    let lease_role: Role =
        serde_json::from_value(docs.iter().find(|d| d["kind"] == "Role").unwrap().clone()).unwrap();
    let lease_role_name = lease_role.metadata.name.clone().unwrap();
    Api::<Role>::namespaced(c.clone(), &ns)
        .patch(&lease_role_name, &pp, &Patch::Apply(&lease_role))
        .await
        .unwrap();
    let mut lease_binding: Value = docs
        .iter()
        .find(|d| d["kind"] == "RoleBinding")
        .unwrap()
        .clone();
    lease_binding["subjects"][0]["namespace"] = json!(ns);
    let lease_binding: RoleBinding = serde_json::from_value(lease_binding).unwrap();
    Api::<RoleBinding>::namespaced(c.clone(), &ns)
        .patch(&lease_role_name, &pp, &Patch::Apply(&lease_binding))
        .await
        .unwrap();

    let mut cfg = env.config.clone();
    cfg.auth_info.impersonate = Some(format!("system:serviceaccount:{ns}:klt-reconciler"));
    cfg.auth_info.impersonate_groups = Some(vec![
        "system:serviceaccounts".into(),
        format!("system:serviceaccounts:{ns}"),
        "system:authenticated".into(),
    ]);
    let sa_client = Client::try_from(cfg).unwrap();

    // RBAC caches are updated asynchronously: wait until the binding is in force.
    eventually(
        "the ClusterRoleBinding and the RoleBinding to be in force",
        async || match (
            access(&sa_client, "watch", "batch", "jobs", None).await,
            access(
                &sa_client,
                "create",
                "coordination.k8s.io",
                "leases",
                Some(&ns),
            )
            .await,
        ) {
            (true, true) => Ok(()),
            denied => Err(denied),
        },
    )
    .await;
    // What it may do, cluster-wide, and what it may not.
    for (verb, group, resource) in [
        ("list", "batch", "jobs"),
        ("watch", "klt-render.dev", "taskrecords"),
        ("create", "klt-render.dev", "taskrecords"),
        ("patch", "klt-render.dev", "taskrecords/status"),
        ("create", "events.k8s.io", "events"),
        ("list", "", "pods"),
    ] {
        assert!(
            access(&sa_client, verb, group, resource, None).await,
            "{verb} {resource}"
        );
    }
    for (verb, group, resource) in [
        ("delete", "batch", "jobs"),
        ("patch", "batch", "jobs"),
        ("update", "klt-render.dev", "taskrecords"),
        ("patch", "klt-render.dev", "taskrecords"),
        ("delete", "klt-render.dev", "taskrecords"),
        ("list", "", "secrets"),
        ("get", "", "secrets"),
        ("watch", "", "pods"),
        ("get", "", "pods"),
        ("get", "", "pods/log"),
    ] {
        assert!(
            !access(&sa_client, verb, group, resource, None).await,
            "{verb} {resource} allowed"
        );
    }

    // Leases: only in the reconciler's own namespace, never listed or deleted.
    for (verb, lease_ns) in [
        ("create", "default"),
        ("delete", ns.as_str()),
        ("list", ns.as_str()),
    ] {
        assert!(
            !access(
                &sa_client,
                verb,
                "coordination.k8s.io",
                "leases",
                Some(lease_ns)
            )
            .await,
            "{verb} leases in {lease_ns} allowed"
        );
    }

    // The whole reconcile path, leader election included, works under these rights.
    let rec = start_elected(sa_client, &ns, "rbac-0");
    wait_holder(c, &ns, "rbac-0", |h| h == "rbac-0").await;
    rec.ready().await;
    create_job(c, &ns, task("pre-notify", "app-pre")).await;
    job_status(c, &ns, "pre-notify", running()).await;
    job_status(c, &ns, "pre-notify", succeeded()).await;
    wait_record(
        c,
        &ns,
        "checkout-1.4.0",
        "succeeded under the ServiceAccount",
        |r| state_of(r, "pre-notify") == Some(TaskState::Succeeded),
    )
    .await;
    eventually("the event published under the ServiceAccount", async || {
        let got = events(c, &ns).await;
        match got.contains_key(&("TaskSucceeded".into(), "pre-notify".into())) {
            true => Ok(()),
            false => Err(got),
        }
    })
    .await;
    assert_eq!(
        rec.metric("klt_reconciler_reconcile_errors_total{error=\"forbidden\"}"),
        0.0
    );
    assert_eq!(rec.metric("klt_reconciler_event_errors_total"), 0.0);
    rec.stop().await;
}

// ---- the binary: HTTP endpoints, JSON logs, SIGTERM -----------------------------------------

async fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.ok()?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    let ctype = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    Some((code, ctype, body.to_string()))
}

fn free_addr() -> SocketAddr {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("127.0.0.1:{port}").parse().unwrap()
}

/// A `klt-reconciler run` process (killed when dropped).
struct Process {
    name: String,
    addr: SocketAddr,
    child: tokio::process::Child,
}

impl Process {
    fn spawn(name: &str, ns: &str, extra: &[&str]) -> Process {
        let addr = free_addr();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_klt-reconciler"))
            .args(["run", "--namespace", ns, "--listen", &addr.to_string()])
            .args(["--lease-namespace", ns])
            .args(extra)
            .env("POD_NAME", name)
            .env("RUST_LOG", "info,kube=warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        Process {
            name: name.to_string(),
            addr,
            child,
        }
    }

    /// Wait until `/readyz` answers 200 with `body` (`ok` leading, `standby` following).
    async fn ready_as(&self, body: &str) {
        let what = format!("{} to answer /readyz with 200 {body:?}", self.name);
        eventually(&what, async || match http_get(self.addr, "/readyz").await {
            Some((200, _, b)) if b == body => Ok(()),
            other => Err(other),
        })
        .await
    }

    async fn metrics(&self) -> String {
        let (code, ctype, body) = http_get(self.addr, "/metrics").await.unwrap();
        assert_eq!(code, 200);
        assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
        body
    }

    async fn metric(&self, series: &str) -> f64 {
        metric(&self.metrics().await, series)
    }

    /// Wait until the metric `series` satisfies `ok`.
    async fn metric_until(&self, series: &str, ok: impl Fn(f64) -> bool) -> f64 {
        let what = format!("{series} of {} to reach the value wanted", self.name);
        eventually(&what, async || {
            let v = self.metric(series).await;
            if ok(v) { Ok(v) } else { Err(v) }
        })
        .await
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.id().unwrap().to_string();
        let sent = std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap();
        assert!(sent.success());
    }

    /// Wait for the exit; the exit status and the JSON log lines' messages.
    async fn exit(mut self) -> (std::process::ExitStatus, Vec<String>) {
        let what = format!("{} to exit", self.name);
        let status = within(&what, Duration::from_secs(20), self.child.wait())
            .await
            .unwrap();
        let mut stderr = String::new();
        use tokio::io::AsyncReadExt;
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .await
            .unwrap();
        let messages = stderr
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"));
                v["message"].as_str().unwrap_or_default().to_string()
            })
            .collect();
        (status, messages)
    }
}

#[tokio::test]
async fn binary_serves_probes_and_metrics_and_stops_on_sigterm() {
    let env = testenv_or_skip!("binary_serves_probes_and_metrics_and_stops_on_sigterm");
    let c = &env.client;
    let ns = namespace(c, "binary").await;
    let p = Process::spawn("binary-0", &ns, &[]);
    p.ready_as("ok\n").await;
    let (code, _, _) = http_get(p.addr, "/healthz").await.unwrap();
    assert_eq!(code, 200);

    create_job(c, &ns, task("pre-notify", "app-pre")).await;
    job_status(c, &ns, "pre-notify", succeeded()).await;
    wait_record(c, &ns, "checkout-1.4.0", "succeeded", |r| {
        state_of(r, "pre-notify") == Some(TaskState::Succeeded)
    })
    .await;
    // The status is visible before the process has counted what it wrote: wait for the count.
    let series = "klt_reconciler_task_results_total{phase=\"app-pre\",outcome=\"succeeded\"}";
    assert_eq!(p.metric_until(series, |v| v > 0.0).await, 1.0);
    let body = p.metrics().await;
    assert!(body.ends_with("# EOF\n"));
    assert_eq!(metric(&body, "klt_reconciler_leader"), 1.0, "{body}");

    p.signal("-TERM");
    let (status, messages) = p.exit().await;
    assert!(status.success(), "exit status {status}");
    for m in [
        "leader election on",
        "became leader",
        "reconciler started",
        "task succeeded",
    ] {
        assert!(messages.iter().any(|x| x == m), "{m}: {messages:?}");
    }
    // Drained first, then the lease handed back.
    let tail: Vec<&str> = messages
        .iter()
        .rev()
        .take(2)
        .rev()
        .map(String::as_str)
        .collect();
    assert_eq!(
        tail,
        ["reconciler stopped", "released the lease"],
        "{messages:?}"
    );
}

// ---- leader election: two replicas, one reconciles -------------------------------------

async fn lease_of(client: &Client, ns: &str) -> Option<Lease> {
    Api::<Lease>::namespaced(client.clone(), ns)
        .get_opt("klt-reconciler")
        .await
        .expect("read the lease")
}

fn holder_of(lease: &Option<Lease>) -> Option<String> {
    lease.as_ref()?.spec.as_ref()?.holder_identity.clone()
}

/// Wait until the lease's holder satisfies `ok`; the holder.
async fn wait_holder(client: &Client, ns: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let what = format!("the lease in {ns} to be held by {what}");
    eventually_within(&what, WAIT, async || {
        let h = holder_of(&lease_of(client, ns).await);
        match h {
            Some(h) if ok(&h) => Ok(h),
            other => Err(other),
        }
    })
    .await
}

/// Every task Event in the namespace: (reason, Job, reportingInstance) → count.
async fn events_by(client: &Client, ns: &str) -> BTreeMap<(String, String, String), i32> {
    let list = Api::<Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .expect("list events");
    let mut out = BTreeMap::new();
    for e in list {
        let key = (
            e.reason.clone().unwrap_or_default(),
            e.related
                .as_ref()
                .and_then(|r| r.name.clone())
                .unwrap_or_default(),
            e.reporting_instance.clone().unwrap_or_default(),
        );
        *out.entry(key).or_insert(0) += e.series.as_ref().map(|s| s.count).unwrap_or(1);
    }
    out
}

/// Times each (reason, Job) was announced, by anyone.
fn per_transition(by: &BTreeMap<(String, String, String), i32>) -> BTreeMap<(String, String), i32> {
    let mut out = BTreeMap::new();
    for ((r, j, _), n) in by {
        *out.entry((r.clone(), j.clone())).or_insert(0) += n;
    }
    out
}

fn who(by: &BTreeMap<(String, String, String), i32>, reason: &str, job: &str) -> Vec<String> {
    by.keys()
        .filter(|(r, j, _)| r == reason && j == job)
        .map(|(_, _, i)| i.clone())
        .collect()
}

/// 4 s lease, 2.5 s renew deadline, 0.25 s retry, for the processes.
const FAST: [&str; 6] = [
    "--lease-duration",
    "4",
    "--lease-renew-deadline",
    "2.5",
    "--lease-retry-period",
    "0.25",
];

#[tokio::test]
async fn killed_leader_is_replaced_and_no_job_state_is_lost() {
    let env = testenv_or_skip!("killed_leader_is_replaced_and_no_job_state_is_lost");
    let c = &env.client;
    let ns = namespace(c, "kill").await;
    let jobs = ["j1", "j2", "j3", "j4", "j5", "j6"];
    let tasks: Vec<Value> = jobs
        .iter()
        .map(|j| json!({"job": j, "definition": "notify", "phase": "app-pre"}))
        .collect();
    create_record(c, &ns, json!(tasks)).await;
    let a = Process::spawn("replica-a", &ns, &FAST);
    let b = Process::spawn("replica-b", &ns, &FAST);
    let first = wait_holder(c, &ns, "either replica", |_| true).await;
    let (leader, follower) = if first == "replica-a" { (a, b) } else { (b, a) };
    leader.ready_as("ok\n").await;
    follower.ready_as("standby\n").await;

    // The leader reconciles; the follower only waits.
    for j in ["j1", "j2", "j3"] {
        create_job(c, &ns, task(j, "app-pre")).await;
        job_status(c, &ns, j, running()).await;
    }
    wait_record(c, &ns, "checkout-1.4.0", "running j1-j3", |r| {
        ["j1", "j2", "j3"]
            .iter()
            .all(|j| state_of(r, j) == Some(TaskState::Running))
    })
    .await;
    eventually("the TaskStarted events of j1-j3", async || {
        let got = per_transition(&events_by(c, &ns).await);
        match ["j1", "j2", "j3"]
            .iter()
            .all(|j| got.contains_key(&("TaskStarted".into(), j.to_string())))
        {
            true => Ok(()),
            false => Err(got),
        }
    })
    .await;
    for series in [
        "klt_reconciler_leader",
        "klt_reconciler_reconciles_total",
        "klt_reconciler_status_writes_total",
        "klt_reconciler_events_published_total",
    ] {
        assert_eq!(follower.metric(series).await, 0.0, "follower {series}");
    }
    assert_eq!(leader.metric("klt_reconciler_leader").await, 1.0);

    // Mid-run: Jobs change, and the leader dies at once (no chance to release the lease).
    job_status(c, &ns, "j1", succeeded()).await;
    job_status(c, &ns, "j2", failed()).await;
    create_job(c, &ns, task("j4", "app-pre")).await;
    job_status(c, &ns, "j4", running()).await;
    leader.signal("-KILL");
    let killed = Instant::now();
    let dead = leader.name.clone();
    let (status, _) = leader.exit().await;
    assert!(!status.success(), "SIGKILL: {status}");

    // While nobody reconciles.
    job_status(c, &ns, "j3", succeeded()).await;
    job_status(c, &ns, "j4", succeeded()).await;
    create_job(c, &ns, task("j5", "app-pre")).await;
    job_status(c, &ns, "j5", running()).await;
    create_job(c, &ns, task("j6", "app-pre")).await;

    // The dead leader's last renewal (nothing renews it any more).
    let last_renewal = lease_of(c, &ns)
        .await
        .unwrap()
        .spec
        .unwrap()
        .renew_time
        .unwrap()
        .0;
    let next = follower.name.clone();
    wait_holder(c, &ns, &next, |h| h == next).await;
    let takeover = killed.elapsed();
    let acquired = lease_of(c, &ns)
        .await
        .unwrap()
        .spec
        .unwrap()
        .acquire_time
        .unwrap()
        .0;
    let expired_for = acquired.duration_since(last_renewal);
    skip(&format!(
        "killed_leader_is_replaced: takeover {takeover:?} after SIGKILL, {expired_for:#} after \
         the last renewal (lease 4 s, retry 0.25 s)"
    ));
    // Not before the lease expired: the follower saw the last renewal no earlier than its
    // renewTime, and waited the lease duration from then (the processes share one clock).
    assert!(
        expired_for >= jiff::SignedDuration::from_secs(4),
        "took over {expired_for:#} after the last renewal"
    );
    // And soon after: the last renewal was about a retry period before the kill, and the
    // follower reads the lease every retry period.
    assert!(
        takeover <= Duration::from_secs(7),
        "took over after {takeover:?}"
    );
    follower.ready_as("ok\n").await;

    // The new leader catches up with the outage first (or j5's start could go unseen).
    wait_record(c, &ns, "checkout-1.4.0", "caught up after the kill", |r| {
        state_of(r, "j3") == Some(TaskState::Succeeded)
            && state_of(r, "j4") == Some(TaskState::Succeeded)
            && state_of(r, "j5") == Some(TaskState::Running)
    })
    .await;
    job_status(c, &ns, "j5", succeeded()).await;
    job_status(c, &ns, "j6", succeeded()).await;
    let want = [
        ("j1", TaskState::Succeeded),
        ("j2", TaskState::Failed),
        ("j3", TaskState::Succeeded),
        ("j4", TaskState::Succeeded),
        ("j5", TaskState::Succeeded),
        ("j6", TaskState::Succeeded),
    ];
    let r = wait_record(c, &ns, "checkout-1.4.0", "every Job's final state", |r| {
        want.iter().all(|(j, s)| state_of(r, j) == Some(*s))
    })
    .await;
    let s = r.status.as_ref().unwrap();
    assert_eq!(s.phase, TaskState::Failed);
    assert_eq!(s.observed_jobs, 6);
    assert_eq!(task_of(&r, "j2").unwrap().attempts, 3);

    // Events: what happened after the kill is announced once, by the new leader; nothing is
    // announced twice; a transition the dead leader had written may lack its Event.
    let after_kill = [
        ("TaskSucceeded", "j3"),
        ("TaskSucceeded", "j4"),
        ("TaskStarted", "j5"),
        ("TaskSucceeded", "j5"),
        ("TaskSucceeded", "j6"),
    ];
    let by = eventually("the Events of the transitions after the kill", async || {
        let by = events_by(c, &ns).await;
        let t = per_transition(&by);
        match after_kill
            .iter()
            .all(|(r, j)| t.contains_key(&(r.to_string(), j.to_string())))
        {
            true => Ok(by),
            false => Err(by),
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let by = {
        let again = events_by(c, &ns).await;
        assert!(again.len() >= by.len());
        again
    };
    for ((reason, job), n) in per_transition(&by) {
        assert_eq!(n, 1, "{reason} of {job} announced {n} times: {by:?}");
    }
    for (reason, job) in after_kill {
        assert_eq!(
            who(&by, reason, job),
            std::slice::from_ref(&next),
            "{reason} {job}: {by:?}"
        );
    }
    for j in ["j1", "j2", "j3"] {
        assert_eq!(
            who(&by, "TaskStarted", j),
            std::slice::from_ref(&dead),
            "TaskStarted {j}: {by:?}"
        );
    }
    assert_eq!(follower.metric("klt_reconciler_leader").await, 1.0);
    assert_eq!(
        follower.metric("klt_reconciler_leader_terms_total").await,
        1.0
    );
    follower.signal("-TERM");
    let (status, _) = follower.exit().await;
    assert!(status.success(), "{status}");
    assert_eq!(
        holder_of(&lease_of(c, &ns).await),
        None,
        "released on SIGTERM"
    );
}

#[tokio::test]
async fn sigterm_hands_the_lease_over_at_once() {
    let env = testenv_or_skip!("sigterm_hands_the_lease_over_at_once");
    let c = &env.client;
    let ns = namespace(c, "handover").await;
    // A long lease: a takeover by expiry would take 15 s or more.
    let slow = [
        "--lease-duration",
        "15",
        "--lease-renew-deadline",
        "10",
        "--lease-retry-period",
        "0.25",
    ];
    let a = Process::spawn("replica-a", &ns, &slow);
    let b = Process::spawn("replica-b", &ns, &slow);
    let first = wait_holder(c, &ns, "either replica", |_| true).await;
    let (leader, follower) = if first == "replica-a" { (a, b) } else { (b, a) };
    leader.ready_as("ok\n").await;
    follower.ready_as("standby\n").await;
    create_job(c, &ns, task("pre-notify", "app-pre")).await;
    job_status(c, &ns, "pre-notify", running()).await;
    wait_record(c, &ns, "checkout-1.4.0", "running", |r| {
        state_of(r, "pre-notify") == Some(TaskState::Running)
    })
    .await;
    expect_events(c, &ns, &[("TaskStarted", "pre-notify")]).await;

    leader.signal("-TERM");
    let term = Instant::now();
    let old = leader.name.clone();
    let next = follower.name.clone();
    wait_holder(c, &ns, &next, |h| h == next).await;
    let handover = term.elapsed();
    skip(&format!(
        "sigterm_hands_the_lease_over: handover {handover:?} after SIGTERM (lease 15 s)"
    ));
    assert!(
        handover < Duration::from_secs(3),
        "handover took {handover:?}"
    );
    let (status, messages) = leader.exit().await;
    assert!(status.success(), "{status}");
    assert!(
        messages.iter().any(|m| m == "released the lease"),
        "{messages:?}"
    );
    let spec = lease_of(c, &ns).await.unwrap().spec.unwrap();
    assert_eq!(spec.lease_transitions, Some(1));

    job_status(c, &ns, "pre-notify", succeeded()).await;
    wait_record(c, &ns, "checkout-1.4.0", "succeeded", |r| {
        state_of(r, "pre-notify") == Some(TaskState::Succeeded)
    })
    .await;
    expect_events(
        c,
        &ns,
        &[
            ("TaskStarted", "pre-notify"),
            ("TaskSucceeded", "pre-notify"),
        ],
    )
    .await;
    let by = events_by(c, &ns).await;
    assert_eq!(who(&by, "TaskStarted", "pre-notify"), [old]);
    assert_eq!(who(&by, "TaskSucceeded", "pre-notify"), [next]);
    follower.signal("-TERM");
    assert!(follower.exit().await.0.success());
}

#[tokio::test]
async fn partitioned_leader_writes_nothing_after_losing_the_lease() {
    let env = testenv_or_skip!("partitioned_leader_writes_nothing_after_losing_the_lease");
    let c = &env.client;
    let ns = namespace(c, "partition").await;
    let proxy = Proxy::start(upstream(&env).await).await;
    create_record(c, &ns, spec_tasks()).await;
    let a = start_elected(proxied(&env, &proxy), &ns, "replica-a");
    wait_holder(c, &ns, "replica-a", |h| h == "replica-a").await;
    a.ready().await;
    let b = start_elected(c.clone(), &ns, "replica-b");
    eventually("replica-b to follow", async || {
        match b.shared.standby.load(Ordering::SeqCst) {
            true => Ok(()),
            false => Err("not standing by"),
        }
    })
    .await;
    create_job(c, &ns, task("pre-notify", "app-pre")).await;
    job_status(c, &ns, "pre-notify", running()).await;
    wait_record(c, &ns, "checkout-1.4.0", "running", |r| {
        state_of(r, "pre-notify") == Some(TaskState::Running)
    })
    .await;
    expect_events(c, &ns, &[("TaskStarted", "pre-notify")]).await;
    let counters = [
        "klt_reconciler_status_writes_total",
        "klt_reconciler_events_published_total",
        "klt_reconciler_records_created_total",
    ];
    let before: Vec<f64> = counters.iter().map(|m| a.metric(m)).collect();

    // replica-a loses the API server (it is alive: its lease can only run out).
    proxy.cut();
    let cut = Instant::now();
    job_status(c, &ns, "pre-notify", succeeded()).await;
    // Sample until replica-b holds the lease: replica-a must have stopped first.
    let mut a_stopped = None;
    let taken = eventually("replica-b to take the lease over", async || {
        if a_stopped.is_none() && a.metric("klt_reconciler_leader") == 0.0 {
            a_stopped = Some(cut.elapsed());
        }
        match holder_of(&lease_of(c, &ns).await).as_deref() {
            Some("replica-b") => Ok(cut.elapsed()),
            other => Err(other.map(String::from)),
        }
    })
    .await;
    let a_stopped = a_stopped.expect("replica-a still leading when replica-b took over");
    skip(&format!(
        "partitioned_leader: replica-a stopped after {a_stopped:?}, replica-b took over after {taken:?} (lease 3 s, renew deadline 2 s)"
    ));
    assert!(a_stopped < taken, "{a_stopped:?} vs {taken:?}");
    proxy.cut(); // connections that slipped in meanwhile

    // replica-a reaches the API server again: it must follow, and write nothing.
    proxy.restore();
    eventually("replica-a to follow again", async || {
        match a.shared.standby.load(Ordering::SeqCst) {
            true => Ok(()),
            false => Err("not standing by"),
        }
    })
    .await;
    create_job(c, &ns, task("post-notify", "app-post")).await;
    job_status(c, &ns, "post-notify", running()).await;
    job_status(c, &ns, "post-notify", succeeded()).await;
    wait_record(c, &ns, "checkout-1.4.0", "caught up by replica-b", |r| {
        state_of(r, "pre-notify") == Some(TaskState::Succeeded)
            && state_of(r, "post-notify") == Some(TaskState::Succeeded)
    })
    .await;
    eventually("the Events of replica-b", async || {
        let by = events_by(c, &ns).await;
        match who(&by, "TaskSucceeded", "post-notify").len() {
            1 => Ok(()),
            _ => Err(by),
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let after: Vec<f64> = counters.iter().map(|m| a.metric(m)).collect();
    assert_eq!(
        after, before,
        "replica-a wrote after losing the lease ({counters:?})"
    );
    assert_eq!(a.metric("klt_reconciler_leader"), 0.0);
    let by = events_by(c, &ns).await;
    for ((reason, job), n) in per_transition(&by) {
        assert_eq!(n, 1, "{reason} of {job}: {by:?}");
    }
    assert_eq!(who(&by, "TaskStarted", "pre-notify"), ["replica-a"]);
    assert_eq!(who(&by, "TaskSucceeded", "pre-notify"), ["replica-b"]);
    assert_eq!(who(&by, "TaskSucceeded", "post-notify"), ["replica-b"]);
    b.stop().await;
    a.stop().await;
}
