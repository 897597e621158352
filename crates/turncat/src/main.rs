//! turncat: tunnels UDP through a TURN server, as upstream's tool does.
//!
//! `turncat [--insecure | --ca FILE] [--sni NAME] <client> <server> <peer>`
//! - client: `udp://<ip>:<port>` (listen; one allocation per client address),
//!   `tcp://<ip>:<port>` (listen; one allocation per connection, each read sent as a
//!   datagram, each datagram back written to the stream) or `-` (stdin/stdout);
//! - server: `turn://user:pass@host:port?transport=udp|tcp|tls|dtls`, or
//!   `k8s://<namespace>/<gateway>:<listener>`: address and credentials from the config
//!   discovery service at `--cds-server-address` (static credentials as configured,
//!   ephemeral ones made from the secret for one hour);
//! - peer: `udp://<ip>:<port>`, or `tcp://<ip>:<port>` through a TCP allocation (RFC
//!   6062; the server must be `transport=tcp` or `tls`): the client's bytes go to the
//!   peer connection as a stream, the peer's bytes come back as they are read.

mod session;
mod transport;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

use clap::Parser;
use stunner_config::{ListenerProtocol, TurnUri};

use crate::session::{Peer, Session};
use crate::transport::TlsOpts;

/// Errors, reported in one line.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("{0}")]
    Usage(String),
    #[error("cannot resolve {0}")]
    Resolve(String),
    #[error("I/O: {0}")]
    Io(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("TURN: {0}")]
    Turn(String),
}

/// Tunnels UDP through a TURN server.
#[derive(Debug, Parser)]
#[command(name = "turncat", version, about)]
struct Args {
    /// Do not verify the TLS certificate of the server.
    #[arg(long, conflicts_with = "ca")]
    insecure: bool,
    /// Verify the server's TLS/DTLS certificate against the CA certificates in this PEM
    /// file (and its name against `--sni` or the server host).
    #[arg(long)]
    ca: Option<std::path::PathBuf>,
    /// Server name for TLS (default: the host of the server URI).
    #[arg(long)]
    sni: Option<String>,
    /// `udp://<ip>:<port>` or `tcp://<ip>:<port>` to listen on, or `-` for stdin/stdout.
    client: String,
    /// `turn://user:pass@host:port?transport=udp|tcp|tls|dtls` or
    /// `k8s://<namespace>/<gateway>:<listener>`.
    server: String,
    /// The CDS server for `k8s://`; when unset, found through the Kubernetes API (pods
    /// labelled `stunner.l7mp.io/config-discovery-service=enabled`) and port-forwarded.
    #[arg(long = "cds-server-address", env = "CDS_SERVER_ADDR")]
    cds_server_address: Option<String>,
    /// The CDS port when `--cds-server-address` names none (upstream's flag).
    #[arg(long = "cds-server-port", default_value_t = stunner_cds::client::DEFAULT_PORT)]
    cds_server_port: u16,
    /// Namespace to look for the CDS in (default: all).
    #[arg(long = "cds-server-namespace", env = "CDS_SERVER_NAMESPACE")]
    cds_server_namespace: Option<String>,
    /// `udp://<ip>:<port>`, or `tcp://<ip>:<port>` (RFC 6062 TCP relay; needs a
    /// `transport=tcp` or `tls` server).
    peer: String,
}

/// The peer argument; a TCP peer needs a stream transport to the server.
fn parse_peer(s: &str, server: &TurnUri) -> Result<Peer, Error> {
    let bad = || {
        Error::Usage(format!(
            "peer must be udp://<ip>:<port> or tcp://<ip>:<port>, got {s:?}"
        ))
    };
    if let Some(a) = s.strip_prefix("udp://") {
        return a.parse().map(Peer::Udp).map_err(|_| bad());
    }
    let a = s.strip_prefix("tcp://").ok_or_else(bad)?;
    let a = a.parse().map_err(|_| bad())?;
    match server.protocol {
        ListenerProtocol::TurnTcp | ListenerProtocol::TurnTls => Ok(Peer::Tcp(a)),
        p => Err(Error::Usage(format!(
            "a tcp:// peer needs a TCP relay (RFC 6062), which a TURN server gives only over transport=tcp or tls, not {p}"
        ))),
    }
}

fn main() -> ExitCode {
    let a = Args::parse();
    match run(&a) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("turncat: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(a: &Args) -> Result<(), Error> {
    let uri = match a.server.strip_prefix("k8s://") {
        Some(target) => from_cds(
            a.cds_server_address
                .as_deref()
                .map(|c| stunner_cds::client::host_port_or(c, a.cds_server_port))
                .transpose()
                .map_err(|e| Error::Usage(e.to_string()))?
                .as_deref(),
            a.cds_server_namespace.as_deref(),
            target,
        )?,
        None => TurnUri::parse(&a.server).map_err(|e| Error::Usage(e.to_string()))?,
    };
    if uri.username.is_none() || uri.password.is_none() {
        return Err(Error::Usage("the server URI needs user:pass@".into()));
    }
    let peer = parse_peer(&a.peer, &uri)?;
    let opts = TlsOpts {
        insecure: a.insecure,
        sni: a.sni.clone(),
        ca: a.ca.clone(),
    };
    if a.client == "-" {
        return stdio(&uri, peer, &opts);
    }
    if let Some(listen) = a.client.strip_prefix("tcp://") {
        let listen: SocketAddr = listen.parse().map_err(|_| {
            Error::Usage(format!(
                "client must be tcp://<ip>:<port>, got {:?}",
                a.client
            ))
        })?;
        return tcp_clients(listen, &uri, peer, &opts);
    }
    let listen = a
        .client
        .strip_prefix("udp://")
        .and_then(|l| l.parse::<SocketAddr>().ok())
        .ok_or_else(|| {
            Error::Usage(format!(
                "client must be udp://<ip>:<port>, tcp://<ip>:<port> or -, got {:?}",
                a.client
            ))
        })?;
    let sock = UdpSocket::bind(listen).map_err(|e| Error::Io(format!("{listen}: {e}")))?;
    eprintln!("turncat: listening on {listen}, relaying to {peer} through {uri}");
    let mut sessions: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>> = HashMap::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, from) = sock
            .recv_from(&mut buf)
            .map_err(|e| Error::Io(e.to_string()))?;
        sessions.retain(|_, tx| tx.send(Vec::new()).is_ok());
        if let Some(tx) = sessions.get(&from) {
            let _ = tx.send(buf[..n].to_vec());
            continue;
        }
        let (tx, rx) = mpsc::channel::<Vec<u8>>();
        let _ = tx.send(buf[..n].to_vec());
        sessions.insert(from, tx);
        let reply = sock.try_clone().map_err(|e| Error::Io(e.to_string()))?;
        let (uri, opts) = (uri.clone(), opts.clone());
        std::thread::spawn(move || {
            let mut s = match Session::open(&uri, peer, &opts) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("turncat: client {from}: {e}");
                    return;
                }
            };
            eprintln!("turncat: client {from} relayed at {}", s.relayed);
            pump(&mut s, &rx, |data| {
                let _ = reply.send_to(data, from);
            });
            s.close();
        });
    }
}

/// Moves data both ways until the client side or the server goes away.
fn pump(s: &mut Session, rx: &mpsc::Receiver<Vec<u8>>, mut deliver: impl FnMut(&[u8])) {
    loop {
        loop {
            match rx.try_recv() {
                Ok(d) if d.is_empty() => {}
                Ok(d) => {
                    if let Err(e) = s.send(&d) {
                        eprintln!("turncat: {e}");
                        return;
                    }
                }
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => return,
            }
        }
        match s.poll() {
            Ok(Some(d)) => deliver(&d),
            Ok(None) => {}
            Err(e) => {
                eprintln!("turncat: {e}");
                return;
            }
        }
    }
}

/// Bytes per read from a stream client: one datagram's worth for a UDP peer, more for
/// a TCP peer, whose stream has no message boundaries to keep.
fn read_size(peer: Peer) -> usize {
    match peer {
        Peer::Udp(_) => 1200,
        Peer::Tcp(_) => 16384,
    }
}

/// `tcp://` clients: one allocation per connection; each read from the stream goes to
/// the peer as one datagram, each datagram back is written to the stream.
fn tcp_clients(listen: SocketAddr, uri: &TurnUri, peer: Peer, opts: &TlsOpts) -> Result<(), Error> {
    let l = std::net::TcpListener::bind(listen).map_err(|e| Error::Io(format!("{listen}: {e}")))?;
    eprintln!("turncat: listening on tcp://{listen}, relaying to {peer} through {uri}");
    for conn in l.incoming() {
        let Ok(mut conn) = conn else { continue };
        let from = conn
            .peer_addr()
            .map_or_else(|_| "?".to_string(), |a| a.to_string());
        let (uri, opts) = (uri.clone(), opts.clone());
        std::thread::spawn(move || {
            let mut s = match Session::open(&uri, peer, &opts) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("turncat: client {from}: {e}");
                    return;
                }
            };
            eprintln!("turncat: client {from} relayed at {}", s.relayed);
            let (tx, rx) = mpsc::channel::<Vec<u8>>();
            let Ok(mut reader) = conn.try_clone() else {
                return;
            };
            std::thread::spawn(move || {
                let mut buf = vec![0u8; read_size(peer)];
                while let Ok(n) = reader.read(&mut buf) {
                    if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            });
            pump(&mut s, &rx, |d| {
                let _ = conn.write_all(d);
            });
            s.close();
        });
    }
    Ok(())
}

fn stdio(uri: &TurnUri, peer: Peer, opts: &TlsOpts) -> Result<(), Error> {
    let mut s = Session::open(uri, peer, opts)?;
    eprintln!("turncat: relayed at {}", s.relayed);
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buf = vec![0u8; read_size(peer)];
        while let Ok(n) = stdin.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut out = std::io::stdout();
    pump(&mut s, &rx, |d| {
        let _ = out.write_all(d);
        let _ = out.flush();
    });
    // stdin closed: give in-flight answers a moment, then release the allocation.
    let until = std::time::Instant::now() + Duration::from_millis(500);
    while std::time::Instant::now() < until {
        if let Ok(Some(d)) = s.poll() {
            let _ = out.write_all(&d);
            let _ = out.flush();
        }
    }
    s.close();
    Ok(())
}

/// The TURN URI of `<namespace>/<gateway>:<listener>` from the CDS, with credentials.
fn from_cds(
    cds: Option<&str>,
    cds_namespace: Option<&str>,
    target: &str,
) -> Result<TurnUri, Error> {
    let usage = || {
        Error::Usage(format!(
            "k8s:// needs <namespace>/<gateway>:<listener>, got {target:?}"
        ))
    };
    let (id, listener) = target.split_once(':').ok_or_else(usage)?;
    if stunner_cds::split_id(id).is_none() || listener.is_empty() {
        return Err(usage());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Io(e.to_string()))?;
    let c = rt.block_on(async {
        let cds = match cds {
            Some(a) => a.to_string(),
            None => stunner_k8s::discover(&stunner_k8s::Target::Cds, cds_namespace)
                .await
                .map_err(|e| Error::Turn(format!("{e}; or pass --cds-server-address")))?
                .to_string(),
        };
        stunner_cds::client::load(&cds, id, None)
            .await
            .map_err(|e| Error::Turn(e.to_string()))
    })?;
    let full = format!("{id}/{listener}");
    let l = c
        .listeners
        .iter()
        .find(|l| l.name == full || l.name == listener)
        .ok_or_else(|| Error::Usage(format!("gateway {id} has no listener {listener:?}")))?;
    let (username, password) = match c.auth.auth_type {
        stunner_config::AuthType::Static => (
            c.auth.username().unwrap_or_default().to_string(),
            c.auth.password().unwrap_or_default().to_string(),
        ),
        stunner_config::AuthType::Ephemeral => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
            let user = stunner_config::credential::ephemeral_username(now + 3600, "turncat");
            let pass = stunner_config::credential::ephemeral_password(
                c.auth.secret().unwrap_or_default(),
                &user,
            );
            (user, pass)
        }
        stunner_config::AuthType::None => {
            return Err(Error::Turn(format!("gateway {id} serves STUN only")));
        }
    };
    Ok(TurnUri {
        protocol: l.protocol,
        host: l.public_host().trim_matches(['[', ']']).to_string(),
        port: l.public_port(),
        username: Some(username),
        password: Some(password),
    })
}
