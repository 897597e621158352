//! The CDS client: load one config (HTTP GET, on hyper), or watch configs over WebSocket
//! (tokio-tungstenite) with keepalive and reconnection. `https://` and `wss://` origins
//! speak TLS (rustls), verifying the server against the system's roots or a CA bundle
//! ([`Trust`]); `http://`, `ws://` and bare `host:port` speak plaintext, as upstream's
//! client does for every origin. Configs go through [`StunnerConfig::from_str`] (env
//! expansion and validation) like a config file; invalid ones are logged and skipped.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http_body_util::BodyExt;
use stunner_config::StunnerConfig;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::{CONFIGS_PATH, Error, split_id};

/// The largest config answer read (a config with thousands of endpoints is ~1 MB).
const MAX_BODY: usize = 16 << 20;

/// How a TLS CDS server (`https://`, `wss://`) is verified.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trust {
    /// A PEM bundle of the CA certificates to trust.
    pub ca_file: Option<PathBuf>,
    /// The same as PEM text (the operator hands it to dataplanes in `STUNNER_CDS_CA`);
    /// used when `ca_file` is unset. Neither: the system's roots.
    pub ca_pem: Option<String>,
}

impl Trust {
    /// The rustls client config: these roots, certificate and name verified.
    fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, Error> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        let (what, certs) = match (&self.ca_file, &self.ca_pem) {
            (Some(f), _) => {
                let what = format!("CA file {}", f.display());
                let certs = CertificateDer::pem_file_iter(f)
                    .map_err(|e| Error::Tls(format!("{what}: {e}")))?
                    .collect::<Result<Vec<_>, _>>();
                (what, certs)
            }
            (None, Some(pem)) => {
                let certs = CertificateDer::pem_slice_iter(pem.as_bytes()).collect();
                ("CA bundle".to_string(), certs)
            }
            (None, None) => {
                let found = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(found.certs);
                if roots.is_empty() {
                    return Err(Error::Tls(
                        "no system CA certificates found; give a CA bundle".into(),
                    ));
                }
                (String::new(), Ok(Vec::new()))
            }
        };
        let bad = |e: &dyn std::fmt::Display| Error::Tls(format!("{what}: {e}"));
        let certs = certs.map_err(|e| bad(&e))?;
        if roots.is_empty() && certs.is_empty() {
            return Err(bad(&"no PEM certificate in it"));
        }
        for c in certs {
            roots.add(c).map_err(|e| bad(&e))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Arc::new(cfg))
    }
}

/// A byte stream to the server, plain or TLS.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// Where and how to reach a CDS server.
struct Server {
    /// `host:port`.
    hp: String,
    tls: bool,
}

impl Server {
    fn parse(addr: &str) -> Result<Self, Error> {
        let lower = addr.to_ascii_lowercase();
        Ok(Self {
            hp: host_port(addr)?,
            tls: lower.starts_with("https://") || lower.starts_with("wss://"),
        })
    }

    fn transport(&self, reason: impl std::fmt::Display) -> Error {
        Error::Transport {
            addr: self.hp.clone(),
            reason: reason.to_string(),
        }
    }

    /// Connects (TCP, then TLS for a TLS origin), within 5 s.
    async fn connect(&self, trust: &Trust) -> Result<Box<dyn Io>, Error> {
        // Before the connection: a bad CA bundle is the user's error, not the network's.
        let tls = if self.tls {
            Some(trust.client_config()?)
        } else {
            None
        };
        let go = async {
            let tcp = tokio::net::TcpStream::connect(&self.hp)
                .await
                .map_err(|e| self.transport(e))?;
            let _ = tcp.set_nodelay(true);
            let Some(cfg) = tls else {
                return Ok(Box::new(tcp) as Box<dyn Io>);
            };
            let host = self
                .hp
                .rsplit_once(':')
                .map_or(self.hp.as_str(), |(h, _)| h)
                .trim_start_matches('[')
                .trim_end_matches(']');
            let name = rustls::pki_types::ServerName::try_from(host.to_string())
                .map_err(|e| self.transport(format_args!("TLS server name {host:?}: {e}")))?;
            let s = tokio_rustls::TlsConnector::from(cfg)
                .connect(name, tcp)
                .await
                .map_err(|e| self.transport(format_args!("TLS: {e}")))?;
            Ok(Box::new(s) as Box<dyn Io>)
        };
        tokio::time::timeout(Duration::from_secs(5), go)
            .await
            .map_err(|_| self.transport("connect timed out"))?
    }

    fn ws_scheme(&self) -> &'static str {
        if self.tls { "wss" } else { "ws" }
    }
}

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
    Ok(if names_port(&hp) {
        hp
    } else {
        format!("{hp}:{port}")
    })
}

/// Whether `host:port` ends in a port (`[::1]` and `host` do not).
fn names_port(hp: &str) -> bool {
    hp.rsplit_once(':').is_some_and(|(h, p)| {
        !h.is_empty() && !h.ends_with(':') && p.bytes().all(|b| b.is_ascii_digit()) && !p.is_empty()
    })
}

/// `addr` (a URL or `host[:port]`) with `port` put in where its host names none; the
/// scheme and path are kept, so a `wss://` address still speaks TLS. Addresses this
/// cannot read are returned unchanged, for the client to report.
pub fn with_port(addr: &str, port: u16) -> String {
    let (scheme, rest) = match addr.find("://") {
        Some(i) => addr.split_at(i + 3),
        None => ("", addr),
    };
    let (hp, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if hp.is_empty() || hp.starts_with(':') || names_port(hp) {
        addr.to_string()
    } else {
        format!("{scheme}{hp}:{port}{tail}")
    }
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

/// Loads the config of `id` once (a TLS origin verified against the system's roots).
pub async fn load(addr: &str, id: &str, node: Option<&str>) -> Result<StunnerConfig, Error> {
    load_with(addr, id, node, &Trust::default()).await
}

/// [`load`] with the given trust for a TLS origin.
pub async fn load_with(
    addr: &str,
    id: &str,
    node: Option<&str>,
    trust: &Trust,
) -> Result<StunnerConfig, Error> {
    let server = Server::parse(addr)?;
    let p = path(Some(id), node, false)?;
    let (status, body) = tokio::time::timeout(Duration::from_secs(15), get(&server, &p, trust))
        .await
        .map_err(|_| server.transport("read timed out"))??;
    if status != 200 {
        return Err(Error::Status {
            addr: server.hp,
            status,
            body: body.trim().to_string(),
        });
    }
    Ok(StunnerConfig::from_str(&body)?)
}

/// One HTTP/1.1 GET: status and body (chunked or not, up to [`MAX_BODY`]).
async fn get(server: &Server, path: &str, trust: &Trust) -> Result<(u16, String), Error> {
    let io = hyper_util::rt::TokioIo::new(server.connect(trust).await?);
    let (mut tx, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| server.transport(e))?;
    let conn = tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, &server.hp)
        .header(hyper::header::ACCEPT, "application/json")
        .body(http_body_util::Empty::<hyper::body::Bytes>::new())
        .map_err(|e| server.transport(e))?;
    let resp = tx
        .send_request(req)
        .await
        .map_err(|e| server.transport(e))?;
    let status = resp.status().as_u16();
    let body = http_body_util::Limited::new(resp.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| server.transport(format_args!("reading the answer: {e}")))?
        .to_bytes();
    drop(tx);
    conn.abort();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
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
    watch_with(addr, id, node, tx, connected, Trust::default()).await
}

/// [`watch_connected`] with the given trust for a TLS origin. A TLS failure (a server
/// whose certificate does not verify) is retried like any other, and logged each time.
pub async fn watch_with(
    addr: String,
    id: Option<String>,
    node: Option<String>,
    tx: mpsc::Sender<StunnerConfig>,
    connected: Option<tokio::sync::watch::Sender<bool>>,
    trust: Trust,
) {
    let mut retry = RETRY;
    loop {
        let res = watch_once(
            &addr,
            id.as_deref(),
            node.as_deref(),
            &tx,
            connected.as_ref(),
            &trust,
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
    trust: &Trust,
) -> Result<(), Error> {
    let server = Server::parse(addr)?;
    let hp = server.hp.clone();
    let url = format!("{}://{hp}{}", server.ws_scheme(), path(id, node, true)?);
    let transport = |e: &dyn std::fmt::Display| server.transport(e);
    let io = server.connect(trust).await?;
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::client_async(url.as_str(), io),
    )
    .await
    .map_err(|_| transport(&"WebSocket handshake timed out"))?
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
    #[test]
    fn with_port_fills_in_only_a_missing_port() {
        assert_eq!(super::with_port("10.0.0.1", 9), "10.0.0.1:9");
        assert_eq!(super::with_port("10.0.0.1:13478", 9), "10.0.0.1:13478");
        assert_eq!(super::with_port("cds.stunner.svc", 9), "cds.stunner.svc:9");
        assert_eq!(
            super::with_port("wss://cds.example/x", 9),
            "wss://cds.example:9/x"
        );
        assert_eq!(
            super::with_port("https://cds.example:443", 9),
            "https://cds.example:443"
        );
        assert_eq!(super::with_port("[::1]", 9), "[::1]:9");
        assert_eq!(super::with_port("[::1]:1", 9), "[::1]:1");
        assert_eq!(super::with_port(":13478", 9), ":13478");
    }

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
