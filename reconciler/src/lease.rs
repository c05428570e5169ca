//! Leader election on a `coordination.k8s.io/v1` Lease, against the API server: the elector
//! task reads and writes the Lease, publishes the [`Leadership`] of this process, and releases
//! the Lease when asked to stop. The rules themselves are in [`election`].
//!
//! Why our own and not a crate (checked with `cargo info` and the crates' sources, 2026-12):
//! `kube-lease-manager` 0.13 is the only one on kube 5, but a leader whose renewal fails keeps
//! reporting itself leader until a later read succeeds (an API error leaves its state as it
//! was), followers take an expired lease over with a strategic-merge patch that carries no
//! resourceVersion, and expiry is read from the holder's `renewTime` against the local clock.
//! `kube-leader-election` 0.44 is on kube 4 (merge patches, no resourceVersion either),
//! `kube-coordinate` 2.0.0-rc.0 on kube 2, `kubert` 0.25 on kube 1. Here every write is a PUT
//! with the resourceVersion that was read (a concurrent writer gets 409 and loses), and a
//! leader stops acting at its renew deadline whether or not the API server answers.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::{Client, ResourceExt};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::election::{self, Decision, Observation, Timing};

/// Where the Lease lives and who this process is.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    /// Unique among the replicas (the pod name).
    pub identity: String,
    pub timing: Timing,
}

/// What this process knows of the election.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// No answer from the API server yet.
    Unknown,
    /// Another replica holds the lease.
    Following,
    /// This process holds the lease and may act until the instant given.
    Leading(Instant),
}

/// A read-only view of this process' role, cheap to clone; checked before every write.
#[derive(Clone, Debug)]
pub struct Leadership {
    rx: watch::Receiver<Role>,
    /// The sender of [`Leadership::always`], kept so that the channel stays open.
    _always: Option<std::sync::Arc<watch::Sender<Role>>>,
}

impl Leadership {
    /// A process that always leads (leader election off).
    pub fn always() -> Leadership {
        let far = Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600);
        Leadership::fixed(Role::Leading(far))
    }

    /// A role that never changes (tests, and [`Leadership::always`]).
    pub fn fixed(role: Role) -> Leadership {
        let (tx, rx) = watch::channel(role);
        Leadership {
            rx,
            _always: Some(std::sync::Arc::new(tx)),
        }
    }

    pub fn role(&self) -> Role {
        *self.rx.borrow()
    }

    /// Leading, and the renew deadline has not passed (the deadline is checked here, on the
    /// caller's clock, so a late wake-up of the elector cannot stretch a leadership).
    pub fn is_leading(&self) -> bool {
        matches!(self.role(), Role::Leading(until) if Instant::now() < until)
    }

    /// Wait for the elector's next report (it reports after every attempt).
    pub async fn changed(&mut self) {
        if self.rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Wait until this process leads.
    pub async fn acquired(&mut self) {
        while !self.is_leading() {
            if self.rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Wait until this process no longer leads: the elector says so, or the renew deadline
    /// passes without a renewal.
    pub async fn lost(&mut self) {
        loop {
            let Role::Leading(until) = *self.rx.borrow_and_update() else {
                return;
            };
            if Instant::now() >= until {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(until.into()) => {}
                changed = self.rx.changed() => if changed.is_err() { return },
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("leader election settings: {0}")]
    Timing(#[from] election::TimingError),
    #[error("the lease identity is empty")]
    NoIdentity,
}

/// The elector's state between attempts.
struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
    observed: Option<Observation>,
    /// The holder last followed (logged when it changes).
    followed: Option<String>,
    tx: watch::Sender<Role>,
}

/// The outcome of one attempt.
enum Attempt {
    Led {
        sent: Instant,
    },
    Followed {
        holder: String,
    },
    /// Another writer was faster (409): read again at the next attempt.
    Raced,
}

/// A running elector: its [`Leadership`] and the handle that stops it.
pub struct Election {
    pub leadership: Leadership,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Election {
    /// Start electing (needs a tokio runtime).
    pub fn start(client: Client, config: LeaseConfig) -> Result<Election, LeaseError> {
        config.timing.check()?;
        if config.identity.is_empty() {
            return Err(LeaseError::NoIdentity);
        }
        let (tx, rx) = watch::channel(Role::Unknown);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let elector = Elector {
            api: Api::namespaced(client, &config.namespace),
            config,
            observed: None,
            followed: None,
            tx,
        };
        Ok(Election {
            leadership: Leadership { rx, _always: None },
            stop: Some(stop_tx),
            task: tokio::spawn(elector.run(stop_rx)),
        })
    }

    /// Stop leading, release the lease if held (so a follower takes over at once), and stop.
    pub async fn release(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for Election {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Elector {
    async fn run(mut self, mut stop: tokio::sync::oneshot::Receiver<()>) {
        let retry = self.config.timing.retry_period;
        loop {
            let attempt = tokio::select! {
                a = self.attempt() => a,
                _ = &mut stop => break,
            };
            self.publish(attempt);
            tokio::select! {
                _ = tokio::time::sleep(retry) => {}
                _ = &mut stop => break,
            }
        }
        self.tx.send_replace(Role::Following);
        self.release().await;
    }

    fn publish(&mut self, attempt: Result<Attempt, kube::Error>) {
        let was = *self.tx.borrow();
        let next = match attempt {
            Ok(Attempt::Led { sent }) => {
                Role::Leading(election::leading_until(sent, &self.config.timing))
            }
            Ok(Attempt::Followed { holder }) => {
                if self.followed.as_ref() != Some(&holder) {
                    info!(lease = %self.config.name, leader = %holder, "following");
                    self.followed = Some(holder);
                }
                Role::Following
            }
            // Keep the current deadline: it runs out by itself if renewals keep failing.
            Ok(Attempt::Raced) => was,
            Err(e) => {
                warn!(lease = %self.config.name, error = %e, "leader election: lease not read or written");
                was
            }
        };
        let leading = |r: Role| matches!(r, Role::Leading(_));
        if leading(next) && !leading(was) {
            info!(lease = %self.config.name, identity = %self.config.identity, "became leader");
        } else if !leading(next) && leading(was) {
            info!(lease = %self.config.name, identity = %self.config.identity, "lost the lease");
        }
        self.tx.send_replace(next);
    }

    /// Read the lease, then acquire, renew or follow (client-go's `tryAcquireOrRenew`).
    async fn attempt(&mut self) -> Result<Attempt, kube::Error> {
        // Before the read: the earliest moment a follower could see our write.
        let sent = Instant::now();
        let Some(lease) = self.api.get_opt(&self.config.name).await? else {
            return self.create(sent).await;
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let obs = election::observe(self.observed.take(), spec, Instant::now());
        let decision = election::decide(
            &obs,
            &self.config.identity,
            &self.config.timing,
            Instant::now(),
            Timestamp::now(),
        );
        self.observed = Some(obs);
        let spec = match decision {
            Decision::Follow { holder } => return Ok(Attempt::Followed { holder }),
            Decision::Write(spec) => spec,
        };
        match self.write(&lease, spec).await? {
            true => Ok(Attempt::Led { sent }),
            false => Ok(Attempt::Raced),
        }
    }

    async fn create(&mut self, sent: Instant) -> Result<Attempt, kube::Error> {
        let spec = election::next_spec(
            &LeaseSpec::default(),
            &self.config.identity,
            &self.config.timing,
            Timestamp::now(),
        );
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.config.name.clone()),
                namespace: Some(self.config.namespace.clone()),
                ..Default::default()
            },
            spec: Some(spec.clone()),
        };
        match self.api.create(&post_params(), &lease).await {
            Ok(_) => {
                self.observed = Some(election::observe(None, spec, Instant::now()));
                Ok(Attempt::Led { sent })
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Raced),
            Err(e) => Err(e),
        }
    }

    /// PUT `spec` with the resourceVersion of `read`; `false` if another writer came first.
    async fn write(&mut self, read: &Lease, spec: LeaseSpec) -> Result<bool, kube::Error> {
        let mut lease = read.clone();
        lease.metadata.managed_fields = None;
        lease.spec = Some(spec.clone());
        match self
            .api
            .replace(&read.name_any(), &post_params(), &lease)
            .await
        {
            Ok(_) => {
                self.observed = Some(election::observe(None, spec, Instant::now()));
                Ok(true)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                debug!(lease = %self.config.name, "lease changed meanwhile");
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Give the lease up if we hold it (only the holder's resourceVersion can succeed).
    async fn release(&mut self) {
        let me = self.config.identity.clone();
        let lease = match self.api.get_opt(&self.config.name).await {
            Ok(Some(l)) => l,
            Ok(None) => return,
            Err(e) => {
                warn!(lease = %self.config.name, error = %e, "lease not released");
                return;
            }
        };
        let spec = lease.spec.clone().unwrap_or_default();
        if !election::is_holder(&spec, &me) {
            return;
        }
        match self
            .write(&lease, election::released_spec(&spec, Timestamp::now()))
            .await
        {
            Ok(true) => info!(lease = %self.config.name, identity = %me, "released the lease"),
            Ok(false) => debug!(lease = %self.config.name, "lease taken meanwhile"),
            Err(e) => warn!(lease = %self.config.name, error = %e, "lease not released"),
        }
    }
}

fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(crate::crd::FIELD_MANAGER.to_string()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leading_for(d: Duration) -> (watch::Sender<Role>, Leadership) {
        let (tx, rx) = watch::channel(Role::Leading(Instant::now() + d));
        (tx, Leadership { rx, _always: None })
    }

    #[tokio::test]
    async fn leadership_ends_at_its_deadline_without_news_from_the_elector() {
        let (_tx, mut l) = leading_for(Duration::from_millis(80));
        assert!(l.is_leading());
        let start = Instant::now();
        tokio::time::timeout(Duration::from_secs(5), l.lost())
            .await
            .expect("lost at the deadline");
        assert!(start.elapsed() >= Duration::from_millis(70));
        assert!(!l.is_leading());
    }

    #[tokio::test]
    async fn a_renewal_moves_the_deadline_and_following_ends_leadership_at_once() {
        let (tx, mut l) = leading_for(Duration::from_millis(60));
        tokio::time::sleep(Duration::from_millis(30)).await;
        tx.send_replace(Role::Leading(Instant::now() + Duration::from_secs(60)));
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(l.is_leading(), "renewed");
        let lost = tokio::spawn(async move {
            l.lost().await;
            l
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        tx.send_replace(Role::Following);
        let l = tokio::time::timeout(Duration::from_secs(5), lost)
            .await
            .expect("lost at once")
            .unwrap();
        assert!(!l.is_leading());
        assert_eq!(l.role(), Role::Following);
    }

    #[test]
    fn always_leads() {
        assert!(Leadership::always().is_leading());
    }
}
