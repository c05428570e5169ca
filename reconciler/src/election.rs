//! The leader-election rules, pure: from the Lease as last read and the moment this process
//! saw it change, decide whether to wait or to write (acquire or renew), what to write, and
//! until when a leader may act.
//!
//! The protocol is client-go's `tools/leaderelection` (what kube-controller-manager and
//! kube-scheduler use), for the reasons given in the `lease` module:
//! - a follower measures a lease's expiry on its own monotonic clock, from the moment it
//!   *observed* the record change, never from the holder's `renewTime` (no clock-skew
//!   assumption between nodes);
//! - a leader counts itself leader only until `renew_deadline` after it sent its last
//!   successful write; `renew_deadline < lease_duration`, so it has stopped acting before any
//!   follower may take the lease over (the difference is the margin for writes in flight).

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::LeaseSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;

/// The three durations of the protocol (client-go's defaults: 15 s, 10 s, 2 s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// How long followers wait after the last change they saw before taking the lease over.
    pub lease_duration: Duration,
    /// How long a leader acts after its last successful renewal (then it steps down).
    pub renew_deadline: Duration,
    /// Pause between two attempts to acquire or renew.
    pub retry_period: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TimingError {
    #[error("the lease duration must be a whole number of seconds, at least 1 (got {0:?})")]
    LeaseDuration(Duration),
    #[error(
        "the renew deadline ({renew:?}) must be shorter than the lease duration ({lease:?}): \
         otherwise a leader could still act after another replica took over"
    )]
    RenewDeadline { renew: Duration, lease: Duration },
    #[error(
        "the retry period ({retry:?}) must be positive and shorter than the renew deadline \
         ({renew:?}): otherwise a leader has no second try to renew"
    )]
    RetryPeriod { retry: Duration, renew: Duration },
}

impl Timing {
    /// The rules client-go enforces, so that two leaders cannot act at once.
    pub fn check(&self) -> Result<(), TimingError> {
        let lease = self.lease_duration;
        if lease.subsec_nanos() != 0 || lease.as_secs() == 0 || lease.as_secs() > i32::MAX as u64 {
            return Err(TimingError::LeaseDuration(lease));
        }
        if self.renew_deadline >= lease {
            return Err(TimingError::RenewDeadline {
                renew: self.renew_deadline,
                lease,
            });
        }
        if self.retry_period.is_zero() || self.retry_period >= self.renew_deadline {
            return Err(TimingError::RetryPeriod {
                retry: self.retry_period,
                renew: self.renew_deadline,
            });
        }
        Ok(())
    }

    fn lease_seconds(&self) -> i32 {
        self.lease_duration.as_secs() as i32
    }
}

/// The Lease as this process last read it, and when it last saw the record change.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    pub spec: LeaseSpec,
    pub at: Instant,
}

/// Record a read: the observation time moves only when the record changed (a holder that
/// stopped renewing leaves it unchanged, and so ages).
pub fn observe(prev: Option<Observation>, spec: LeaseSpec, now: Instant) -> Observation {
    match prev {
        Some(p) if p.spec == spec => p,
        _ => Observation { spec, at: now },
    }
}

/// What to do after a read.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Another identity holds a lease that has not expired: follow it.
    Follow { holder: String },
    /// Write this spec (with the resourceVersion read, so a concurrent writer fails).
    Write(LeaseSpec),
}

fn holder(spec: &LeaseSpec) -> &str {
    spec.holder_identity.as_deref().unwrap_or("")
}

/// Is the observed lease held by someone else and still valid at `now`?
fn held_by_other(obs: &Observation, me: &str, timing: &Timing, now: Instant) -> bool {
    let h = holder(&obs.spec);
    if h.is_empty() || h == me {
        return false;
    }
    let secs = obs
        .spec
        .lease_duration_seconds
        .filter(|s| *s > 0)
        .unwrap_or(timing.lease_seconds());
    now < obs.at + Duration::from_secs(secs as u64)
}

/// Acquire, renew or follow.
pub fn decide(
    obs: &Observation,
    me: &str,
    timing: &Timing,
    now: Instant,
    wall: Timestamp,
) -> Decision {
    if held_by_other(obs, me, timing, now) {
        return Decision::Follow {
            holder: holder(&obs.spec).to_string(),
        };
    }
    Decision::Write(next_spec(&obs.spec, me, timing, wall))
}

/// The spec that makes `me` the holder: a renewal keeps the acquire time and the transition
/// count, a takeover sets both anew.
pub fn next_spec(old: &LeaseSpec, me: &str, timing: &Timing, wall: Timestamp) -> LeaseSpec {
    let now = Some(MicroTime(wall));
    let renewal = holder(old) == me;
    LeaseSpec {
        holder_identity: Some(me.to_string()),
        lease_duration_seconds: Some(timing.lease_seconds()),
        renew_time: now.clone(),
        acquire_time: if renewal {
            old.acquire_time.clone()
        } else {
            now
        },
        lease_transitions: Some(if renewal {
            old.lease_transitions.unwrap_or(0)
        } else {
            old.lease_transitions.map_or(0, |t| t + 1)
        }),
        ..old.clone()
    }
}

/// The spec of a released lease: no holder, so a follower takes it at its next attempt
/// instead of waiting for it to expire.
pub fn released_spec(old: &LeaseSpec, wall: Timestamp) -> LeaseSpec {
    LeaseSpec {
        holder_identity: None,
        lease_duration_seconds: Some(1),
        renew_time: Some(MicroTime(wall)),
        acquire_time: Some(MicroTime(wall)),
        ..old.clone()
    }
}

/// Until when a leader may act after a successful write it began sending at `sent`.
pub fn leading_until(sent: Instant, timing: &Timing) -> Instant {
    sent + timing.renew_deadline
}

/// Whether `me` holds the lease as read.
pub fn is_holder(spec: &LeaseSpec, me: &str) -> bool {
    holder(spec) == me
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing() -> Timing {
        Timing {
            lease_duration: Duration::from_secs(6),
            renew_deadline: Duration::from_secs(4),
            retry_period: Duration::from_millis(500),
        }
    }

    fn held(by: &str) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(by.into()),
            lease_duration_seconds: Some(6),
            renew_time: Some(MicroTime(Timestamp::from_second(1_000).unwrap())),
            acquire_time: Some(MicroTime(Timestamp::from_second(900).unwrap())),
            lease_transitions: Some(3),
            ..Default::default()
        }
    }

    const WALL: i64 = 2_000;

    fn wall() -> Timestamp {
        Timestamp::from_second(WALL).unwrap()
    }

    #[test]
    fn a_valid_lease_of_another_is_followed_until_it_ages_past_its_duration() {
        let t0 = Instant::now();
        let obs = observe(None, held("a"), t0);
        let at = |secs: f64| t0 + Duration::from_secs_f64(secs);
        assert_eq!(
            decide(&obs, "b", &timing(), at(5.9), wall()),
            Decision::Follow { holder: "a".into() }
        );
        // Expired on b's clock: take over (a new acquire time, one more transition).
        let Decision::Write(spec) = decide(&obs, "b", &timing(), at(6.0), wall()) else {
            panic!("expected a takeover");
        };
        assert_eq!(spec.holder_identity.as_deref(), Some("b"));
        assert_eq!(spec.lease_transitions, Some(4));
        assert_eq!(spec.acquire_time, Some(MicroTime(wall())));
        assert_eq!(spec.renew_time, Some(MicroTime(wall())));
    }

    #[test]
    fn the_expiry_counts_from_the_last_change_seen_not_from_the_renew_time() {
        let t0 = Instant::now();
        let first = observe(None, held("a"), t0);
        // Same record read again later: its age keeps running from t0.
        let again = observe(Some(first.clone()), held("a"), t0 + Duration::from_secs(5));
        assert_eq!(again.at, t0);
        // A renewal (new renewTime) resets it, whatever the holder's clock says.
        let mut renewed = held("a");
        renewed.renew_time = Some(MicroTime(Timestamp::from_second(1).unwrap()));
        let later = t0 + Duration::from_secs(5);
        let obs = observe(Some(again), renewed, later);
        assert_eq!(obs.at, later);
        assert!(matches!(
            decide(&obs, "b", &timing(), later + Duration::from_secs(5), wall()),
            Decision::Follow { .. }
        ));
    }

    #[test]
    fn the_holder_renews_keeping_acquire_time_and_transitions() {
        let obs = observe(None, held("a"), Instant::now());
        let Decision::Write(spec) = decide(&obs, "a", &timing(), Instant::now(), wall()) else {
            panic!("the holder renews");
        };
        assert_eq!(spec.acquire_time, held("a").acquire_time);
        assert_eq!(spec.lease_transitions, Some(3));
        assert_eq!(spec.renew_time, Some(MicroTime(wall())));
        assert_eq!(spec.lease_duration_seconds, Some(6));
    }

    #[test]
    fn a_released_or_new_lease_is_taken_at_once() {
        let now = Instant::now();
        let released = released_spec(&held("a"), wall());
        assert_eq!(released.holder_identity, None);
        assert_eq!(released.lease_transitions, Some(3));
        let obs = observe(None, released, now);
        let Decision::Write(spec) = decide(&obs, "b", &timing(), now, wall()) else {
            panic!("a released lease is free");
        };
        assert_eq!(spec.holder_identity.as_deref(), Some("b"));
        assert_eq!(spec.lease_transitions, Some(4));
        let fresh = observe(None, LeaseSpec::default(), now);
        let Decision::Write(spec) = decide(&fresh, "b", &timing(), now, wall()) else {
            panic!("an empty lease is free");
        };
        assert_eq!(spec.lease_transitions, Some(0));
    }

    #[test]
    fn a_leader_stops_before_a_follower_may_take_over() {
        let t = timing();
        let sent = Instant::now();
        // The follower saw the renewal no earlier than it was sent.
        let takeover = sent + t.lease_duration;
        assert!(leading_until(sent, &t) < takeover);
        assert_eq!(takeover - leading_until(sent, &t), Duration::from_secs(2));
    }

    #[test]
    fn timing_rules() {
        assert_eq!(Timing::default().check(), Ok(()));
        let mut t = timing();
        t.lease_duration = Duration::from_millis(1500);
        assert!(matches!(t.check(), Err(TimingError::LeaseDuration(_))));
        let mut t = timing();
        t.renew_deadline = t.lease_duration;
        assert!(matches!(t.check(), Err(TimingError::RenewDeadline { .. })));
        let mut t = timing();
        t.retry_period = t.renew_deadline;
        assert!(matches!(t.check(), Err(TimingError::RetryPeriod { .. })));
        t.retry_period = Duration::ZERO;
        assert!(matches!(t.check(), Err(TimingError::RetryPeriod { .. })));
    }
}
