//! Leader election on a `coordination.k8s.io/v1` Lease. Every replica watches, renders
//! and serves CDS; only the holder of the Lease writes to the API.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::sync::watch;

/// Default Lease name (upstream's lease id).
pub const LEASE_NAME: &str = "92062b70.l7mp.io";

/// One replica's view of the Lease.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
}

impl Elector {
    /// An elector for Lease `name` in `namespace`, holding it for `duration` per renewal.
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        duration: Duration,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            identity: identity.into(),
            duration,
        }
    }

    fn spec(&self, now: Timestamp, acquire: Option<MicroTime>, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(i32::try_from(self.duration.as_secs()).unwrap_or(15)),
            acquire_time: Some(acquire.unwrap_or(MicroTime(now))),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// Acquires or renews the Lease at `now`; `Ok(true)` when we hold it afterwards.
    /// Conflicts (another replica won the race) are `Ok(false)`.
    pub async fn try_acquire_or_renew(&self, now: Timestamp) -> Result<bool, kube::Error> {
        let current = match self.api.get(&self.name).await {
            Ok(l) => l,
            Err(kube::Error::Api(e)) if e.code == 404 => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(self.spec(now, None, 0)),
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
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let mine = holder == self.identity;
        let duration = SignedDuration::from_secs(spec.lease_duration_seconds.unwrap_or(15).into());
        let expired = spec
            .renew_time
            .as_ref()
            .is_none_or(|r| r.0 + duration < now);
        if !mine && !holder.is_empty() && !expired {
            return Ok(false);
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!mine);
        let acquire = if mine {
            spec.acquire_time.clone()
        } else {
            None
        };
        let mut next = current;
        next.spec = Some(self.spec(now, acquire, transitions));
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

    /// Renews every `duration / 5` and publishes leadership; leadership is dropped when
    /// the Lease is lost or cannot be renewed within its duration.
    pub fn spawn(self, tx: watch::Sender<bool>) {
        tokio::spawn(async move {
            let period = self.duration / 5;
            let mut last_ok = tokio::time::Instant::now();
            loop {
                let held = match self.try_acquire_or_renew(Timestamp::now()).await {
                    Ok(h) => {
                        last_ok = tokio::time::Instant::now();
                        h
                    }
                    Err(e) => {
                        tracing::warn!(target: "operator", error = %e, "lease renewal failed");
                        *tx.borrow() && last_ok.elapsed() < self.duration
                    }
                };
                if held != *tx.borrow() {
                    tracing::info!(target: "operator", leader = held, identity = %self.identity, "leadership changed");
                }
                let _ = tx.send(held);
                tokio::time::sleep(period).await;
            }
        });
    }
}
