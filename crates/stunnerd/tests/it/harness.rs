//! Starting stunnerd, talking HTTP to its admin port, and a TURN client on a real socket.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use stunner_turn::{Client, Received, Request, TransportKind};

/// A free port on 127.0.0.1 (UDP and TCP both free at the time of asking).
pub fn free_port() -> u16 {
    loop {
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        let p = u.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

pub struct Stunnerd {
    pub child: Child,
    pub health: u16,
    pub dir: PathBuf,
    pub log: PathBuf,
}

pub fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "stunnerd-it-{tag}-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

impl Stunnerd {
    /// Starts stunnerd on `config` (YAML written to a file) with extra args; waits
    /// until `/live` answers.
    pub fn start(tag: &str, config: &str, health: u16, args: &[&str]) -> Self {
        let dir = tempdir(tag);
        let conf = dir.join("stunnerd.conf");
        std::fs::write(&conf, config).unwrap();
        let log = dir.join("stunnerd.log");
        let child = Command::new(env!("CARGO_BIN_EXE_stunnerd"))
            .arg("-c")
            .arg(format!("file://{}", conf.display()))
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let s = Self {
            child,
            health,
            dir,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while http_get(health, "/live").is_none() {
            assert!(
                Instant::now() < deadline,
                "stunnerd did not come up: {}",
                s.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("stunnerd.conf")
    }

    /// Replaces the config file atomically (as Kubernetes swaps ConfigMap files).
    pub fn write_config(&self, config: &str) {
        let tmp = self.dir.join("stunnerd.conf.tmp");
        std::fs::write(&tmp, config).unwrap();
        std::fs::rename(&tmp, self.config_path()).unwrap();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    /// Waits for the process to exit; its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Waits until `/ready` gives `code`.
    pub fn wait_ready(&self, code: u16, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if http_get(self.health, "/ready").map(|r| r.0) == Some(code) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "/ready never gave {code}: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Stunnerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A plain HTTP/1.0 GET on 127.0.0.1: status and body.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(1),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let code = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    Some((code, body))
}

/// A TURN client on a real UDP socket.
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

    pub fn recv(&mut self) -> Option<(Received, Vec<u8>)> {
        let mut buf = [0u8; 2048];
        let (n, _) = self.sock.recv_from(&mut buf).ok()?;
        let b = buf[..n].to_vec();
        Some((self.client.receive(&b), b))
    }

    /// Sends a request (with the 401 dance), returns the answer.
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

    pub fn send_channel(&mut self, ch: u16, data: &[u8]) {
        let f = self.client.channel_data(ch, data);
        self.sock.send_to(&f, self.server).unwrap();
    }
}

/// A UDP echo peer on 127.0.0.1 that runs until dropped.
pub struct EchoPeer {
    pub addr: SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pub received: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl EchoPeer {
    pub fn start() -> Self {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let received = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (s2, r2) = (stop.clone(), received.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !s2.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok((n, from)) = sock.recv_from(&mut buf) {
                    r2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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

    pub fn count(&self) -> usize {
        self.received.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for EchoPeer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A config with static user/pass, one UDP and one TCP listener on `port`, routed to
/// a cluster of `endpoints`.
pub fn config(port: u16, health: u16, auth: &str, endpoints: &str) -> String {
    format!(
        "version: v1
admin:
  healthcheck_endpoint: \"http://127.0.0.1:{health}\"
auth:
{auth}
listeners:
  - {{name: udp, protocol: TURN-UDP, address: 127.0.0.1, port: {port}, routes: [peers]}}
  - {{name: tcp, protocol: TURN-TCP, address: 127.0.0.1, port: {port}, routes: [peers]}}
clusters:
  - {{name: peers, endpoints: [{endpoints}]}}
"
    )
}

pub const STATIC_AUTH: &str = "  type: static\n  credentials: {username: user, password: pass}";

/// A config with one TURN-TLS listener on `port` (self-signed certificate).
pub fn tls_config(port: u16, health: u16, auth: &str, endpoints: &str) -> String {
    let (cert, key) = stunnerd::tls::self_signed("127.0.0.1").unwrap();
    tls_config_with(port, health, auth, endpoints, &cert, &key)
}

/// A TURN-TLS config with this base64 PEM certificate and key.
pub fn tls_config_with(
    port: u16,
    health: u16,
    auth: &str,
    endpoints: &str,
    cert: &str,
    key: &str,
) -> String {
    format!(
        "version: v1
admin:
  healthcheck_endpoint: \"http://127.0.0.1:{health}\"
auth:
{auth}
listeners:
  - {{name: tls, protocol: TURN-TLS, address: 127.0.0.1, port: {port}, routes: [peers], cert: {cert}, key: {key}}}
clusters:
  - {{name: peers, endpoints: [{endpoints}]}}
"
    )
}

/// Tests that need the default health port 8086 (a watching stunnerd's zero config
/// binds it) take this lock.
pub static DEFAULT_HEALTH_PORT: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Starts stunnerd with raw arguments (no config file); logs go to a file.
pub fn start_raw(tag: &str, args: &[&str]) -> (Child, PathBuf, PathBuf) {
    let dir = tempdir(tag);
    let log = dir.join("stunnerd.log");
    let child = Command::new(env!("CARGO_BIN_EXE_stunnerd"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    (child, dir, log)
}
