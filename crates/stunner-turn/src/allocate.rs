//! Allocate (RFC 8656 §7.1–7.3, RFC 6156 for IPv6). The relay socket is opened by the
//! IO layer: the request waits in `pending` until
//! [`Server::handle_relay_opened`] answers.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use stun_types::AddressFamily;
use stun_types::attribute::{AttributeStaticType, XorMappedAddress};
use stun_types::message::Message;
use turn_types::attribute::{
    DontFragment, EvenPort, Lifetime, RequestedAddressFamily, RequestedTransport, ReservationToken,
    XorRelayedAddress,
};

use crate::Error;
use crate::allocation::{Allocation, CachedResponse, DEFAULT_LIFETIME, MAX_LIFETIME};
use crate::auth::Authenticated;
use crate::event::{DropReason, Event};
use crate::response;
use crate::server::{Output, PendingAllocate, RelayRequest, Server};
use crate::transport::FiveTuple;

/// The allocation lifetime for a requested LIFETIME: at least the default, at most the
/// maximum (RFC 8656 §7.2).
pub(crate) fn clamp_lifetime(requested: Option<u32>) -> Duration {
    requested
        .map(|s| Duration::from_secs(u64::from(s)))
        .unwrap_or(DEFAULT_LIFETIME)
        .clamp(DEFAULT_LIFETIME, MAX_LIFETIME)
}

impl Server {
    pub(crate) fn handle_allocate(
        &mut self,
        ft: FiveTuple,
        msg: &Message<'_>,
        auth: &Authenticated,
    ) -> Result<(), Error> {
        if self.allocations.contains_key(&ft) {
            return Err(Error::AllocationMismatch);
        }
        if self.draining {
            return Err(Error::InsufficientCapacity("server is shutting down"));
        }
        if self.pending_by_ft.contains_key(&ft) {
            // A retransmit while the relay socket is being opened: the answer is coming.
            return Ok(());
        }
        let transport = msg
            .attribute::<RequestedTransport>()
            .map_err(|_| Error::BadRequest("missing REQUESTED-TRANSPORT"))?;
        if transport.protocol() != RequestedTransport::UDP {
            return Err(Error::UnsupportedTransport);
        }
        let even_port = msg.attribute::<EvenPort>().ok();
        let token = msg.has_attribute(ReservationToken::TYPE);
        let family = msg.attribute::<RequestedAddressFamily>().ok();
        if token && (even_port.is_some() || family.is_some()) {
            return Err(Error::BadRequest(
                "RESERVATION-TOKEN with EVEN-PORT or REQUESTED-ADDRESS-FAMILY",
            ));
        }
        let reservation = match msg.attribute::<ReservationToken>() {
            Ok(t) => Some(t.token()),
            Err(_) if token => return Err(Error::BadRequest("malformed RESERVATION-TOKEN")),
            Err(_) => None,
        };
        let ipv6 = self.config.relay_ip.is_ipv6();
        // Without REQUESTED-ADDRESS-FAMILY the relay family is the listener's (RFC 6156
        // defaults to IPv4; an IPv6-only pod has nothing else to give).
        if let Some(f) = family {
            let want_v6 = f.family() == AddressFamily::IPV6;
            if want_v6 != ipv6 {
                return Err(Error::AddressFamilyNotSupported);
            }
        }
        let quota = self.config.user_quota;
        let used = self.per_user.get(&auth.user).copied().unwrap_or(0);
        if quota > 0 && used >= quota {
            return Err(Error::QuotaReached);
        }
        let lifetime = clamp_lifetime(msg.attribute::<Lifetime>().ok().map(|l| l.seconds()));
        let dont_fragment = msg.has_attribute(DontFragment::TYPE);

        let reserve = even_port
            .as_ref()
            .filter(|e| e.requested())
            .map(|_| self.reservation_token(ft));
        let token = self.next_token();
        *self.per_user.entry(auth.user.clone()).or_insert(0) += 1;
        self.pending.insert(
            token,
            (
                ft,
                PendingAllocate {
                    request: msg.as_bytes().to_vec(),
                    auth: auth.clone(),
                    lifetime,
                    reserve,
                },
            ),
        );
        self.pending_by_ft.insert(ft, token);
        self.outputs.push_back(Output::OpenRelay(RelayRequest {
            token,
            five_tuple: ft,
            ipv6,
            even_port: even_port.is_some(),
            reserve,
            reservation,
            dont_fragment,
        }));
        Ok(())
    }

    /// The IO layer's answer to [`Output::OpenRelay`]: the relay socket's port, or
    /// `None` when no port could be had (the client gets 508).
    pub fn handle_relay_opened(&mut self, now: Instant, token: u64, port: Option<u16>) {
        let Some((ft, p)) = self.pending.remove(&token) else {
            // The client went away meanwhile: give the socket back.
            if let Some(port) = port {
                let relay = SocketAddr::new(self.config.relay_ip, port);
                self.outputs.push_back(Output::CloseRelay(relay));
            }
            return;
        };
        self.pending_by_ft.remove(&ft);
        let Ok(msg) = Message::from_bytes(&p.request) else {
            return;
        };
        let Some(port) = port else {
            self.release_user(&p.auth.user);
            let e = Error::InsufficientCapacity("no relay port available");
            self.respond_error(now, ft, &msg, &e, Some(&p.auth));
            return;
        };
        let relay = SocketAddr::new(self.config.relay_ip, port);
        let tid = msg.transaction_id();
        let lifetime_secs = u32::try_from(p.lifetime.as_secs()).unwrap_or(u32::MAX);
        let xra = XorRelayedAddress::new(relay, tid);
        let life = Lifetime::new(lifetime_secs);
        let xma = XorMappedAddress::new(ft.client, tid);
        let reservation = p.reserve.map(ReservationToken::new);
        let mut attrs: Vec<&dyn stun_types::attribute::AttributeWrite> = vec![&xra, &life];
        if let Some(r) = &reservation {
            attrs.push(r);
        }
        attrs.push(&xma);
        // The answer is built before the allocation exists: one that cannot be signed is
        // not sent, and nothing is left behind for the client's retransmission to trip on.
        let Some(bytes) = response::success(&msg, &attrs, Some(&p.auth)) else {
            self.release_user(&p.auth.user);
            self.outputs.push_back(Output::CloseRelay(relay));
            self.drop_packet(DropReason::Unencodable);
            return;
        };
        self.allocations.insert(
            ft,
            Allocation {
                relay,
                username: p.auth.username.clone(),
                user: p.auth.user.clone(),
                created: now,
                expiry: now + p.lifetime,
                permissions: Default::default(),
                channels: Default::default(),
                peer_channels: Default::default(),
                response: CachedResponse {
                    transaction: u128::from(tid),
                    bytes: bytes.clone(),
                },
                armed: None,
            },
        );
        self.by_relay.insert(relay, ft);
        self.rearm(ft);
        self.event(Event::AllocationCreated {
            five_tuple: ft,
            relay,
            user: p.auth.user.clone(),
        });
        self.respond(ft, Some(bytes));
    }

    /// A reservation token: unguessable without the nonce key, distinct per request.
    fn reservation_token(&mut self, ft: FiveTuple) -> u64 {
        let n = self.next_token() ^ (u64::from(ft.client.port()) << 48);
        let s = self.nonces.make(n);
        // A nonce is 16 hex digits of input then 16 of MAC: take the MAC.
        u64::from_str_radix(&s[16..], 16).unwrap_or(n)
    }

    pub(crate) fn release_user(&mut self, user: &str) {
        if let Some(n) = self.per_user.get_mut(user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_user.remove(user);
            }
        }
    }
}
