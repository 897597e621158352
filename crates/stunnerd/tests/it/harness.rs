//! Starting stunnerd and talking HTTP to its admin port; the TURN client, echo peer,
//! free ports and temp dirs come from `stunner-test-support`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use stunner_test_support::{EchoPeer, TurnClient, free_port, tempdir};

pub struct Stunnerd {
    pub child: Child,
    pub health: u16,
    pub dir: PathBuf,
    pub log: PathBuf,
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

/// `conf` with a Prometheus endpoint on 127.0.0.1:`mport`.
pub fn with_metrics(conf: &str, mport: u16) -> String {
    conf.replace(
        "admin:\n",
        &format!("admin:\n  metrics_endpoint: \"http://127.0.0.1:{mport}/metrics\"\n"),
    )
}

/// Polls `/metrics` on `mport` (a snapshot refreshed every second) until `ok` holds for
/// its body, which it returns; panics after 5 s with `what` and the last body.
pub fn wait_metrics(mport: u16, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (code, body) = http_get(mport, "/metrics").unwrap_or((0, String::new()));
        if code == 200 && ok(&body) {
            return body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: metrics never matched:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The value of the series `series` (its name and labels, exactly as exposed).
pub fn metric(body: &str, series: &str) -> Option<u64> {
    body.lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map(|v| v as u64)
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
/// A child process killed when dropped, so a test that panics leaves no stunnerd behind.
pub struct Reaped(Child);

impl std::ops::Deref for Reaped {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn start_raw(tag: &str, args: &[&str]) -> (Reaped, PathBuf, PathBuf) {
    let dir = tempdir(tag);
    let log = dir.join("stunnerd.log");
    let child = Command::new(env!("CARGO_BIN_EXE_stunnerd"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    (Reaped(child), dir, log)
}
