//! A running listener: its worker threads (N for TURN-UDP, one for TURN-TCP).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use stunner_config::{ListenerConfig, ListenerProtocol, StunnerConfig};
use stunner_turn::ServerConfig;

use crate::relays::Reservations;
use crate::worker::{Control, Handle};
use crate::{Error, dtls, net, tcp, tls, udp};

pub(crate) struct Listener {
    pub(crate) config: ListenerConfig,
    workers: Vec<Handle>,
}

impl Listener {
    /// Binds the listener's sockets and starts its workers.
    pub(crate) fn start(
        config: &StunnerConfig,
        l: &ListenerConfig,
        udp_threads: usize,
        reservations: &Arc<Reservations>,
    ) -> Result<Self, Error> {
        let sc = ServerConfig::for_listener(config, &l.name)?;
        let spawn_err = Error::io("cannot start worker thread");
        let mut workers = Vec::new();
        match l.protocol {
            ListenerProtocol::TurnUdp => {
                let n = udp_threads.max(1);
                // Bind every socket first so that a bind error starts nothing.
                let sockets = (0..n)
                    .map(|_| net::udp_listener(l.port, udp_threads > 0))
                    .collect::<Result<Vec<_>, _>>()?;
                for s in sockets {
                    workers.push(
                        udp::spawn(&l.name, s, sc.clone(), reservations.clone())
                            .map_err(Error::io("cannot start worker thread"))?,
                    );
                }
            }
            ListenerProtocol::TurnTcp | ListenerProtocol::TurnTls => {
                let tls = if l.protocol == ListenerProtocol::TurnTls {
                    Some(tls::server_config(l)?)
                } else {
                    None
                };
                let s = net::tcp_listener(l.port)?;
                workers.push(
                    tcp::spawn(&l.name, s, sc, reservations.clone(), tls).map_err(spawn_err)?,
                );
            }
            ListenerProtocol::TurnDtls => {
                let ctx = dtls::context(l)?;
                let n = udp_threads.max(1);
                let sockets = (0..n)
                    .map(|_| net::udp_listener(l.port, udp_threads > 0))
                    .collect::<Result<Vec<_>, _>>()?;
                for s in sockets {
                    let w = dtls::spawn(&l.name, s, sc.clone(), reservations.clone(), ctx.clone())
                        .map_err(Error::io("cannot start worker thread"))?;
                    workers.push(w);
                }
            }
        }
        tracing::info!(target: "stunnerd", listener = %l.name, protocol = %l.protocol, port = l.port,
            workers = workers.len(), "listener started");
        Ok(Self {
            config: l.clone(),
            workers,
        })
    }

    /// Pushes a new config to every worker (applied between batches).
    pub(crate) fn update(
        &mut self,
        config: &StunnerConfig,
        l: &ListenerConfig,
    ) -> Result<(), Error> {
        let sc = ServerConfig::for_listener(config, &l.name)?;
        let new_cert = l.protocol == ListenerProtocol::TurnTls
            && (l.cert != self.config.cert || l.key != self.config.key);
        let tls = if new_cert {
            Some(tls::server_config(l)?)
        } else {
            None
        };
        let new_dtls_cert = l.protocol == ListenerProtocol::TurnDtls
            && (l.cert != self.config.cert || l.key != self.config.key);
        let dtls = if new_dtls_cert {
            Some(dtls::context(l)?)
        } else {
            None
        };
        for w in &self.workers {
            w.send(Control::Config(Box::new(sc.clone())));
            if let Some(t) = &tls {
                w.send(Control::Tls(t.clone()));
            }
            if let Some(c) = &dtls {
                w.send(Control::Dtls(c.clone()));
            }
        }
        self.config = l.clone();
        Ok(())
    }

    pub(crate) fn resolved(&self, name: &str, addrs: &[std::net::IpAddr]) {
        for w in &self.workers {
            w.send(Control::Resolved(name.to_string(), addrs.to_vec()));
        }
    }

    pub(crate) fn drain(&self) {
        for w in &self.workers {
            w.send(Control::Drain);
        }
    }

    pub(crate) fn stop(&mut self) {
        for w in &mut self.workers {
            w.stop();
        }
        tracing::info!(target: "stunnerd", listener = %self.config.name, "listener stopped");
    }

    pub(crate) fn allocations(&self) -> usize {
        self.workers
            .iter()
            .map(|w| w.shared.allocations.load(Ordering::Relaxed))
            .sum()
    }

    pub(crate) fn counters(&self) -> [u64; 4] {
        let mut c = [0; 4];
        for w in &self.workers {
            c[0] += w.shared.rx_packets.load(Ordering::Relaxed);
            c[1] += w.shared.tx_packets.load(Ordering::Relaxed);
            c[2] += w.shared.rx_bytes.load(Ordering::Relaxed);
            c[3] += w.shared.tx_bytes.load(Ordering::Relaxed);
        }
        c
    }

    /// Adds this listener's counters to a metrics snapshot.
    pub(crate) fn collect(&self, snap: &mut crate::metrics::Snapshot) {
        let mut l = crate::metrics::ListenerSnapshot {
            name: self.config.name.clone(),
            traffic: self.counters(),
            ..Default::default()
        };
        for w in &self.workers {
            let sh = &w.shared;
            l.connections += sh.connections.load(Ordering::Relaxed);
            l.connections_total += sh.connections_total.load(Ordering::Relaxed);
            snap.permission_denials += sh.permission_denials.load(Ordering::Relaxed);
            if let Ok(m) = sh.auth_failures.lock() {
                for (k, v) in m.iter() {
                    *snap.auth_failures.entry(k).or_insert(0) += v;
                }
            }
            if let Ok(h) = sh.lifetimes.lock() {
                snap.lifetimes.merge(&h);
            }
            if let Ok(st) = sh.stats.lock() {
                for c in &st.clusters {
                    let e = snap.clusters.entry(c.name.clone()).or_insert([0; 4]);
                    e[0] += c.from_peer.packets;
                    e[1] += c.to_peer.packets;
                    e[2] += c.from_peer.bytes;
                    e[3] += c.to_peer.bytes;
                }
                for r in stunner_turn::DropReason::ALL {
                    *snap.drops.entry(r.as_str()).or_insert(0) += st.drops(r);
                }
            }
        }
        snap.allocations += self.allocations() as u64;
        snap.listeners.push(l);
    }

    pub(crate) fn worker_count(&self) -> usize {
        self.workers.len()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        for w in &mut self.workers {
            w.stop();
        }
    }
}
