//! One allocation (RFC 8656 §2.2): its relay address, lifetime, permissions and
//! channels. Plain data; the handlers in the method files change it.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Permission lifetime (RFC 8656 §9).
pub const PERMISSION_LIFETIME: Duration = Duration::from_secs(300);
/// Channel binding lifetime (RFC 8656 §12).
pub const CHANNEL_LIFETIME: Duration = Duration::from_secs(600);
/// Default allocation lifetime (RFC 8656 §7.2).
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(600);
/// Maximum allocation lifetime (RFC 8656 §7.2 suggests 3600 s).
pub const MAX_LIFETIME: Duration = Duration::from_secs(3600);
/// Lowest channel number (RFC 8656 §12).
pub const MIN_CHANNEL: u16 = 0x4000;
/// Highest channel number accepted. RFC 8656 §12 assigns 0x4000–0x4FFF, but RFC 5766
/// allowed up to 0x7FFE and deployed clients (coturn's among them) still pick numbers
/// there, so we accept the older range.
pub const MAX_CHANNEL: u16 = 0x7FFE;

/// A bound channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Channel {
    pub(crate) peer: SocketAddr,
    pub(crate) expiry: Instant,
}

/// The cached answer to the Allocate that created this allocation, for retransmits
/// (RFC 8656 §7.2: a retransmitted Allocate gets the same response).
#[derive(Debug, Clone)]
pub(crate) struct CachedResponse {
    pub(crate) transaction: u128,
    pub(crate) bytes: Vec<u8>,
}

/// An allocation.
#[derive(Debug, Clone)]
pub(crate) struct Allocation {
    /// The advertised relayed transport address (relay IP and relay socket port).
    pub(crate) relay: SocketAddr,
    /// The IPv6 relayed address of a dual allocation (RFC 8656 §7.2,
    /// ADDITIONAL-ADDRESS-FAMILY); `relay` is then the IPv4 one.
    pub(crate) relay6: Option<SocketAddr>,
    /// The username that created it; later requests must present the same.
    pub(crate) username: String,
    /// The user id for quotas.
    pub(crate) user: String,
    pub(crate) created: Instant,
    pub(crate) expiry: Instant,
    pub(crate) permissions: HashMap<IpAddr, Instant>,
    /// Channel number to channel.
    pub(crate) channels: HashMap<u16, Channel>,
    /// Peer address to channel number.
    pub(crate) peer_channels: HashMap<SocketAddr, u16>,
    pub(crate) response: CachedResponse,
    /// The deadline of this allocation's live timer entry.
    pub(crate) armed: Option<Instant>,
    /// A TCP allocation's peer connections (RFC 6062); `None` for UDP.
    pub(crate) tcp: Option<crate::tcp_relay::TcpRelay>,
}

impl Allocation {
    /// The relayed address that talks to peers of `peer`'s family, `None` when the
    /// allocation has none of that family (RFC 8656 §9.1, 443).
    #[inline]
    pub(crate) fn relay_for(&self, peer: IpAddr) -> Option<SocketAddr> {
        if peer.is_ipv6() == self.relay.is_ipv6() {
            Some(self.relay)
        } else {
            self.relay6.filter(|_| peer.is_ipv6())
        }
    }

    /// Every relayed address of the allocation (one, or two when dual).
    pub(crate) fn relays(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        std::iter::once(self.relay).chain(self.relay6)
    }

    /// Whether `ip` has an unexpired permission at `now`.
    pub(crate) fn permitted(&self, ip: IpAddr, now: Instant) -> bool {
        self.permissions.get(&ip).is_some_and(|e| *e > now)
    }

    /// The channel bound to `peer`, if unexpired.
    pub(crate) fn channel_for(&self, peer: SocketAddr, now: Instant) -> Option<u16> {
        let ch = *self.peer_channels.get(&peer)?;
        self.channels
            .get(&ch)
            .filter(|c| c.expiry > now)
            .map(|_| ch)
    }

    /// The peer of channel `ch`, if bound and unexpired.
    pub(crate) fn channel_peer(&self, ch: u16, now: Instant) -> Option<SocketAddr> {
        self.channels
            .get(&ch)
            .filter(|c| c.expiry > now)
            .map(|c| c.peer)
    }

    /// The earliest time something in this allocation expires.
    pub(crate) fn next_deadline(&self) -> Instant {
        self.permissions
            .values()
            .copied()
            .chain(self.channels.values().map(|c| c.expiry))
            .chain(self.tcp.iter().flat_map(|t| t.deadlines.values().copied()))
            .fold(self.expiry, Instant::min)
    }
}
