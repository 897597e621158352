//! Test helpers: free ports, a UDP echo peer, a TURN client on a real socket, and
//! stunnerd run in this process.

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use stunner_turn::{Client, Received, Request, TransportKind};

pub fn free_port() -> u16 {
    loop {
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        let p = u.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

pub fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sgo-it-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A UDP echo peer on 127.0.0.1; returns its address.
pub fn echo_peer() -> SocketAddr {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = s.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut b = [0u8; 2048];
        while let Ok((n, from)) = s.recv_from(&mut b) {
            let _ = s.send_to(&b[..n], from);
        }
    });
    addr
}

/// Runs stunnerd in this process with `args` (after the program name).
pub fn stunnerd(args: &[&str]) {
    let mut all = vec!["stunnerd"];
    all.extend_from_slice(args);
    let args = stunnerd::cli::Args::parse_from(all);
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(stunnerd::run::run(args));
    });
}

/// A TURN client over UDP.
pub struct TurnClient {
    sock: UdpSocket,
    server: SocketAddr,
    client: Client,
}

impl TurnClient {
    pub fn new(server_port: u16, user: &str, pass: &str) -> Self {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        Self {
            sock,
            server: SocketAddr::from(([127, 0, 0, 1], server_port)),
            client: Client::new(user, pass, TransportKind::Datagram, 7),
        }
    }

    fn recv(&mut self) -> Option<(Received, Vec<u8>)> {
        let mut buf = [0u8; 2048];
        let (n, _) = self.sock.recv_from(&mut buf).ok()?;
        let b = buf[..n].to_vec();
        Some((self.client.receive(&b), b))
    }

    /// A request with the 401 dance; `Ignored` on timeout.
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

    /// Binds `channel` to `peer` and checks one echo round trip through it.
    pub fn bind_and_echo(&mut self, channel: u16, peer: SocketAddr) -> bool {
        let r = self.request(Request::ChannelBind { channel, peer });
        assert_eq!(r, Received::ChannelBound, "channel bind");
        self.echo(channel, b"hello through the gateway")
    }

    /// Sends ChannelData and waits for the same payload back.
    pub fn echo(&mut self, channel: u16, data: &[u8]) -> bool {
        for _ in 0..5 {
            let f = self.client.channel_data(channel, data);
            self.sock.send_to(&f, self.server).unwrap();
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
