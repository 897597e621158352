//! A sans-IO TURN client (RFC 8656 §7–12) for turncat, tests and the load generator:
//! Allocate with the 401 dance, Refresh, CreatePermission, ChannelBind, Send and
//! ChannelData, over datagram or stream framing, and RFC 6062's TCP allocations
//! (Connect, ConnectionBind, ConnectionAttempt). It builds bytes to send and reads
//! bytes received; the caller owns the socket and the clock.

use std::net::SocketAddr;

use stun_types::AddressFamily;
use stun_types::attribute::{
    ErrorCode, MessageIntegrity, Nonce, Realm, Username, XorMappedAddress,
};
use stun_types::message::{
    BINDING, IntegrityAlgorithm, LongTermKeyCredentials, Message, MessageClass,
    MessageIntegrityCredentials, MessageType, MessageWrite, MessageWriteExt, MessageWriteVec,
    Method, TransactionId,
};
use turn_types::attribute::{
    AdditionalAddressFamily, ChannelNumber, ConnectionId, Data, Lifetime, RequestedAddressFamily,
    RequestedTransport, XorPeerAddress, XorRelayedAddress,
};
use turn_types::message::{
    ALLOCATE, CHANNEL_BIND, CONNECT, CONNECTION_ATTEMPT, CONNECTION_BIND, CREATE_PERMISSION, DATA,
    REFRESH, SEND,
};

use crate::transport::TransportKind;

/// A request the client can make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// STUN Binding.
    Binding,
    /// Allocate a UDP relay, with an optional LIFETIME in seconds.
    Allocate {
        /// Requested lifetime.
        lifetime: Option<u32>,
    },
    /// Refresh the allocation (0 deletes it).
    Refresh {
        /// Requested lifetime.
        lifetime: u32,
    },
    /// Permissions for these peers.
    CreatePermission {
        /// Peers (ports are ignored by the server).
        peers: Vec<SocketAddr>,
    },
    /// Bind a channel.
    ChannelBind {
        /// Channel number, 0x4000–0x4FFF.
        channel: u16,
        /// The peer.
        peer: SocketAddr,
    },
    /// Allocate a UDP relay of an address family, or of both (RFC 8656 §7.2).
    AllocateFamily {
        /// Requested lifetime.
        lifetime: Option<u32>,
        /// What to ask for.
        family: RelayFamily,
    },
    /// Allocate a TCP relay (RFC 6062 §4.1), over TCP or TLS.
    AllocateTcp {
        /// Requested lifetime.
        lifetime: Option<u32>,
    },
    /// Connect the TCP relay to a peer (RFC 6062 §4.3).
    Connect {
        /// The peer.
        peer: SocketAddr,
    },
    /// Claim a peer connection on a new client connection (RFC 6062 §4.4).
    ConnectionBind {
        /// CONNECTION-ID from Connect's answer or a ConnectionAttempt.
        id: u32,
    },
}

impl Request {
    fn method(&self) -> Method {
        match self {
            Self::Binding => BINDING,
            Self::Allocate { .. } => ALLOCATE,
            Self::Refresh { .. } => REFRESH,
            Self::CreatePermission { .. } => CREATE_PERMISSION,
            Self::ChannelBind { .. } => CHANNEL_BIND,
            Self::AllocateTcp { .. } | Self::AllocateFamily { .. } => ALLOCATE,
            Self::Connect { .. } => CONNECT,
            Self::ConnectionBind { .. } => CONNECTION_BIND,
        }
    }
}

/// The relay address families an [`Request::AllocateFamily`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayFamily {
    /// REQUESTED-ADDRESS-FAMILY IPv4.
    Ipv4,
    /// REQUESTED-ADDRESS-FAMILY IPv6.
    Ipv6,
    /// ADDITIONAL-ADDRESS-FAMILY IPv6: an IPv4 and an IPv6 relay (the answer's first
    /// XOR-RELAYED-ADDRESS is the one reported).
    Dual,
}

/// What a received message meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// The server asked for credentials (or a fresh nonce): send these bytes, the same
    /// request again with them.
    Retry(Vec<u8>),
    /// Binding success.
    Mapped(SocketAddr),
    /// Allocate success.
    Allocated {
        /// The relayed address.
        relayed: SocketAddr,
        /// The client's address as the server sees it.
        mapped: Option<SocketAddr>,
        /// Granted lifetime, seconds.
        lifetime: u32,
    },
    /// Refresh success.
    Refreshed {
        /// Granted lifetime, seconds (0: deleted).
        lifetime: u32,
    },
    /// CreatePermission success.
    PermissionCreated,
    /// ChannelBind success.
    ChannelBound,
    /// Connect success: the peer connection's id (RFC 6062 §4.3).
    Connected {
        /// CONNECTION-ID.
        id: u32,
    },
    /// ConnectionBind success: the connection now carries raw bytes.
    ConnectionBound,
    /// A peer connected to the TCP relay (RFC 6062 §4.4, ConnectionAttempt).
    ConnectionAttempt {
        /// CONNECTION-ID to bind.
        id: u32,
        /// The peer.
        peer: SocketAddr,
    },
    /// An error response.
    Failed {
        /// The request that failed.
        request: Request,
        /// ERROR-CODE code.
        code: u16,
        /// ERROR-CODE reason.
        reason: String,
    },
    /// Data from a peer (Data indication), with the payload range in the input.
    Data {
        /// The peer.
        peer: SocketAddr,
        /// The payload.
        payload: Vec<u8>,
    },
    /// ChannelData from a peer: the payload is this range of the input.
    ChannelData {
        /// The channel.
        channel: u16,
        /// Payload range in the input bytes.
        range: std::ops::Range<usize>,
    },
    /// Not for us (unknown transaction, malformed, unexpected).
    Ignored,
}

/// A TURN client.
pub struct Client {
    username: String,
    password: String,
    transport: TransportKind,
    realm: Option<String>,
    nonce: Option<String>,
    rng: u64,
    /// Outstanding requests: transaction id, request, whether it carried credentials.
    outstanding: Vec<(u128, Request, bool)>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("username", &self.username)
            .field("realm", &self.realm)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client with long-term credentials. `seed` drives transaction ids (pass a
    /// random one; a fixed one makes tests deterministic).
    pub fn new(username: &str, password: &str, transport: TransportKind, seed: u64) -> Self {
        Self {
            username: username.to_string(),
            password: password.to_string(),
            transport,
            realm: None,
            nonce: None,
            rng: seed | 1,
            outstanding: Vec::new(),
        }
    }

    /// Replaces the credentials (e.g. a new ephemeral password); the next request uses
    /// them.
    pub fn set_credentials(&mut self, username: &str, password: &str) {
        self.username = username.to_string();
        self.password = password.to_string();
    }

    fn next_tid(&mut self) -> TransactionId {
        // xorshift64*, twice for 96 bits.
        let mut next = || {
            self.rng ^= self.rng >> 12;
            self.rng ^= self.rng << 25;
            self.rng ^= self.rng >> 27;
            self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
        };
        let hi = u128::from(next());
        let lo = u128::from(next());
        TransactionId::from(((hi << 64) | lo) & ((1u128 << 96) - 1))
    }

    fn key(&self) -> Option<MessageIntegrityCredentials> {
        let realm = self.realm.clone()?;
        Some(
            LongTermKeyCredentials::new(self.username.clone(), self.password.clone(), realm).into(),
        )
    }

    /// The bytes of `req`, with credentials once the server has sent a realm and nonce.
    pub fn request(&mut self, req: Request) -> Vec<u8> {
        let tid = self.next_tid();
        let mut w = Message::builder(
            MessageType::from_class_method(MessageClass::Request, req.method()),
            tid,
            MessageWriteVec::with_capacity(128),
        );
        // Attributes we build always fit; ignoring the error keeps this infallible.
        match &req {
            Request::Binding => {}
            Request::Allocate { lifetime } => {
                let _ = w.add_attribute(&RequestedTransport::new(RequestedTransport::UDP));
                if let Some(l) = lifetime {
                    let _ = w.add_attribute(&Lifetime::new(*l));
                }
            }
            Request::Refresh { lifetime } => {
                let _ = w.add_attribute(&Lifetime::new(*lifetime));
            }
            Request::CreatePermission { peers } => {
                for p in peers {
                    let _ = w.add_attribute(&XorPeerAddress::new(*p, tid));
                }
            }
            Request::ChannelBind { channel, peer } => {
                let _ = w.add_attribute(&ChannelNumber::new(*channel));
                let _ = w.add_attribute(&XorPeerAddress::new(*peer, tid));
            }
            Request::AllocateFamily { lifetime, family } => {
                const IPV4: AddressFamily = AddressFamily::IPV4;
                const IPV6: AddressFamily = AddressFamily::IPV6;
                let _ = w.add_attribute(&RequestedTransport::new(RequestedTransport::UDP));
                let _ = match family {
                    RelayFamily::Ipv4 => w.add_attribute(&RequestedAddressFamily::new(IPV4)),
                    RelayFamily::Ipv6 => w.add_attribute(&RequestedAddressFamily::new(IPV6)),
                    RelayFamily::Dual => w.add_attribute(&AdditionalAddressFamily::new(IPV6)),
                };
                if let Some(l) = lifetime {
                    let _ = w.add_attribute(&Lifetime::new(*l));
                }
            }
            Request::AllocateTcp { lifetime } => {
                let _ = w.add_attribute(&RequestedTransport::new(RequestedTransport::TCP));
                if let Some(l) = lifetime {
                    let _ = w.add_attribute(&Lifetime::new(*l));
                }
            }
            Request::Connect { peer } => {
                let _ = w.add_attribute(&XorPeerAddress::new(*peer, tid));
            }
            Request::ConnectionBind { id } => {
                let _ = w.add_attribute(&ConnectionId::new(*id));
            }
        }
        let signed = req != Request::Binding && self.nonce.is_some();
        if signed
            && let (Some(key), Some(realm), Some(nonce)) =
                (self.key(), self.realm.clone(), self.nonce.clone())
        {
            if let Ok(u) = Username::new(&self.username) {
                let _ = w.add_attribute(&u);
            }
            if let Ok(r) = Realm::new(&realm) {
                let _ = w.add_attribute(&r);
            }
            if let Ok(n) = Nonce::new(&nonce) {
                let _ = w.add_attribute(&n);
            }
            let _ = w.add_message_integrity(&key, IntegrityAlgorithm::Sha1);
        }
        let _ = w.add_fingerprint();
        self.outstanding.push((u128::from(tid), req, signed));
        if self.outstanding.len() > 64 {
            self.outstanding.remove(0);
        }
        w.finish()
    }

    /// A Send indication to `peer`.
    pub fn send_indication(&mut self, peer: SocketAddr, data: &[u8]) -> Vec<u8> {
        let tid = self.next_tid();
        let mut w = Message::builder(
            MessageType::from_class_method(MessageClass::Indication, SEND),
            tid,
            MessageWriteVec::with_capacity(data.len() + 48),
        );
        let _ = w.add_attribute(&XorPeerAddress::new(peer, tid));
        let _ = w.add_attribute(&Data::new(data));
        w.finish()
    }

    /// A ChannelData frame (padded to 4 bytes over streams, RFC 8656 §12.5, and DTLS).
    pub fn channel_data(&self, channel: u16, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() + 7);
        out.extend_from_slice(&channel.to_be_bytes());
        out.extend_from_slice(&u16::try_from(data.len()).unwrap_or(u16::MAX).to_be_bytes());
        out.extend_from_slice(data);
        if self.transport.pads_channel_data() {
            out.resize(out.len() + (4 - data.len() % 4) % 4, 0);
        }
        out
    }

    /// Reads one datagram or stream frame from the server.
    pub fn receive(&mut self, data: &[u8]) -> Received {
        match data.first() {
            Some(0x40..=0x7F) if data.len() >= 4 => {
                let ch = u16::from_be_bytes([data[0], data[1]]);
                let len = usize::from(u16::from_be_bytes([data[2], data[3]]));
                if 4 + len > data.len() {
                    return Received::Ignored;
                }
                Received::ChannelData {
                    channel: ch,
                    range: 4..4 + len,
                }
            }
            Some(0x00..=0x03) => match Message::from_bytes(data) {
                Ok(msg) => self.receive_stun(&msg),
                Err(_) => Received::Ignored,
            },
            _ => Received::Ignored,
        }
    }

    fn receive_stun(&mut self, msg: &Message<'_>) -> Received {
        if msg.class() == MessageClass::Indication {
            if msg.method() == CONNECTION_ATTEMPT {
                return match (
                    msg.attribute::<ConnectionId>(),
                    msg.attribute::<XorPeerAddress>(),
                ) {
                    (Ok(c), Ok(p)) => Received::ConnectionAttempt {
                        id: c.id(),
                        peer: p.addr(msg.transaction_id()),
                    },
                    _ => Received::Ignored,
                };
            }
            if msg.method() != DATA {
                return Received::Ignored;
            }
            return match (msg.attribute::<XorPeerAddress>(), msg.attribute::<Data>()) {
                (Ok(p), Ok(d)) => Received::Data {
                    peer: p.addr(msg.transaction_id()),
                    payload: d.data().to_vec(),
                },
                _ => Received::Ignored,
            };
        }
        let tid = u128::from(msg.transaction_id());
        let Some(pos) = self.outstanding.iter().position(|(t, ..)| *t == tid) else {
            return Received::Ignored;
        };
        let (_, req, signed) = self.outstanding.remove(pos);
        let tid = msg.transaction_id();
        if msg.class() == MessageClass::Error {
            let err = msg.attribute::<ErrorCode>().ok();
            let code = err.as_ref().map_or(0, ErrorCode::code);
            // 401 on an unsigned request, or 438 on any: take the realm and nonce and
            // try again (RFC 8489 §9.2.3, §9.2.5).
            if (code == 401 && !signed) || code == 438 {
                if let Ok(r) = msg.attribute::<Realm>() {
                    self.realm = Some(r.realm().to_string());
                }
                if let Ok(n) = msg.attribute::<Nonce>() {
                    self.nonce = Some(n.nonce().to_string());
                    return Received::Retry(self.request(req));
                }
            }
            return Received::Failed {
                request: req,
                code,
                reason: err.map(|e| e.reason().to_string()).unwrap_or_default(),
            };
        }
        // Success responses to signed requests must be signed by the server.
        if signed
            && let Some(key) = self.key()
            && (!msg.has_attribute(
                <MessageIntegrity as stun_types::attribute::AttributeStaticType>::TYPE,
            ) || msg.validate_integrity(&key).is_err())
        {
            return Received::Ignored;
        }
        match req {
            Request::Binding => msg
                .attribute::<XorMappedAddress>()
                .map_or(Received::Ignored, |a| Received::Mapped(a.addr(tid))),
            Request::Allocate { .. }
            | Request::AllocateFamily { .. }
            | Request::AllocateTcp { .. } => match msg.attribute::<XorRelayedAddress>() {
                Ok(r) => Received::Allocated {
                    relayed: r.addr(tid),
                    mapped: msg
                        .attribute::<XorMappedAddress>()
                        .ok()
                        .map(|m| m.addr(tid)),
                    lifetime: msg.attribute::<Lifetime>().map_or(0, |l| l.seconds()),
                },
                Err(_) => Received::Ignored,
            },
            Request::Refresh { .. } => Received::Refreshed {
                lifetime: msg.attribute::<Lifetime>().map_or(0, |l| l.seconds()),
            },
            Request::CreatePermission { .. } => Received::PermissionCreated,
            Request::ChannelBind { .. } => Received::ChannelBound,
            Request::Connect { .. } => msg
                .attribute::<ConnectionId>()
                .map_or(Received::Ignored, |c| Received::Connected { id: c.id() }),
            Request::ConnectionBind { .. } => Received::ConnectionBound,
        }
    }
}
