//! A TURN-UDP worker: one socket of the listener's `SO_REUSEPORT` set. The kernel's
//! 4-tuple hash keeps each client on one worker, so its allocation lives here only.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};
use std::time::Instant;

use mio::net::UdpSocket;
use mio::{Interest, Poll, Token};
use stunner_turn::{FiveTuple, ServerConfig, Source};

use crate::net;
use crate::relays::Reservations;
use crate::worker::{self, Clients, Control, Core, READ_BUDGET, Shared, WAKER};

const LISTENER: Token = Token(1);

struct UdpClients<'a> {
    socket: &'a UdpSocket,
    shared: &'a Shared,
}

impl Clients for UdpClients<'_> {
    fn send(&mut self, to: SocketAddr, data: &[u8]) {
        if self.socket.send_to(data, net::for_socket(true, to)).is_ok() {
            self.shared.tx_packets.fetch_add(1, Ordering::Relaxed);
            self.shared
                .tx_bytes
                .fetch_add(data.len() as u64, Ordering::Relaxed);
        }
    }
}

/// Starts a worker on an already bound (non-blocking) socket.
pub(crate) fn spawn(
    name: &str,
    socket: std::net::UdpSocket,
    config: ServerConfig,
    reservations: Arc<Reservations>,
) -> std::io::Result<worker::Handle> {
    let listener_name = name.to_string();
    worker::spawn(format!("udp:{name}"), move |poll, rx, shared| {
        run(
            &listener_name,
            poll,
            rx,
            shared,
            UdpSocket::from_std(socket),
            config,
            reservations,
        );
    })
}

fn run(
    name: &str,
    poll: Poll,
    rx: mpsc::Receiver<Control>,
    shared: Arc<Shared>,
    mut socket: UdpSocket,
    config: ServerConfig,
    reservations: Arc<Reservations>,
) {
    if let Err(e) = poll
        .registry()
        .register(&mut socket, LISTENER, Interest::READABLE)
    {
        tracing::error!(target: "stunnerd", listener = name, error = %e, "cannot poll listener socket");
        return;
    }
    let local = socket.local_addr().unwrap_or_else(|_| net::wildcard(0));
    let local = net::canonical(local);
    // Upstream counts each UDP listener socket as one connection.
    shared.connections.store(1, Ordering::Relaxed);
    shared.connections_total.store(1, Ordering::Relaxed);
    let mut core = Core::new(name, config, shared.clone(), reservations);
    let mut poll = poll;
    let mut events = worker::events();
    loop {
        let timeout = core.timeout(Instant::now());
        if let Err(e) = poll.poll(&mut events, timeout)
            && e.kind() != ErrorKind::Interrupted
        {
            tracing::error!(target: "stunnerd", listener = name, error = %e, "poll failed");
            return;
        }
        let mut clients = UdpClients {
            socket: &socket,
            shared: &shared,
        };
        let mut tokens: Vec<Token> = events.iter().map(|e| e.token()).collect();
        tokens.extend(core.backlog.drain(..));
        for token in tokens {
            match token {
                WAKER => {
                    if !core.control(&rx, &poll, &mut clients) {
                        return;
                    }
                }
                LISTENER => read_clients(&mut core, &poll, &socket, &shared, local),
                t => core.read_relay(t, &poll, &mut clients),
            }
        }
        let mut clients = UdpClients {
            socket: &socket,
            shared: &shared,
        };
        core.tick(&poll, &mut clients, Instant::now());
    }
}

fn read_clients(
    core: &mut Core,
    poll: &Poll,
    socket: &UdpSocket,
    shared: &Shared,
    local: SocketAddr,
) {
    for _ in 0..READ_BUDGET {
        let (n, from) = match socket.recv_from(&mut core.buf) {
            Ok(x) => x,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(_) => continue,
        };
        shared.rx_packets.fetch_add(1, Ordering::Relaxed);
        shared.rx_bytes.fetch_add(n as u64, Ordering::Relaxed);
        let now = Instant::now();
        let ft = FiveTuple {
            client: net::canonical(from),
            server: local,
        };
        if let Some(f) = core.server.handle_client(now, ft, &core.buf[..n])
            && let Source::Relay(r) = f.from
        {
            core.relays.send(r, f.to, &core.buf[f.range]);
        }
        let mut clients = UdpClients { socket, shared };
        core.drain(poll, &mut clients, now);
    }
    core.backlog.push_back(LISTENER);
}
