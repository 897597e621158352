//! Leader election on a `coordination.k8s.io/v1` Lease. Every replica watches, renders
//! and serves CDS; only the holder of the Lease writes to the API.
//!
//! The semantics are client-go's (`tools/leaderelection`): another holder's lease is
//! judged expired from when *we* last saw its record change, on our own monotonic clock,
//! never by comparing its `renewTime` with our wall clock (clock skew, or a holder that
//! wrote a time in the future, would otherwise give two writers or none). A leader
//! that has not renewed for `renew_deadline` (shorter than the lease) stops writing, so
//! it is silent before anyone else may take over.
//!
//! Why not a crate: `kube-lease-manager` 0.13 needs kube 5 (we are on 4) and, like
//! `kubert`'s lease 0.25, judges expiry as `renewTime + duration` against the local wall
//! clock: exactly the skew problem above.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::time::Instant;

/// Default Lease name (upstream's lease id).
pub const LEASE_NAME: &str = "92062b70.l7mp.io";

/// Election timing; the defaults are client-go's and controller-runtime's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// How long a lease lasts after its holder's last renewal was observed.
    pub lease: Duration,
    /// A leader that could not renew for this long stops writing. Must be shorter than
    /// `lease`; the difference bounds a write in flight (see [`WRITE_TIMEOUT`]).
    pub renew_deadline: Duration,
    /// Time between attempts.
    pub retry: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry: Duration::from_secs(2),
        }
    }
}

/// Upper bound of one API write of the updater: shorter than `lease - renew_deadline`
/// of the default [`Timing`], so a write started just before a leader steps down ends
/// before another replica can take over.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(4);

/// Whether this replica may write, as published to the updater.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lead {
    /// No leader election: always write.
    Always,
    /// Holding the Lease; writing is allowed until this instant unless renewed.
    Until(Instant),
    /// Not the leader.
    No,
}

impl Lead {
    /// Whether a write may start at `now`.
    pub fn writes(self, now: Instant) -> bool {
        match self {
            Self::Always => true,
            Self::Until(t) => now < t,
            Self::No => false,
        }
    }
}

/// The fields of a Lease that, when they change, show its holder is alive.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Record {
    holder: String,
    renew: Option<String>,
    acquire: Option<String>,
    duration: i32,
    transitions: i32,
}

impl Record {
    fn of(spec: &LeaseSpec) -> Self {
        let t = |m: &Option<MicroTime>| m.as_ref().map(|m| m.0.to_string());
        Self {
            holder: spec.holder_identity.clone().unwrap_or_default(),
            renew: t(&spec.renew_time),
            acquire: t(&spec.acquire_time),
            duration: spec.lease_duration_seconds.unwrap_or(15),
            transitions: spec.lease_transitions.unwrap_or(0),
        }
    }
}

/// What to do with the Lease as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Someone else holds a live lease.
    Wait,
    /// Write ourselves as holder (renewal when `renew`), with this transition count.
    Take {
        /// We already hold it.
        renew: bool,
        /// `leaseTransitions` to write.
        transitions: i32,
    },
}

/// The lease state seen by one replica, on its own clock.
#[derive(Clone, Debug)]
pub struct Observer {
    identity: String,
    seen: Option<(Record, Instant)>,
}

impl Observer {
    /// An observer for the replica `identity`.
    pub fn new(identity: &str) -> Self {
        Self {
            identity: identity.into(),
            seen: None,
        }
    }

    /// Judges the Lease spec read at `now`: another holder's lease is live until its
    /// `leaseDurationSeconds` after we first saw its current record.
    pub fn decide(&mut self, spec: &LeaseSpec, now: Instant) -> Decision {
        let record = Record::of(spec);
        match &self.seen {
            Some((r, _)) if *r == record => {}
            _ => self.seen = Some((record.clone(), now)),
        }
        let observed = self.seen.as_ref().map_or(now, |(_, at)| *at);
        let mine = record.holder == self.identity;
        let lease = Duration::from_secs(u64::try_from(record.duration.max(0)).unwrap_or(0));
        if !mine && !record.holder.is_empty() && observed + lease > now {
            return Decision::Wait;
        }
        Decision::Take {
            renew: mine,
            transitions: record.transitions + i32::from(!mine),
        }
    }
}

/// One replica competing for the Lease.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: Timing,
    observer: Observer,
}

impl Elector {
    /// An elector for Lease `name` in `namespace`.
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        timing: Timing,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            identity: identity.into(),
            timing,
            observer: Observer::new(identity),
        }
    }

    fn spec(&self, wall: Timestamp, acquire: Option<MicroTime>, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(i32::try_from(self.timing.lease.as_secs()).unwrap_or(15)),
            acquire_time: Some(acquire.unwrap_or(MicroTime(wall))),
            renew_time: Some(MicroTime(wall)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// Acquires or renews the Lease; `wall` is written as `renewTime` (for humans and
    /// other tools: no replica of ours reads it), `now` is our clock for judging expiry.
    /// `Ok(true)` when we hold it afterwards; a lost race (409) is `Ok(false)`.
    pub async fn try_acquire_or_renew(
        &mut self,
        wall: Timestamp,
        now: Instant,
    ) -> Result<bool, kube::Error> {
        let current = match self.api.get(&self.name).await {
            Ok(l) => l,
            Err(kube::Error::Api(e)) if e.code == 404 => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(self.spec(wall, None, 0)),
                };
                return match self.api.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                    Err(e) => Err(e),
                };
            }
            Err(e) => return Err(e),
        };
        let spec = current.spec.clone().unwrap_or_default();
        let Decision::Take { renew, transitions } = self.observer.decide(&spec, now) else {
            return Ok(false);
        };
        let acquire = if renew {
            spec.acquire_time.clone()
        } else {
            None
        };
        let mut next = current;
        next.spec = Some(self.spec(wall, acquire, transitions));
        // The resourceVersion from the read makes this a compare-and-swap.
        match self
            .api
            .replace(&self.name, &PostParams::default(), &next)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Tries every `retry`; publishes [`Lead::Until`] `renew_deadline` after the start of
    /// the last successful attempt, and [`Lead::No`] when the Lease is someone else's.
    /// A failed or hung attempt (bounded by `renew_deadline`) leaves the deadline as it
    /// was, so a leader that cannot reach the API stops writing on its own.
    pub fn spawn(mut self, tx: watch::Sender<Lead>) {
        tokio::spawn(async move {
            loop {
                let start = Instant::now();
                let attempt = tokio::time::timeout(
                    self.timing.renew_deadline,
                    self.try_acquire_or_renew(Timestamp::now(), start),
                )
                .await;
                let before = *tx.borrow();
                let lead = match attempt {
                    Ok(Ok(true)) => Lead::Until(start + self.timing.renew_deadline),
                    Ok(Ok(false)) => Lead::No,
                    Ok(Err(e)) => {
                        tracing::warn!(target: "operator", error = %e, "lease renewal failed");
                        before
                    }
                    Err(_) => {
                        tracing::warn!(target: "operator", "lease renewal timed out");
                        before
                    }
                };
                let was = before.writes(start);
                let is = lead.writes(Instant::now());
                if was != is {
                    tracing::info!(target: "operator", leader = is, identity = %self.identity, "leadership changed");
                }
                let _ = tx.send(lead);
                tokio::time::sleep(self.timing.retry).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: &str, renew: Timestamp) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(renew)),
            lease_transitions: Some(3),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn expiry_is_judged_from_our_observation_not_the_holders_clock() {
        let t0 = Instant::now();
        let s = |secs: i64| Duration::from_secs(u64::try_from(secs).unwrap_or(0));
        // A holder whose clock runs an hour ahead: its renewTime is in our future,
        // yet once it stops renewing it is taken over 15 s after we saw it last change.
        let ahead = Timestamp::now() + k8s_openapi::jiff::SignedDuration::from_hours(1);
        let mut o = Observer::new("me");
        assert_eq!(o.decide(&spec("other", ahead), t0), Decision::Wait);
        assert_eq!(o.decide(&spec("other", ahead), t0 + s(14)), Decision::Wait);
        assert_eq!(
            o.decide(&spec("other", ahead), t0 + s(16)),
            Decision::Take {
                renew: false,
                transitions: 4
            }
        );
        // A holder whose clock runs an hour behind but keeps renewing is never taken over.
        let mut o = Observer::new("me");
        let behind = Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_hours(1);
        for i in 0..20 {
            let renewed = behind + k8s_openapi::jiff::SignedDuration::from_secs(2 * i);
            assert_eq!(
                o.decide(&spec("other", renewed), t0 + s(2 * i)),
                Decision::Wait,
                "at {i}"
            );
        }
        // Our own lease is renewed; an empty holder is free.
        assert_eq!(
            o.decide(&spec("me", behind), t0),
            Decision::Take {
                renew: true,
                transitions: 3
            }
        );
        assert!(matches!(
            Observer::new("me").decide(&spec("", behind), t0),
            Decision::Take { renew: false, .. }
        ));
    }

    #[test]
    fn a_leader_stops_writing_at_its_deadline() {
        let t0 = Instant::now();
        let t = Timing::default();
        assert!(t.renew_deadline + WRITE_TIMEOUT < t.lease);
        let l = Lead::Until(t0 + t.renew_deadline);
        assert!(l.writes(t0 + Duration::from_secs(9)));
        assert!(!l.writes(t0 + t.renew_deadline));
        assert!(Lead::Always.writes(t0));
        assert!(!Lead::No.writes(t0));
    }
}
