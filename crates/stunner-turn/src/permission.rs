//! CreatePermission (RFC 8656 §9–10): install or refresh permissions for one or more
//! peer IPs, each admitted by the peer policy (403 otherwise; all or nothing).

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use stun_types::message::Message;
use turn_types::attribute::XorPeerAddress;

use crate::Error;
use crate::allocation::PERMISSION_LIFETIME;
use crate::auth::Authenticated;
use crate::event::Event;
use crate::response;
use crate::server::Server;
use crate::transport::FiveTuple;

/// A peer address with IPv4-mapped IPv6 turned into IPv4, so lookups agree.
pub(crate) fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

impl Server {
    /// Checks a peer for a request on an allocation relaying in `relay`'s family:
    /// family (443) and policy (403). Port 0 checks the address only.
    pub(crate) fn check_peer(&self, relay: SocketAddr, peer: SocketAddr) -> Result<(), Error> {
        if peer.is_ipv6() != relay.is_ipv6() {
            return Err(Error::PeerAddressFamilyMismatch);
        }
        self.config
            .policy
            .admit(peer.ip(), peer.port())
            .map(|_| ())
            .ok_or(Error::PeerNotAllowed)
    }

    pub(crate) fn handle_create_permission(
        &mut self,
        now: Instant,
        ft: FiveTuple,
        msg: &Message<'_>,
        auth: &Authenticated,
    ) -> Result<(), Error> {
        let relay = self.owned_allocation(ft, auth)?.relay;
        let tid = msg.transaction_id();
        let mut peers: Vec<IpAddr> = Vec::new();
        for n in 0.. {
            let Ok(p) = msg.nth_attribute::<XorPeerAddress>(n) else {
                break;
            };
            let peer = canonical(p.addr(tid));
            self.check_peer(relay, SocketAddr::new(peer.ip(), 0))?;
            peers.push(peer.ip());
        }
        if peers.is_empty() {
            return Err(Error::BadRequest("missing XOR-PEER-ADDRESS"));
        }
        let a = self.owned_allocation(ft, auth)?;
        let mut created = Vec::new();
        for ip in peers {
            if a.permissions
                .insert(ip, now + PERMISSION_LIFETIME)
                .is_none()
            {
                created.push(Event::PermissionCreated { relay, peer: ip });
            }
        }
        self.rearm(ft);
        for e in created {
            self.event(e);
        }
        let bytes = response::success(msg, &[], Some(auth));
        self.respond(ft, bytes);
        Ok(())
    }
}
