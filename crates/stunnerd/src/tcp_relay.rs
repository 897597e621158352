//! The sockets of TCP allocations (RFC 6062) in a TURN-TCP/TLS worker: one listening
//! socket per relayed address, and the peer connections, accepted on it or connected
//! from its port. Bytes of a bound connection are pumped by `tcp.rs`; this file owns
//! the peer side: its socket, its queue towards the peer, and its state.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use socket2::{Domain, Protocol, Socket, Type};
use stunner_turn::RelayRequest;

/// Tokens from here up are TCP relay listeners and peer connections (UDP relay sockets
/// sit below, from `relays::FIRST_RELAY_TOKEN`).
pub(crate) const FIRST_TCP_RELAY_TOKEN: usize = 1 << 40;
/// Bytes queued towards one side before the other side is no longer read: the kernel's
/// buffers then push back on the sender (no unbounded buffering).
pub(crate) const HIGH_WATER: usize = 256 << 10;
/// One read from a stream of a bound pair.
pub(crate) const CHUNK: usize = 64 << 10;

pub(crate) struct PeerConn {
    pub(crate) stream: TcpStream,
    pub(crate) id: u32,
    /// Connect in progress (RFC 6062 §5.2): waits for writability.
    pub(crate) connecting: bool,
    /// The client data connection, once bound.
    pub(crate) client: Option<Token>,
    /// Bytes for the peer not yet written.
    pub(crate) outbuf: Vec<u8>,
    writable_armed: bool,
    /// Not read because the client side is full; read again when it drains.
    pub(crate) paused: bool,
    /// Close once `outbuf` is written.
    pub(crate) closing: bool,
}

impl PeerConn {
    /// Writes what is queued; false when the connection is broken.
    pub(crate) fn write_pending(&mut self) -> bool {
        while !self.outbuf.is_empty() {
            match self.stream.write(&self.outbuf) {
                Ok(0) => return false,
                Ok(n) => {
                    self.outbuf.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        true
    }

    /// Reads up to `chunk.len()` bytes: `Some(0)` is EOF or error, `None` nothing now.
    pub(crate) fn read_some(&mut self, chunk: &mut [u8]) -> Option<usize> {
        loop {
            match self.stream.read(chunk) {
                Ok(n) => return Some(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Some(0),
            }
        }
    }
}

/// TCP relay listeners and peer connections of one worker.
#[derive(Default)]
pub(crate) struct TcpRelays {
    listeners: HashMap<Token, (TcpListener, SocketAddr)>,
    by_relay: HashMap<SocketAddr, Token>,
    pub(crate) peers: HashMap<Token, PeerConn>,
    pub(crate) by_id: HashMap<u32, Token>,
    next: usize,
}

/// A TCP socket of `addr`'s family bound to `addr` with `SO_REUSEADDR` and
/// `SO_REUSEPORT`: the relay listener and the sockets that connect from its port share
/// it (RFC 6062 §5.2: the peer sees the relayed address).
fn bound(addr: SocketAddr) -> std::io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s)
}

fn wildcard(ipv6: bool, port: u16) -> SocketAddr {
    if ipv6 {
        SocketAddr::new(std::net::Ipv6Addr::UNSPECIFIED.into(), port)
    } else {
        SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), port)
    }
}

impl TcpRelays {
    fn token(&mut self) -> Token {
        let t = Token(FIRST_TCP_RELAY_TOKEN + self.next);
        self.next = (self.next + 1) % (usize::MAX - FIRST_TCP_RELAY_TOKEN);
        t
    }

    pub(crate) fn is_listener(&self, t: Token) -> bool {
        self.listeners.contains_key(&t)
    }

    /// Opens the listening sockets of `req` (and of its IPv6 relay when dual).
    pub(crate) fn open_all(
        &mut self,
        registry: &Registry,
        req: &RelayRequest,
    ) -> (Option<u16>, Option<u16>) {
        let first = self.open(registry, req.ip);
        let v6 = req.additional.and_then(|ip6| self.open(registry, ip6));
        (first, v6)
    }

    fn open(&mut self, registry: &Registry, ip: std::net::IpAddr) -> Option<u16> {
        let opened = bound(wildcard(ip.is_ipv6(), 0)).and_then(|s| {
            s.listen(128)?;
            let port = s
                .local_addr()?
                .as_socket()
                .map(|a| a.port())
                .ok_or_else(|| std::io::Error::other("no address"))?;
            Ok((s, port))
        });
        let (s, port) = match opened {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(target: "relay", error = %e, "cannot open TCP relay");
                return None;
            }
        };
        let mut listener = TcpListener::from_std(s.into());
        let token = self.token();
        if registry
            .register(&mut listener, token, Interest::READABLE)
            .is_err()
        {
            return None;
        }
        let addr = SocketAddr::new(ip, port);
        self.by_relay.insert(addr, token);
        self.listeners.insert(token, (listener, addr));
        Some(port)
    }

    /// Closes the listener of relayed address `addr` (its connections are closed one
    /// by one by the core).
    pub(crate) fn close_relay(&mut self, registry: &Registry, addr: SocketAddr) {
        if let Some(t) = self.by_relay.remove(&addr)
            && let Some((mut l, _)) = self.listeners.remove(&t)
        {
            let _ = registry.deregister(&mut l);
        }
    }

    /// Accepts what waits on listener `t`; `admit` is the core's verdict on each peer
    /// (a connection id, or close it).
    pub(crate) fn accept(
        &mut self,
        registry: &Registry,
        t: Token,
        mut admit: impl FnMut(SocketAddr, SocketAddr) -> Option<u32>,
    ) {
        loop {
            let Some((l, relay)) = self.listeners.get(&t) else {
                return;
            };
            let relay = *relay;
            let (stream, peer) = match l.accept() {
                Ok(x) => x,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::debug!(target: "relay", error = %e, "TCP relay accept failed");
                    return;
                }
            };
            let Some(id) = admit(relay, crate::net::canonical(peer)) else {
                continue; // dropped: closed
            };
            self.insert(registry, stream, id, false);
        }
    }

    /// Starts a connection from the port of `relay` to `peer`; false when it cannot
    /// even start (the core answers 447).
    pub(crate) fn connect(
        &mut self,
        registry: &Registry,
        id: u32,
        relay: SocketAddr,
        peer: SocketAddr,
    ) -> bool {
        let started = bound(wildcard(relay.is_ipv6(), relay.port())).and_then(|s| {
            match s.connect(&peer.into()) {
                Ok(()) => Ok(s),
                Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(s),
                Err(e) => Err(e),
            }
        });
        match started {
            Ok(s) => {
                let stream = TcpStream::from_std(s.into());
                self.insert(registry, stream, id, true)
            }
            Err(e) => {
                tracing::debug!(target: "relay", %relay, %peer, error = %e, "TCP connect failed");
                false
            }
        }
    }

    fn insert(
        &mut self,
        registry: &Registry,
        mut stream: TcpStream,
        id: u32,
        connecting: bool,
    ) -> bool {
        let _ = stream.set_nodelay(true);
        let token = self.token();
        let interest = Interest::READABLE | Interest::WRITABLE;
        if registry.register(&mut stream, token, interest).is_err() {
            return false;
        }
        self.by_id.insert(id, token);
        self.peers.insert(
            token,
            PeerConn {
                stream,
                id,
                connecting,
                client: None,
                outbuf: Vec::new(),
                writable_armed: true,
                paused: false,
                closing: false,
            },
        );
        true
    }

    /// Whether a connecting socket has finished: `Some(true)` connected, `Some(false)`
    /// failed, `None` still going.
    pub(crate) fn connect_result(&mut self, t: Token) -> Option<bool> {
        let p = self.peers.get_mut(&t)?;
        if !p.connecting {
            return None;
        }
        match p.stream.take_error() {
            Ok(Some(_)) | Err(_) => return Some(false),
            Ok(None) => {}
        }
        match p.stream.peer_addr() {
            Ok(_) => {
                p.connecting = false;
                Some(true)
            }
            Err(e) if e.kind() == ErrorKind::NotConnected => None,
            Err(_) => Some(false),
        }
    }

    /// Writes what is queued for the peer of `t` and keeps its write interest right;
    /// false when it is broken or done closing.
    pub(crate) fn flush(&mut self, registry: &Registry, t: Token) -> bool {
        let Some(p) = self.peers.get_mut(&t) else {
            return false;
        };
        if p.connecting {
            return true;
        }
        if !p.write_pending() {
            return false;
        }
        if p.closing && p.outbuf.is_empty() {
            return false;
        }
        let want = !p.outbuf.is_empty();
        if want != p.writable_armed {
            let interest = if want {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            let _ = registry.reregister(&mut p.stream, t, interest);
            p.writable_armed = want;
        }
        true
    }

    /// Closes the peer connection of `t` now.
    pub(crate) fn remove(&mut self, registry: &Registry, t: Token) -> Option<PeerConn> {
        let mut p = self.peers.remove(&t)?;
        self.by_id.remove(&p.id);
        let _ = registry.deregister(&mut p.stream);
        Some(p)
    }
}
