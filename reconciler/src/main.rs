//! `klt-reconciler`: run the reconciler (default), or print the TaskRecord CRD (`crd`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use klt_reconciler::{Config, Shared, crd, http};
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
    let client = kube::Client::try_default().await?;
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
        instance: std::env::var("POD_NAME").ok().filter(|s| !s.is_empty()),
        ..Config::default()
    };
    klt_reconciler::run(client, config, shared, stopped(rx)).await?;
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
