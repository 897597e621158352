//! A TURN-TCP or TURN-TLS worker: the listener and all its connections in one poll
//! loop, one TURN core for the listener. Streams are split into frames with
//! `stunner_turn::frame_len` (RFC 8656 §12.5); a closed connection ends its allocation.
//! TLS is rustls driven by hand over the non-blocking socket.

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
}

impl Conns {
    fn flush(&mut self, token: Token, poll: &Poll) {
        let Some(c) = self.by_token.get_mut(&token) else {
            return;
        };
        if !c.write_pending() {
            self.dead.push(token);
            return;
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
    if !c.read_available(&mut chunk) {
        conns.dead.push(token);
    }
    // The TLS handshake may have something to say.
    conns.flush(token, poll);
    let Some(c) = conns.by_token.get_mut(&token) else {
        return;
    };
    let mut frames = Vec::new();
    loop {
        match frame_len(&c.inbuf) {
            Ok(Some(n)) if n <= c.inbuf.len() => {
                frames.push(c.inbuf.drain(..n).collect::<Vec<u8>>())
            }
            Ok(_) => break,
            Err(_) => {
                conns.dead.push(token);
                break;
            }
        }
    }
    let ft = FiveTuple {
        client: c.peer,
        server: local,
    };
    for frame in frames {
        shared.rx_packets.fetch_add(1, Ordering::Relaxed);
        shared
            .rx_bytes
            .fetch_add(frame.len() as u64, Ordering::Relaxed);
        let now = Instant::now();
        core.handle_client(now, ft, &frame);
        let mut clients = TcpClients {
            conns,
            poll,
            shared,
        };
        core.drain(poll, &mut clients, now);
    }
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
