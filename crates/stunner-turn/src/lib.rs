//! The TURN server of STUNner-rs as a sans-IO state machine (RFC 8489 STUN, RFC 8656
//! TURN, RFC 6156 IPv6), with STUNner's static and ephemeral credentials and its peer
//! policy (a listener reaches only the backends of the clusters it routes to).
//!
//! No sockets, no clock: every input carries its time, and the IO layer drains the
//! outputs. One [`Server`] serves one listener socket (one per worker for UDP).
//!
//! The run loop of an IO layer:
//! 1. a datagram from a client: [`Server::handle_client`]; if it returns a
//!    [`Forward`], send that slice of the datagram from the relay socket to the peer;
//! 2. a datagram on a relay socket: [`Server::handle_peer`], into a buffer with
//!    [`CHANNEL_HEADROOM`] bytes free in front; a [`Forward`] goes to the client;
//! 3. after each input, drain [`Server::poll_output`]: transmits, relay sockets to
//!    open ([`Server::handle_relay_opened`] answers) or close, events;
//! 4. call [`Server::handle_timeout`] at [`Server::poll_timeout`].
//!
//! Where upstream STUNner (pion/turn) deviates from the RFCs, this crate follows the
//! RFCs: a denied peer gets 403 (upstream: 401 or no error code), ChannelBind checks the
//! peer's port against the cluster's port range, and special-purpose peers (loopback,
//! link-local incl. 169.254.169.254, multicast, unspecified) are denied unless a cluster
//! names them explicitly.

mod allocate;
mod allocation;
mod auth;
mod binding;
mod channel_bind;
mod channel_data;
mod client;
mod error;
mod event;
mod framing;
mod nonce;
mod offload;
mod permission;
mod policy;
mod refresh;
mod request;
mod response;
mod send;
mod server;
mod stats;
mod tcp_relay;
mod timer;
mod transport;

pub use allocation::{
    CHANNEL_LIFETIME, DEFAULT_LIFETIME, MAX_CHANNEL, MAX_LIFETIME, MIN_CHANNEL, PERMISSION_LIFETIME,
};
pub use auth::Credentials;
pub use client::{Client, Received, RelayFamily, Request};
pub use error::Error;
pub use event::{DropReason, Event};
pub use framing::{FramingError, frame_len};
pub use offload::OffloadChannel;
pub use policy::PeerPolicy;
pub use server::{
    CHANNEL_HEADROOM, CHANNEL_TAILROOM, Forward, Output, RESERVATION_LIFETIME, RelayRequest,
    Server, ServerConfig,
};
pub use stats::{ClusterStats, Counter, Stats};
pub use tcp_relay::{CONNECT_TIMEOUT, CONNECTION_BIND_TIMEOUT};
pub use transport::{FiveTuple, Source, Transmit, TransportKind};
