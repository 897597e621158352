//! TCP allocations (RFC 6062): Connect (§5.2) opens a connection from the relay to a
//! peer, a peer connecting to the relay is offered with ConnectionAttempt (§5.3), and a
//! new client connection claims either with ConnectionBind (§5.4); from then on the IO
//! layer relays raw bytes between the two streams and the core only hears of their end.
//! Every connection not bound within [`CONNECTION_BIND_TIMEOUT`] is closed; a Connect
//! that does not complete within [`CONNECT_TIMEOUT`] fails with 447.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use stun_types::message::{
    Message, MessageClass, MessageType, MessageWrite, MessageWriteExt, MessageWriteVec,
};
use turn_types::attribute::{ConnectionId, XorPeerAddress};
use turn_types::message::CONNECTION_ATTEMPT;

use crate::Error;
use crate::auth::Authenticated;
use crate::event::{DropReason, Event};
use crate::permission::canonical;
use crate::response;
use crate::server::{Output, Server};
use crate::transport::{FiveTuple, Source};

/// How long a peer connection waits for the client's ConnectionBind (RFC 6062 §5.2 and
/// §5.3: 30 seconds).
pub const CONNECTION_BIND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the server tries to reach a peer for a Connect before answering 447.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a peer connection is in its life.
#[derive(Debug, Clone)]
pub(crate) enum ConnectionState {
    /// Connect sent to the IO layer; the client's request waits for its answer.
    Connecting {
        request: Vec<u8>,
        auth: Authenticated,
    },
    /// Connected, waiting for the client's ConnectionBind.
    Unbound,
    /// Bound to the client's data connection (its five-tuple): raw bytes flow.
    Bound(FiveTuple),
}

/// A peer connection of a TCP allocation.
#[derive(Debug, Clone)]
pub(crate) struct Connection {
    /// The allocation's control connection.
    pub(crate) owner: FiveTuple,
    pub(crate) relay: SocketAddr,
    pub(crate) peer: SocketAddr,
    pub(crate) state: ConnectionState,
}

/// The TCP side of an allocation: its peer connections, by peer and with the deadline
/// of each that is not bound yet.
#[derive(Debug, Clone, Default)]
pub(crate) struct TcpRelay {
    pub(crate) by_peer: HashMap<SocketAddr, u32>,
    pub(crate) deadlines: HashMap<u32, Instant>,
}

impl Server {
    /// A fresh, unused, non-zero connection id.
    fn connection_id(&mut self) -> u32 {
        loop {
            // Low 32 bits of a counter mixed with the nonce key's output: unique, and
            // not guessable from one client's ids (a ConnectionBind still needs the
            // allocation owner's credentials).
            let n = self.next_token();
            let s = self.nonces.make(n);
            let id = u32::from_str_radix(&s[24..], 16).unwrap_or(n as u32) ^ (n as u32);
            if id != 0 && !self.connections.contains_key(&id) {
                return id;
            }
        }
    }

    /// Connect (RFC 6062 §5.2): checks the request and asks the IO layer to connect.
    pub(crate) fn handle_connect(
        &mut self,
        now: Instant,
        ft: FiveTuple,
        msg: &Message<'_>,
        auth: &Authenticated,
    ) -> Result<(), Error> {
        let a = self.owned_allocation(ft, auth)?;
        if a.tcp.is_none() {
            return Err(Error::BadRequest("Connect on a UDP allocation"));
        }
        let peer = canonical(
            msg.attribute::<XorPeerAddress>()
                .map_err(|_| Error::BadRequest("missing XOR-PEER-ADDRESS"))?
                .addr(msg.transaction_id()),
        );
        let relay = self.check_peer(ft, peer)?;
        if self
            .tcp_relay(ft)
            .is_some_and(|t| t.by_peer.contains_key(&peer))
        {
            return Err(Error::ConnectionAlreadyExists);
        }
        let id = self.connection_id();
        self.connections.insert(
            id,
            Connection {
                owner: ft,
                relay,
                peer,
                state: ConnectionState::Connecting {
                    request: msg.as_bytes().to_vec(),
                    auth: auth.clone(),
                },
            },
        );
        if let Some(t) = self.tcp_relay_mut(ft) {
            t.by_peer.insert(peer, id);
            t.deadlines.insert(id, now + CONNECT_TIMEOUT);
        }
        self.rearm(ft);
        self.outputs
            .push_back(Output::ConnectPeer { id, relay, peer });
        Ok(())
    }

    /// The IO layer's answer to [`Output::ConnectPeer`]: whether the connection to the
    /// peer was established. The client gets CONNECTION-ID, or 447.
    pub fn handle_peer_connected(&mut self, now: Instant, id: u32, connected: bool) {
        let Some(c) = self.connections.get_mut(&id) else {
            return;
        };
        let ConnectionState::Connecting { request, auth } = &c.state else {
            return;
        };
        let (request, auth, owner) = (request.clone(), auth.clone(), c.owner);
        let Ok(msg) = Message::from_bytes(&request) else {
            return;
        };
        if !connected {
            self.close_connection(now, id);
            self.respond_error(now, owner, &msg, &Error::ConnectionFailed, Some(&auth));
            return;
        }
        let bytes = response::success(&msg, &[&ConnectionId::new(id)], Some(&auth));
        if bytes.is_none() {
            self.close_connection(now, id);
            self.drop_packet(DropReason::Unencodable);
            return;
        }
        c.state = ConnectionState::Unbound;
        let (relay, peer) = (c.relay, c.peer);
        if let Some(t) = self.tcp_relay_mut(owner) {
            t.deadlines.insert(id, now + CONNECTION_BIND_TIMEOUT);
        }
        self.rearm(owner);
        self.event(Event::TcpConnectionOpened { relay, peer, id });
        self.respond(owner, bytes);
    }

    /// A peer connected to the relay of a TCP allocation (RFC 6062 §5.3). Returns the
    /// connection id to hold it under, or `None`: close it (no permission, no route, or
    /// a connection with that peer exists). The IO layer should not read from it until
    /// it is bound: the peer's bytes wait in the kernel, which pushes back on the peer.
    pub fn handle_peer_connection(
        &mut self,
        now: Instant,
        relay: SocketAddr,
        peer: SocketAddr,
    ) -> Option<u32> {
        let peer = canonical(peer);
        let ft = *self.by_relay.get(&relay)?;
        let a = self.allocations.get(&ft)?;
        let tcp = a.tcp.as_ref()?;
        if !a.permitted(peer.ip(), now) {
            self.drop_packet(DropReason::NoPermission);
            return None;
        }
        if tcp.by_peer.contains_key(&peer) {
            return None;
        }
        if self
            .config
            .policy
            .admit_tcp(peer.ip(), peer.port())
            .is_none()
        {
            self.drop_packet(DropReason::PolicyDenied);
            return None;
        }
        let id = self.connection_id();
        self.connections.insert(
            id,
            Connection {
                owner: ft,
                relay,
                peer,
                state: ConnectionState::Unbound,
            },
        );
        if let Some(t) = self.tcp_relay_mut(ft) {
            t.by_peer.insert(peer, id);
            t.deadlines.insert(id, now + CONNECTION_BIND_TIMEOUT);
        }
        self.rearm(ft);
        self.event(Event::TcpConnectionOpened { relay, peer, id });
        let tid = self.indication_id();
        let mut w = Message::builder(
            MessageType::from_class_method(MessageClass::Indication, CONNECTION_ATTEMPT),
            tid,
            MessageWriteVec::with_capacity(64),
        );
        if w.add_attribute(&ConnectionId::new(id)).is_err()
            || w.add_attribute(&XorPeerAddress::new(peer, tid)).is_err()
        {
            self.close_connection(now, id);
            self.drop_packet(DropReason::Unencodable);
            return None;
        }
        self.transmit(Source::Listener(ft.server), ft.client, w.finish());
        Some(id)
    }

    /// ConnectionBind (RFC 6062 §5.4) on a new client connection `ft`: with the
    /// credentials of the allocation's owner it becomes the data connection of the
    /// peer connection named by CONNECTION-ID.
    pub(crate) fn handle_connection_bind(
        &mut self,
        ft: FiveTuple,
        msg: &Message<'_>,
        auth: &Authenticated,
    ) -> Result<(), Error> {
        if !matches!(self.config.transport, crate::TransportKind::Stream) {
            return Err(Error::BadRequest("ConnectionBind needs TCP or TLS"));
        }
        if self.allocations.contains_key(&ft) || self.data_connections.contains_key(&ft) {
            return Err(Error::BadRequest("ConnectionBind on a connection in use"));
        }
        let id = msg
            .attribute::<ConnectionId>()
            .map_err(|_| Error::BadRequest("missing CONNECTION-ID"))?
            .id();
        let c = self
            .connections
            .get(&id)
            .filter(|c| matches!(c.state, ConnectionState::Unbound))
            .ok_or(Error::BadRequest("unknown CONNECTION-ID"))?;
        let owner = c.owner;
        let username = self.allocations.get(&owner).map(|a| a.username.as_str());
        if username != Some(auth.username.as_str()) {
            return Err(Error::WrongCredentials);
        }
        let bytes = response::success(msg, &[], Some(auth));
        if bytes.is_none() {
            self.drop_packet(DropReason::Unencodable);
            return Ok(());
        }
        if let Some(c) = self.connections.get_mut(&id) {
            c.state = ConnectionState::Bound(ft);
        }
        if let Some(t) = self.tcp_relay_mut(owner) {
            t.deadlines.remove(&id);
        }
        self.data_connections.insert(ft, id);
        // The answer goes out first; then the stream carries raw bytes only.
        self.respond(ft, bytes);
        self.outputs
            .push_back(Output::BindConnection { id, client: ft });
        Ok(())
    }

    /// The IO layer saw the peer or the data connection of `id` end: both are closed.
    pub fn handle_connection_closed(&mut self, now: Instant, id: u32) {
        self.close_connection(now, id);
    }

    /// Forgets connection `id` and asks the IO layer to close both of its streams.
    pub(crate) fn close_connection(&mut self, _now: Instant, id: u32) {
        let Some(c) = self.connections.remove(&id) else {
            return;
        };
        if let ConnectionState::Bound(data) = c.state {
            self.data_connections.remove(&data);
        }
        if let Some(t) = self.tcp_relay_mut(c.owner) {
            t.by_peer.remove(&c.peer);
            t.deadlines.remove(&id);
        }
        if !matches!(c.state, ConnectionState::Connecting { .. }) {
            self.event(Event::TcpConnectionClosed { relay: c.relay, id });
        }
        self.outputs.push_back(Output::CloseConnection(id));
    }

    /// Fails Connects and closes unbound connections of `ft` whose time is up.
    pub(crate) fn expire_connections(&mut self, now: Instant, ft: FiveTuple) {
        let Some(t) = self.tcp_relay(ft) else {
            return;
        };
        let due: Vec<u32> = t
            .deadlines
            .iter()
            .filter(|(_, d)| **d <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let connecting = self
                .connections
                .get(&id)
                .is_some_and(|c| matches!(c.state, ConnectionState::Connecting { .. }));
            if connecting {
                // The IO layer's answer, if it ever comes, finds nothing.
                self.handle_peer_connected(now, id, false);
            } else {
                self.close_connection(now, id);
            }
        }
    }

    /// Closes every connection of the allocation of `ft` (it is being deleted).
    pub(crate) fn close_connections_of(&mut self, now: Instant, ft: FiveTuple) {
        let ids: Vec<u32> = self
            .tcp_relay(ft)
            .map(|t| t.by_peer.values().copied().collect())
            .unwrap_or_default();
        for id in ids {
            self.close_connection(now, id);
        }
    }

    fn tcp_relay(&self, ft: FiveTuple) -> Option<&TcpRelay> {
        self.allocations.get(&ft)?.tcp.as_ref()
    }

    fn tcp_relay_mut(&mut self, ft: FiveTuple) -> Option<&mut TcpRelay> {
        self.allocations.get_mut(&ft)?.tcp.as_mut()
    }

    /// The number of peer connections of TCP allocations (any state).
    pub fn tcp_connection_count(&self) -> usize {
        self.connections.len()
    }
}
