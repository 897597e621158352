//! The running dataplane: the applied config and its listeners. A new config is applied
//! by diff (`stunner_config::diff`): only listeners whose port or protocol changed are
//! restarted; everything else reaches the workers in place. A config that cannot be
//! applied is rejected whole and the running one stays.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use stunner_config::{Change, ClusterType, StunnerConfig, diff};
use stunner_turn::ServerConfig;

use crate::Error;
use crate::listener::Listener;
use crate::relays::Reservations;

/// The dataplane.
pub struct Daemon {
    config: Option<StunnerConfig>,
    listeners: BTreeMap<String, Listener>,
    udp_threads: usize,
    draining: bool,
    reservations: Arc<Reservations>,
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
        }
    }

    /// The applied config.
    pub fn config(&self) -> Option<&StunnerConfig> {
        self.config.as_ref()
    }

    /// Applies a validated config. On error nothing changes.
    pub fn apply(&mut self, new: StunnerConfig) -> Result<(), Error> {
        // Check everything that can fail without side effects first.
        for l in &new.listeners {
            ServerConfig::for_listener(&new, &l.name)?;
            match l.protocol {
                stunner_config::ListenerProtocol::TurnTls => {
                    crate::tls::server_config(l)?;
                }
                stunner_config::ListenerProtocol::TurnDtls => {
                    crate::dtls::context(l)?;
                }
                _ => {}
            }
        }
        let empty = StunnerConfig::default();
        let old = self.config.as_ref().unwrap_or(&empty);
        let d = diff(old, &new);
        if self.config.is_some() && d.is_empty() {
            return Ok(());
        }
        // Start new and restarted listeners. A restarted listener is stopped first (its
        // port may be the one it keeps); on failure the stopped ones come back.
        let mut stopped: Vec<Listener> = Vec::new();
        let mut started: Vec<(String, Listener)> = Vec::new();
        for c in &d.listeners {
            if c.change == Change::Restart
                && let Some(mut l) = self.listeners.remove(&c.name)
            {
                l.stop();
                stopped.push(l);
            }
        }
        for c in &d.listeners {
            if !matches!(c.change, Change::Added | Change::Restart) {
                continue;
            }
            let Some(lc) = new.listener(&c.name) else {
                continue;
            };
            match Listener::start(&new, lc, self.udp_threads, &self.reservations) {
                Ok(l) => started.push((c.name.clone(), l)),
                Err(e) => {
                    drop(started);
                    for mut l in stopped {
                        if let Ok(back) =
                            Listener::start(old, &l.config, self.udp_threads, &self.reservations)
                        {
                            self.listeners.insert(l.config.name.clone(), back);
                        }
                        l.stop();
                    }
                    return Err(e);
                }
            }
        }
        for c in &d.listeners {
            if c.change == Change::Removed
                && let Some(mut l) = self.listeners.remove(&c.name)
            {
                l.stop();
            }
        }
        // Every kept listener gets the new core config: auth, realm and clusters may
        // have changed even when the listener itself did not.
        for (name, l) in &mut self.listeners {
            if let Some(lc) = new.listener(name) {
                l.update(&new, lc)?;
            }
        }
        for (name, l) in started {
            if self.draining {
                l.drain();
            }
            self.listeners.insert(name, l);
        }
        tracing::info!(target: "reconciler", config = %new, "config applied");
        self.config = Some(new);
        Ok(())
    }

    /// The STRICT_DNS names of the applied config.
    pub fn dns_names(&self) -> Vec<String> {
        let Some(c) = &self.config else {
            return Vec::new();
        };
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

    /// Feeds the current addresses of a STRICT_DNS name to every worker.
    pub fn set_resolved(&self, name: &str, addrs: &[IpAddr]) {
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

    /// Per listener: name, workers, rx/tx packets, rx/tx bytes, allocations.
    pub fn listener_stats(&self) -> Vec<(String, usize, [u64; 4], usize)> {
        self.listeners
            .iter()
            .map(|(n, l)| (n.clone(), l.worker_count(), l.counters(), l.allocations()))
            .collect()
    }

    /// The metrics of every listener.
    pub fn metrics(&self) -> crate::metrics::Snapshot {
        let mut s = crate::metrics::Snapshot::default();
        for l in self.listeners.values() {
            l.collect(&mut s);
        }
        s
    }

    /// Stops every listener.
    pub fn stop(&mut self) {
        for (_, mut l) in std::mem::take(&mut self.listeners) {
            l.stop();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}
