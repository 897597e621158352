//! A TURN-TCP or TURN-TLS worker: the listener and all its connections in one poll
//! loop, one TURN core for the listener. Streams are split into frames with
//! `stunner_turn::frame_len` (RFC 8656 §12.5); a closed connection ends its allocation.
//! TLS is rustls driven by hand over the non-blocking socket. A connection bound by
//! ConnectionBind (RFC 6062) stops being framed: its bytes are pumped to and from its
//! peer connection (`tcp_relay.rs`), each side read only while the other has room.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};
use std::time::Instant;

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Poll, Token};
use stunner_turn::{FiveTuple, ServerConfig, frame_len};

use crate::net;
use crate::relays::Reservations;
use crate::tcp_relay::{CHUNK, FIRST_TCP_RELAY_TOKEN, HIGH_WATER, TcpRelays};
use crate::worker::{self, Clients, Control, Core, Shared, WAKER};

const LISTENER: Token = Token(1);
const FIRST_CONN: usize = 2;
/// A client that does not read its data gets this much queued, then is dropped.
const MAX_QUEUED: usize = 4 << 20;

struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    inbuf: Vec<u8>,
    /// Plain TCP: bytes not yet written. (TLS buffers in rustls.)
    outbuf: Vec<u8>,
    tls: Option<rustls::ServerConnection>,
    writable_armed: bool,
    /// A data connection (RFC 6062 §5.4): the peer connection it is bound to.
    data_peer: Option<Token>,
    /// Not read because the peer side is full; read again when it drains.
    paused: bool,
    /// Close once what is queued is written.
    closing: bool,
}

impl Conn {
    /// Writes what is pending; false when the connection is broken.
    fn write_pending(&mut self) -> bool {
        if let Some(tls) = &mut self.tls {
            while tls.wants_write() {
                match tls.write_tls(&mut self.stream) {
                    Ok(0) => return false,
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => return false,
                }
            }
            return true;
        }
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

    fn has_pending(&self) -> bool {
        self.tls
            .as_ref()
            .map_or(!self.outbuf.is_empty(), |t| t.wants_write())
    }

    /// Bytes queued for the client, for back-pressure. TLS does not say how much it
    /// holds: anything unwritten counts as full.
    fn pending_len(&self) -> usize {
        match &self.tls {
            Some(t) if t.wants_write() => HIGH_WATER,
            Some(_) => 0,
            None => self.outbuf.len(),
        }
    }

    /// Reads at most `chunk.len()` bytes (decrypted for TLS): `Some(0)` is EOF or an
    /// error, `None` nothing now.
    fn read_some(&mut self, chunk: &mut [u8]) -> Option<usize> {
        let Some(tls) = &mut self.tls else {
            loop {
                match self.stream.read(chunk) {
                    Ok(n) => return Some(n),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return None,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => return Some(0),
                }
            }
        };
        loop {
            match tls.reader().read(chunk) {
                Ok(n) => return Some(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => return Some(0),
            }
            match tls.read_tls(&mut self.stream) {
                Ok(0) => return Some(0),
                Ok(_) => {
                    if tls.process_new_packets().is_err() {
                        return Some(0);
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Some(0),
            }
        }
    }

    /// Queues bytes for the client; false if the client is too far behind.
    fn queue(&mut self, data: &[u8]) -> bool {
        match &mut self.tls {
            Some(tls) => tls.writer().write_all(data).is_ok(),
            None => {
                if self.outbuf.len() + data.len() > MAX_QUEUED {
                    return false;
                }
                self.outbuf.extend_from_slice(data);
                true
            }
        }
    }

    /// Reads what the socket has into `inbuf` (decrypted for TLS); false on EOF or
    /// error.
    fn read_available(&mut self, chunk: &mut [u8]) -> bool {
        loop {
            let Some(tls) = &mut self.tls else {
                match self.stream.read(chunk) {
                    Ok(0) => return false,
                    Ok(n) => self.inbuf.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => return false,
                }
                continue;
            };
            match tls.read_tls(&mut self.stream) {
                Ok(0) => return false,
                Ok(_) => {
                    if tls.process_new_packets().is_err() {
                        // Send the alert, then give up.
                        let _ = tls.write_tls(&mut self.stream);
                        return false;
                    }
                    loop {
                        match tls.reader().read(chunk) {
                            Ok(0) => return false,
                            Ok(n) => self.inbuf.extend_from_slice(&chunk[..n]),
                            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                            Err(_) => return false,
                        }
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
    }
}

#[derive(Default)]
struct Conns {
    by_token: HashMap<Token, Conn>,
    by_addr: HashMap<SocketAddr, Token>,
    next: usize,
    /// Connections to close after this turn (EOF, errors, overflow).
    dead: Vec<Token>,
    /// TCP allocations' sockets (RFC 6062).
    relays: TcpRelays,
    /// Paused sides of bound pairs whose other side drained: read them again.
    resume: Vec<Token>,
}

impl Conns {
    fn flush(&mut self, token: Token, poll: &Poll) {
        let Some(c) = self.by_token.get_mut(&token) else {
            return;
        };
        if !c.write_pending() || (c.closing && !c.has_pending()) {
            self.dead.push(token);
            return;
        }
        if let Some(p) = c.data_peer
            && c.pending_len() < HIGH_WATER / 2
            && let Some(peer) = self.relays.peers.get_mut(&p)
            && peer.paused
        {
            peer.paused = false;
            self.resume.push(p);
        }
        let want = c.has_pending();
        if want != c.writable_armed {
            let interest = if want {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            let _ = poll.registry().reregister(&mut c.stream, token, interest);
            c.writable_armed = want;
        }
    }
}

struct TcpClients<'a> {
    conns: &'a mut Conns,
    poll: &'a Poll,
    shared: &'a Shared,
}

impl Clients for TcpClients<'_> {
    fn send(&mut self, to: SocketAddr, data: &[u8]) {
        let Some(&t) = self.conns.by_addr.get(&to) else {
            return;
        };
        if let Some(c) = self.conns.by_token.get_mut(&t) {
            if !c.queue(data) {
                self.conns.dead.push(t);
                return;
            }
            self.shared.tx_packets.fetch_add(1, Ordering::Relaxed);
            self.shared
                .tx_bytes
                .fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        self.conns.flush(t, self.poll);
    }

    fn open_tcp_relays(&mut self, req: &stunner_turn::RelayRequest) -> (Option<u16>, Option<u16>) {
        self.conns.relays.open_all(self.poll.registry(), req)
    }

    fn close_tcp_relay(&mut self, addr: SocketAddr) {
        self.conns.relays.close_relay(self.poll.registry(), addr);
    }

    fn connect_peer(&mut self, id: u32, relay: SocketAddr, peer: SocketAddr) -> bool {
        self.conns
            .relays
            .connect(self.poll.registry(), id, relay, peer)
    }

    fn bind_connection(&mut self, id: u32, client: FiveTuple) {
        let conns = &mut *self.conns;
        let (Some(&tc), Some(&tp)) = (
            conns.by_addr.get(&client.client),
            conns.relays.by_id.get(&id),
        ) else {
            return;
        };
        if let (Some(c), Some(p)) = (conns.by_token.get_mut(&tc), conns.relays.peers.get_mut(&tp)) {
            c.data_peer = Some(tp);
            p.client = Some(tc);
            // Both may have bytes waiting whose readiness was already reported.
            conns.resume.push(tc);
            conns.resume.push(tp);
        }
    }

    fn close_connection(&mut self, id: u32) {
        let conns = &mut *self.conns;
        let Some(&tp) = conns.relays.by_id.get(&id) else {
            return;
        };
        let client = conns.relays.peers.get_mut(&tp).and_then(|p| {
            p.closing = true;
            p.client
        });
        if !conns.relays.flush(self.poll.registry(), tp) {
            conns.relays.remove(self.poll.registry(), tp);
        }
        if let Some(tc) = client
            && let Some(c) = conns.by_token.get_mut(&tc)
        {
            c.closing = true;
            conns.flush(tc, self.poll);
        }
    }
}

/// Starts the worker of a TCP listener; with `tls`, of a TLS listener.
pub(crate) fn spawn(
    name: &str,
    listener: std::net::TcpListener,
    config: ServerConfig,
    reservations: Arc<Reservations>,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> std::io::Result<worker::Handle> {
    let listener_name = name.to_string();
    let kind = if tls.is_some() { "tls" } else { "tcp" };
    worker::spawn(format!("{kind}:{name}"), move |poll, rx, shared| {
        let listener = TcpListener::from_std(listener);
        run(
            &listener_name,
            poll,
            rx,
            shared,
            listener,
            config,
            reservations,
            tls,
        );
    })
}

#[allow(clippy::too_many_arguments)] // the pieces of one thread, moved in once
fn run(
    name: &str,
    mut poll: Poll,
    rx: mpsc::Receiver<Control>,
    shared: Arc<Shared>,
    mut listener: TcpListener,
    config: ServerConfig,
    reservations: Arc<Reservations>,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    if let Err(e) = poll
        .registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
    {
        tracing::error!(target: "stunnerd", listener = name, error = %e, "cannot poll listener");
        return;
    }
    let local = net::canonical(listener.local_addr().unwrap_or_else(|_| net::wildcard(0)));
    let mut core = Core::new(name, config, shared.clone(), reservations);
    core.tls = tls;
    let mut conns = Conns::default();
    let mut events = worker::events();
    loop {
        if !core.wait(&mut poll, &mut events) {
            return;
        }
        let mut tokens: Vec<(Token, bool)> = events
            .iter()
            .map(|e| (e.token(), e.is_writable()))
            .collect();
        tokens.extend(core.backlog.drain(..).map(|t| (t, false)));
        for (token, writable) in tokens {
            match token {
                WAKER => {
                    let mut clients = TcpClients {
                        conns: &mut conns,
                        poll: &poll,
                        shared: &shared,
                    };
                    if !core.control(&rx, &poll, &mut clients) {
                        return;
                    }
                }
                LISTENER => accept(&mut listener, &mut conns, &poll, core.tls.as_ref(), &shared),
                t if t.0 >= FIRST_TCP_RELAY_TOKEN => {
                    relay_event(&mut core, &mut conns, t, writable, &poll, &shared);
                }
                t if t.0 < crate::relays::FIRST_RELAY_TOKEN => {
                    if writable {
                        conns.flush(t, &poll);
                    }
                    read_conn(&mut core, &mut conns, t, &poll, &shared, local);
                }
                t => {
                    let mut clients = TcpClients {
                        conns: &mut conns,
                        poll: &poll,
                        shared: &shared,
                    };
                    core.read_relay(t, &poll, &mut clients);
                }
            }
        }
        close_dead(&mut core, &mut conns, &poll, local, &shared);
        let mut clients = TcpClients {
            conns: &mut conns,
            poll: &poll,
            shared: &shared,
        };
        core.tick(&poll, &mut clients, Instant::now());
        core.backlog.extend(conns.resume.drain(..));
    }
}

fn accept(
    listener: &mut TcpListener,
    conns: &mut Conns,
    poll: &Poll,
    tls: Option<&Arc<rustls::ServerConfig>>,
    shared: &Shared,
) {
    loop {
        match listener.accept() {
            Ok((mut stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let tls = match tls.map(|c| rustls::ServerConnection::new(c.clone())) {
                    None => None,
                    Some(Ok(mut c)) => {
                        c.set_buffer_limit(Some(MAX_QUEUED));
                        Some(c)
                    }
                    Some(Err(e)) => {
                        tracing::warn!(target: "stunnerd", error = %e, "cannot start TLS session");
                        continue;
                    }
                };
                let token = Token(FIRST_CONN + conns.next);
                conns.next = (conns.next + 1) % (crate::relays::FIRST_RELAY_TOKEN - FIRST_CONN);
                if poll
                    .registry()
                    .register(&mut stream, token, Interest::READABLE)
                    .is_err()
                {
                    continue;
                }
                let peer = net::canonical(peer);
                shared.connections.fetch_add(1, Ordering::Relaxed);
                shared.connections_total.fetch_add(1, Ordering::Relaxed);
                conns.by_addr.insert(peer, token);
                conns.by_token.insert(
                    token,
                    Conn {
                        stream,
                        peer,
                        inbuf: Vec::new(),
                        outbuf: Vec::new(),
                        tls,
                        writable_armed: false,
                        data_peer: None,
                        paused: false,
                        closing: false,
                    },
                );
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(e) => {
                tracing::warn!(target: "stunnerd", error = %e, "accept failed");
                return;
            }
        }
    }
}

fn read_conn(
    core: &mut Core,
    conns: &mut Conns,
    token: Token,
    poll: &Poll,
    shared: &Shared,
    local: SocketAddr,
) {
    let mut chunk = [0u8; 16384];
    let Some(c) = conns.by_token.get_mut(&token) else {
        return;
    };
    if c.data_peer.is_some() {
        pump_to_peer(core, conns, token, poll, shared);
        return;
    }
    if !c.read_available(&mut chunk) {
        conns.dead.push(token);
    }
    // The TLS handshake may have something to say.
    conns.flush(token, poll);
    let Some(c) = conns.by_token.get_mut(&token) else {
        return;
    };
    let ft = FiveTuple {
        client: c.peer,
        server: local,
    };
    loop {
        let Some(c) = conns.by_token.get_mut(&token) else {
            return;
        };
        if c.data_peer.is_some() {
            // A ConnectionBind made it a data connection: what follows is raw bytes.
            pump_to_peer(core, conns, token, poll, shared);
            return;
        }
        let frame = match frame_len(&c.inbuf) {
            Ok(Some(n)) if n <= c.inbuf.len() => c.inbuf.drain(..n).collect::<Vec<u8>>(),
            Ok(_) => break,
            Err(_) => {
                conns.dead.push(token);
                break;
            }
        };
        shared.rx_packets.fetch_add(1, Ordering::Relaxed);
        shared
            .rx_bytes
            .fetch_add(frame.len() as u64, Ordering::Relaxed);
        let now = Instant::now();
        core.handle_client(now, ft, &frame);
        drain(core, conns, poll, shared, now);
    }
}

fn drain(core: &mut Core, conns: &mut Conns, poll: &Poll, shared: &Shared, now: Instant) {
    let mut clients = TcpClients {
        conns,
        poll,
        shared,
    };
    core.drain(poll, &mut clients, now);
}

/// Client to peer on a bound pair (RFC 6062 §5.4), while the peer side has room.
fn pump_to_peer(core: &mut Core, conns: &mut Conns, tc: Token, poll: &Poll, shared: &Shared) {
    let mut chunk = [0u8; CHUNK];
    loop {
        let Some(c) = conns.by_token.get_mut(&tc) else {
            return;
        };
        let Some(tp) = c.data_peer.filter(|_| !c.closing) else {
            return;
        };
        let Some(p) = conns.relays.peers.get_mut(&tp) else {
            c.closing = true;
            conns.flush(tc, poll);
            return;
        };
        if p.closing {
            return;
        }
        if p.outbuf.len() >= HIGH_WATER {
            c.paused = true;
            return;
        }
        let n = if c.inbuf.is_empty() {
            match c.read_some(&mut chunk) {
                None => {
                    // TLS may have records to send (alerts, key updates).
                    conns.flush(tc, poll);
                    return;
                }
                Some(0) => return end_pair(core, conns, tp, poll, shared),
                Some(n) => {
                    p.outbuf.extend_from_slice(&chunk[..n]);
                    n
                }
            }
        } else {
            let n = c.inbuf.len();
            p.outbuf.append(&mut c.inbuf);
            n
        };
        shared.rx_bytes.fetch_add(n as u64, Ordering::Relaxed);
        shared
            .tcp_bytes_to_peers
            .fetch_add(n as u64, Ordering::Relaxed);
        if !conns.relays.flush(poll.registry(), tp) {
            return end_pair(core, conns, tp, poll, shared);
        }
    }
}

/// Peer to client on a bound pair, while the client side has room. An unbound peer
/// connection is not read: its bytes wait in the kernel.
fn pump_to_client(core: &mut Core, conns: &mut Conns, tp: Token, poll: &Poll, shared: &Shared) {
    let mut chunk = [0u8; CHUNK];
    loop {
        let Some(p) = conns.relays.peers.get_mut(&tp) else {
            return;
        };
        if p.closing || p.connecting {
            return;
        }
        let Some(tc) = p.client else {
            return;
        };
        let Some(c) = conns.by_token.get_mut(&tc) else {
            return end_pair(core, conns, tp, poll, shared);
        };
        if c.closing {
            return;
        }
        if c.pending_len() >= HIGH_WATER {
            p.paused = true;
            return;
        }
        let n = match p.read_some(&mut chunk) {
            None => return,
            Some(0) => return end_pair(core, conns, tp, poll, shared),
            Some(n) => n,
        };
        if !c.queue(&chunk[..n]) {
            conns.dead.push(tc);
            return;
        }
        shared.tx_bytes.fetch_add(n as u64, Ordering::Relaxed);
        shared
            .tcp_bytes_from_peers
            .fetch_add(n as u64, Ordering::Relaxed);
        conns.flush(tc, poll);
    }
}

/// One side of the pair of peer connection `tp` ended: the core forgets it and both
/// sides close (the survivor after writing what it holds).
fn end_pair(core: &mut Core, conns: &mut Conns, tp: Token, poll: &Poll, shared: &Shared) {
    let Some(id) = conns.relays.peers.get(&tp).map(|p| p.id) else {
        return;
    };
    let now = Instant::now();
    core.server.handle_connection_closed(now, id);
    drain(core, conns, poll, shared, now);
    // Closed by the core's answer, unless it had forgotten the connection already.
    if let Some(p) = conns.relays.remove(poll.registry(), tp)
        && let Some(tc) = p.client
        && let Some(c) = conns.by_token.get_mut(&tc)
    {
        c.closing = true;
        conns.flush(tc, poll);
    }
}

/// An event on a TCP relay listener or peer connection.
fn relay_event(
    core: &mut Core,
    conns: &mut Conns,
    t: Token,
    writable: bool,
    poll: &Poll,
    shared: &Shared,
) {
    let now = Instant::now();
    if conns.relays.is_listener(t) {
        let server = &mut core.server;
        conns.relays.accept(poll.registry(), t, |relay, peer| {
            server.handle_peer_connection(now, relay, peer)
        });
        return drain(core, conns, poll, shared, now);
    }
    if let Some(connected) = conns.relays.connect_result(t) {
        let Some(id) = conns.relays.peers.get(&t).map(|p| p.id) else {
            return;
        };
        if !connected {
            conns.relays.remove(poll.registry(), t);
        }
        core.server.handle_peer_connected(now, id, connected);
        drain(core, conns, poll, shared, now);
        if !connected {
            return;
        }
    }
    if writable {
        if !conns.relays.flush(poll.registry(), t) {
            let closing = conns.relays.peers.get(&t).is_some_and(|p| p.closing);
            if closing {
                conns.relays.remove(poll.registry(), t);
            } else {
                end_pair(core, conns, t, poll, shared);
            }
            return;
        }
        if let Some(p) = conns.relays.peers.get(&t)
            && p.outbuf.len() < HIGH_WATER / 2
            && let Some(tc) = p.client
            && let Some(c) = conns.by_token.get_mut(&tc)
            && c.paused
        {
            c.paused = false;
            conns.resume.push(tc);
        }
    }
    pump_to_client(core, conns, t, poll, shared);
}

fn close_dead(core: &mut Core, conns: &mut Conns, poll: &Poll, local: SocketAddr, shared: &Shared) {
    if conns.dead.is_empty() {
        return;
    }
    for t in std::mem::take(&mut conns.dead) {
        if let Some(mut c) = conns.by_token.remove(&t) {
            let _ = poll.registry().deregister(&mut c.stream);
            shared.connections.fetch_sub(1, Ordering::Relaxed);
            conns.by_addr.remove(&c.peer);
            core.server.handle_client_closed(
                Instant::now(),
                FiveTuple {
                    client: c.peer,
                    server: local,
                },
            );
        }
    }
    let mut clients = TcpClients {
        conns,
        poll,
        shared,
    };
    core.drain(poll, &mut clients, Instant::now());
}
