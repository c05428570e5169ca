//! One replica among several: it reconciles only while it holds the Lease. On losing the
//! Lease it stops at once (nothing more is written, queued events are dropped) and follows
//! again; on shutdown it finishes the reconciles in progress, then releases the Lease so that
//! a follower takes over without waiting for it to expire.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use kube::Client;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::controller::{self, Config, Shared, Stop};
use crate::lease::{Election, Leadership, LeaseConfig, LeaseError, Role};

#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error(transparent)]
    Lease(#[from] LeaseError),
    #[error(transparent)]
    Reconciler(#[from] controller::Error),
}

/// Follow until this replica leads; `/readyz` says ready while a follower sees the leader.
async fn follow(leadership: &mut Leadership, shared: &Shared) {
    loop {
        let role = leadership.role();
        shared
            .standby
            .store(role == Role::Following, Ordering::SeqCst);
        if leadership.is_leading() {
            shared.standby.store(false, Ordering::SeqCst);
            return;
        }
        leadership.changed().await;
    }
}

/// Run as one of several replicas until `shutdown` completes.
pub async fn run_elected(
    client: Client,
    config: Config,
    lease: LeaseConfig,
    shared: Arc<Shared>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ReplicaError> {
    let election = Election::start(client.clone(), lease)?;
    let (shut_tx, shut) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = shut_tx.send(true);
    });
    let result = terms(client, config, &election, &shared, shut).await;
    shared.standby.store(false, Ordering::SeqCst);
    shared.metrics.leader.set(0);
    election.release().await;
    result
}

/// Leadership terms, one after another, until shutdown.
async fn terms(
    client: Client,
    config: Config,
    election: &Election,
    shared: &Arc<Shared>,
    mut shut: watch::Receiver<bool>,
) -> Result<(), ReplicaError> {
    let mut leadership = election.leadership.clone();
    loop {
        shared.metrics.leader.set(0);
        tokio::select! {
            _ = follow(&mut leadership, shared) => {}
            _ = shut.wait_for(|s| *s) => return Ok(()),
        }
        shared.metrics.leader.set(1);
        shared.metrics.leader_terms.inc();
        let stop = {
            let mut lost = leadership.clone();
            let mut shut = shut.clone();
            async move {
                tokio::select! {
                    _ = lost.lost() => Stop::Abort,
                    _ = shut.wait_for(|s| *s) => Stop::Drain,
                }
            }
        };
        let term = controller::run(
            client.clone(),
            config.clone(),
            Arc::clone(shared),
            leadership.clone(),
            stop,
        );
        term.await?;
        if *shut.borrow() {
            return Ok(());
        }
        warn!("lost the lease: stopped reconciling, following again");
    }
}

/// Run without leader election (one replica), until `shutdown` completes.
pub async fn run_single(
    client: Client,
    config: Config,
    shared: Arc<Shared>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ReplicaError> {
    info!("leader election off: this process reconciles alone");
    shared.metrics.leader.set(1);
    let stop = async move {
        shutdown.await;
        Stop::Drain
    };
    controller::run(client, config, shared, Leadership::always(), stop).await?;
    Ok(())
}
