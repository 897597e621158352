//! A TURN-UDP worker: one socket of the listener's `SO_REUSEPORT` set. The kernel's
//! 4-tuple hash keeps each client on one worker, so its allocation lives here only.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};
use std::time::Instant;

use mio::net::UdpSocket;
use mio::{Interest, Poll, Token};
use stunner_turn::{CHANNEL_HEADROOM, FiveTuple, ServerConfig, Source};

use crate::batch::{BATCH, SendBatch};
use crate::net;
use crate::relays::Reservations;
use crate::worker::{self, Clients, Control, Core, READ_BUDGET, Shared, WAKER};

const LISTENER: Token = Token(1);

/// Sends to clients through the listener socket, batched: datagrams are queued and go
/// out with one `sendmmsg` when this is dropped (at the end of each step).
struct UdpClients<'a> {
    socket: &'a UdpSocket,
    shared: &'a Shared,
    tx: &'a mut SendBatch,
}

impl Clients for UdpClients<'_> {
    fn send(&mut self, to: SocketAddr, data: &[u8]) {
        self.tx.push(net::for_socket(true, to), data);
        self.shared
            .tx_bytes
            .fetch_add(data.len() as u64, Ordering::Relaxed);
    }
}

impl Drop for UdpClients<'_> {
    fn drop(&mut self) {
        if self.tx.len() > 0 {
            let sent = self.tx.flush(&self.socket);
            self.shared
                .tx_packets
                .fetch_add(sent as u64, Ordering::Relaxed);
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
    let mut tx = SendBatch::default();
    let mut poll = poll;
    let mut events = worker::events();
    let mut tokens: Vec<Token> = Vec::with_capacity(64);
    loop {
        if !core.wait(&mut poll, &mut events) {
            return;
        }
        tokens.clear();
        tokens.extend(events.iter().map(|e| e.token()));
        tokens.extend(core.backlog.drain(..));
        for &token in &tokens {
            let mut clients = UdpClients {
                socket: &socket,
                shared: &shared,
                tx: &mut tx,
            };
            match token {
                WAKER => {
                    if !core.control(&rx, &poll, &mut clients) {
                        return;
                    }
                }
                LISTENER => {
                    drop(clients);
                    read_clients(&mut core, &poll, &socket, &shared, local, &mut tx);
                }
                t => core.read_relay(t, &poll, &mut clients),
            }
        }
        let mut clients = UdpClients {
            socket: &socket,
            shared: &shared,
            tx: &mut tx,
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
    tx: &mut SendBatch,
) {
    for _ in 0..READ_BUDGET / BATCH {
        let n = match core.rx.recv(socket) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let now = Instant::now();
        let (mut packets, mut bytes) = (0u64, 0u64);
        for i in 0..n {
            let (buf, len, from, seg) = core.rx.get(i);
            let Some(from) = from else { continue };
            let ft = FiveTuple {
                client: net::canonical(from),
                server: local,
            };
            // With GRO one buffer holds several datagrams of this client, `seg` bytes
            // each but the last.
            let mut off = 0;
            while off < len {
                let l = seg.min(len - off);
                let data = &buf[CHANNEL_HEADROOM + off..CHANNEL_HEADROOM + off + l];
                // `data` borrows the receive batch, so the core's fields are used directly.
                if let Some(f) = core.server.handle_client(now, ft, data)
                    && let Source::Relay(r) = f.from
                {
                    core.relays.send(r, f.to, &data[f.range]);
                }
                packets += 1;
                off += l;
            }
            bytes += len as u64;
        }
        shared.rx_packets.fetch_add(packets, Ordering::Relaxed);
        shared.rx_bytes.fetch_add(bytes, Ordering::Relaxed);
        let mut clients = UdpClients {
            socket,
            shared,
            tx: &mut *tx,
        };
        core.drain(poll, &mut clients, now);
        drop(clients);
        if n < BATCH {
            return;
        }
    }
    core.backlog.push_back(LISTENER);
}
