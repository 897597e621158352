//! Kernel offload of ChannelData (`admin.offload_engine`, `admin.offload_interfaces`):
//! the engine of `stunner-offload`, kept in step with the channels the TURN cores report
//! ([`stunner_turn::Output::OffloadUp`]/`OffloadDown`), and its counters folded into the
//! listener and cluster traffic that `/status` and the metrics show.
//!
//! One engine per process: the program attaches to the interfaces of the process's
//! network namespace, which every listener shares. Workers turn reporting on in their
//! core once the engine runs (checked once a second, and at each config), and re-report
//! every channel when the engine restarts (its `generation` changes).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use stunner_config::OffloadEngine;
use stunner_offload::{Channel, ChannelCounters, Engine, Mode};
use stunner_turn::OffloadChannel;

use crate::metrics::Traffic;

/// The process's offload state.
#[derive(Default)]
pub(crate) struct Offload {
    active: AtomicBool,
    generation: AtomicU64,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    engine: Option<Engine>,
    setting: Option<(OffloadEngine, Vec<String>)>,
    /// The listener and cluster of each offloaded channel.
    owners: HashMap<Channel, (String, String)>,
    /// Counters of channels no longer offloaded, and of the live ones at the last
    /// refresh: by listener, and by cluster.
    retired: Totals,
    live: Totals,
}

#[derive(Default, Clone)]
struct Totals {
    listeners: HashMap<String, Traffic>,
    clusters: HashMap<String, Traffic>,
}

impl Totals {
    /// Adds one channel's kernel counters. Listener bytes count the ChannelData
    /// header, as the user-space path counts the datagrams it reads and writes.
    fn add(&mut self, listener: &str, cluster: &str, c: &ChannelCounters) {
        let l = self.listeners.entry(listener.to_string()).or_default();
        l.add(&Traffic {
            rx_packets: c.to_peer.packets,
            rx_bytes: c.to_peer.bytes + 4 * c.to_peer.packets,
            tx_packets: c.to_client.packets,
            tx_bytes: c.to_client.bytes + 4 * c.to_client.packets,
        });
        let k = self.clusters.entry(cluster.to_string()).or_default();
        k.add(&Traffic {
            rx_packets: c.to_client.packets,
            rx_bytes: c.to_client.bytes,
            tx_packets: c.to_peer.packets,
            tx_bytes: c.to_peer.bytes,
        });
    }
}

/// The process's offload engine.
pub(crate) fn global() -> &'static Offload {
    static OFFLOAD: OnceLock<Offload> = OnceLock::new();
    OFFLOAD.get_or_init(Offload::default)
}

/// An address as the wire carries it: IPv4-mapped IPv6 as IPv4.
fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

/// The engine's view of a channel, on a listener bound to an address (the program
/// matches the destination address of the client's datagrams). The client side and the
/// peer side must be of one family: the program does not translate between them.
fn channel(c: &OffloadChannel) -> Option<Channel> {
    let listener = canonical(c.client.server);
    if listener.ip().is_unspecified() {
        return None;
    }
    let ch = Channel {
        client: canonical(c.client.client),
        listener,
        channel: c.channel,
        relay: canonical(c.relay),
        peer: canonical(c.peer),
    };
    let v6 = [ch.client, ch.listener, ch.relay, ch.peer].map(|a| a.is_ipv6());
    v6.iter().all(|&x| x == v6[0]).then_some(ch)
}

impl Offload {
    /// Whether an engine runs (workers then report their channels).
    pub(crate) fn active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    /// Bumped at every engine start: workers re-report their channels.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// Starts, restarts or stops the engine for a config's admin settings. A failure
    /// is one log line; stunnerd then relays everything in user space.
    pub(crate) fn configure(&self, engine: OffloadEngine, interfaces: &[String]) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let setting = (engine, interfaces.to_vec());
        if inner.setting.as_ref() == Some(&setting) {
            return;
        }
        inner.setting = Some(setting);
        self.stop(&mut inner);
        let mode = match engine {
            OffloadEngine::None => return,
            OffloadEngine::Xdp => Mode::Xdp,
            OffloadEngine::Tc => Mode::Tc,
            OffloadEngine::Auto => Mode::Auto,
        };
        match Engine::start(mode, interfaces) {
            Ok(e) => {
                tracing::info!(target: "offload", engine = %engine, interfaces = ?e.interfaces(), xdp = ?e.xdp_interfaces(), "ChannelData offload running");
                for (i, why) in e.xdp_skipped() {
                    tracing::info!(target: "offload", interface = %i, "XDP on {i}: {why}");
                }
                inner.engine = Some(e);
                self.generation.fetch_add(1, Ordering::Relaxed);
                self.active.store(true, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::warn!(target: "offload", engine = %engine, error = %e, "offload engine not started; relaying in user space");
            }
        }
    }

    /// Stops the engine (its counters are kept in the totals).
    fn stop(&self, inner: &mut Inner) {
        self.active.store(false, Ordering::Relaxed);
        let Some(engine) = inner.engine.take() else {
            return;
        };
        let owners = std::mem::take(&mut inner.owners);
        for (c, counters) in engine.counters() {
            if let Some((l, k)) = owners.get(&c) {
                inner.retired.add(l, k, &counters);
            }
        }
        inner.live = Totals::default();
    }

    /// Stops the engine at daemon shutdown.
    pub(crate) fn shutdown(&self) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.setting = None;
            self.stop(&mut inner);
        }
    }

    /// Offloads a channel of listener `listener` whose peer is in `cluster`.
    pub(crate) fn up(&self, listener: &str, cluster: &str, c: &OffloadChannel) {
        let Some(ch) = channel(c) else {
            tracing::debug!(target: "offload", listener, client = %c.client.client, server = %c.client.server, peer = %c.peer, "channel not offloadable (client and peer of different families, or a listener on a wildcard address)");
            return;
        };
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let Some(engine) = inner.engine.as_mut() else {
            return;
        };
        match engine.upsert(&ch) {
            Ok(()) => {
                inner
                    .owners
                    .insert(ch, (listener.to_string(), cluster.to_string()));
            }
            Err(e) => {
                tracing::debug!(target: "offload", listener, channel = c.channel, peer = %c.peer, error = %e, "channel not offloaded")
            }
        }
    }

    /// Stops offloading a channel at once.
    pub(crate) fn down(&self, c: &OffloadChannel) {
        let Some(ch) = channel(c) else {
            return;
        };
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let Some(last) = inner.engine.as_mut().and_then(|e| e.remove(&ch)) else {
            return;
        };
        if let Some((l, k)) = inner.owners.remove(&ch) {
            inner.retired.add(&l, &k, &last);
        }
    }

    /// Reads the kernel's counters (once a second, with the status snapshot).
    pub(crate) fn refresh(&self) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let mut live = Totals::default();
        if let Some(e) = &inner.engine {
            for (c, counters) in e.counters() {
                if let Some((l, k)) = inner.owners.get(&c) {
                    live.add(l, k, &counters);
                }
            }
        }
        inner.live = live;
    }

    /// Kernel-relayed traffic of a listener, as of the last refresh.
    pub(crate) fn listener_traffic(&self, name: &str) -> Traffic {
        let mut t = Traffic::default();
        if let Ok(inner) = self.inner.lock() {
            for s in [&inner.retired, &inner.live] {
                if let Some(x) = s.listeners.get(name) {
                    t.add(x);
                }
            }
        }
        t
    }

    /// Kernel-relayed traffic by cluster, as of the last refresh.
    pub(crate) fn cluster_traffic(&self) -> Vec<(String, Traffic)> {
        let mut out: HashMap<String, Traffic> = HashMap::new();
        if let Ok(inner) = self.inner.lock() {
            for s in [&inner.retired, &inner.live] {
                for (k, t) in &s.clusters {
                    out.entry(k.clone()).or_default().add(t);
                }
            }
        }
        out.into_iter().collect()
    }

    /// For `/status`: whether the engine runs, the channels offloaded now, and the
    /// datagrams the kernel relayed to peers and to clients (ever, as of the last
    /// refresh).
    pub(crate) fn status(&self) -> serde_json::Value {
        let Ok(inner) = self.inner.lock() else {
            return serde_json::Value::Null;
        };
        let (mut to_peers, mut to_clients) = (0, 0);
        for s in [&inner.retired, &inner.live] {
            for t in s.listeners.values() {
                to_peers += t.rx_packets;
                to_clients += t.tx_packets;
            }
        }
        let paths = inner
            .engine
            .as_ref()
            .map(|e| e.path_counters())
            .unwrap_or_default();
        serde_json::json!({
            "engine": inner.setting.as_ref().map_or("None".to_string(), |(e, _)| e.to_string()),
            "running": inner.engine.is_some(),
            "interfaces": inner.engine.as_ref().map(|e| e.interfaces().to_vec()).unwrap_or_default(),
            "xdp_interfaces": inner.engine.as_ref().map(|e| e.xdp_interfaces().to_vec()).unwrap_or_default(),
            // Since this engine started: which program relayed.
            "by_program": {
                "xdp": {"packets_to_peers": paths.xdp_to_peer, "packets_to_clients": paths.xdp_to_client},
                "tc": {"packets_to_peers": paths.tc_to_peer, "packets_to_clients": paths.tc_to_client},
            },
            "channels": inner.owners.len(),
            "packets_to_peers": to_peers,
            "packets_to_clients": to_clients,
        })
    }
}
