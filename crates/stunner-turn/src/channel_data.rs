//! ChannelData (RFC 8656 §12): the hot path, both ways. No allocation, no copy: the
//! client's payload is relayed from its own buffer, and a peer's payload gets its
//! 4-byte header written into the headroom the caller keeps in front of it.

use std::net::SocketAddr;
use std::time::Instant;

use crate::event::DropReason;
use crate::permission::canonical;
use crate::server::{CHANNEL_HEADROOM, Forward, Server};
use crate::transport::{FiveTuple, Source};

impl Server {
    pub(crate) fn handle_channel_data(
        &mut self,
        now: Instant,
        ft: FiveTuple,
        data: &[u8],
    ) -> Option<Forward> {
        let (ch, len) = match data {
            [a, b, c, d, ..] => (
                u16::from_be_bytes([*a, *b]),
                usize::from(u16::from_be_bytes([*c, *d])),
            ),
            _ => {
                self.drop_packet(DropReason::Malformed);
                return None;
            }
        };
        if 4 + len > data.len() {
            self.drop_packet(DropReason::Malformed);
            return None;
        }
        let Some(a) = self.allocations.get(&ft) else {
            self.drop_packet(DropReason::NoAllocation);
            return None;
        };
        let Some(peer) = a.channel_peer(ch, now) else {
            self.drop_packet(DropReason::NoChannel);
            return None;
        };
        if !a.permitted(peer.ip(), now) {
            self.drop_packet(DropReason::NoPermission);
            return None;
        }
        // A bound peer's family always has a relay (ChannelBind checked it).
        let Some(relay) = a.relay_for(peer.ip()) else {
            self.drop_packet(DropReason::NoChannel);
            return None;
        };
        let Some(cluster) = self.config.policy.admit(peer.ip(), peer.port()) else {
            self.drop_packet(DropReason::PolicyDenied);
            return None;
        };
        self.stats.count_to_peer(cluster, len);
        Some(Forward {
            from: Source::Relay(relay),
            to: peer,
            range: 4..4 + len,
        })
    }

    /// A datagram from `peer` on the relay socket of relayed address `relay`. The
    /// payload is `buf[CHANNEL_HEADROOM..CHANNEL_HEADROOM + len]`; `buf` should have
    /// [`CHANNEL_TAILROOM`](crate::CHANNEL_TAILROOM) bytes more for stream padding.
    /// Returns the ChannelData frame to send to the client when the peer has a channel;
    /// otherwise a Data indication is queued in [`poll_output`](Self::poll_output).
    pub fn handle_peer(
        &mut self,
        now: Instant,
        relay: SocketAddr,
        peer: SocketAddr,
        buf: &mut [u8],
        len: usize,
    ) -> Option<Forward> {
        let end = CHANNEL_HEADROOM + len;
        if end > buf.len() || len > usize::from(u16::MAX) {
            self.drop_packet(DropReason::Malformed);
            return None;
        }
        let Some(ft) = self.by_relay.get(&relay).copied() else {
            self.drop_packet(DropReason::NoAllocation);
            return None;
        };
        let Some(a) = self.allocations.get(&ft) else {
            self.drop_packet(DropReason::NoAllocation);
            return None;
        };
        let peer = canonical(peer);
        if !a.permitted(peer.ip(), now) {
            self.drop_packet(DropReason::NoPermission);
            return None;
        }
        let channel = a.channel_for(peer, now);
        let Some(cluster) = self.config.policy.admit(peer.ip(), peer.port()) else {
            self.drop_packet(DropReason::PolicyDenied);
            return None;
        };
        self.stats.count_from_peer(cluster, len);
        let Some(ch) = channel else {
            self.send_data_indication(ft, peer, &buf[CHANNEL_HEADROOM..end]);
            return None;
        };
        buf[0..2].copy_from_slice(&ch.to_be_bytes());
        // `len` fits u16: checked above.
        buf[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        let mut frame_end = end;
        if self.config.transport.pads_channel_data() {
            // RFC 8656 §12.5: pad to a multiple of 4 over streams (and DTLS, see
            // `TransportKind::PaddedDatagram`).
            let pad = (4 - len % 4) % 4;
            if frame_end + pad > buf.len() {
                self.drop_packet(DropReason::Malformed);
                return None;
            }
            buf[frame_end..frame_end + pad].fill(0);
            frame_end += pad;
        }
        Some(Forward {
            from: Source::Listener(ft.server),
            to: ft.client,
            range: 0..frame_end,
        })
    }
}
