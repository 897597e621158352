//! A TURN-DTLS worker (DTLS 1.2 over UDP with OpenSSL): one socket of the listener's
//! `SO_REUSEPORT` set, one DTLS session per client address, TURN inside. The cookie
//! exchange (HelloVerifyRequest, RFC 6347 §4.2.1) answers a first ClientHello with a
//! small message, so the listener cannot be used to amplify traffic; handshakes that
//! stall are dropped after [`HANDSHAKE_TIMEOUT`], and at most [`MAX_HANDSHAKES`] run at
//! once.

use std::collections::{HashMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, mpsc};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use mio::net::UdpSocket;
use mio::{Interest, Poll, Token};
use openssl::pkey::PKey;
use openssl::ssl::{
    ErrorCode, HandshakeError, MidHandshakeSslStream, Ssl, SslContext, SslMethod, SslOptions,
    SslStream,
};
use openssl::x509::X509;
use sha1::Sha1;
use stunner_config::ListenerConfig;
use stunner_turn::{FiveTuple, ServerConfig};

use crate::relays::Reservations;
use crate::worker::{self, Clients, Control, Core, READ_BUDGET, Shared, WAKER};
use crate::{Error, net};

const LISTENER: Token = Token(1);
/// DTLS record size limit: fits a 1280-byte IPv6 path with room for the headers.
const MTU: u32 = 1200;
/// A handshake not finished by then is dropped.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A session not heard from for this long is dropped (the longest allocation lifetime
/// without a refresh, RFC 8656 §7.2, plus a margin).
pub(crate) const SESSION_IDLE: Duration = Duration::from_secs(3700);
/// Concurrent handshakes per worker; the oldest is dropped beyond this.
pub(crate) const MAX_HANDSHAKES: usize = 1024;

/// Whether DTLS listeners also accept DTLS 1.0 (`--dtls-legacy`).
static LEGACY: AtomicBool = AtomicBool::new(false);

/// Lets DTLS listeners accept DTLS 1.0, deprecated by RFC 8996, for old clients (coturn's
/// `turnutils_uclient` picks DTLS 1.0 for some of its connections). Process-wide; set
/// once at start-up.
pub fn allow_legacy(on: bool) {
    LEGACY.store(on, Ordering::Relaxed);
}

/// The in-memory datagram transport under one DTLS session.
#[derive(Debug, Default)]
struct Datagrams {
    inbox: VecDeque<Vec<u8>>,
    outbox: Vec<Vec<u8>>,
}

impl Read for Datagrams {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let Some(d) = self.inbox.pop_front() else {
            return Err(ErrorKind::WouldBlock.into());
        };
        let n = d.len().min(buf.len());
        buf[..n].copy_from_slice(&d[..n]);
        Ok(n)
    }
}

impl Write for Datagrams {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // Each write of the DTLS layer is one datagram.
        self.outbox.push(buf.to_vec());
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

enum Session {
    Handshaking(MidHandshakeSslStream<Datagrams>, Instant),
    /// With the time the client was last heard from.
    Established(SslStream<Datagrams>, Instant),
}

impl Session {
    fn io(&mut self) -> &mut Datagrams {
        match self {
            Self::Handshaking(m, _) => m.get_mut(),
            Self::Established(s, _) => s.get_mut(),
        }
    }
}

fn client_index() -> Result<openssl::ex_data::Index<Ssl, SocketAddr>, Error> {
    static INDEX: OnceLock<Option<openssl::ex_data::Index<Ssl, SocketAddr>>> = OnceLock::new();
    INDEX
        .get_or_init(|| Ssl::new_ex_index().ok())
        .ok_or_else(|| Error::Unsupported("OpenSSL ex-data index unavailable".into()))
}

/// The OpenSSL context of a DTLS listener: its certificate and the cookie exchange.
pub(crate) fn context(l: &ListenerConfig) -> Result<SslContext, Error> {
    let bad = |what: &str, e: &dyn std::fmt::Display| {
        Error::Unsupported(format!("listener {:?}: invalid DTLS {what}: {e}", l.name))
    };
    let cert_pem = l.cert_pem()?;
    let key_pem = l.key_pem()?;
    let chain = X509::stack_from_pem(&cert_pem).map_err(|e| bad("certificate", &e))?;
    let (leaf, rest) = chain
        .split_first()
        .ok_or_else(|| bad("certificate", &"no PEM certificate"))?;
    let key = PKey::private_key_from_pem(&key_pem).map_err(|e| bad("key", &e))?;
    let mut b = SslContext::builder(SslMethod::dtls()).map_err(|e| bad("setup", &e))?;
    b.set_certificate(leaf)
        .map_err(|e| bad("certificate", &e))?;
    for c in rest {
        b.add_extra_chain_cert(c.clone())
            .map_err(|e| bad("certificate chain", &e))?;
    }
    b.set_private_key(&key).map_err(|e| bad("key", &e))?;
    b.check_private_key()
        .map_err(|e| bad("certificate or key", &e))?;
    b.set_options(SslOptions::COOKIE_EXCHANGE);
    if LEGACY.load(Ordering::Relaxed) {
        // DTLS 1.0 needs OpenSSL's security level 0 (SHA-1 signatures).
        b.set_security_level(0);
    } else {
        // DTLS 1.2 only: RFC 8996 forbids DTLS 1.0.
        b.set_min_proto_version(Some(openssl::ssl::SslVersion::DTLS1_2))
            .map_err(|e| bad("setup", &e))?;
    }
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| bad("cookie secret", &e))?;
    let index = client_index()?;
    let cookie = move |ssl: &openssl::ssl::SslRef| -> Option<Vec<u8>> {
        let addr = ssl.ex_data(index)?;
        let mut m = Hmac::<Sha1>::new_from_slice(&secret).ok()?;
        m.update(addr.to_string().as_bytes());
        Some(m.finalize().into_bytes().to_vec())
    };
    let gen_cookie = cookie;
    b.set_cookie_generate_cb(move |ssl, out| {
        let c = gen_cookie(ssl).unwrap_or_default();
        let n = c.len().min(out.len());
        out[..n].copy_from_slice(&c[..n]);
        Ok(n)
    });
    b.set_cookie_verify_cb(move |ssl, got| cookie(ssl).is_some_and(|c| c == got));
    Ok(b.build())
}

struct DtlsClients<'a> {
    socket: &'a UdpSocket,
    sessions: &'a mut HashMap<SocketAddr, Session>,
    shared: &'a Shared,
}

impl DtlsClients<'_> {
    fn flush(&mut self, to: SocketAddr) {
        let Some(s) = self.sessions.get_mut(&to) else {
            return;
        };
        for d in s.io().outbox.drain(..) {
            if self.socket.send_to(&d, net::for_socket(true, to)).is_ok() {
                self.shared.tx_packets.fetch_add(1, Ordering::Relaxed);
                self.shared
                    .tx_bytes
                    .fetch_add(d.len() as u64, Ordering::Relaxed);
            }
        }
    }
}

impl Clients for DtlsClients<'_> {
    fn send(&mut self, to: SocketAddr, data: &[u8]) {
        if let Some(Session::Established(s, _)) = self.sessions.get_mut(&to) {
            let _ = s.ssl_write(data);
        }
        self.flush(to);
    }
}

/// Starts a worker on an already bound (non-blocking) socket.
pub(crate) fn spawn(
    name: &str,
    socket: std::net::UdpSocket,
    config: ServerConfig,
    reservations: Arc<Reservations>,
    ctx: SslContext,
) -> std::io::Result<worker::Handle> {
    let listener_name = name.to_string();
    worker::spawn(format!("dtls:{name}"), move |poll, rx, shared| {
        run(
            &listener_name,
            poll,
            rx,
            shared,
            UdpSocket::from_std(socket),
            config,
            reservations,
            ctx,
        );
    })
}

#[allow(clippy::too_many_arguments)] // the pieces of one thread, moved in once
fn run(
    name: &str,
    mut poll: Poll,
    rx: mpsc::Receiver<Control>,
    shared: Arc<Shared>,
    mut socket: UdpSocket,
    config: ServerConfig,
    reservations: Arc<Reservations>,
    ctx: SslContext,
) {
    if let Err(e) = poll
        .registry()
        .register(&mut socket, LISTENER, Interest::READABLE)
    {
        tracing::error!(target: "stunnerd", listener = name, error = %e, "cannot poll listener socket");
        return;
    }
    let local = net::canonical(socket.local_addr().unwrap_or_else(|_| net::wildcard(0)));
    let mut core = Core::new(name, config, shared.clone(), reservations);
    core.dtls = Some(ctx);
    let mut sessions: HashMap<SocketAddr, Session> = HashMap::new();
    let mut events = worker::events();
    let mut plain = vec![0u8; 65536];
    loop {
        if !core.wait(&mut poll, &mut events) {
            return;
        }
        let mut tokens: Vec<Token> = events.iter().map(|e| e.token()).collect();
        tokens.extend(core.backlog.drain(..));
        for token in tokens {
            let mut clients = DtlsClients {
                socket: &socket,
                sessions: &mut sessions,
                shared: &shared,
            };
            match token {
                WAKER => {
                    if !core.control(&rx, &poll, &mut clients) {
                        return;
                    }
                }
                LISTENER => read_clients(
                    &mut core,
                    &poll,
                    &socket,
                    &mut sessions,
                    &shared,
                    local,
                    &mut plain,
                ),
                t => core.read_relay(t, &poll, &mut clients),
            }
        }
        let now = Instant::now();
        expire_sessions(&mut sessions, now);
        shared
            .connections
            .store(sessions.len() as u64, Ordering::Relaxed);
        let mut clients = DtlsClients {
            socket: &socket,
            sessions: &mut sessions,
            shared: &shared,
        };
        core.tick(&poll, &mut clients, now);
    }
}

fn expire_sessions(sessions: &mut HashMap<SocketAddr, Session>, now: Instant) {
    // Stalled handshakes, and sessions silent for longer than any allocation can live
    // without a refresh (the client is gone).
    sessions.retain(|_, s| match s {
        Session::Handshaking(_, t) => now.duration_since(*t) <= HANDSHAKE_TIMEOUT,
        Session::Established(_, seen) => now.duration_since(*seen) <= SESSION_IDLE,
    });
    let handshaking = sessions
        .values()
        .filter(|s| matches!(s, Session::Handshaking(..)))
        .count();
    if handshaking > MAX_HANDSHAKES {
        let mut started: Vec<(Instant, SocketAddr)> = sessions
            .iter()
            .filter_map(|(a, s)| match s {
                Session::Handshaking(_, t) => Some((*t, *a)),
                Session::Established(..) => None,
            })
            .collect();
        started.sort();
        for (_, a) in started.into_iter().take(handshaking - MAX_HANDSHAKES) {
            sessions.remove(&a);
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn read_clients(
    core: &mut Core,
    poll: &Poll,
    socket: &UdpSocket,
    sessions: &mut HashMap<SocketAddr, Session>,
    shared: &Shared,
    local: SocketAddr,
    plain: &mut [u8],
) {
    for _ in 0..READ_BUDGET {
        let (n, from) = match socket.recv_from(&mut core.buf) {
            Ok(x) => x,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(_) => continue,
        };
        shared.rx_packets.fetch_add(1, Ordering::Relaxed);
        shared.rx_bytes.fetch_add(n as u64, Ordering::Relaxed);
        let from = net::canonical(from);
        let datagram = core.buf[..n].to_vec();
        let records = feed(core, sessions, from, datagram, plain);
        let now = Instant::now();
        let ft = FiveTuple {
            client: from,
            server: local,
        };
        for msg in records {
            core.handle_client(now, ft, &msg);
        }
        let mut clients = DtlsClients {
            socket,
            sessions,
            shared,
        };
        clients.flush(from);
        core.drain(poll, &mut clients, now);
    }
    core.backlog.push_back(LISTENER);
}

/// Feeds a datagram to the client's DTLS session; returns the TURN messages it
/// decrypted.
fn feed(
    core: &Core,
    sessions: &mut HashMap<SocketAddr, Session>,
    from: SocketAddr,
    datagram: Vec<u8>,
    plain: &mut [u8],
) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let session = match sessions.remove(&from) {
        Some(mut s) => {
            s.io().inbox.push_back(datagram);
            s
        }
        None => {
            let Some(ctx) = &core.dtls else { return out };
            let Ok(mut ssl) = Ssl::new(ctx) else {
                return out;
            };
            let _ = ssl.set_mtu(MTU);
            if let Ok(index) = client_index() {
                ssl.set_ex_data(index, from);
            }
            let mut io = Datagrams::default();
            io.inbox.push_back(datagram);
            match ssl.accept(io) {
                Ok(s) => Session::Established(s, Instant::now()),
                Err(HandshakeError::WouldBlock(m)) => Session::Handshaking(m, Instant::now()),
                Err(e) => {
                    tracing::debug!(target: "dtls", client = %from, error = %e, "handshake failed");
                    return out;
                }
            }
        }
    };
    let session = match session {
        Session::Handshaking(m, started) => match m.handshake() {
            Ok(s) => {
                tracing::debug!(target: "dtls", client = %from, "handshake done");
                Session::Established(s, Instant::now())
            }
            Err(HandshakeError::WouldBlock(m)) => Session::Handshaking(m, started),
            Err(e) => {
                tracing::debug!(target: "dtls", client = %from, error = %e, "handshake failed");
                return out;
            }
        },
        est => est,
    };
    let mut session = session;
    if let Session::Established(s, seen) = &mut session {
        *seen = Instant::now();
        loop {
            match s.ssl_read(plain) {
                Ok(n) if n > 0 => out.push(plain[..n].to_vec()),
                Ok(_) => break,
                Err(e) if e.code() == ErrorCode::WANT_READ => break,
                Err(e) if e.code() == ErrorCode::ZERO_RETURN => {
                    // close_notify: the session ends; the allocation lives on until it
                    // expires, as for plain UDP.
                    let _ = s.shutdown();
                    let pending: Vec<Vec<u8>> = s.get_mut().outbox.drain(..).collect();
                    drop(pending);
                    return out;
                }
                Err(e) => {
                    tracing::debug!(target: "dtls", client = %from, error = %e, "read failed");
                    return out;
                }
            }
        }
    }
    sessions.insert(from, session);
    out
}
