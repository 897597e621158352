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
    /// Checks a peer for a request on the allocation of `ft`: the allocation must have
    /// a relay of the peer's family (443) and the policy must admit it (403). Port 0
    /// checks the address only. Returns the relayed address that serves the peer.
    pub(crate) fn check_peer(&self, ft: FiveTuple, peer: SocketAddr) -> Result<SocketAddr, Error> {
        let a = self.allocations.get(&ft).ok_or(Error::AllocationMismatch)?;
        let relay = a
            .relay_for(peer.ip())
            .ok_or(Error::PeerAddressFamilyMismatch)?;
        let policy = &self.config.policy;
        let admitted = if a.tcp.is_some() {
            policy.admit_tcp(peer.ip(), peer.port())
        } else {
            policy.admit(peer.ip(), peer.port())
        };
        admitted.map(|_| relay).ok_or(Error::PeerNotAllowed)
    }

    pub(crate) fn handle_create_permission(
        &mut self,
        now: Instant,
        ft: FiveTuple,
        msg: &Message<'_>,
        auth: &Authenticated,
    ) -> Result<(), Error> {
        self.owned_allocation(ft, auth)?;
        let tid = msg.transaction_id();
        let mut peers: Vec<(IpAddr, SocketAddr)> = Vec::new();
        for n in 0.. {
            let Ok(p) = msg.nth_attribute::<XorPeerAddress>(n) else {
                break;
            };
            let peer = canonical(p.addr(tid));
            let relay = self.check_peer(ft, SocketAddr::new(peer.ip(), 0))?;
            peers.push((peer.ip(), relay));
        }
        if peers.is_empty() {
            return Err(Error::BadRequest("missing XOR-PEER-ADDRESS"));
        }
        let a = self.owned_allocation(ft, auth)?;
        let mut created = Vec::new();
        let ips: Vec<IpAddr> = peers.iter().map(|(ip, _)| *ip).collect();
        for (ip, relay) in peers {
            if a.permissions
                .insert(ip, now + PERMISSION_LIFETIME)
                .is_none()
            {
                created.push(Event::PermissionCreated { relay, peer: ip });
            }
        }
        self.rearm(ft);
        // A refreshed permission may make bound channels to these peers offloadable.
        self.report_channels(ft, now, |p| ips.contains(&p.ip()));
        for e in created {
            self.event(e);
        }
        let bytes = response::success(msg, &[], Some(auth));
        self.respond(ft, bytes);
        Ok(())
    }
}
