//! `klt-reconciler`: run the reconciler (default), or print the TaskRecord CRD (`crd`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand};
use klt_reconciler::election::Timing;
use klt_reconciler::{Config, LeaseConfig, Shared, crd, http};
use tokio::sync::watch;
use tracing::{error, info};

#[derive(Parser)]
#[command(
    name = "klt-reconciler",
    version,
    about = "Keeps a TaskRecord per app version with the state of the task Jobs klt-render rendered",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the reconciler (the default).
    Run(RunArgs),
    /// Print the TaskRecord CustomResourceDefinition as YAML.
    Crd,
}

#[derive(Args, Clone)]
struct RunArgs {
    /// Watch one namespace only (default: all namespaces).
    #[arg(long, env = "KLT_RECONCILER_NAMESPACE")]
    namespace: Option<String>,
    /// Address of the /metrics, /healthz and /readyz server.
    #[arg(long, env = "KLT_RECONCILER_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Records reconciled in parallel.
    #[arg(long, env = "KLT_RECONCILER_CONCURRENCY", default_value_t = 4)]
    concurrency: usize,
    /// Seconds to finish the reconciles in progress after SIGTERM before exiting anyway.
    #[arg(long, env = "KLT_RECONCILER_SHUTDOWN_TIMEOUT", default_value_t = 20)]
    shutdown_timeout: u64,
    #[command(flatten)]
    election: ElectionArgs,
}

#[derive(Args, Clone)]
#[command(next_help_heading = "Leader election (several replicas, one reconciles)")]
struct ElectionArgs {
    /// Reconcile only while holding a coordination.k8s.io Lease (`false`: one replica only).
    #[arg(long, env = "KLT_RECONCILER_LEADER_ELECTION", default_value_t = true, action = ArgAction::Set)]
    leader_election: bool,
    /// Name of the Lease.
    #[arg(
        long,
        env = "KLT_RECONCILER_LEASE_NAME",
        default_value = "klt-reconciler"
    )]
    lease_name: String,
    /// Namespace of the Lease (default: the pod's namespace, or the kubeconfig's).
    #[arg(long, env = "KLT_RECONCILER_LEASE_NAMESPACE")]
    lease_namespace: Option<String>,
    /// Identity in the Lease, unique per replica (default: $POD_NAME, else host name and pid).
    #[arg(long, env = "KLT_RECONCILER_LEASE_IDENTITY")]
    lease_identity: Option<String>,
    /// Seconds followers wait after the leader's last renewal before taking over (whole).
    #[arg(long, env = "KLT_RECONCILER_LEASE_DURATION", default_value_t = 15)]
    lease_duration: u32,
    /// Seconds a leader keeps acting without a successful renewal (< lease duration).
    #[arg(
        long,
        env = "KLT_RECONCILER_LEASE_RENEW_DEADLINE",
        default_value_t = 10.0
    )]
    lease_renew_deadline: f64,
    /// Seconds between two attempts to acquire or renew the Lease (< renew deadline).
    #[arg(long, env = "KLT_RECONCILER_LEASE_RETRY_PERIOD", default_value_t = 2.0)]
    lease_retry_period: f64,
}

fn seconds(name: &str, v: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(v).map_err(|_| anyhow::anyhow!("--{name}: not a duration: {v}"))
}

/// The replica's identity: unique per pod, stable for the pod's life.
fn identity(explicit: Option<String>) -> String {
    let from_env = |k: &str| std::env::var(k).ok().filter(|s| !s.is_empty());
    explicit
        .filter(|s| !s.is_empty())
        .or_else(|| from_env("POD_NAME"))
        .unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "klt-reconciler".into());
            format!("{host}-{}", std::process::id())
        })
}

impl ElectionArgs {
    fn timing(&self) -> anyhow::Result<Timing> {
        let timing = Timing {
            lease_duration: Duration::from_secs(self.lease_duration.into()),
            renew_deadline: seconds("lease-renew-deadline", self.lease_renew_deadline)?,
            retry_period: seconds("lease-retry-period", self.lease_retry_period)?,
        };
        timing.check()?;
        Ok(timing)
    }

    fn lease(&self, timing: Timing, client: &kube::Client) -> LeaseConfig {
        LeaseConfig {
            name: self.lease_name.clone(),
            namespace: self
                .lease_namespace
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| client.default_namespace().to_string()),
            identity: identity(self.lease_identity.clone()),
            timing,
        }
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,kube=warn,hyper=warn,tower=warn"));
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .init();
}

/// Completes on SIGTERM or SIGINT; a second signal exits at once.
async fn signal_stop(tx: watch::Sender<bool>, timeout: Duration) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => info!(signal = "SIGTERM", "stopping"),
        _ = int.recv() => info!(signal = "SIGINT", "stopping"),
    }
    let _ = tx.send(true);
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
        _ = tokio::time::sleep(timeout) => error!(timeout_s = timeout.as_secs(), "shutdown took too long"),
    }
    std::process::exit(1);
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    // Settings are checked before anything connects or listens.
    let timing = args.election.timing()?;
    let client = kube::Client::try_default().await?;
    let lease = match args.election.leader_election {
        true => Some(args.election.lease(timing, &client)),
        false => None,
    };
    let shared = Arc::new(Shared::default());
    let listener = http::bind(args.listen).await?;
    info!(listen = %args.listen, "serving /metrics, /healthz, /readyz");
    let (tx, rx) = watch::channel(false);
    tokio::spawn(signal_stop(tx, Duration::from_secs(args.shutdown_timeout)));
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let server = tokio::spawn(http::serve(
        listener,
        Arc::clone(&shared),
        stopped(rx.clone()),
    ));
    let config = Config {
        namespace: args.namespace,
        concurrency: args.concurrency,
        instance: Some(
            lease
                .as_ref()
                .map(|l| l.identity.clone())
                .unwrap_or_else(|| identity(None)),
        ),
        ..Config::default()
    };
    match lease {
        Some(lease) => {
            info!(lease = %lease.name, namespace = %lease.namespace, identity = %lease.identity, "leader election on");
            klt_reconciler::run_elected(client, config, lease, shared, stopped(rx)).await?
        }
        None => klt_reconciler::run_single(client, config, shared, stopped(rx)).await?,
    }
    server.await??;
    Ok(())
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Crd) => {
            print!("{}", crd::crd_yaml());
            return std::process::ExitCode::SUCCESS;
        }
        Some(Command::Run(args)) => args,
        None => cli.run,
    };
    init_logging();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            error!(error = format!("{e:#}"), "klt-reconciler failed");
            std::process::ExitCode::FAILURE
        }
    }
}
