//! The CDS client: load one config, or watch configs over WebSocket with keepalive and
//! reconnection. Configs go through [`StunnerConfig::from_str`] (env expansion and
//! validation) like a config file; invalid ones are logged and skipped.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use stunner_config::StunnerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::{CONFIGS_PATH, Error, split_id};

/// Keepalive ping period (upstream `PingPeriod`).
pub const PING_PERIOD: Duration = Duration::from_secs(5);
/// Silence after which the connection is considered dead (upstream `PongWait`).
pub const PONG_WAIT: Duration = Duration::from_secs(8);
/// First reconnect delay; doubles up to [`MAX_RETRY`].
pub const RETRY: Duration = Duration::from_secs(1);
/// Longest reconnect delay.
pub const MAX_RETRY: Duration = Duration::from_secs(10);

/// `host:port` of a CDS address: `http(s)://`, `ws(s)://` or bare `host:port`; an
/// empty host (`:13478`) is the local host.
pub fn host_port(addr: &str) -> Result<String, Error> {
    host_port_or(addr, DEFAULT_PORT)
}

/// The CDS port when an address names none (upstream's `--cds-server-port` default).
pub const DEFAULT_PORT: u16 = 13478;

/// As [`host_port`], with `port` where `addr` names none (upstream's tools take the host
/// in `--cds-server-address` and the port in `--cds-server-port`).
pub fn host_port_or(addr: &str, port: u16) -> Result<String, Error> {
    let lower = addr.to_ascii_lowercase();
    let rest = ["http://", "https://", "ws://", "wss://"]
        .iter()
        .find_map(|p| lower.starts_with(p).then(|| &addr[p.len()..]))
        .unwrap_or(addr);
    let hp = rest.split('/').next().unwrap_or("");
    if hp.is_empty() {
        return Err(Error::InvalidAddress(addr.to_string()));
    }
    let hp = if hp.starts_with(':') {
        format!("127.0.0.1{hp}")
    } else {
        hp.to_string()
    };
    let has_port = hp.rsplit_once(':').is_some_and(|(h, p)| {
        !h.is_empty() && !h.ends_with(':') && p.bytes().all(|b| b.is_ascii_digit()) && !p.is_empty()
    });
    Ok(if has_port { hp } else { format!("{hp}:{port}") })
}

fn path(id: Option<&str>, node: Option<&str>, watch: bool) -> Result<String, Error> {
    let mut p = match id {
        None => CONFIGS_PATH.to_string(),
        Some(id) => {
            let (ns, name) = split_id(id).ok_or_else(|| Error::InvalidId(id.to_string()))?;
            format!("{CONFIGS_PATH}/{ns}/{name}")
        }
    };
    let mut q = Vec::new();
    if watch {
        q.push("watch=true".to_string());
    }
    if let Some(n) = node.filter(|n| !n.is_empty()) {
        q.push(format!("node={n}"));
    }
    if !q.is_empty() {
        p.push('?');
        p.push_str(&q.join("&"));
    }
    Ok(p)
}

/// Loads the config of `id` once.
pub async fn load(addr: &str, id: &str, node: Option<&str>) -> Result<StunnerConfig, Error> {
    let hp = host_port(addr)?;
    let p = path(Some(id), node, false)?;
    let transport = |e: std::io::Error| Error::Transport {
        addr: hp.clone(),
        reason: e.to_string(),
    };
    let mut s = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(&hp))
        .await
        .map_err(|_| Error::Transport {
            addr: hp.clone(),
            reason: "connect timed out".into(),
        })?
        .map_err(transport)?;
    let req = format!(
        "GET {p} HTTP/1.1\r\nHost: {hp}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.map_err(transport)?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .map_err(|_| Error::Transport {
            addr: hp.clone(),
            reason: "read timed out".into(),
        })?
        .map_err(transport)?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    if status != 200 {
        return Err(Error::Status {
            addr: hp,
            status,
            body: body.trim().to_string(),
        });
    }
    Ok(StunnerConfig::from_str(body)?)
}

/// Watches `id` (or every config, for `None`) and sends each valid config to `tx`,
/// reconnecting with backoff until `tx` is closed. Zero configs (deletions) are passed
/// on: the receiver decides what they mean.
pub async fn watch(
    addr: String,
    id: Option<String>,
    node: Option<String>,
    tx: mpsc::Sender<StunnerConfig>,
) {
    watch_connected(addr, id, node, tx, None).await
}

/// [`watch`], also telling `connected` each time a watch connection is up (`true`) and
/// when it breaks (`false`): a CDS server with no configs sends nothing, so this is how
/// a client learns that it has heard everything there is.
pub async fn watch_connected(
    addr: String,
    id: Option<String>,
    node: Option<String>,
    tx: mpsc::Sender<StunnerConfig>,
    connected: Option<tokio::sync::watch::Sender<bool>>,
) {
    let mut retry = RETRY;
    loop {
        let res = watch_once(
            &addr,
            id.as_deref(),
            node.as_deref(),
            &tx,
            connected.as_ref(),
        )
        .await;
        if let Some(c) = &connected {
            c.send_replace(false);
        }
        match res {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(target: "cds-client", error = %e, "config watch interrupted, retrying in {retry:?}");
            }
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(retry).await;
        retry = (retry * 2).min(MAX_RETRY);
    }
}

/// One connection; `Ok` when the receiver went away.
async fn watch_once(
    addr: &str,
    id: Option<&str>,
    node: Option<&str>,
    tx: &mpsc::Sender<StunnerConfig>,
    connected: Option<&tokio::sync::watch::Sender<bool>>,
) -> Result<(), Error> {
    let hp = host_port(addr)?;
    let url = format!("ws://{hp}{}", path(id, node, true)?);
    let transport = |e: &dyn std::fmt::Display| Error::Transport {
        addr: hp.clone(),
        reason: e.to_string(),
    };
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::connect_async(url.as_str()),
    )
    .await
    .map_err(|_| transport(&"connect timed out"))?
    .map_err(|e| transport(&e))?;
    tracing::info!(target: "cds-client", server = %hp, "watching configs");
    if let Some(c) = connected {
        c.send_replace(true);
    }
    let mut ping = tokio::time::interval(PING_PERIOD);
    let mut last_seen = tokio::time::Instant::now();
    loop {
        tokio::select! {
            msg = ws.next() => {
                last_seen = tokio::time::Instant::now();
                match msg {
                    Some(Ok(Message::Text(t))) => {
                        if t.trim().is_empty() {
                            continue;
                        }
                        match StunnerConfig::from_str(&t) {
                            Ok(c) => {
                                if tx.send(c).await.is_err() {
                                    return Ok(());
                                }
                            }
                            Err(e) => tracing::error!(target: "cds-client", "invalid config from the CDS server, skipped: {e}"),
                        }
                    }
                    Some(Ok(Message::Close(_))) | None => return Err(transport(&"connection closed")),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(transport(&e)),
                }
            }
            _ = ping.tick() => {
                if last_seen.elapsed() > PONG_WAIT {
                    return Err(transport(&"no answer to keepalive"));
                }
                if ws.send(Message::Ping(b"keepalive".to_vec().into())).await.is_err() {
                    return Err(transport(&"keepalive failed"));
                }
                if tx.is_closed() {
                    return Ok(());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(host_port(":13478").unwrap(), "127.0.0.1:13478");
        assert_eq!(
            host_port("http://cds.ns.svc:13478").unwrap(),
            "cds.ns.svc:13478"
        );
        assert_eq!(host_port("ws://10.0.0.1").unwrap(), "10.0.0.1:13478");
        assert_eq!(host_port("https://cds:1/x").unwrap(), "cds:1");
        assert_eq!(host_port("[::1]:99").unwrap(), "[::1]:99");
        assert!(host_port("http://").is_err());
    }

    #[test]
    fn paths() {
        assert_eq!(
            path(Some("ns/gw"), Some("node-1"), true).unwrap(),
            "/api/v1/configs/ns/gw?watch=true&node=node-1"
        );
        assert_eq!(
            path(None, None, true).unwrap(),
            "/api/v1/configs?watch=true"
        );
        assert!(path(Some("nons"), None, false).is_err());
    }
}
