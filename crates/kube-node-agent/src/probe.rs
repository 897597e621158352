//! Readiness and liveness probes, run from the node's namespace against the pod IP as the
//! kubelet runs them: `httpGet` (2xx and 3xx succeed), `tcpSocket`, and `exec` inside the
//! container's namespaces.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::netns::Hub;

/// The per-probe settings with the kubelet's defaults.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Wait before the first probe.
    pub initial_delay: Duration,
    /// Between probes.
    pub period: Duration,
    /// One probe's deadline.
    pub timeout: Duration,
    /// Consecutive successes to pass.
    pub success: u32,
    /// Consecutive failures to fail.
    pub failure: u32,
}

impl Timing {
    /// `p`'s timing (defaults 0 s, 10 s, 1 s, 1, 3).
    pub fn of(p: &Probe) -> Self {
        let s = |v: Option<i32>, d: i32| Duration::from_secs(v.unwrap_or(d).max(0) as u64);
        Self {
            initial_delay: s(p.initial_delay_seconds, 0),
            period: s(p.period_seconds, 10).max(Duration::from_secs(1)),
            timeout: s(p.timeout_seconds, 1).max(Duration::from_secs(1)),
            success: p.success_threshold.unwrap_or(1).max(1) as u32,
            failure: p.failure_threshold.unwrap_or(3).max(1) as u32,
        }
    }
}

/// How an `exec` probe runs its command (inside the container's namespaces).
pub type ExecFn<'a> =
    &'a (dyn Fn(Vec<String>) -> futures_util::future::BoxFuture<'static, bool> + Send + Sync);

/// Runs probe `p` of container `c` once against `ip`.
pub async fn run(hub: &Hub, ip: IpAddr, c: &Container, p: &Probe, exec: ExecFn<'_>) -> bool {
    let t = Timing::of(p);
    let fut = async {
        if let Some(h) = &p.http_get {
            let Some(port) = port(c, &h.port) else {
                return false;
            };
            return http(
                hub,
                SocketAddr::new(ip, port),
                h.path.as_deref().unwrap_or("/"),
            )
            .await;
        }
        if let Some(s) = &p.tcp_socket {
            let Some(port) = port(c, &s.port) else {
                return false;
            };
            return hub.connect(SocketAddr::new(ip, port)).await.is_ok();
        }
        if let Some(e) = &p.exec {
            return exec(e.command.clone().unwrap_or_default()).await;
        }
        // gRPC probes are not emulated: report failure rather than pretend.
        false
    };
    tokio::time::timeout(t.timeout, fut).await.unwrap_or(false)
}

fn port(c: &Container, p: &IntOrString) -> Option<u16> {
    match p {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(name) => name.parse().ok().or_else(|| {
            c.ports
                .iter()
                .flatten()
                .find(|cp| cp.name.as_deref() == Some(name.as_str()))
                .and_then(|cp| u16::try_from(cp.container_port).ok())
        }),
    }
}

async fn http(hub: &Hub, addr: SocketAddr, path: &str) -> bool {
    let Ok(mut s) = hub.connect(addr).await else {
        return false;
    };
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kube-probe/1.37\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    if s.write_all(req.as_bytes()).await.is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    let mut n = 0;
    while n < 12 {
        match s.read(&mut buf[n..]).await {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    status_ok(&buf[..n])
}

fn status_ok(head: &[u8]) -> bool {
    let text = String::from_utf8_lossy(head);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .is_some_and(|c| (200..400).contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert!(status_ok(b"HTTP/1.1 200 OK\r\n"));
        assert!(status_ok(b"HTTP/1.1 302 Found\r\n"));
        assert!(!status_ok(b"HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(!status_ok(b"garbage"));
    }

    #[test]
    fn named_ports() {
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "c", "ports": [{"name": "http", "containerPort": 8088}]
        }))
        .unwrap_or_default();
        assert_eq!(port(&c, &IntOrString::String("http".into())), Some(8088));
        assert_eq!(port(&c, &IntOrString::Int(8081)), Some(8081));
        assert_eq!(port(&c, &IntOrString::String("nope".into())), None);
    }
}
