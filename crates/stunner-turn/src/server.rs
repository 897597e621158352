//! The server: one instance per listener socket (per worker for UDP), owning its
//! allocations. Inputs are `handle_*` calls with the receive time; outputs are drained
//! with [`Server::poll_output`] and [`Server::poll_timeout`]. The hot paths
//! (ChannelData both ways) return a [`Forward`] that points into the caller's buffer,
//! so relaying a channel packet allocates nothing.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::time::{Duration, Instant};

use stun_types::message::{Message, MessageClass};
use stunner_config::{ListenerProtocol, StunnerConfig};

use crate::allocation::Allocation;
use crate::auth::Credentials;
use crate::event::{DropReason, Event};
use crate::nonce::NonceKey;
use crate::policy::PeerPolicy;
use crate::stats::Stats;
use crate::timer::Timers;
use crate::transport::{FiveTuple, Source, Transmit, TransportKind};

/// Bytes the caller keeps free before a peer payload, for the ChannelData header.
pub const CHANNEL_HEADROOM: usize = 4;
/// Bytes the caller keeps free after a peer payload, for stream padding.
pub const CHANNEL_TAILROOM: usize = 3;

/// What a server instance needs from the config. Cheap to rebuild on every change.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The realm (RFC 8489 §9.2).
    pub realm: String,
    /// Who may allocate.
    pub credentials: Credentials,
    /// The IP advertised in XOR-RELAYED-ADDRESS; its family is the default relay
    /// family.
    pub relay_ip: IpAddr,
    /// The pod's address of the other family, if it has one: relays of that family
    /// are given on REQUESTED-ADDRESS-FAMILY or ADDITIONAL-ADDRESS-FAMILY (RFC 8656
    /// §7.2). Set with [`with_pod_addresses`](Self::with_pod_addresses).
    pub alternate_relay_ip: Option<IpAddr>,
    /// Which peers are reachable.
    pub policy: PeerPolicy,
    /// Allocations per user; 0 is unlimited.
    pub user_quota: u32,
    /// The client transport.
    pub transport: TransportKind,
    /// How long a nonce is valid.
    pub nonce_lifetime: Duration,
}

impl ServerConfig {
    /// The server config of listener `listener` of a validated config.
    pub fn for_listener(
        config: &StunnerConfig,
        listener: &str,
    ) -> Result<Self, stunner_config::Error> {
        let l = config
            .listener(listener)
            .ok_or(stunner_config::Error::Missing {
                field: format!("listener {listener:?}"),
            })?;
        Ok(Self {
            realm: config.auth.realm.clone(),
            credentials: Credentials::from_config(&config.auth),
            relay_ip: l.relay_ip()?,
            alternate_relay_ip: None,
            policy: PeerPolicy::for_listener(config, listener),
            user_quota: config.admin.user_quota,
            transport: match l.protocol {
                ListenerProtocol::TurnDtls => TransportKind::PaddedDatagram,
                p if p.is_datagram() => TransportKind::Datagram,
                _ => TransportKind::Stream,
            },
            nonce_lifetime: Duration::from_secs(3600),
        })
    }

    /// Takes the first of the pod's `addresses` (e.g. the downward API's
    /// `status.podIPs`) whose family is not `relay_ip`'s as the relay address of the
    /// other family; addresses of `relay_ip`'s own family are ignored.
    #[must_use]
    pub fn with_pod_addresses(mut self, addresses: &[IpAddr]) -> Self {
        let v6 = self.relay_ip.is_ipv6();
        self.alternate_relay_ip = addresses
            .iter()
            .map(|a| a.to_canonical())
            .find(|a| a.is_ipv6() != v6 && !a.is_unspecified());
        self
    }

    /// The relay IP of a family, if this listener has one.
    pub fn relay_ip_of(&self, ipv6: bool) -> Option<IpAddr> {
        std::iter::once(self.relay_ip)
            .chain(self.alternate_relay_ip)
            .find(|ip| ip.is_ipv6() == ipv6)
    }
}

/// A request to open a relay socket for a new allocation. Answer with
/// [`Server::handle_relay_opened`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayRequest {
    /// Echo this back.
    pub token: u64,
    /// The allocation's client.
    pub five_tuple: FiveTuple,
    /// The IP the relay is advertised at (the core names the relay by it and the
    /// port the IO layer answers with).
    pub ip: IpAddr,
    /// The relay address family: `ip`'s.
    pub ipv6: bool,
    /// A dual allocation (RFC 8656 §7.2, ADDITIONAL-ADDRESS-FAMILY): also open an IPv6
    /// relay socket, advertised at this IP, and answer with
    /// [`Server::handle_relays_opened`]. EVEN-PORT and reservations apply to the first
    /// socket only.
    pub additional: Option<IpAddr>,
    /// RFC 8656 §14.6 EVEN-PORT: the port must be even.
    pub even_port: bool,
    /// EVEN-PORT with the R bit (RFC 8656 §7.2): also bind the next port up and hold
    /// it under this reservation token for [`RESERVATION_LIFETIME`]. Reservations are
    /// the IO layer's: the Allocate that presents the token may land on another worker.
    pub reserve: Option<u64>,
    /// RESERVATION-TOKEN presented: open the socket held under it (answer `None` if
    /// there is none; the client gets 508).
    pub reservation: Option<u64>,
    /// RFC 8656 §14.8 DONT-FRAGMENT: set DF on the relay socket.
    pub dont_fragment: bool,
    /// A TCP allocation (RFC 6062): the relay is a listening TCP socket on the port,
    /// from which Connects are made too.
    pub tcp: bool,
}

/// Something for the IO layer to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send bytes.
    Transmit(Transmit),
    /// Open a relay socket.
    OpenRelay(RelayRequest),
    /// Close the relay socket of this relayed address (its allocation is gone).
    CloseRelay(SocketAddr),
    /// Connect from the TCP relay `relay` to `peer` (RFC 6062 §5.2); answer with
    /// [`Server::handle_peer_connected`].
    ConnectPeer {
        /// The connection id to answer with.
        id: u32,
        /// The relayed address to connect from.
        relay: SocketAddr,
        /// The peer.
        peer: SocketAddr,
    },
    /// The client connection `client` is now the data connection of peer connection
    /// `id`: after the bytes already queued for it (the ConnectionBind answer), relay
    /// raw bytes between the two, both ways (RFC 6062 §5.4).
    BindConnection {
        /// The peer connection.
        id: u32,
        /// The client's data connection.
        client: FiveTuple,
    },
    /// Close peer connection `id` and its data connection, if any.
    CloseConnection(u32),
    /// This channel can be relayed in the kernel (only while
    /// [`set_offload`](Server::set_offload) is on; may repeat).
    OffloadUp(crate::OffloadChannel),
    /// This channel must no longer be relayed in the kernel: it expired, lost its
    /// permission or its peer's admission, or its allocation ended.
    OffloadDown(crate::OffloadChannel),
    /// Report an event.
    Event(Event),
}

/// A datagram to relay, in the caller's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// The socket to send from.
    pub from: Source,
    /// The destination.
    pub to: SocketAddr,
    /// The bytes to send: this range of the buffer given to the `handle_*` call.
    pub range: Range<usize>,
}

/// An Allocate waiting for its relay socket.
#[derive(Debug, Clone)]
pub(crate) struct PendingAllocate {
    pub(crate) request: Vec<u8>,
    pub(crate) auth: crate::auth::Authenticated,
    pub(crate) lifetime: Duration,
    pub(crate) reserve: Option<u64>,
    /// The relay IP of the requested family.
    pub(crate) ip: IpAddr,
    /// Whether the client asked for a dual allocation.
    pub(crate) dual: bool,
    /// It asked with coturn's pre-RFC codepoint (answer in kind).
    pub(crate) legacy: bool,
    /// The IPv6 relay IP of a dual allocation, `None` when the listener has no IPv6
    /// address (the answer then carries ADDRESS-ERROR-CODE 440).
    pub(crate) ip6: Option<IpAddr>,
    /// The client went away (or the server closed everything) before the relay sockets
    /// were opened: the answer only closes them.
    pub(crate) cancelled: bool,
    /// A TCP allocation (RFC 6062).
    pub(crate) tcp: bool,
}

/// How long a reserved port is held (RFC 8656 §7.2 suggests about 30 s).
pub const RESERVATION_LIFETIME: Duration = Duration::from_secs(30);

/// A sans-IO TURN server for one listener socket.
pub struct Server {
    pub(crate) config: ServerConfig,
    epoch: Instant,
    unix_at_epoch: i64,
    pub(crate) nonces: NonceKey,
    pub(crate) allocations: HashMap<FiveTuple, Allocation>,
    pub(crate) by_relay: HashMap<SocketAddr, FiveTuple>,
    pub(crate) pending: HashMap<u64, (FiveTuple, PendingAllocate)>,
    pub(crate) pending_by_ft: HashMap<FiveTuple, u64>,
    next_token: u64,
    pub(crate) per_user: HashMap<String, u32>,
    pub(crate) timers: Timers,
    pub(crate) outputs: VecDeque<Output>,
    pub(crate) stats: Stats,
    pub(crate) draining: bool,
    /// Peer connections of TCP allocations, by connection id (RFC 6062).
    pub(crate) connections: HashMap<u32, crate::tcp_relay::Connection>,
    /// Client data connections, bound to a peer connection.
    pub(crate) data_connections: HashMap<FiveTuple, u32>,
    /// Whether channels are reported for kernel offload (`offload.rs`).
    pub(crate) offload: bool,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("config", &self.config)
            .field("allocations", &self.allocations.len())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A server. `now` and `unix_now` (seconds) are the same instant on the monotonic
    /// and the wall clock; `nonce_key` must be random (it makes nonces unforgeable).
    pub fn new(config: ServerConfig, now: Instant, unix_now: i64, nonce_key: [u8; 32]) -> Self {
        let stats = Stats::for_policy(&config.policy);
        Self {
            config,
            epoch: now,
            unix_at_epoch: unix_now,
            nonces: NonceKey::new(nonce_key),
            allocations: HashMap::new(),
            by_relay: HashMap::new(),
            pending: HashMap::new(),
            pending_by_ft: HashMap::new(),
            next_token: 1,
            per_user: HashMap::new(),
            timers: Timers::default(),
            outputs: VecDeque::new(),
            stats,
            draining: false,
            connections: HashMap::new(),
            data_connections: HashMap::new(),
            offload: false,
        }
    }

    /// Applies a new config in place: credentials, realm, policy and quota apply to the
    /// next request or datagram; allocations stay. Allocations whose relay family no
    /// longer matches keep their relayed address until they end.
    pub fn set_config(&mut self, config: ServerConfig) {
        self.stats.rebind(&config.policy);
        self.config = config;
    }

    /// Graceful shutdown: new Allocates are refused with 508 so that the drain ends;
    /// existing allocations go on (refresh, permissions, channels, data) until they end.
    pub fn set_draining(&mut self, draining: bool) {
        self.draining = draining;
    }

    /// The current config.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// The peer policy, to feed resolved DNS names in.
    pub fn policy_mut(&mut self) -> &mut PeerPolicy {
        &mut self.config.policy
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The number of live allocations.
    pub fn allocation_count(&self) -> usize {
        self.allocations.len()
    }

    /// Seconds since the server's epoch, for nonces.
    pub(crate) fn epoch_secs(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_secs()
    }

    /// Wall-clock unix seconds at `now`, for ephemeral credentials.
    pub(crate) fn unix(&self, now: Instant) -> i64 {
        let secs = i64::try_from(self.epoch_secs(now)).unwrap_or(i64::MAX);
        self.unix_at_epoch.saturating_add(secs)
    }

    /// A fresh nonce.
    pub(crate) fn nonce(&self, now: Instant) -> String {
        self.nonces
            .make(self.epoch_secs(now) + self.config.nonce_lifetime.as_secs())
    }

    pub(crate) fn drop_packet(&mut self, reason: DropReason) {
        self.stats.count_drop(reason);
    }

    pub(crate) fn transmit(&mut self, from: Source, to: SocketAddr, data: Vec<u8>) {
        self.outputs
            .push_back(Output::Transmit(Transmit { from, to, data }));
    }

    pub(crate) fn event(&mut self, e: Event) {
        self.outputs.push_back(Output::Event(e));
    }

    pub(crate) fn next_token(&mut self) -> u64 {
        let t = self.next_token;
        self.next_token += 1;
        t
    }

    /// A datagram (or one stream frame) from a client on `five_tuple`. Returns the
    /// ChannelData payload to relay, if it is one; anything else is answered through
    /// [`poll_output`](Self::poll_output).
    pub fn handle_client(
        &mut self,
        now: Instant,
        five_tuple: FiveTuple,
        data: &[u8],
    ) -> Option<Forward> {
        match data.first() {
            Some(0x00..=0x03) => {
                self.handle_stun(now, five_tuple, data);
                None
            }
            Some(0x40..=0x7F) => self.handle_channel_data(now, five_tuple, data),
            _ => {
                self.drop_packet(DropReason::Malformed);
                None
            }
        }
    }

    fn handle_stun(&mut self, now: Instant, ft: FiveTuple, data: &[u8]) {
        let Ok(msg) = Message::from_bytes(data) else {
            self.drop_packet(DropReason::Malformed);
            return;
        };
        match msg.class() {
            MessageClass::Request => self.handle_request(now, ft, &msg),
            MessageClass::Indication => self.handle_indication(now, ft, &msg),
            _ => self.drop_packet(DropReason::Unexpected),
        }
    }

    /// The client on `five_tuple` is gone (its TCP/TLS connection closed): its
    /// allocation ends (RFC 8656 §3.1).
    pub fn handle_client_closed(&mut self, now: Instant, five_tuple: FiveTuple) {
        if let Some(token) = self.pending_by_ft.remove(&five_tuple)
            && let Some((_, p)) = self.pending.get_mut(&token)
            && !p.cancelled
        {
            p.cancelled = true;
            let user = p.auth.user.clone();
            self.release_user(&user);
        }
        if let Some(id) = self.data_connections.get(&five_tuple).copied() {
            self.close_connection(now, id);
        }
        self.delete_allocation(now, five_tuple, false);
    }

    /// Expires allocations, permissions and channels due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((at, ft)) = self.timers.pop_due(now) {
            let Some(a) = self.allocations.get_mut(&ft) else {
                continue;
            };
            if a.armed != Some(at) {
                continue; // stale entry
            }
            a.armed = None;
            if a.expiry <= now {
                self.delete_allocation(now, ft, true);
                continue;
            }
            let mut gone = Vec::new();
            let (relay, relay6) = (a.relay, a.relay6);
            let of = |ip: IpAddr| match relay6 {
                Some(r6) if ip.is_ipv6() => r6,
                _ => relay,
            };
            a.permissions.retain(|ip, e| {
                let keep = *e > now;
                if !keep {
                    gone.push(Event::PermissionDeleted {
                        relay: of(*ip),
                        peer: *ip,
                    });
                }
                keep
            });
            let lost: Vec<IpAddr> = gone
                .iter()
                .filter_map(|e| match e {
                    Event::PermissionDeleted { peer, .. } => Some(*peer),
                    _ => None,
                })
                .collect();
            let expired: Vec<u16> = a
                .channels
                .iter()
                .filter(|(_, c)| c.expiry <= now)
                .map(|(n, _)| *n)
                .collect();
            let mut unbound = Vec::new();
            for n in expired {
                let mut channel_relay = relay;
                if let Some(c) = a.channels.remove(&n) {
                    a.peer_channels.remove(&c.peer);
                    channel_relay = of(c.peer.ip());
                    unbound.push((n, channel_relay, c.peer));
                }
                gone.push(Event::ChannelDeleted {
                    relay: channel_relay,
                    channel: n,
                });
            }
            for (n, r, p) in unbound {
                self.report_gone(ft, n, r, p);
            }
            // Channels still bound whose peer lost its permission stop being offloaded.
            if !lost.is_empty() {
                self.report_channels(ft, now, |p| lost.contains(&p.ip()));
            }
            self.expire_connections(now, ft);
            self.rearm(ft);
            for e in gone {
                self.event(e);
            }
        }
    }

    /// Arms the allocation's timer at its next deadline, if earlier than the armed one.
    pub(crate) fn rearm(&mut self, ft: FiveTuple) {
        let Some(a) = self.allocations.get_mut(&ft) else {
            return;
        };
        let next = a.next_deadline();
        if a.armed.is_none_or(|armed| next < armed) {
            a.armed = Some(next);
            self.timers.arm(next, ft);
        }
    }

    /// Deletes an allocation and asks for its relay socket to be closed.
    pub(crate) fn delete_allocation(&mut self, now: Instant, ft: FiveTuple, expired: bool) {
        self.close_connections_of(now, ft);
        let Some(a) = self.allocations.remove(&ft) else {
            return;
        };
        for (&n, c) in &a.channels {
            if let Some(r) = a.relay_for(c.peer.ip()) {
                self.report_gone(ft, n, r, c.peer);
            }
        }
        for r in a.relays() {
            self.by_relay.remove(&r);
            self.outputs.push_back(Output::CloseRelay(r));
        }
        self.release_user(&a.user);
        self.event(Event::AllocationDeleted {
            five_tuple: ft,
            relay: a.relay,
            expired,
            duration: now.saturating_duration_since(a.created),
        });
        if self.allocations.is_empty() {
            self.timers.clear();
        }
    }

    /// Ends every allocation (shutdown).
    pub fn close_all(&mut self, now: Instant) {
        let all: Vec<FiveTuple> = self.allocations.keys().copied().collect();
        for ft in all {
            self.delete_allocation(now, ft, false);
        }
        // Sockets being opened are closed when their answer comes.
        for (_, p) in self.pending.values_mut() {
            p.cancelled = true;
        }
        self.pending_by_ft.clear();
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// The next thing for the IO layer to do.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }
}
