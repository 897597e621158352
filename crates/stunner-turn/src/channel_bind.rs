//! ChannelBind (RFC 8656 §11): bind a channel number to a peer address; it also
//! installs or refreshes the peer's permission.

use std::time::Instant;

use stun_types::message::Message;
use turn_types::attribute::{ChannelNumber, XorPeerAddress};

use crate::Error;
use crate::allocation::{CHANNEL_LIFETIME, Channel, MAX_CHANNEL, MIN_CHANNEL, PERMISSION_LIFETIME};
use crate::auth::Authenticated;
use crate::event::Event;
use crate::permission::canonical;
use crate::response;
use crate::server::Server;
use crate::transport::FiveTuple;

impl Server {
    pub(crate) fn handle_channel_bind(
        &mut self,
        now: Instant,
        ft: FiveTuple,
        msg: &Message<'_>,
        auth: &Authenticated,
    ) -> Result<(), Error> {
        if self.owned_allocation(ft, auth)?.tcp.is_some() {
            // RFC 6062 §4: a TCP allocation has no channels.
            return Err(Error::BadRequest("ChannelBind on a TCP allocation"));
        }
        let ch = msg
            .attribute::<ChannelNumber>()
            .map_err(|_| Error::BadRequest("missing CHANNEL-NUMBER"))?
            .channel();
        if !(MIN_CHANNEL..=MAX_CHANNEL).contains(&ch) {
            return Err(Error::BadRequest("channel number out of range"));
        }
        let peer = canonical(
            msg.attribute::<XorPeerAddress>()
                .map_err(|_| Error::BadRequest("missing XOR-PEER-ADDRESS"))?
                .addr(msg.transaction_id()),
        );
        let relay = self.check_peer(ft, peer)?;
        let a = self.owned_allocation(ft, auth)?;
        // RFC 8656 §11.2: a channel stays with its peer, and a peer with its channel,
        // until the binding expires.
        if a.channel_peer(ch, now).is_some_and(|p| p != peer) {
            return Err(Error::BadRequest("channel is bound to another peer"));
        }
        if a.channel_for(peer, now).is_some_and(|c| c != ch) {
            return Err(Error::BadRequest("peer is bound to another channel"));
        }
        if let Some(old) = a.channels.get(&ch).map(|c| c.peer)
            && old != peer
        {
            a.peer_channels.remove(&old);
        }
        let created = a
            .channels
            .insert(
                ch,
                Channel {
                    peer,
                    expiry: now + CHANNEL_LIFETIME,
                },
            )
            .is_none_or(|c| c.peer != peer);
        a.peer_channels.insert(peer, ch);
        let new_permission = a
            .permissions
            .insert(peer.ip(), now + PERMISSION_LIFETIME)
            .is_none();
        self.rearm(ft);
        self.report_channels(ft, now, |p| p == peer);
        if new_permission {
            self.event(Event::PermissionCreated {
                relay,
                peer: peer.ip(),
            });
        }
        if created {
            self.event(Event::ChannelCreated {
                relay,
                channel: ch,
                peer,
            });
        }
        let bytes = response::success(msg, &[], Some(auth));
        self.respond(ft, bytes);
        Ok(())
    }
}
