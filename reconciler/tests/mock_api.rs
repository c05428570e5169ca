//! `reconcile` against a mocked API server (tower-test): which calls it makes, with what
//! bodies, for each path (status write + event, record creation, conflicts, nothing to do,
//! a stale cache, API errors).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use klt_reconciler::controller::{Ctx, Error, JobIndex, Shared, reconcile};
use klt_reconciler::crd::{ExpectedTask, TaskRecord, TaskRecordSpec};
use klt_reconciler::lease::{Leadership, Role};
use klt_reconciler::state::{self, RecordKey};
use kube::client::Body;
use kube::runtime::reflector;
use kube::runtime::watcher;
use serde_json::{Value, json};

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

const NS: &str = "shop";
const RECORD: &str = "checkout-1.4.0";

fn key() -> RecordKey {
    RecordKey {
        namespace: NS.into(),
        name: RECORD.into(),
    }
}

fn job(name: &str, phase: &str, status: JobStatus) -> Job {
    let labels: BTreeMap<String, String> = [
        (state::LABEL_MANAGED_BY, state::MANAGED_BY),
        (state::LABEL_APP, "checkout"),
        (state::LABEL_APP_VERSION, "1.4.0"),
        (state::LABEL_RECORD, RECORD),
        (state::LABEL_DEFINITION, "notify"),
        (state::LABEL_PHASE, phase),
        // Argo CD's tracking label must not be copied to a record the reconciler creates.
        ("app.kubernetes.io/instance", "checkout"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    Job {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(NS.into()),
            uid: Some(format!("uid-{name}")),
            labels: Some(labels),
            ..Default::default()
        },
        spec: None,
        status: Some(status),
    }
}

fn running() -> JobStatus {
    JobStatus {
        active: Some(1),
        start_time: Some(Time("2026-01-01T00:00:00Z".parse().unwrap())),
        ..Default::default()
    }
}

fn succeeded() -> JobStatus {
    let t = Time("2026-01-01T00:00:30Z".parse().unwrap());
    let cond = |ty: &str| JobCondition {
        type_: ty.into(),
        status: "True".into(),
        last_transition_time: Some(t.clone()),
        ..Default::default()
    };
    JobStatus {
        succeeded: Some(1),
        start_time: Some(Time("2026-01-01T00:00:00Z".parse().unwrap())),
        completion_time: Some(t.clone()),
        conditions: Some(vec![cond("SuccessCriteriaMet"), cond("Complete")]),
        ..Default::default()
    }
}

fn record(with_status: Option<Value>) -> TaskRecord {
    let mut r = TaskRecord::new(
        RECORD,
        TaskRecordSpec {
            app: "checkout".into(),
            app_version: "1.4.0".into(),
            tasks: vec![
                ExpectedTask {
                    job: "pre-notify".into(),
                    definition: "notify".into(),
                    phase: "app-pre".into(),
                    workload: None,
                },
                ExpectedTask {
                    job: "post-notify".into(),
                    definition: "notify".into(),
                    phase: "app-post".into(),
                    workload: None,
                },
            ],
        },
    );
    r.metadata.namespace = Some(NS.into());
    r.metadata.uid = Some("record-uid".into());
    r.metadata.resource_version = Some("1".into());
    r.status = with_status.map(|s| serde_json::from_value(s).unwrap());
    r
}

struct Setup {
    ctx: Arc<Ctx>,
    handle: Handle,
    records: reflector::store::Writer<TaskRecord>,
}

fn setup(records: Vec<TaskRecord>, jobs: Vec<Job>) -> Setup {
    setup_as(records, jobs, Leadership::always())
}

fn setup_as(records: Vec<TaskRecord>, jobs: Vec<Job>, leadership: Leadership) -> Setup {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(svc, "default");
    let (store, mut writer) = reflector::store::<TaskRecord>();
    writer.apply_watcher_event(&watcher::Event::Init);
    for r in records {
        writer.apply_watcher_event(&watcher::Event::InitApply(r));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    let mut index = JobIndex::default();
    index.apply(watcher::Event::Init);
    for j in jobs {
        index.apply(watcher::Event::InitApply(j));
    }
    index.apply(watcher::Event::InitDone);
    let ctx = Ctx::new(
        client,
        store,
        Arc::new(RwLock::new(index)),
        Arc::new(Shared::default()),
        Some("test-pod".into()),
        leadership,
    );
    Setup {
        ctx: Arc::new(ctx),
        handle,
        records: writer,
    }
}

fn reply(status: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap()
}

fn api_status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": reason, "reason": reason, "code": code})
}

/// Next request: its method, path, query and JSON body.
async fn expect(
    handle: &mut Handle,
) -> (
    Method,
    String,
    String,
    Value,
    tower_test::mock::SendResponse<Response<Body>>,
) {
    let (req, send) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
        .await
        .expect("a request within 5 s")
        .expect("the service is open");
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let bytes = http_body_util_collect(req.into_body()).await;
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (method, path, query, body, send)
}

async fn http_body_util_collect(body: Body) -> Vec<u8> {
    body.collect_bytes().await.unwrap().to_vec()
}

const STATUS_PATH: &str =
    "/apis/klt-render.dev/v1alpha1/namespaces/shop/taskrecords/checkout-1.4.0/status";
const EVENTS_PATH: &str = "/apis/events.k8s.io/v1/namespaces/shop/events";

fn assert_apply(method: &Method, path: &str, query: &str, body: &Value) {
    assert_eq!(method, Method::PATCH);
    assert_eq!(path, STATUS_PATH);
    assert!(query.contains("fieldManager=klt-reconciler"), "{query}");
    assert!(query.contains("force=true"), "{query}");
    assert_eq!(body["apiVersion"], "klt-render.dev/v1alpha1");
    assert_eq!(body["kind"], "TaskRecord");
    assert!(body.get("spec").is_none(), "only the status is applied");
}

fn with_status(status: &Value) -> Value {
    let mut r = serde_json::to_value(record(None)).unwrap();
    r["status"] = status.clone();
    r
}

#[tokio::test]
async fn status_write_then_event() {
    let Setup {
        ctx, mut handle, ..
    } = setup(
        vec![record(None)],
        vec![job("pre-notify", "app-pre", running())],
    );
    let task = tokio::spawn({
        let ctx = Arc::clone(&ctx);
        async move { reconcile(&ctx, &key()).await }
    });
    let (m, p, q, body, send) = expect(&mut handle).await;
    assert_apply(&m, &p, &q, &body);
    let status = &body["status"];
    assert_eq!(status["phase"], "Running");
    assert_eq!(status["pre"], "Running");
    assert_eq!(status["post"], "Pending");
    assert_eq!(status["observedJobs"], 1);
    assert_eq!(status["tasks"][0]["job"], "pre-notify");
    assert_eq!(status["tasks"][0]["state"], "Running");
    assert_eq!(status["tasks"][0]["attempts"], 1);
    assert_eq!(status["tasks"][1]["message"], state::MSG_NOT_CREATED);
    send.send_response(reply(StatusCode::OK, &with_status(status)));

    let (m, p, _, ev, send) = expect(&mut handle).await;
    assert_eq!((m, p.as_str()), (Method::POST, EVENTS_PATH));
    assert_eq!(ev["reason"], "TaskStarted");
    assert_eq!(ev["type"], "Normal");
    assert_eq!(ev["regarding"]["kind"], "TaskRecord");
    assert_eq!(ev["regarding"]["name"], RECORD);
    assert_eq!(ev["regarding"]["uid"], "record-uid");
    assert_eq!(ev["related"]["kind"], "Job");
    assert_eq!(ev["related"]["name"], "pre-notify");
    assert_eq!(ev["reportingController"], "klt-reconciler");
    assert_eq!(ev["reportingInstance"], "test-pod");
    assert_eq!(ev["note"], "task notify (app-pre) Job pre-notify started");
    send.send_response(reply(StatusCode::CREATED, &ev));

    task.await.unwrap().unwrap();
    ctx.events.idle().await;
    let text = ctx.shared.metrics.encode();
    assert!(
        text.contains("klt_reconciler_task_starts_total{phase=\"app-pre\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("klt_reconciler_events_published_total 1"),
        "{text}"
    );

    // The cache of records has not seen our write yet: the status is applied again (a no-op
    // for the server), but the transition is not repeated: no second event.
    let task = tokio::spawn({
        let ctx = Arc::clone(&ctx);
        async move { reconcile(&ctx, &key()).await }
    });
    let (m, p, q, body, send) = expect(&mut handle).await;
    assert_apply(&m, &p, &q, &body);
    send.send_response(reply(StatusCode::OK, &with_status(&body["status"])));
    task.await.unwrap().unwrap();
    ctx.events.idle().await;
    assert!(
        tokio::time::timeout(Duration::from_millis(200), handle.next_request())
            .await
            .is_err(),
        "no event the second time"
    );
}

#[tokio::test]
async fn nothing_to_do_makes_no_call() {
    // A status equal to what the Jobs say: no write, no event (a restart in steady state).
    let jobs = vec![job("pre-notify", "app-pre", succeeded())];
    let obs: Vec<_> = jobs.iter().map(|j| state::observe(j).unwrap()).collect();
    let spec = record(None).spec;
    let current = state::compute_status(Some(&spec), &obs, None);
    let Setup {
        ctx, mut handle, ..
    } = setup(
        vec![record(Some(serde_json::to_value(&current).unwrap()))],
        jobs,
    );
    tokio::time::timeout(Duration::from_secs(5), reconcile(&ctx, &key()))
        .await
        .expect("no call to wait for")
        .unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(200), handle.next_request())
            .await
            .is_err()
    );
    assert!(
        ctx.shared
            .metrics
            .encode()
            .contains("klt_reconciler_status_writes_total 0")
    );
}

#[tokio::test]
async fn finished_task_after_restart_from_stored_running() {
    // Stored: running. Now: succeeded. One write, one TaskSucceeded event, one result.
    let spec = record(None).spec;
    let running_obs = [state::observe(&job("pre-notify", "app-pre", running())).unwrap()];
    let stored = state::compute_status(Some(&spec), &running_obs, None);
    let Setup {
        ctx, mut handle, ..
    } = setup(
        vec![record(Some(serde_json::to_value(&stored).unwrap()))],
        vec![job("pre-notify", "app-pre", succeeded())],
    );
    let task = tokio::spawn({
        let ctx = Arc::clone(&ctx);
        async move { reconcile(&ctx, &key()).await }
    });
    let (m, p, q, body, send) = expect(&mut handle).await;
    assert_apply(&m, &p, &q, &body);
    assert_eq!(body["status"]["tasks"][0]["state"], "Succeeded");
    assert_eq!(
        body["status"]["tasks"][0]["endTime"],
        "2026-01-01T00:00:30Z"
    );
    send.send_response(reply(StatusCode::OK, &with_status(&body["status"])));
    let (_, p, _, ev, send) = expect(&mut handle).await;
    assert_eq!(p, EVENTS_PATH);
    assert_eq!(ev["reason"], "TaskSucceeded");
    assert_eq!(
        ev["note"],
        "task notify (app-pre) Job pre-notify succeeded after 30s"
    );
    send.send_response(reply(StatusCode::CREATED, &ev));
    task.await.unwrap().unwrap();
    ctx.events.idle().await;
    let text = ctx.shared.metrics.encode();
    assert!(
        text.contains(
            "klt_reconciler_task_results_total{phase=\"app-pre\",outcome=\"succeeded\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "klt_reconciler_task_duration_seconds_bucket{le=\"32.0\",phase=\"app-pre\",outcome=\"succeeded\"} 1"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn creates_a_missing_record_from_job_labels() {
    let Setup {
        ctx, mut handle, ..
    } = setup(
        vec![],
        vec![job("pre-notify", "app-pre", JobStatus::default())],
    );
    let task = tokio::spawn({
        let ctx = Arc::clone(&ctx);
        async move { reconcile(&ctx, &key()).await }
    });
    let (m, p, q, body, send) = expect(&mut handle).await;
    assert_eq!(m, Method::POST);
    assert_eq!(
        p,
        "/apis/klt-render.dev/v1alpha1/namespaces/shop/taskrecords"
    );
    assert!(q.contains("fieldManager=klt-reconciler"), "{q}");
    assert_eq!(body["metadata"]["name"], RECORD);
    assert_eq!(
        body["spec"],
        json!({"app": "checkout", "appVersion": "1.4.0"})
    );
    let labels = body["metadata"]["labels"].as_object().unwrap();
    assert_eq!(labels["klt-render.dev/app"], "checkout");
    assert!(!labels.contains_key("app.kubernetes.io/instance"));
    assert!(!labels.contains_key("app.kubernetes.io/managed-by"));
    let mut created = body.clone();
    created["metadata"]["uid"] = json!("new-uid");
    created["metadata"]["resourceVersion"] = json!("7");
    send.send_response(reply(StatusCode::CREATED, &created));

    let (m, p, q, body, send) = expect(&mut handle).await;
    assert_apply(&m, &p, &q, &body);
    assert_eq!(body["status"]["phase"], "Pending");
    assert_eq!(body["status"]["tasks"].as_array().unwrap().len(), 1);
    let mut done = created.clone();
    done["status"] = body["status"].clone();
    send.send_response(reply(StatusCode::OK, &done));
    task.await.unwrap().unwrap();
    ctx.events.idle().await;
    assert!(
        ctx.shared
            .metrics
            .encode()
            .contains("klt_reconciler_records_created_total 1")
    );
}

#[tokio::test]
async fn record_created_meanwhile_is_read_back() {
    let Setup {
        ctx, mut handle, ..
    } = setup(vec![], vec![job("pre-notify", "app-pre", running())]);
    let task = tokio::spawn({
        let ctx = Arc::clone(&ctx);
        async move { reconcile(&ctx, &key()).await }
    });
    let (m, _, _, _, send) = expect(&mut handle).await;
    assert_eq!(m, Method::POST);
    send.send_response(reply(
        StatusCode::CONFLICT,
        &api_status(409, "AlreadyExists"),
    ));
    let (m, p, _, _, send) = expect(&mut handle).await;
    assert_eq!(m, Method::GET);
    assert_eq!(
        p,
        "/apis/klt-render.dev/v1alpha1/namespaces/shop/taskrecords/checkout-1.4.0"
    );
    // Argo CD's record, with the expected tasks.
    send.send_response(reply(
        StatusCode::OK,
        &serde_json::to_value(record(None)).unwrap(),
    ));
    let (m, p, q, body, send) = expect(&mut handle).await;
    assert_apply(&m, &p, &q, &body);
    assert_eq!(body["status"]["tasks"].as_array().unwrap().len(), 2);
    send.send_response(reply(StatusCode::OK, &with_status(&body["status"])));
    let (_, p, _, ev, send) = expect(&mut handle).await;
    assert_eq!(p, EVENTS_PATH);
    send.send_response(reply(StatusCode::CREATED, &ev));
    task.await.unwrap().unwrap();
    ctx.events.idle().await;
}

#[tokio::test]
async fn failed_write_is_an_error_and_publishes_nothing() {
    let Setup {
        ctx, mut handle, ..
    } = setup(
        vec![record(None)],
        vec![job("pre-notify", "app-pre", running())],
    );
    let task = tokio::spawn({
        let ctx = Arc::clone(&ctx);
        async move { reconcile(&ctx, &key()).await }
    });
    let (m, _, _, _, send) = expect(&mut handle).await;
    assert_eq!(m, Method::PATCH);
    send.send_response(reply(StatusCode::CONFLICT, &api_status(409, "Conflict")));
    let err = task.await.unwrap().unwrap_err();
    assert_eq!(err.metric_label(), "conflict");
    assert!(matches!(err, Error::Kube(_)));
    assert!(
        tokio::time::timeout(Duration::from_millis(200), handle.next_request())
            .await
            .is_err(),
        "no event for an unwritten status"
    );
    // The retry writes and publishes the event.
    let task = tokio::spawn({
        let ctx = Arc::clone(&ctx);
        async move { reconcile(&ctx, &key()).await }
    });
    let (m, _, _, body, send) = expect(&mut handle).await;
    assert_eq!(m, Method::PATCH);
    send.send_response(reply(StatusCode::OK, &with_status(&body["status"])));
    let (_, p, _, ev, send) = expect(&mut handle).await;
    assert_eq!(p, EVENTS_PATH);
    assert_eq!(ev["reason"], "TaskStarted");
    send.send_response(reply(StatusCode::CREATED, &ev));
    task.await.unwrap().unwrap();
    ctx.events.idle().await;
}

#[tokio::test]
async fn event_failure_does_not_fail_the_reconcile() {
    let Setup {
        ctx, mut handle, ..
    } = setup(
        vec![record(None)],
        vec![job("pre-notify", "app-pre", running())],
    );
    let task = tokio::spawn({
        let ctx = Arc::clone(&ctx);
        async move { reconcile(&ctx, &key()).await }
    });
    let (_, _, _, body, send) = expect(&mut handle).await;
    send.send_response(reply(StatusCode::OK, &with_status(&body["status"])));
    let (_, _, _, _, send) = expect(&mut handle).await;
    send.send_response(reply(StatusCode::FORBIDDEN, &api_status(403, "Forbidden")));
    task.await.unwrap().unwrap();
    ctx.events.idle().await;
    assert!(
        ctx.shared
            .metrics
            .encode()
            .contains("klt_reconciler_event_errors_total 1")
    );
}

#[tokio::test]
async fn no_jobs_and_no_record_is_nothing() {
    let Setup {
        ctx, mut handle, ..
    } = setup(vec![], vec![]);
    reconcile(&ctx, &key()).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(100), handle.next_request())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn deleted_record_in_cache_is_left_alone() {
    let mut r = record(None);
    r.metadata.deletion_timestamp = Some(Time("2026-01-01T00:00:00Z".parse().unwrap()));
    let Setup {
        ctx,
        mut handle,
        records: _records,
    } = setup(vec![r], vec![job("pre-notify", "app-pre", running())]);
    reconcile(&ctx, &key()).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(100), handle.next_request())
            .await
            .is_err()
    );
}

#[test]
fn job_index_follows_watch_events() {
    let mut idx = JobIndex::default();
    let k = key();
    assert_eq!(
        idx.apply(watcher::Event::Apply(job("a", "app-pre", running()))),
        vec![k.clone()]
    );
    // The same observation again changes nothing.
    assert!(
        idx.apply(watcher::Event::Apply(job("a", "app-pre", running())))
            .is_empty()
    );
    assert_eq!(
        idx.apply(watcher::Event::Apply(job("a", "app-pre", succeeded()))),
        vec![k.clone()]
    );
    assert_eq!(idx.len(), 1);
    // A relist without "a" (deleted while the watch was down) reports its record.
    idx.apply(watcher::Event::Init);
    let mut other = job("b", "app-post", running());
    other
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert(state::LABEL_RECORD.into(), "other".into());
    idx.apply(watcher::Event::InitApply(other));
    assert_eq!(idx.len(), 1, "old contents stay until InitDone");
    let mut keys = idx.apply(watcher::Event::InitDone);
    keys.sort();
    assert_eq!(
        keys,
        vec![
            k.clone(),
            RecordKey {
                namespace: NS.into(),
                name: "other".into()
            }
        ]
    );
    assert!(idx.jobs_for(&k).is_empty());
    assert_eq!(idx.len(), 1);
    // A Job whose labels no longer say klt-render leaves.
    let mut foreign = job("b", "app-post", running());
    foreign.metadata.labels = Some(BTreeMap::new());
    let keys = idx.apply(watcher::Event::Apply(foreign));
    assert_eq!(keys[0].name, "other");
    assert!(idx.is_empty());
}

/// A workload task's Job (no app version, so no record label) is listed by the records of
/// two app versions: a change of the Job queues both, and each record sees it.
#[test]
fn records_that_list_a_job_by_name_follow_it() {
    let mut idx = JobIndex::default();
    let mut wl = job("pre-db-migrate-x", "workload-pre", running());
    let labels = wl.metadata.labels.as_mut().unwrap();
    labels.remove(state::LABEL_RECORD);
    labels.remove(state::LABEL_APP_VERSION);
    labels.insert(state::LABEL_WORKLOAD.into(), "checkout-checkout-api".into());
    labels.insert(state::LABEL_VERSION.into(), "1.4.0".into());
    let own = RecordKey {
        namespace: NS.into(),
        name: "checkout-checkout-api-1.4.0".into(),
    };
    let v2 = RecordKey {
        namespace: NS.into(),
        name: "checkout-1.4.1".into(),
    };
    assert_eq!(
        idx.apply(watcher::Event::Apply(wl.clone())),
        vec![own.clone()]
    );
    assert!(!idx.is_listed(&idx.jobs_for(&own)[0]));
    for k in [&key(), &v2] {
        idx.set_listing(
            k,
            Some(vec!["pre-db-migrate-x".into(), "pre-missing".into()]),
        );
    }
    assert!(idx.is_listed(&idx.jobs_for(&own)[0]));
    wl.status = Some(succeeded());
    let mut keys = idx.apply(watcher::Event::Apply(wl.clone()));
    keys.sort();
    let mut want = vec![key(), v2.clone(), own.clone()];
    want.sort();
    assert_eq!(keys, want);
    for k in [key(), v2.clone()] {
        let jobs = idx.jobs_of_record(&k);
        assert_eq!(jobs.len(), 1, "{k}");
        assert_eq!(jobs[0].state, klt_reconciler::crd::TaskState::Succeeded);
    }
    // A record that no longer lists it is no longer queued.
    idx.set_listing(&v2, None);
    let mut keys = idx.apply(watcher::Event::Delete(wl));
    keys.sort();
    let mut want = vec![key(), own];
    want.sort();
    assert_eq!(keys, want);
    assert!(idx.jobs_of_record(&key()).is_empty());
}

#[tokio::test]
async fn a_replica_that_lost_the_lease_writes_nothing() {
    // A status write and a record creation are due, but the renew deadline has passed (or
    // another replica holds the lease): no request at all, and the reconcile says why.
    for role in [
        Role::Following,
        Role::Leading(std::time::Instant::now() - Duration::from_millis(1)),
    ] {
        let Setup {
            ctx, mut handle, ..
        } = setup_as(
            vec![record(None)],
            vec![job("pre-notify", "app-pre", running())],
            Leadership::fixed(role),
        );
        let err = tokio::time::timeout(Duration::from_secs(5), reconcile(&ctx, &key()))
            .await
            .expect("no call to wait for")
            .unwrap_err();
        assert!(matches!(err, Error::NotLeader), "{role:?}: {err}");
        assert_eq!(err.metric_label(), "not_leader");
        let Setup {
            ctx: create_ctx,
            handle: mut create_handle,
            ..
        } = setup_as(
            vec![],
            vec![job("pre-notify", "app-pre", running())],
            Leadership::fixed(role),
        );
        let err = tokio::time::timeout(Duration::from_secs(5), reconcile(&create_ctx, &key()))
            .await
            .expect("no call to wait for")
            .unwrap_err();
        assert!(matches!(err, Error::NotLeader), "{role:?}: {err}");
        for h in [&mut handle, &mut create_handle] {
            assert!(
                tokio::time::timeout(Duration::from_millis(100), h.next_request())
                    .await
                    .is_err(),
                "{role:?}: a request was made"
            );
        }
    }
}
