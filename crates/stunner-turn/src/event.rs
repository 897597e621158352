//! Events the core reports for logs and metrics.

use std::net::SocketAddr;

use crate::transport::FiveTuple;

/// Why a datagram was dropped (counted in [`Stats`](crate::Stats), not reported per
/// packet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Not STUN, not ChannelData, or malformed.
    Malformed,
    /// No allocation for the five-tuple or relay address.
    NoAllocation,
    /// The peer has no permission (RFC 8656 §9).
    NoPermission,
    /// The channel number is not bound.
    NoChannel,
    /// The peer policy denies the peer (no routed cluster admits it).
    PolicyDenied,
    /// An indication or response the server does not handle.
    Unexpected,
    /// A response the server could not encode or sign (not sent: an unsigned answer to an
    /// authenticated request would be refused by the client, or worse, trusted).
    Unencodable,
}

impl DropReason {
    /// Every reason, in index order.
    pub const ALL: [Self; 7] = [
        Self::Malformed,
        Self::NoAllocation,
        Self::NoPermission,
        Self::NoChannel,
        Self::PolicyDenied,
        Self::Unexpected,
        Self::Unencodable,
    ];

    /// A stable label for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::NoAllocation => "no_allocation",
            Self::NoPermission => "no_permission",
            Self::NoChannel => "no_channel",
            Self::PolicyDenied => "policy_denied",
            Self::Unexpected => "unexpected",
            Self::Unencodable => "unencodable_response",
        }
    }
}

/// Something that happened, for metrics and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A request authenticated.
    AuthAccepted {
        /// The client.
        client: SocketAddr,
        /// The username presented.
        username: String,
    },
    /// A request was answered with an error (other than the 401 challenge that starts
    /// every authentication).
    RequestFailed {
        /// The client.
        client: SocketAddr,
        /// The STUN method, e.g. 0x0009 for ChannelBind.
        method: u16,
        /// Why.
        error: crate::Error,
    },
    /// A request failed authentication.
    AuthRejected {
        /// The client.
        client: SocketAddr,
        /// The username presented, if any.
        username: Option<String>,
        /// Why (an [`Error::kind`](crate::Error::kind)).
        reason: &'static str,
    },
    /// An allocation was created.
    AllocationCreated {
        /// Its five-tuple.
        five_tuple: FiveTuple,
        /// Its relayed address.
        relay: SocketAddr,
        /// Its IPv6 relayed address, when dual (RFC 8656 §7.2).
        relay6: Option<SocketAddr>,
        /// The user it belongs to.
        user: String,
    },
    /// An allocation was deleted (refresh 0, expiry, or server shutdown).
    AllocationDeleted {
        /// Its five-tuple.
        five_tuple: FiveTuple,
        /// Its relayed address.
        relay: SocketAddr,
        /// Whether it timed out (rather than being released by the client).
        expired: bool,
        /// How long it lived.
        duration: std::time::Duration,
    },
    /// A permission was installed.
    PermissionCreated {
        /// The allocation's relay address.
        relay: SocketAddr,
        /// The peer IP (permissions have no port: RFC 8656 §9).
        peer: std::net::IpAddr,
    },
    /// A permission expired.
    PermissionDeleted {
        /// The allocation's relay address.
        relay: SocketAddr,
        /// The peer IP.
        peer: std::net::IpAddr,
    },
    /// A channel was bound.
    ChannelCreated {
        /// The allocation's relay address.
        relay: SocketAddr,
        /// The channel number.
        channel: u16,
        /// The peer.
        peer: SocketAddr,
    },
    /// A peer connection of a TCP allocation was established (RFC 6062: by Connect, or
    /// by the peer).
    TcpConnectionOpened {
        /// The allocation's relay address.
        relay: SocketAddr,
        /// The peer.
        peer: SocketAddr,
        /// The connection id.
        id: u32,
    },
    /// A peer connection of a TCP allocation ended.
    TcpConnectionClosed {
        /// The allocation's relay address.
        relay: SocketAddr,
        /// The connection id.
        id: u32,
    },
    /// A channel expired.
    ChannelDeleted {
        /// The allocation's relay address.
        relay: SocketAddr,
        /// The channel number.
        channel: u16,
    },
}
