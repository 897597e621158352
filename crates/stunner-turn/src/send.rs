//! Send indications (RFC 8656 §10.2) from clients, and Data indications (§10.3) to
//! clients for peer traffic on channel-less peers.

use std::net::SocketAddr;
use std::time::Instant;

use stun_types::message::{Message, MessageWrite, MessageWriteExt, MessageWriteVec, TransactionId};
use turn_types::attribute::{Data, XorPeerAddress};
use turn_types::message::DATA;

use crate::event::DropReason;
use crate::permission::canonical;
use crate::server::Server;
use crate::transport::{FiveTuple, Source};

impl Server {
    pub(crate) fn handle_send(&mut self, now: Instant, ft: FiveTuple, msg: &Message<'_>) {
        let Some(a) = self.allocations.get(&ft) else {
            return self.drop_packet(DropReason::NoAllocation);
        };
        let (Ok(peer), Ok(data)) = (msg.attribute::<XorPeerAddress>(), msg.attribute::<Data>())
        else {
            return self.drop_packet(DropReason::Malformed);
        };
        let peer = canonical(peer.addr(msg.transaction_id()));
        let Some(relay) = a.relay_for(peer.ip()).filter(|_| a.tcp.is_none()) else {
            // No relay of the peer's family, or a TCP allocation (RFC 6062 §4: no Send).
            return self.drop_packet(DropReason::Malformed);
        };
        if !a.permitted(peer.ip(), now) {
            return self.drop_packet(DropReason::NoPermission);
        }
        let Some(cluster) = self.config.policy.admit(peer.ip(), peer.port()) else {
            return self.drop_packet(DropReason::PolicyDenied);
        };
        let payload = data.data().to_vec();
        self.stats.count_to_peer(cluster, payload.len());
        self.transmit(Source::Relay(relay), peer, payload);
    }

    /// Wraps a peer datagram in a Data indication for the client of `ft`.
    pub(crate) fn send_data_indication(&mut self, ft: FiveTuple, peer: SocketAddr, payload: &[u8]) {
        let tid = self.indication_id();
        let mut w = Message::builder(
            stun_types::message::MessageType::from_class_method(
                stun_types::message::MessageClass::Indication,
                DATA,
            ),
            tid,
            MessageWriteVec::with_capacity(payload.len() + 48),
        );
        if w.add_attribute(&XorPeerAddress::new(peer, tid)).is_err()
            || w.add_attribute(&Data::new(payload)).is_err()
        {
            return self.drop_packet(DropReason::Malformed);
        }
        let bytes = w.finish();
        self.transmit(Source::Listener(ft.server), ft.client, bytes);
    }

    /// A transaction id for an indication. Uniqueness is all that matters (RFC 8489
    /// §6.3.2 ignores it for indications); derived from a counter and the nonce key.
    pub(crate) fn indication_id(&mut self) -> TransactionId {
        let n = u128::from(self.next_token());
        TransactionId::from(
            n.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835) & ((1 << 96) - 1),
        )
    }
}
