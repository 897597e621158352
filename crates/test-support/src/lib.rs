//! Helpers shared by the integration tests of several crates: a free loopback port, a
//! fresh temporary directory, a UDP echo peer and a TURN client (our sans-IO client on a
//! real UDP socket), and for RFC 6062 a TCP echo peer and the client on a TCP stream. Test support only: failures panic.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use stunner_turn::{Client, Received, Request, TransportKind};

mod tcp;
pub use tcp::{StreamTurnClient, TcpEchoPeer};

/// A free port (UDP and TCP both free on every address at the time of asking). It is
/// taken below the kernel's ephemeral range (32768 and up here): a port the kernel hands
/// out for `bind(0)` (a relay socket of a stunnerd in another test) is free when asked
/// and gone a moment later, which made listeners fail with EADDRINUSE. Each call moves
/// on from the last, from a start that differs between test processes.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 10_000;
    const SPAN: u32 = 22_000; // up to 31 999
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % SPAN,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    loop {
        let p = (LOW + NEXT.fetch_add(1, Ordering::Relaxed) % SPAN) as u16;
        // [::] binds clash with any IPv4 or IPv6 binding of the port (dual stack).
        let udp = UdpSocket::bind(("::", p)).is_ok();
        if udp && std::net::TcpListener::bind(("::", p)).is_ok() {
            return p;
        }
    }
}

/// A new empty directory under the system temp dir, unique to this process and call.
pub fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "stunner-it-{tag}-{}-{}",
        std::process::id(),
        free_port()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A UDP echo peer on 127.0.0.1 that runs until dropped, counting what it received.
pub struct EchoPeer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    received: Arc<AtomicUsize>,
}

impl EchoPeer {
    pub fn start() -> Self {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(AtomicUsize::new(0));
        let (s2, r2) = (stop.clone(), received.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !s2.load(Ordering::Relaxed) {
                if let Ok((n, from)) = sock.recv_from(&mut buf) {
                    r2.fetch_add(1, Ordering::Relaxed);
                    let _ = sock.send_to(&buf[..n], from);
                }
            }
        });
        Self {
            addr,
            stop,
            received,
        }
    }

    /// Datagrams received so far.
    pub fn count(&self) -> usize {
        self.received.load(Ordering::Relaxed)
    }
}

impl Drop for EchoPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A TURN client over UDP on 127.0.0.1.
pub struct TurnClient {
    pub sock: UdpSocket,
    pub server: SocketAddr,
    pub client: Client,
}

impl TurnClient {
    pub fn new(server_port: u16, user: &str, pass: &str) -> Self {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        Self {
            sock,
            server: SocketAddr::from(([127, 0, 0, 1], server_port)),
            client: Client::new(user, pass, TransportKind::Datagram, 11),
        }
    }

    /// The next datagram from anyone, as the client reads it; `None` on timeout.
    pub fn recv(&mut self) -> Option<(Received, Vec<u8>)> {
        let mut buf = [0u8; 2048];
        let (n, _) = self.sock.recv_from(&mut buf).ok()?;
        let b = buf[..n].to_vec();
        Some((self.client.receive(&b), b))
    }

    /// Sends a request (with the 401 dance) and returns the answer; `Ignored` on timeout.
    pub fn request(&mut self, req: Request) -> Received {
        let mut bytes = self.client.request(req);
        for _ in 0..4 {
            self.sock.send_to(&bytes, self.server).unwrap();
            let Some((r, _)) = self.recv() else {
                return Received::Ignored;
            };
            match r {
                Received::Retry(b) => bytes = b,
                other => return other,
            }
        }
        Received::Ignored
    }

    /// Allocates, retrying until `within` passes (the server may not be up yet).
    pub fn allocate(&mut self, within: Duration) -> Received {
        let deadline = Instant::now() + within;
        loop {
            let r = self.request(Request::Allocate { lifetime: None });
            if matches!(r, Received::Allocated { .. }) || Instant::now() > deadline {
                return r;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends `data` as ChannelData on `ch`.
    pub fn send_channel(&mut self, ch: u16, data: &[u8]) {
        let f = self.client.channel_data(ch, data);
        self.sock.send_to(&f, self.server).unwrap();
    }

    /// Binds `channel` to `peer` and checks one echo round trip through it.
    pub fn bind_and_echo(&mut self, channel: u16, peer: SocketAddr) -> bool {
        let r = self.request(Request::ChannelBind { channel, peer });
        assert_eq!(r, Received::ChannelBound, "channel bind");
        self.echo(channel, b"hello through the gateway")
    }

    /// Sends ChannelData and waits for the same payload back (five tries).
    pub fn echo(&mut self, channel: u16, data: &[u8]) -> bool {
        for _ in 0..5 {
            self.send_channel(channel, data);
            while let Some((r, bytes)) = self.recv() {
                if let Received::ChannelData { channel: c, range } = r
                    && c == channel
                    && &bytes[range] == data
                {
                    return true;
                }
            }
        }
        false
    }
}
