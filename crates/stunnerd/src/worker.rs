//! One worker thread: one client-side socket (a UDP listener socket of the
//! `SO_REUSEPORT` set, or a TCP listener with its connections), its own TURN core and
//! its own relay sockets, in one `mio` poll loop. Nothing is shared with other workers
//! but a few counters; config changes arrive as messages between batches.

use std::collections::BTreeMap;
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token, Waker};
use stunner_turn::{
    CHANNEL_HEADROOM, CHANNEL_TAILROOM, Error as TurnError, Event, FiveTuple, Output, RelayRequest,
    Server, ServerConfig, Stats,
};

use crate::relays::{Relays, Reservations};

pub(crate) const WAKER: Token = Token(0);
/// Packets read from one socket before others get a turn.
pub(crate) const READ_BUDGET: usize = 64;

/// A message to a worker.
#[derive(Debug)]
pub(crate) enum Control {
    /// A new config for the core (credentials, realm, policy…).
    Config(Box<ServerConfig>),
    /// New addresses of a STRICT_DNS name.
    Resolved(String, Vec<IpAddr>),
    /// Refuse new allocations; keep the rest.
    Drain,
    /// A new TLS certificate: new handshakes use it.
    Tls(Arc<rustls::ServerConfig>),
    /// A new DTLS certificate: new handshakes use it.
    Dtls(openssl::ssl::SslContext),
    /// Close everything and exit.
    Stop,
}

/// Counters a worker shares with the control plane (read for `/status` and shutdown).
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) allocations: AtomicUsize,
    pub(crate) rx_packets: AtomicU64,
    pub(crate) tx_packets: AtomicU64,
    pub(crate) rx_bytes: AtomicU64,
    pub(crate) tx_bytes: AtomicU64,
    pub(crate) stopped: AtomicBool,
    /// Open client connections (TCP/TLS), or the listener socket itself for UDP.
    pub(crate) connections: AtomicU64,
    pub(crate) connections_total: AtomicU64,
    pub(crate) permission_denials: AtomicU64,
    /// Peer connections of TCP allocations (RFC 6062): open now, ever, and the bytes
    /// relayed over them each way.
    pub(crate) tcp_peer_connections: AtomicU64,
    pub(crate) tcp_peer_connections_total: AtomicU64,
    pub(crate) tcp_bytes_to_peers: AtomicU64,
    pub(crate) tcp_bytes_from_peers: AtomicU64,
    /// Auth failures by reason; written on failures only.
    pub(crate) auth_failures: Mutex<BTreeMap<&'static str, u64>>,
    /// The core's counters, copied about once a second.
    pub(crate) stats: Mutex<Stats>,
    /// Lifetimes of ended allocations; written on deletions only.
    pub(crate) lifetimes: Mutex<crate::metrics::Histogram>,
}

/// A handle to a worker. A new worker waits at its gate, touching nothing, until
/// `go`: a reconcile spawns every thread it needs before it changes anything, and a
/// worker whose gate is dropped exits without having served.
pub(crate) struct Handle {
    pub(crate) tx: mpsc::Sender<Control>,
    pub(crate) waker: Arc<Waker>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) thread: Option<std::thread::JoinHandle<()>>,
    gate: Option<mpsc::Sender<()>>,
}

impl Handle {
    /// Lets a gated worker run.
    pub(crate) fn go(&mut self) {
        if let Some(g) = self.gate.take() {
            let _ = g.send(());
        }
    }

    pub(crate) fn send(&self, c: Control) {
        if self.tx.send(c).is_ok() {
            let _ = self.waker.wake();
        }
    }

    /// Stops the worker and waits for it.
    pub(crate) fn stop(&mut self) {
        // A worker still at its gate sees it close and exits.
        drop(self.gate.take());
        self.send(Control::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The client side of a worker: how to send to a client, and (stream workers only)
/// the sockets of TCP allocations (RFC 6062). Datagram workers never see those
/// requests: the core refuses TCP allocations over datagrams.
pub(crate) trait Clients {
    fn send(&mut self, to: SocketAddr, data: &[u8]);

    /// Opens the listening sockets of a TCP allocation: their ports.
    fn open_tcp_relays(&mut self, _req: &RelayRequest) -> (Option<u16>, Option<u16>) {
        (None, None)
    }

    /// Closes the listening socket of a TCP allocation, if `addr` is one.
    fn close_tcp_relay(&mut self, _addr: SocketAddr) {}

    /// Starts connecting peer connection `id` from `relay` to `peer`; false when it
    /// cannot start.
    fn connect_peer(&mut self, _id: u32, _relay: SocketAddr, _peer: SocketAddr) -> bool {
        false
    }

    /// Pairs peer connection `id` with the client data connection `client`.
    fn bind_connection(&mut self, _id: u32, _client: FiveTuple) {}

    /// Closes peer connection `id` and its data connection, after what is queued.
    fn close_connection(&mut self, _id: u32) {}
}

/// The core, its relay sockets, and the loop pieces common to UDP and TCP workers.
pub(crate) struct Core {
    pub(crate) server: Server,
    pub(crate) relays: Relays,
    pub(crate) shared: Arc<Shared>,
    pub(crate) name: String,
    pub(crate) buf: Vec<u8>,
    /// Receive buffers for batched reads (client and relay sockets).
    pub(crate) rx: crate::batch::RecvBatch,
    /// Sockets with data left after their read budget ran out.
    pub(crate) backlog: VecDeque<Token>,
    pub(crate) stopping: bool,
    /// TLS listeners: the config for new handshakes.
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
    /// DTLS listeners: the context for new handshakes.
    pub(crate) dtls: Option<openssl::ssl::SslContext>,
    next_stats: Instant,
    /// The offload engine generation this core last reported its channels to.
    offload_generation: u64,
}

impl Core {
    pub(crate) fn new(
        name: &str,
        config: ServerConfig,
        shared: Arc<Shared>,
        reservations: Arc<Reservations>,
    ) -> Self {
        let mut key = [0u8; 32];
        // A failure leaves a zero key: nonces stay valid but become forgeable; log it.
        if getrandom::fill(&mut key).is_err() {
            tracing::error!(target: "stunnerd", "no randomness for the nonce key");
        }
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        Self {
            server: Server::new(config, Instant::now(), unix, key),
            relays: Relays::new(reservations),
            shared,
            name: name.to_string(),
            buf: vec![0; CHANNEL_HEADROOM + 65536 + CHANNEL_TAILROOM],
            rx: crate::batch::RecvBatch::new(CHANNEL_HEADROOM, 65535, CHANNEL_TAILROOM),
            backlog: VecDeque::new(),
            stopping: false,
            tls: None,
            dtls: None,
            next_stats: Instant::now(),
            offload_generation: 0,
        }
    }

    pub(crate) fn timeout(&self, now: Instant) -> Option<Duration> {
        if !self.backlog.is_empty() {
            return Some(Duration::ZERO);
        }
        // Wake at least once a second to notice a stopped control plane.
        let t = self
            .server
            .poll_timeout()
            .map_or(Duration::from_secs(1), |t| t.saturating_duration_since(now));
        Some(t.min(Duration::from_secs(1)))
    }

    /// Handles control messages; returns false when the worker must exit.
    pub(crate) fn control(
        &mut self,
        rx: &mpsc::Receiver<Control>,
        poll: &Poll,
        clients: &mut dyn Clients,
    ) -> bool {
        while let Ok(c) = rx.try_recv() {
            match c {
                Control::Config(cfg) => {
                    self.server.set_config(*cfg);
                    self.sync_offload(Instant::now(), true);
                }
                Control::Resolved(name, addrs) => {
                    self.server.policy_mut().set_resolved(&name, addrs);
                    self.sync_offload(Instant::now(), true);
                }
                Control::Drain => self.server.set_draining(true),
                Control::Tls(c) => self.tls = Some(c),
                Control::Dtls(c) => self.dtls = Some(c),
                Control::Stop => {
                    self.server.close_all(Instant::now());
                    self.drain(poll, clients, Instant::now());
                    self.stopping = true;
                }
            }
        }
        !self.stopping
    }

    /// Reads datagrams from relay socket `token` (batched) and relays them to clients.
    pub(crate) fn read_relay(&mut self, token: Token, poll: &Poll, clients: &mut dyn Clients) {
        for _ in 0..READ_BUDGET / crate::batch::BATCH {
            let Some(relay) = self.relays.get(token) else {
                return;
            };
            let relay_addr = relay.addr;
            let n = match self.rx.recv(&relay.socket) {
                Ok(0) => return,
                Ok(n) => n,
                Err(_) => return,
            };
            let now = Instant::now();
            for i in 0..n {
                let (buf, len, peer, seg) = self.rx.get(i);
                let Some(peer) = peer else { continue };
                let peer = crate::net::canonical(peer);
                // With GRO one buffer holds several datagrams back to back. Each is
                // framed in place: its ChannelData header lands on the last bytes of
                // the previous datagram, already sent; stream padding would land on the
                // next one, so those bytes are put back.
                let mut off = 0;
                while off < len {
                    let l = seg.min(len - off);
                    let end = CHANNEL_HEADROOM + off + l;
                    let mut saved = [0u8; CHANNEL_TAILROOM];
                    saved.copy_from_slice(&buf[end..end + CHANNEL_TAILROOM]);
                    let frame = &mut buf[off..];
                    if let Some(f) = self.server.handle_peer(now, relay_addr, peer, frame, l) {
                        clients.send(f.to, &frame[f.range]);
                    }
                    buf[end..end + CHANNEL_TAILROOM].copy_from_slice(&saved);
                    off += l;
                }
            }
            self.drain(poll, clients, now);
            if n < crate::batch::BATCH {
                return;
            }
        }
        self.backlog.push_back(token);
    }

    /// Waits for socket events or the next timer; false when polling failed for good.
    pub(crate) fn wait(&self, poll: &mut Poll, events: &mut Events) -> bool {
        let timeout = self.timeout(Instant::now());
        match poll.poll(events, timeout) {
            Err(e) if e.kind() != std::io::ErrorKind::Interrupted => {
                tracing::error!(target: "stunnerd", listener = %self.name, error = %e, "poll failed");
                false
            }
            _ => true,
        }
    }

    /// Hands one client datagram or frame to the core; ChannelData goes straight out of
    /// its relay socket.
    pub(crate) fn handle_client(&mut self, now: Instant, ft: stunner_turn::FiveTuple, data: &[u8]) {
        if let Some(f) = self.server.handle_client(now, ft, data)
            && let stunner_turn::Source::Relay(r) = f.from
        {
            self.relays.send(r, f.to, &data[f.range]);
        }
    }

    /// Carries out the core's outputs.
    pub(crate) fn drain(&mut self, poll: &Poll, clients: &mut dyn Clients, now: Instant) {
        while let Some(o) = self.server.poll_output() {
            match o {
                Output::Transmit(t) => match t.from {
                    stunner_turn::Source::Listener(_) => clients.send(t.to, &t.data),
                    stunner_turn::Source::Relay(r) => self.relays.send(r, t.to, &t.data),
                },
                Output::OpenRelay(req) => {
                    let (port, port6) = if req.tcp {
                        clients.open_tcp_relays(&req)
                    } else {
                        self.relays.open_all(poll.registry(), &req)
                    };
                    self.server
                        .handle_relays_opened(now, req.token, port, port6);
                }
                Output::CloseRelay(a) => {
                    self.relays.close(poll.registry(), a);
                    clients.close_tcp_relay(a);
                }
                Output::ConnectPeer { id, relay, peer } => {
                    if !clients.connect_peer(id, relay, peer) {
                        self.server.handle_peer_connected(now, id, false);
                    }
                }
                Output::BindConnection { id, client } => clients.bind_connection(id, client),
                Output::CloseConnection(id) => clients.close_connection(id),
                Output::OffloadUp(c) => {
                    let c = self.offload_view(c);
                    let cluster = self.server.config().policy.cluster_name(c.cluster);
                    crate::offload::global().up(&self.name, cluster, &c);
                }
                Output::OffloadDown(c) => crate::offload::global().down(&self.offload_view(c)),
                Output::Event(e) => self.event(e),
            }
        }
        // Client-to-peer datagrams of this step leave together (GSO where they can).
        self.relays.flush();
        self.shared
            .allocations
            .store(self.server.allocation_count(), Ordering::Relaxed);
    }

    fn event(&self, e: Event) {
        let l = self.name.as_str();
        match e {
            Event::AuthAccepted { client, username } => {
                tracing::debug!(target: "auth", listener = l, %client, username, "ACCEPTED");
            }
            Event::AuthRejected {
                client,
                username,
                reason,
            } => {
                if let Ok(mut m) = self.shared.auth_failures.lock() {
                    *m.entry(reason).or_insert(0) += 1;
                }
                tracing::info!(target: "auth", listener = l, %client, ?username, reason, "REJECTED");
            }
            Event::AllocationCreated {
                five_tuple,
                relay,
                relay6,
                user,
            } => {
                tracing::info!(target: "turn", listener = l, client = %five_tuple.client, %relay, ?relay6, user, "allocation created");
            }
            Event::AllocationDeleted {
                five_tuple,
                relay,
                expired,
                duration,
            } => {
                if let Ok(mut h) = self.shared.lifetimes.lock() {
                    h.observe(duration.as_secs_f64());
                }
                tracing::info!(target: "turn", listener = l, client = %five_tuple.client, %relay, expired, "allocation deleted");
            }
            Event::RequestFailed {
                client,
                method,
                error,
            } => {
                if error == TurnError::PeerNotAllowed {
                    self.shared
                        .permission_denials
                        .fetch_add(1, Ordering::Relaxed);
                }
                tracing::debug!(target: "turn", listener = l, %client, method, code = error.code(), "request failed: {error}");
            }
            Event::TcpConnectionOpened { relay, peer, id } => {
                self.shared
                    .tcp_peer_connections
                    .fetch_add(1, Ordering::Relaxed);
                self.shared
                    .tcp_peer_connections_total
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(target: "turn", listener = l, %relay, %peer, id, "TCP peer connection");
            }
            Event::TcpConnectionClosed { relay, id } => {
                let _ = self.shared.tcp_peer_connections.fetch_update(
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                    |n| Some(n.saturating_sub(1)),
                );
                tracing::debug!(target: "turn", listener = l, %relay, id, "TCP peer connection closed");
            }
            other => tracing::debug!(target: "turn", listener = l, event = ?other),
        }
    }

    /// Runs the core's timers.
    pub(crate) fn tick(&mut self, poll: &Poll, clients: &mut dyn Clients, now: Instant) {
        self.server.handle_timeout(now);
        // Once a second, not per wakeup: both take locks shared with other workers.
        if now >= self.next_stats {
            self.relays.reservations().expire(now);
            if let Ok(mut st) = self.shared.stats.lock() {
                st.clone_from(self.server.stats());
            }
            self.next_stats = now + Duration::from_secs(1);
            self.sync_offload(now, false);
        }
        self.drain(poll, clients, now);
    }

    /// A channel as the kernel sees its client's datagrams: sent to the listener's
    /// address. A listener socket on a wildcard address (stunnerd binds `[::]` and
    /// filters) names no address in the five-tuple; the listener's advertised one
    /// (`address`, e.g. `$STUNNER_ADDR`, the relay IP) is what clients reach.
    fn offload_view(&self, mut c: stunner_turn::OffloadChannel) -> stunner_turn::OffloadChannel {
        if c.client.server.ip().is_unspecified() {
            c.client.server.set_ip(self.server.config().relay_ip);
        }
        c
    }

    /// Follows the offload engine: reporting on while it runs, every channel again
    /// when it restarts, and (`peers_changed`: a config or DNS answer) every channel's
    /// admission again. The reports go out with the next drain.
    fn sync_offload(&mut self, now: Instant, peers_changed: bool) {
        let o = crate::offload::global();
        let (active, generation) = (o.active(), o.generation());
        if generation != self.offload_generation || active != self.server.offload() {
            self.offload_generation = generation;
            self.server.set_offload(false, now);
            self.server.set_offload(active, now);
        } else if peers_changed {
            self.server.resync_offload(now);
        }
    }
}

/// Spawns a worker thread that runs `body` with a fresh poll and a waker once its
/// handle's `go` is called.
pub(crate) fn spawn<F>(name: String, body: F) -> std::io::Result<Handle>
where
    F: FnOnce(Poll, mpsc::Receiver<Control>, Arc<Shared>) + Send + 'static,
{
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let (tx, rx) = mpsc::channel();
    let (gate, gate_rx) = mpsc::channel::<()>();
    let shared = Arc::new(Shared::default());
    let s2 = shared.clone();
    let thread = std::thread::Builder::new().name(name).spawn(move || {
        let s3 = s2.clone();
        if gate_rx.recv().is_ok() {
            body(poll, rx, s2);
        }
        s3.stopped.store(true, Ordering::Relaxed);
    })?;
    Ok(Handle {
        tx,
        waker,
        shared,
        thread: Some(thread),
        gate: Some(gate),
    })
}

/// A reusable event buffer size.
pub(crate) fn events() -> Events {
    Events::with_capacity(256)
}
