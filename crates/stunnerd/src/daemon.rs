//! The running dataplane: the applied config and its listeners. A new config is applied
//! by diff (`stunner_config::diff`): only listeners whose port or protocol changed are
//! restarted; everything else reaches the workers in place. A config that cannot be
//! applied is rejected whole and the running one stays.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use stunner_config::{Change, ClusterType, StunnerConfig, diff};

use crate::Error;
use crate::listener::{CoreInputs, Listener, Resolved, Step, Update};
use crate::relays::Reservations;

/// What `/status` shows of one listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerStats {
    /// The listener.
    pub name: String,
    /// Its worker threads.
    pub workers: usize,
    /// Traffic on its sockets.
    pub traffic: crate::metrics::Traffic,
    /// Its live allocations.
    pub allocations: usize,
    /// Its TCP relays (TCP and TLS listeners only).
    pub tcp_relay: Option<crate::metrics::TcpRelayCounters>,
}

/// The STRICT_DNS names of `c`, sorted.
fn dns_names(c: &StunnerConfig) -> Vec<String> {
    let mut names: Vec<String> = c
        .clusters
        .iter()
        .filter(|c| c.cluster_type == ClusterType::StrictDns)
        .flat_map(|c| c.endpoints.iter().cloned())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The dataplane.
pub struct Daemon {
    config: Option<StunnerConfig>,
    listeners: BTreeMap<String, Listener>,
    udp_threads: usize,
    draining: bool,
    reservations: Arc<Reservations>,
    faults: BTreeMap<String, Step>,
    /// The last addresses of each STRICT_DNS name in use (the control plane's lookups),
    /// given to every new core config.
    resolved: Resolved,
    /// The pod's addresses, for relays of the other family (RFC 8656 §7.2).
    pod_addresses: Vec<IpAddr>,
}

impl Daemon {
    /// A daemon with no config; `udp_threads` sockets per TURN-UDP listener (0: one
    /// socket without `SO_REUSEPORT`).
    pub fn new(udp_threads: usize) -> Self {
        Self {
            config: None,
            listeners: BTreeMap::new(),
            udp_threads,
            draining: false,
            reservations: Arc::default(),
            faults: BTreeMap::new(),
            resolved: Resolved::new(),
            pod_addresses: Vec::new(),
        }
    }

    /// Gives relays of the family other than a listener address's: the first of the
    /// pod's `addresses` of that family is advertised for them (REQUESTED- and
    /// ADDITIONAL-ADDRESS-FAMILY, RFC 8656 §7.2). Without one such requests get 440.
    #[must_use]
    pub fn with_pod_addresses(mut self, addresses: Vec<IpAddr>) -> Self {
        self.pod_addresses = addresses;
        self
    }

    /// The applied config.
    pub fn config(&self) -> Option<&StunnerConfig> {
        self.config.as_ref()
    }

    /// Applies a validated config, all or nothing: first everything that can fail is
    /// built with no effect on what runs (core configs, TLS/DTLS contexts, sockets,
    /// gated worker threads); then steps that cannot fail commit it. On error the
    /// running config stays whole and the error names what failed.
    pub fn apply(&mut self, new: StunnerConfig) -> Result<(), Error> {
        let empty = StunnerConfig::default();
        let old = self.config.as_ref().unwrap_or(&empty);
        let d = diff(old, &new);
        if self.config.is_some() && d.is_empty() {
            return Ok(());
        }
        let going = |name: &str| {
            d.listeners
                .iter()
                .any(|c| c.name == name && matches!(c.change, Change::Removed | Change::Restart))
        };
        let inputs = CoreInputs {
            resolved: &self.resolved,
            pod_addresses: &self.pod_addresses,
        };
        // Plan. Dropping a half-built plan closes the gates of its threads and the
        // sockets it bound.
        let mut started: Vec<Listener> = Vec::new();
        let mut updates: Vec<(String, Update)> = Vec::new();
        for lc in &new.listeners {
            let change = d
                .listeners
                .iter()
                .find(|c| c.name == lc.name)
                .map(|c| c.change);
            let fresh =
                self.config.is_none() || matches!(change, Some(Change::Added | Change::Restart));
            let failed = |e: Error| Error::Listener {
                name: lc.name.clone(),
                source: Box::new(e),
            };
            match self.listeners.get(&lc.name) {
                Some(l) if !fresh => updates.push((
                    lc.name.clone(),
                    l.plan_update(&new, lc, inputs).map_err(failed)?,
                )),
                _ => {
                    // A listener going away on this port and socket type hands its
                    // sockets over (a restart on its own port, a rename).
                    let inherited = self
                        .listeners
                        .values()
                        .filter(|l| going(&l.config.name))
                        .find_map(|l| l.sockets_for(lc));
                    let fault = self.faults.remove(&lc.name);
                    let l = Listener::prepare(
                        &new,
                        lc,
                        self.udp_threads,
                        &self.reservations,
                        inherited,
                        fault,
                        inputs,
                    )
                    .map_err(failed)?;
                    started.push(l);
                }
            }
        }
        // Commit: stop what goes (its sockets live on in its successors), start what
        // comes, update what stays.
        let names: Vec<String> = self
            .listeners
            .keys()
            .filter(|n| going(n))
            .cloned()
            .collect();
        for n in names {
            if let Some(mut l) = self.listeners.remove(&n) {
                l.stop();
            }
        }
        for mut l in started {
            l.start();
            if self.draining {
                l.drain();
            }
            self.listeners.insert(l.config.name.clone(), l);
        }
        for (name, u) in updates {
            if let Some(l) = self.listeners.get_mut(&name) {
                l.update(u);
            }
        }
        let in_use = dns_names(&new);
        self.resolved.retain(|n, _| in_use.contains(n));
        crate::offload::global().configure(new.admin.offload_engine, &new.admin.offload_interfaces);
        tracing::info!(target: "reconciler", config = %new, "config applied");
        self.config = Some(new);
        Ok(())
    }

    /// Makes preparing listener `name` fail at `step` on the next apply that starts it:
    /// for tests of the failures a real system cannot produce on cue.
    #[doc(hidden)]
    pub fn fail_next(&mut self, name: &str, step: Step) {
        self.faults.insert(name.to_string(), step);
    }

    /// The STRICT_DNS names of the applied config.
    pub fn dns_names(&self) -> Vec<String> {
        self.config.as_ref().map(dns_names).unwrap_or_default()
    }

    /// The STRICT_DNS names of `config` with no known addresses yet: resolve them
    /// before applying it, so its new peers are admitted from the first packet.
    pub fn unresolved(&self, config: &StunnerConfig) -> Vec<String> {
        dns_names(config)
            .into_iter()
            .filter(|n| !self.resolved.contains_key(n))
            .collect()
    }

    /// Records the current addresses of a STRICT_DNS name and feeds them to every
    /// worker; they are kept for the configs applied later that still use the name.
    pub fn set_resolved(&mut self, name: &str, addrs: &[IpAddr]) {
        self.resolved.insert(name.to_string(), addrs.to_vec());
        for l in self.listeners.values() {
            l.resolved(name, addrs);
        }
    }

    /// Graceful shutdown: refuse new allocations everywhere, keep the rest.
    pub fn drain(&mut self) {
        self.draining = true;
        for l in self.listeners.values() {
            l.drain();
        }
    }

    /// Live allocations over all listeners.
    pub fn allocations(&self) -> usize {
        self.listeners.values().map(Listener::allocations).sum()
    }

    /// Whether every listener of the applied config runs.
    pub fn listeners_up(&self) -> bool {
        self.config.as_ref().is_some_and(|c| {
            c.listeners
                .iter()
                .all(|l| self.listeners.contains_key(&l.name))
        })
    }

    /// Per listener: its workers, traffic and allocations.
    pub fn listener_stats(&self) -> Vec<ListenerStats> {
        self.listeners
            .iter()
            .map(|(n, l)| ListenerStats {
                name: n.clone(),
                workers: l.worker_count(),
                traffic: l.counters(),
                allocations: l.allocations(),
                tcp_relay: l.tcp_relay_counters(),
            })
            .collect()
    }

    /// The metrics of every listener.
    pub fn metrics(&self) -> crate::metrics::Snapshot {
        let mut s = crate::metrics::Snapshot::default();
        for l in self.listeners.values() {
            l.collect(&mut s);
        }
        // The kernel's share of the cluster traffic (the listeners add theirs).
        for (name, t) in crate::offload::global().cluster_traffic() {
            s.clusters.entry(name).or_default().add(&t);
        }
        s
    }

    /// Stops every listener.
    pub fn stop(&mut self) {
        for (_, mut l) in std::mem::take(&mut self.listeners) {
            l.stop();
        }
        crate::offload::global().shutdown();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}
