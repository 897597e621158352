//! Allocate (RFC 8656 §7.1–7.3, RFC 6156 for IPv6). The relay socket is opened by the
//! IO layer: the request waits in `pending` until
//! [`Server::handle_relay_opened`] answers.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use stun_types::AddressFamily;
use stun_types::attribute::{AttributeStaticType, XorMappedAddress};
use stun_types::attribute::{AttributeType, AttributeWrite, ErrorCode, RawAttribute};
use stun_types::message::Message;
use turn_types::attribute::{
    AdditionalAddressFamily, AddressErrorCode, DontFragment, EvenPort, Lifetime,
    RequestedAddressFamily, RequestedTransport, ReservationToken, XorRelayedAddress,
};

use crate::Error;
use crate::allocation::{Allocation, CachedResponse, DEFAULT_LIFETIME, MAX_LIFETIME};
use crate::auth::Authenticated;
use crate::event::{DropReason, Event};
use crate::response;
use crate::server::{Output, PendingAllocate, RelayRequest, Server};
use crate::transport::{FiveTuple, TransportKind};

/// coturn's codepoints for ADDITIONAL-ADDRESS-FAMILY and ADDRESS-ERROR-CODE, from the
/// draft that preceded RFC 8656 (0x8000 and 0x8001 there). Its client still sends
/// them; a request that uses the first is answered with the second.
const LEGACY_ADDITIONAL_ADDRESS_FAMILY: u16 = 0x8032;
const LEGACY_ADDRESS_ERROR_CODE: u16 = 0x8033;

/// The family of the port held under a reservation token (see `reservation_token`).
fn token_is_ipv6(token: u64) -> bool {
    token & 1 == 1
}

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
        // RFC 6062 §5.1: a TCP relay is for clients on TCP or TLS, and takes none of
        // the UDP-only attributes.
        let tcp = match transport.protocol() {
            RequestedTransport::UDP => false,
            RequestedTransport::TCP if self.config.transport == TransportKind::Stream => true,
            RequestedTransport::TCP => {
                return Err(Error::BadRequest(
                    "TCP allocation over a datagram transport",
                ));
            }
            _ => return Err(Error::UnsupportedTransport),
        };
        let even_port = msg.attribute::<EvenPort>().ok();
        let token = msg.has_attribute(ReservationToken::TYPE);
        if tcp && (even_port.is_some() || token || msg.has_attribute(DontFragment::TYPE)) {
            return Err(Error::BadRequest(
                "EVEN-PORT, RESERVATION-TOKEN or DONT-FRAGMENT on a TCP allocation",
            ));
        }
        // RFC 8656 §7.2: an unknown family is 440; ADDITIONAL-ADDRESS-FAMILY can only
        // ask for IPv6 (400 otherwise), and excludes REQUESTED-ADDRESS-FAMILY.
        let family = if msg.has_attribute(RequestedAddressFamily::TYPE) {
            let f = msg
                .attribute::<RequestedAddressFamily>()
                .map_err(|_| Error::AddressFamilyNotSupported)?;
            Some(f.family() == AddressFamily::IPV6)
        } else {
            None
        };
        let legacy = msg.raw_attribute(AttributeType::new(LEGACY_ADDITIONAL_ADDRESS_FAMILY));
        let dual = msg.has_attribute(AdditionalAddressFamily::TYPE) || legacy.is_some();
        let bad_dual = (msg.has_attribute(AdditionalAddressFamily::TYPE)
            && msg.attribute::<AdditionalAddressFamily>().is_err())
            || legacy.as_ref().is_some_and(|r| r.value.first() != Some(&2));
        if bad_dual {
            return Err(Error::BadRequest(
                "ADDITIONAL-ADDRESS-FAMILY other than IPv6",
            ));
        }
        let legacy = legacy.is_some();
        if dual && family.is_some() {
            return Err(Error::BadRequest(
                "REQUESTED-ADDRESS-FAMILY with ADDITIONAL-ADDRESS-FAMILY",
            ));
        }
        if token && (even_port.is_some() || family.is_some() || dual) {
            return Err(Error::BadRequest(
                "RESERVATION-TOKEN with EVEN-PORT or an address family",
            ));
        }
        let reservation = match msg.attribute::<ReservationToken>() {
            Ok(t) => Some(t.token()),
            Err(_) if token => return Err(Error::BadRequest("malformed RESERVATION-TOKEN")),
            Err(_) => None,
        };
        // Without a family attribute the relay family is the listener's (RFC 8656
        // defaults to IPv4; an IPv6-only pod has nothing else to give, and a client
        // that reached an IPv6 listener most likely has IPv6 peers). A dual allocation
        // is an IPv4 relay plus, where the pod has an IPv6 address, an IPv6 one.
        let (ip, ip6) = if dual {
            let v4 = self
                .config
                .relay_ip_of(false)
                .ok_or(Error::AddressFamilyNotSupported)?;
            (v4, self.config.relay_ip_of(true))
        } else {
            // A reserved port is of the family it was reserved in: the token says which
            // (a token of a family we have no address in is none of ours: 508, as for
            // any unknown token).
            let ip = match reservation {
                Some(t) => self
                    .config
                    .relay_ip_of(token_is_ipv6(t))
                    .ok_or(Error::InsufficientCapacity("unknown reservation token"))?,
                None => self
                    .config
                    .relay_ip_of(family.unwrap_or(self.config.relay_ip.is_ipv6()))
                    .ok_or(Error::AddressFamilyNotSupported)?,
            };
            (ip, None)
        };
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
            .map(|_| self.reservation_token(ft, ip.is_ipv6()));
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
                    ip,
                    dual,
                    legacy,
                    ip6,
                    cancelled: false,
                    tcp,
                },
            ),
        );
        self.pending_by_ft.insert(ft, token);
        self.outputs.push_back(Output::OpenRelay(RelayRequest {
            token,
            five_tuple: ft,
            ip,
            ipv6: ip.is_ipv6(),
            additional: ip6,
            even_port: even_port.is_some(),
            reserve,
            reservation,
            dont_fragment,
            tcp,
        }));
        Ok(())
    }

    /// The IO layer's answer to [`Output::OpenRelay`]: the relay socket's port, or
    /// `None` when no port could be had (the client gets 508).
    pub fn handle_relay_opened(&mut self, now: Instant, token: u64, port: Option<u16>) {
        self.handle_relays_opened(now, token, port, None);
    }

    /// The IO layer's answer to an [`Output::OpenRelay`] with
    /// [`additional`](RelayRequest::additional): the ports of the first and the IPv6
    /// relay socket. Without the first the client gets 508; without the IPv6 one it
    /// gets the IPv4 relay and ADDRESS-ERROR-CODE 508 for IPv6 (RFC 8656 §7.2).
    pub fn handle_relays_opened(
        &mut self,
        now: Instant,
        token: u64,
        port: Option<u16>,
        port6: Option<u16>,
    ) {
        let Some((ft, p)) = self.pending.remove(&token) else {
            return;
        };
        let relay6 = p.ip6.zip(port6).map(|(ip, port)| SocketAddr::new(ip, port));
        if p.cancelled {
            // The client went away meanwhile: give the sockets back.
            let first = port.map(|port| SocketAddr::new(p.ip, port));
            for r in first.into_iter().chain(relay6) {
                self.outputs.push_back(Output::CloseRelay(r));
            }
            return;
        }
        self.pending_by_ft.remove(&ft);
        let Ok(msg) = Message::from_bytes(&p.request) else {
            return;
        };
        let Some(port) = port else {
            if let Some(r6) = relay6 {
                self.outputs.push_back(Output::CloseRelay(r6));
            }
            self.release_user(&p.auth.user);
            let e = Error::InsufficientCapacity("no relay port available");
            self.respond_error(now, ft, &msg, &e, Some(&p.auth));
            return;
        };
        let relay = SocketAddr::new(p.ip, port);
        let tid = msg.transaction_id();
        let lifetime_secs = u32::try_from(p.lifetime.as_secs()).unwrap_or(u32::MAX);
        let xra = XorRelayedAddress::new(relay, tid);
        let xra6 = relay6.map(|r| XorRelayedAddress::new(r, tid));
        let life = Lifetime::new(lifetime_secs);
        let xma = XorMappedAddress::new(ft.client, tid);
        let reservation = p.reserve.map(ReservationToken::new);
        // A dual request that got no IPv6 relay says why: 440 when the pod has no IPv6
        // address, 508 when the socket could not be opened.
        let v6_error = match (p.dual, p.ip6, relay6) {
            (true, None, _) => Some(Error::AddressFamilyNotSupported),
            (true, Some(_), None) => Some(Error::InsufficientCapacity("no IPv6 relay port")),
            _ => None,
        }
        .and_then(|e| ErrorCode::new(e.code(), e.reason()).ok())
        .map(|code| {
            let attr = AddressErrorCode::new(AddressFamily::IPV6, code);
            if !p.legacy {
                return attr.to_raw().into_owned();
            }
            let value: Box<[u8]> = attr.to_raw().value.to_vec().into();
            RawAttribute::new_owned(AttributeType::new(LEGACY_ADDRESS_ERROR_CODE), value)
        });
        let mut attrs: Vec<&dyn stun_types::attribute::AttributeWrite> = vec![&xra];
        if let Some(x) = &xra6 {
            attrs.push(x);
        }
        attrs.push(&life);
        if let Some(r) = &reservation {
            attrs.push(r);
        }
        attrs.push(&xma);
        if let Some(e) = &v6_error {
            attrs.push(e);
        }
        // The answer is built before the allocation exists: one that cannot be signed is
        // not sent, and nothing is left behind for the client's retransmission to trip on.
        let Some(bytes) = response::success(&msg, &attrs, Some(&p.auth)) else {
            self.release_user(&p.auth.user);
            self.outputs.push_back(Output::CloseRelay(relay));
            if let Some(r6) = relay6 {
                self.outputs.push_back(Output::CloseRelay(r6));
            }
            self.drop_packet(DropReason::Unencodable);
            return;
        };
        self.allocations.insert(
            ft,
            Allocation {
                relay,
                relay6,
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
                tcp: p.tcp.then(Default::default),
            },
        );
        self.by_relay.insert(relay, ft);
        if let Some(r6) = relay6 {
            self.by_relay.insert(r6, ft);
        }
        self.rearm(ft);
        self.event(Event::AllocationCreated {
            five_tuple: ft,
            relay,
            relay6,
            user: p.auth.user.clone(),
        });
        self.respond(ft, Some(bytes));
    }

    /// A reservation token: unguessable without the nonce key, distinct per request.
    /// Its lowest bit is the family of the reserved port (1: IPv6), so that the
    /// Allocate presenting it, on whichever worker, advertises the port at the right IP.
    fn reservation_token(&mut self, ft: FiveTuple, ipv6: bool) -> u64 {
        let n = self.next_token() ^ (u64::from(ft.client.port()) << 48);
        let s = self.nonces.make(n);
        // A nonce is 16 hex digits of input then 16 of MAC: take the MAC.
        let mac = u64::from_str_radix(&s[16..], 16).unwrap_or(n);
        (mac & !1) | u64::from(ipv6)
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
