//! A running listener: its worker threads (N for TURN-UDP, one for TURN-TCP).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use stunner_config::{ListenerConfig, ListenerProtocol, StunnerConfig};
use stunner_turn::ServerConfig;

use crate::metrics::Traffic;
use crate::relays::Reservations;
use crate::worker::{Control, Handle};
use crate::{Error, dtls, net, tcp, tls, udp};

/// The last addresses of each STRICT_DNS name, kept by the daemon across config pushes.
pub(crate) type Resolved = std::collections::HashMap<String, Vec<std::net::IpAddr>>;

/// What the core config of every listener gets from the daemon beside the config.
#[derive(Clone, Copy)]
pub(crate) struct CoreInputs<'a> {
    /// The last STRICT_DNS lookups.
    pub(crate) resolved: &'a Resolved,
    /// The pod's addresses (`--pod-addresses`): where relays of the family other than
    /// the listener address's are advertised (RFC 8656 §7.2).
    pub(crate) pod_addresses: &'a [std::net::IpAddr],
}

impl CoreInputs<'_> {
    fn server_config(&self, config: &StunnerConfig, listener: &str) -> Result<ServerConfig, Error> {
        let mut sc =
            ServerConfig::for_listener(config, listener)?.with_pod_addresses(self.pod_addresses);
        sc.policy.seed_resolved(self.resolved);
        Ok(sc)
    }
}

pub(crate) struct Listener {
    pub(crate) config: ListenerConfig,
    workers: Vec<Handle>,
    /// Duplicates of the client-side sockets the workers own, so that a successor on the
    /// same port and transport takes them over instead of binding again: no race with
    /// our own socket, and no datagram or pending connection lost in between.
    sockets: Sockets,
}

/// The client-side sockets of a listener.
pub(crate) enum Sockets {
    /// TURN-UDP and TURN-DTLS: one per worker (an `SO_REUSEPORT` set).
    Udp(Vec<std::net::UdpSocket>),
    /// TURN-TCP and TURN-TLS.
    Tcp(std::net::TcpListener),
}

impl Sockets {
    fn try_clone(&self) -> Result<Self, Error> {
        let dup = Error::io("cannot duplicate a listener socket");
        Ok(match self {
            Self::Udp(v) => Self::Udp(
                v.iter()
                    .map(std::net::UdpSocket::try_clone)
                    .collect::<Result<_, _>>()
                    .map_err(dup)?,
            ),
            Self::Tcp(t) => Self::Tcp(t.try_clone().map_err(dup)?),
        })
    }
}

/// A step of preparing a listener that a test can make fail (`Daemon::fail_next`): the
/// ones a real system cannot be made to fail on cue.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Duplicating the client-side sockets.
    Duplicate,
    /// Starting a worker thread.
    Spawn,
}

fn injected(step: Step, fault: Option<Step>, context: &'static str) -> Result<(), Error> {
    if fault == Some(step) {
        return Err(Error::Io {
            context,
            source: std::io::Error::other("injected failure"),
        });
    }
    Ok(())
}

/// A config change for a running listener, built before anything changes.
pub(crate) struct Update {
    server: ServerConfig,
    tls: Option<Arc<rustls::ServerConfig>>,
    dtls: Option<openssl::ssl::SslContext>,
    config: ListenerConfig,
}

type Contexts = (
    Option<Arc<rustls::ServerConfig>>,
    Option<openssl::ssl::SslContext>,
);

/// The TLS or DTLS context of `l`, when it is new or its certificate changed from `old`.
fn contexts(l: &ListenerConfig, old: Option<&ListenerConfig>) -> Result<Contexts, Error> {
    let changed = old.is_none_or(|o| o.cert != l.cert || o.key != l.key);
    Ok(match l.protocol {
        ListenerProtocol::TurnTls if changed => (Some(tls::server_config(l)?), None),
        ListenerProtocol::TurnDtls if changed => (None, Some(dtls::context(l)?)),
        _ => (None, None),
    })
}

impl Listener {
    /// Everything a new listener needs, with no effect on what runs: its core config and
    /// TLS/DTLS context, its sockets (`inherited` ones duplicated, others bound) and its
    /// worker threads, held at their gates until `start`.
    pub(crate) fn prepare(
        config: &StunnerConfig,
        l: &ListenerConfig,
        udp_threads: usize,
        reservations: &Arc<Reservations>,
        inherited: Option<&Sockets>,
        fault: Option<Step>,
        inputs: CoreInputs<'_>,
    ) -> Result<Self, Error> {
        let sc = inputs.server_config(config, &l.name)?;
        let (tls, dtls) = contexts(l, None)?;
        let n = udp_threads.max(1);
        let bound = match inherited {
            Some(s) => s.try_clone()?,
            None if l.protocol.is_datagram() => Sockets::Udp(
                (0..n)
                    .map(|_| net::udp_listener(l.port, udp_threads > 0))
                    .collect::<Result<_, _>>()?,
            ),
            None => Sockets::Tcp(net::tcp_listener(l.port)?),
        };
        injected(Step::Duplicate, fault, "cannot duplicate a listener socket")?;
        let kept = bound.try_clone()?;
        injected(Step::Spawn, fault, "cannot start worker thread")?;
        let spawn_err = Error::io("cannot start worker thread");
        let mut workers = Vec::new();
        match bound {
            Sockets::Udp(sockets) => {
                for s in sockets {
                    let w = match &dtls {
                        Some(ctx) => {
                            dtls::spawn(&l.name, s, sc.clone(), reservations.clone(), ctx.clone())
                        }
                        None => udp::spawn(&l.name, s, sc.clone(), reservations.clone()),
                    };
                    // Dropping the ones already spawned closes their gates: they exit.
                    workers.push(w.map_err(Error::io("cannot start worker thread"))?);
                }
            }
            Sockets::Tcp(s) => {
                workers.push(
                    tcp::spawn(&l.name, s, sc, reservations.clone(), tls).map_err(spawn_err)?,
                );
            }
        }
        Ok(Self {
            config: l.clone(),
            workers,
            sockets: kept,
        })
    }

    /// Opens the gates of a prepared listener. Cannot fail.
    pub(crate) fn start(&mut self) {
        for w in &mut self.workers {
            w.go();
        }
        let l = &self.config;
        tracing::info!(target: "stunnerd", listener = %l.name, protocol = %l.protocol, port = l.port,
            workers = self.workers.len(), "listener started");
    }

    /// The sockets a successor `l` takes over: ours, if it listens on our port with our
    /// socket type.
    pub(crate) fn sockets_for(&self, l: &ListenerConfig) -> Option<&Sockets> {
        let same_kind = match self.sockets {
            Sockets::Udp(_) => l.protocol.is_datagram(),
            Sockets::Tcp(_) => !l.protocol.is_datagram(),
        };
        (same_kind && l.port == self.config.port).then_some(&self.sockets)
    }

    /// Builds the update to `l` of `config`, with no effect on what runs.
    pub(crate) fn plan_update(
        &self,
        config: &StunnerConfig,
        l: &ListenerConfig,
        inputs: CoreInputs<'_>,
    ) -> Result<Update, Error> {
        let (tls, dtls) = contexts(l, Some(&self.config))?;
        let server = inputs.server_config(config, &l.name)?;
        Ok(Update {
            server,
            tls,
            dtls,
            config: l.clone(),
        })
    }

    /// Pushes an update to every worker (applied between batches). Cannot fail.
    pub(crate) fn update(&mut self, u: Update) {
        for w in &self.workers {
            w.send(Control::Config(Box::new(u.server.clone())));
            if let Some(t) = &u.tls {
                w.send(Control::Tls(t.clone()));
            }
            if let Some(c) = &u.dtls {
                w.send(Control::Dtls(c.clone()));
            }
        }
        self.config = u.config;
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

    pub(crate) fn counters(&self) -> Traffic {
        // What the kernel relayed for this listener's offloaded channels, then ours.
        let mut c = crate::offload::global().listener_traffic(&self.config.name);
        for w in &self.workers {
            let sh = &w.shared;
            c.add(&Traffic {
                rx_packets: sh.rx_packets.load(Ordering::Relaxed),
                tx_packets: sh.tx_packets.load(Ordering::Relaxed),
                rx_bytes: sh.rx_bytes.load(Ordering::Relaxed),
                tx_bytes: sh.tx_bytes.load(Ordering::Relaxed),
            });
        }
        c
    }

    /// The TCP relay counters (RFC 6062) of a TCP or TLS listener; `None` for the
    /// datagram listeners, which have no TCP allocations.
    pub(crate) fn tcp_relay_counters(&self) -> Option<crate::metrics::TcpRelayCounters> {
        use stunner_config::ListenerProtocol::{TurnTcp, TurnTls};
        if !matches!(self.config.protocol, TurnTcp | TurnTls) {
            return None;
        }
        let mut t = crate::metrics::TcpRelayCounters::default();
        for w in &self.workers {
            let sh = &w.shared;
            t.connections += sh.tcp_peer_connections.load(Ordering::Relaxed);
            t.connections_total += sh.tcp_peer_connections_total.load(Ordering::Relaxed);
            t.bytes_from_peers += sh.tcp_bytes_from_peers.load(Ordering::Relaxed);
            t.bytes_to_peers += sh.tcp_bytes_to_peers.load(Ordering::Relaxed);
        }
        Some(t)
    }

    /// Adds this listener's counters to a metrics snapshot.
    pub(crate) fn collect(&self, snap: &mut crate::metrics::Snapshot) {
        let mut l = crate::metrics::ListenerSnapshot {
            name: self.config.name.clone(),
            traffic: self.counters(),
            tcp_relay: self.tcp_relay_counters().unwrap_or_default(),
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
                    snap.clusters
                        .entry(c.name.clone())
                        .or_default()
                        .add(&Traffic {
                            rx_packets: c.from_peer.packets,
                            tx_packets: c.to_peer.packets,
                            rx_bytes: c.from_peer.bytes,
                            tx_bytes: c.to_peer.bytes,
                        });
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
