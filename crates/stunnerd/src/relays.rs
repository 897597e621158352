//! The relay sockets of one worker, registered in its poll.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use mio::net::UdpSocket;
use mio::{Interest, Registry, Token};
use stunner_turn::{RESERVATION_LIFETIME, RelayRequest};

use crate::net;

/// Tokens from here up are relay sockets.
pub(crate) const FIRST_RELAY_TOKEN: usize = 1 << 20;

pub(crate) struct Relay {
    pub(crate) socket: UdpSocket,
    /// The advertised relayed address (relay IP, socket port): the core's name for it.
    pub(crate) addr: SocketAddr,
}

/// Relay ports held for a RESERVATION-TOKEN (RFC 8656 §7.2), shared by every worker:
/// the Allocate that presents a token may hash to another worker than the one that
/// reserved it. Touched only by Allocates with EVEN-PORT or RESERVATION-TOKEN.
#[derive(Debug, Default)]
pub(crate) struct Reservations(Mutex<HashMap<u64, (std::net::UdpSocket, u16, Instant)>>);

impl Reservations {
    fn hold(&self, token: u64, socket: std::net::UdpSocket, port: u16) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(token, (socket, port, Instant::now() + RESERVATION_LIFETIME));
        }
    }

    fn take(&self, token: u64) -> Option<(std::net::UdpSocket, u16)> {
        let mut m = self.0.lock().ok()?;
        m.remove(&token)
            .filter(|(_, _, exp)| *exp > Instant::now())
            .map(|(s, p, _)| (s, p))
    }

    /// Closes reservations nobody claimed in time.
    pub(crate) fn expire(&self, now: Instant) {
        if let Ok(mut m) = self.0.lock()
            && !m.is_empty()
        {
            m.retain(|_, (_, _, exp)| *exp > now);
        }
    }
}

/// Relay sockets by poll token and by relayed address.
pub(crate) struct Relays {
    by_token: HashMap<Token, Relay>,
    by_addr: HashMap<SocketAddr, Token>,
    reservations: Arc<Reservations>,
    next: usize,
    /// Client-to-peer datagrams of the current step, sent by [`Relays::flush`].
    tx: crate::batch::RelayQueue<SocketAddr>,
}

impl Relays {
    pub(crate) fn new(reservations: Arc<Reservations>) -> Self {
        Self {
            by_token: HashMap::new(),
            by_addr: HashMap::new(),
            reservations,
            next: 0,
            tx: crate::batch::RelayQueue::default(),
        }
    }

    pub(crate) fn reservations(&self) -> &Reservations {
        &self.reservations
    }

    /// Opens the relay sockets of `req`: the first and, for a dual allocation, the
    /// IPv6 one (RFC 8656 §7.2). Returns their ports, `None` for one that failed (the
    /// core answers 508, or ADDRESS-ERROR-CODE 508 for the IPv6 one).
    pub(crate) fn open_all(
        &mut self,
        registry: &Registry,
        req: &RelayRequest,
    ) -> (Option<u16>, Option<u16>) {
        let first = self.open(registry, req.ip, req);
        let v6 = req.additional.and_then(|ip6| {
            let plain = RelayRequest {
                ip: ip6,
                ipv6: true,
                additional: None,
                even_port: false,
                reserve: None,
                reservation: None,
                ..req.clone()
            };
            self.open(registry, ip6, &plain)
        });
        (first, v6)
    }

    /// Opens one relay socket, advertised at `relay_ip`; returns its port.
    fn open(&mut self, registry: &Registry, relay_ip: IpAddr, req: &RelayRequest) -> Option<u16> {
        let (std_sock, port) = if let Some(t) = req.reservation {
            self.reservations.take(t)?
        } else {
            match net::relay_socket(
                req.ipv6,
                req.even_port,
                req.reserve.is_some(),
                req.dont_fragment,
            ) {
                Ok((s, port, next)) => {
                    if let (Some(n), Some(t)) = (next, req.reserve) {
                        self.reservations.hold(t, n, port + 1);
                    }
                    (s, port)
                }
                Err(e) => {
                    tracing::warn!(target: "relay", error = %e, "cannot open relay socket");
                    return None;
                }
            }
        };
        let mut socket = UdpSocket::from_std(std_sock);
        let token = Token(FIRST_RELAY_TOKEN + self.next);
        self.next = (self.next + 1) % (usize::MAX - FIRST_RELAY_TOKEN);
        if let Err(e) = registry.register(&mut socket, token, Interest::READABLE) {
            tracing::warn!(target: "relay", error = %e, "cannot register relay socket");
            return None;
        }
        let addr = SocketAddr::new(relay_ip, port);
        self.by_addr.insert(addr, token);
        self.by_token.insert(token, Relay { socket, addr });
        Some(port)
    }

    pub(crate) fn close(&mut self, registry: &Registry, addr: SocketAddr) {
        if let Some(t) = self.by_addr.remove(&addr)
            && let Some(mut r) = self.by_token.remove(&t)
        {
            let _ = registry.deregister(&mut r.socket);
        }
    }

    pub(crate) fn get(&self, token: Token) -> Option<&Relay> {
        self.by_token.get(&token)
    }

    /// Sends from the relay socket of relayed address `from` to a peer.
    /// Queues a datagram from relay `from` to peer `to`; it leaves at the next
    /// [`flush`](Self::flush), batched with its neighbours (GSO).
    pub(crate) fn send(&mut self, from: SocketAddr, to: SocketAddr, data: &[u8]) {
        self.tx.push(from, to, data);
    }

    /// Sends the queued datagrams. UDP: a full send buffer drops a datagram, as the
    /// network would.
    pub(crate) fn flush(&mut self) {
        if self.tx.is_empty() {
            return;
        }
        let (by_addr, by_token) = (&self.by_addr, &self.by_token);
        self.tx.flush(|from| {
            by_addr
                .get(&from)
                .and_then(|t| by_token.get(t))
                .map(|r| &r.socket)
        });
    }
}
