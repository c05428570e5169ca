//! Benchmark (not a test): N app versions × 3 task Jobs on the testenv API server, with the
//! reconciler binary (bench profile = release) watching their namespace.
//!
//!   reconciler/benches/run-bench.sh           # starts testenv, runs this, stops testenv
//!
//! Reports the time from the last Job status change of an app version (the response to the
//! status write that finishes its last task) to the moment a watch on TaskRecords sees that
//! record Succeeded (p50, p90, p99, max), and the reconciler's peak resident memory (VmHWM).
//!
//! Settings (environment): KLT_BENCH_APPS (1000), KLT_BENCH_DRIVERS (app versions driven at
//! the same time, 16), KLT_BENCH_CONCURRENCY (reconciler workers, 4), KLT_BENCH_RECORDS
//! (1: records with spec are created up front as `klt-render --records` renders them; 0: the
//! reconciler creates them from Job labels).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use klt_reconciler::TaskState;
use klt_reconciler::crd::TaskRecord;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, CustomResourceExt, ResourceExt};
use serde_json::json;

const PHASES: [&str; 3] = ["app-pre", "workload-pre", "app-post"];

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn job_name(app: usize, i: usize) -> String {
    format!("{}-task-{app:04}", ["pre", "check", "post"][i])
}

fn record_name(app: usize) -> String {
    format!("app{app:04}-1.0.0")
}

fn job(app: usize, i: usize) -> Job {
    let mut labels = serde_json::Map::new();
    for (k, v) in [
        ("app.kubernetes.io/managed-by", "klt-render".to_string()),
        ("klt-render.dev/app", format!("app{app:04}")),
        ("klt-render.dev/app-version", "1.0.0".to_string()),
        ("klt-render.dev/record", record_name(app)),
        ("klt-render.dev/phase", PHASES[i].to_string()),
        ("klt-render.dev/task-definition", "notify".to_string()),
    ] {
        labels.insert(k.into(), json!(v));
    }
    if PHASES[i].starts_with("workload") {
        labels.insert("klt-render.dev/workload".into(), json!("api"));
    }
    // A Job of realistic size: the DATA/KEPTN_CONTEXT env and the runner's arguments.
    let context = json!({"appName": format!("app{app:04}"), "appVersion": "1.0.0",
                         "objectType": "App", "taskType": PHASES[i], "workloadName": "",
                         "workloadVersion": "", "metadata": {"commit": "0123456789abcdef"}});
    serde_json::from_value(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job_name(app, i), "labels": labels,
                     "annotations": {"argocd.argoproj.io/sync-wave": "-10"}},
        "spec": {
            "backoffLimit": 2,
            "activeDeadlineSeconds": 600,
            "ttlSecondsAfterFinished": 3600,
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/managed-by": "klt-render"}},
                "spec": {
                    "restartPolicy": "OnFailure",
                    "containers": [{
                        "name": "keptn-function-runner",
                        "image": "ghcr.io/keptn/deno-runtime:v3.0.1",
                        "env": [
                            {"name": "DATA", "value": "{\"channel\":\"#deployments\",\"url\":\"https://hooks.example.com/x\"}"},
                            {"name": "KEPTN_CONTEXT", "value": context.to_string()},
                            {"name": "SCRIPT", "value": "/var/data/function.ts"}
                        ],
                        "volumeMounts": [{"name": "function-mount", "mountPath": "/var/data", "readOnly": true}],
                        "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}}
                    }],
                    "volumes": [{"name": "function-mount", "configMap": {"name": "keptnfn-notify-abc123"}}]
                }
            }
        }
    }))
    .unwrap()
}

fn record(app: usize) -> TaskRecord {
    let tasks: Vec<_> = (0..3)
        .map(|i| {
            let mut t =
                json!({"job": job_name(app, i), "definition": "notify", "phase": PHASES[i]});
            if PHASES[i].starts_with("workload") {
                t["workload"] = json!("api");
            }
            t
        })
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "klt-render.dev/v1alpha1",
        "kind": "TaskRecord",
        "metadata": {"name": record_name(app)},
        "spec": {"app": format!("app{app:04}"), "appVersion": "1.0.0", "tasks": tasks}
    }))
    .unwrap()
}

fn status_running() -> serde_json::Value {
    json!({"status": {"startTime": "2026-01-01T10:00:00Z", "active": 1}})
}

fn status_succeeded() -> serde_json::Value {
    let t = "2026-01-01T10:00:07Z";
    json!({"status": {"startTime": "2026-01-01T10:00:00Z", "active": 0, "succeeded": 1,
        "completionTime": t, "conditions": [
            {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": t},
            {"type": "Complete", "status": "True", "lastTransitionTime": t}]}})
}

fn proc_status_kb(pid: u32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

async fn metrics_text(addr: SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return String::new();
    };
    let _ = s
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    String::from_utf8_lossy(&buf).to_string()
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this without it.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!(
            "records: a benchmark; run it with cargo bench (reconciler/benches/run-bench.sh)"
        );
        return Ok(());
    }
    let (Some(dir), Some(kubeconfig)) = (
        std::env::var_os("KUBE_TESTENV_DIR"),
        std::env::var_os("KUBECONFIG"),
    ) else {
        eprintln!("SKIP: the benchmark needs testenv (run reconciler/benches/run-bench.sh)");
        return Ok(());
    };
    if std::fs::canonicalize(std::path::Path::new(&dir).join("kubeconfig")).ok()
        != std::fs::canonicalize(&kubeconfig).ok()
    {
        eprintln!("SKIP: KUBECONFIG is not testenv's; not loading another cluster");
        return Ok(());
    }
    let apps = env_num("KLT_BENCH_APPS", 1000);
    let drivers = env_num("KLT_BENCH_DRIVERS", 16);
    let workers = env_num("KLT_BENCH_CONCURRENCY", 4);
    let with_records = env_num("KLT_BENCH_RECORDS", 1) == 1;
    let client = Client::try_default().await?;

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = TaskRecord::crd();
    crds.patch(
        &crd.name_any(),
        &PatchParams::apply("klt-bench").force(),
        &Patch::Apply(&crd),
    )
    .await?;
    await_condition(crds, &crd.name_any(), conditions::is_crd_established()).await?;
    let ns = format!(
        "bench-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs()
    );
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}}))?,
        )
        .await?;

    // The reconciler: the real binary, so that its memory is its own.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_klt-reconciler"))
        .args(["run", "--namespace", &ns, "--listen", &addr.to_string()])
        .arg("--concurrency")
        .arg(workers.to_string())
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id().unwrap();
    let peak_rss = Arc::new(Mutex::new(0u64));
    let sampler = tokio::spawn({
        let peak_rss = Arc::clone(&peak_rss);
        async move {
            loop {
                if let Some(kb) = proc_status_kb(pid, "VmRSS:") {
                    let mut p = peak_rss.lock().unwrap();
                    *p = (*p).max(kb);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    });
    let start_idle = Instant::now();
    while !metrics_text(addr).await.contains("# EOF") {
        anyhow::ensure!(
            start_idle.elapsed() < Duration::from_secs(60),
            "reconciler did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_rss = proc_status_kb(pid, "VmRSS:").unwrap_or(0);

    // Watch records: when each one is first seen Succeeded.
    let records: Api<TaskRecord> = Api::namespaced(client.clone(), &ns);
    let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let settled: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let watch = tokio::spawn({
        let records = records.clone();
        let seen = Arc::clone(&seen);
        let settled = Arc::clone(&settled);
        async move {
            let mut s = watcher(records, watcher::Config::default())
                .default_backoff()
                .applied_objects()
                .boxed();
            while let Ok(Some(r)) = s.try_next().await {
                let Some(st) = r.status.as_ref() else {
                    continue;
                };
                settled
                    .lock()
                    .unwrap()
                    .insert(r.name_any(), st.observed_jobs);
                let done = st.phase == TaskState::Succeeded
                    && st.tasks.len() == 3
                    && st.tasks.iter().all(|t| t.state == TaskState::Succeeded);
                if done {
                    seen.lock()
                        .unwrap()
                        .entry(r.name_any())
                        .or_insert_with(Instant::now);
                }
            }
        }
    });

    // Create records (as Argo CD would apply them) and Jobs.
    let t_create = Instant::now();
    if with_records {
        futures::stream::iter(0..apps)
            .map(|app| {
                let records = records.clone();
                async move { records.create(&PostParams::default(), &record(app)).await }
            })
            .buffer_unordered(drivers)
            .try_collect::<Vec<_>>()
            .await?;
    }
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
    futures::stream::iter((0..apps).flat_map(|a| (0..3).map(move |i| (a, i))))
        .map(|(app, i)| {
            let jobs = jobs.clone();
            async move { jobs.create(&PostParams::default(), &job(app, i)).await }
        })
        .buffer_unordered(drivers)
        .try_collect::<Vec<_>>()
        .await?;
    let created_in = t_create.elapsed();
    // Wait until every record lists its 3 Jobs.
    loop {
        let n = settled
            .lock()
            .unwrap()
            .values()
            .filter(|o| **o == 3)
            .count();
        if n == apps {
            break;
        }
        anyhow::ensure!(
            t_create.elapsed() < Duration::from_secs(900),
            "records did not settle: {n}/{apps}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let settled_in = t_create.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Drive every app version: each task runs, then succeeds; note the last change.
    let last_change: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let t_drive = Instant::now();
    futures::stream::iter(0..apps)
        .map(|app| {
            let jobs = jobs.clone();
            let last_change = Arc::clone(&last_change);
            async move {
                for i in 0..3 {
                    for status in [status_running(), status_succeeded()] {
                        jobs.patch_status(
                            &job_name(app, i),
                            &PatchParams::default(),
                            &Patch::Merge(&status),
                        )
                        .await?;
                    }
                }
                last_change
                    .lock()
                    .unwrap()
                    .insert(record_name(app), Instant::now());
                anyhow::Ok(())
            }
        })
        .buffer_unordered(drivers)
        .try_collect::<Vec<_>>()
        .await?;
    let driven_in = t_drive.elapsed();
    loop {
        let n = seen.lock().unwrap().len();
        if n == apps {
            break;
        }
        anyhow::ensure!(
            t_drive.elapsed() < Duration::from_secs(900),
            "records did not finish: {n}/{apps}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let finished_in = t_drive.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;

    let (mut lat, mut early) = (Vec::new(), 0);
    {
        let seen = seen.lock().unwrap();
        let last = last_change.lock().unwrap();
        for (name, t_last) in last.iter() {
            let t_seen = seen[name];
            match t_seen.checked_duration_since(*t_last) {
                Some(d) => lat.push(d.as_secs_f64() * 1000.0),
                None => {
                    // Seen before our own write's response arrived.
                    early += 1;
                    lat.push(0.0);
                }
            }
        }
    }
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let text = metrics_text(addr).await;
    let hwm = proc_status_kb(pid, "VmHWM:").unwrap_or(0);
    let peak = (*peak_rss.lock().unwrap()).max(hwm);
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
    sampler.abort();
    watch.abort();

    let report = json!({
        "apps": apps,
        "tasks_per_app": 3,
        "jobs": apps * 3,
        "records_precreated": with_records,
        "drivers": drivers,
        "reconciler_workers": workers,
        "create_s": created_in.as_secs_f64(),
        "initial_settle_s": settled_in.as_secs_f64(),
        "status_writes_by_driver": apps * 6,
        "drive_s": driven_in.as_secs_f64(),
        "all_records_succeeded_s": finished_in.as_secs_f64(),
        "latency_ms": {"p50": pct(&lat, 50.0), "p90": pct(&lat, 90.0), "p99": pct(&lat, 99.0),
                        "max": lat.last().copied().unwrap_or(f64::NAN), "seen_before_response": early},
        "reconciler": {
            "idle_rss_kib": idle_rss,
            "peak_rss_kib": peak,
            "reconciles": metric(&text, "klt_reconciler_reconciles_total"),
            "status_writes": metric(&text, "klt_reconciler_status_writes_total"),
            "events": metric(&text, "klt_reconciler_events_published_total"),
            "event_errors": metric(&text, "klt_reconciler_event_errors_total"),
            "records_created": metric(&text, "klt_reconciler_records_created_total"),
            "reconcile_seconds_sum": metric(&text, "klt_reconciler_reconcile_duration_seconds_sum"),
            "clean_exit": matches!(exit, Ok(Ok(s)) if s.success()),
        },
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    eprintln!(
        "klt-reconciler bench: {apps} app versions x 3 tasks: last Job status change -> record \
         updated p50 {:.0} ms, p99 {:.0} ms (max {:.0} ms); reconciler peak RSS {:.1} MiB \
         (idle {:.1} MiB)",
        pct(&lat, 50.0),
        pct(&lat, 99.0),
        lat.last().copied().unwrap_or(f64::NAN),
        peak as f64 / 1024.0,
        idle_rss as f64 / 1024.0
    );
    Ok(())
}
