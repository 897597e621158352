//! The kubelet endpoints that the API server proxies to: container logs
//! (`kubectl logs`) and port-forward over WebSocket (`v4.channel.k8s.io`: per requested
//! port a data and an error channel, each opened with the port number). Served over TLS
//! with a self-signed certificate on loopback (the API server does not verify kubelet
//! certificates unless told to). Exec and attach are not emulated.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::agent::Agent;
use crate::error::{Error, Result};

/// Serves the kubelet API on `addr` until the process ends.
pub async fn serve(agent: Arc<Agent>, addr: SocketAddr) -> Result<()> {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .map_err(|e| Error::Config(format!("kubelet certificate: {e}")))?;
    let cert = CertificateDer::from(ck.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
        .map_err(|e| Error::Config(format!("kubelet TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .map_err(|e| Error::Config(format!("kubelet TLS: {e}")))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/containerLogs/{ns}/{pod}/{container}", get(logs))
        .route("/portForward/{ns}/{pod}", get(port_forward))
        .route("/portForward/{ns}/{pod}/{uid}", get(port_forward_uid))
        .fallback(|| async {
            (
                StatusCode::NOT_IMPLEMENTED,
                "not emulated by kube-node-agent\n",
            )
        })
        .with_state(agent);
    let lis = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::io(format!("bind the kubelet API on {addr}"), e))?;
    loop {
        let Ok((tcp, _)) = lis.accept().await else {
            continue;
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let svc = hyper_util::service::TowerToHyperService::new(app);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                .with_upgrades()
                .await;
        });
    }
}

async fn logs(
    State(agent): State<Arc<Agent>>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let Some((_, dir)) = agent.find(&ns, &pod) else {
        return (
            StatusCode::NOT_FOUND,
            format!("pod {ns}/{pod} does not run here\n"),
        )
            .into_response();
    };
    let path = dir.join("logs").join(format!("{container}.log"));
    let Ok(text) = tokio::fs::read(&path).await else {
        return (
            StatusCode::NOT_FOUND,
            format!("container {container:?} has no log\n"),
        )
            .into_response();
    };
    let mut text = text;
    if let Some(n) = q.get("tailLines").and_then(|n| n.parse::<usize>().ok()) {
        let lines: Vec<&[u8]> = text.split_inclusive(|b| *b == b'\n').collect();
        text = lines[lines.len().saturating_sub(n)..].concat();
    }
    if q.get("follow").map(String::as_str) != Some("true") {
        return text.into_response();
    }
    // Follow: what is there, then what is appended, until the client goes away.
    let start = text.len() as u64;
    let stream = futures_util::stream::unfold(
        (path, start, Some(text)),
        |(path, mut pos, first)| async move {
            if let Some(t) = first {
                return Some((Ok::<_, std::io::Error>(t), (path, pos, None)));
            }
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                let Ok(mut f) = tokio::fs::File::open(&path).await else {
                    return None;
                };
                let len = f.metadata().await.map(|m| m.len()).unwrap_or(0);
                if len > pos {
                    use tokio::io::AsyncSeekExt;
                    let _ = f.seek(std::io::SeekFrom::Start(pos)).await;
                    let mut buf = Vec::new();
                    let _ = f.read_to_end(&mut buf).await;
                    pos += buf.len() as u64;
                    return Some((Ok(buf), (path, pos, None)));
                }
            }
        },
    );
    axum::body::Body::from_stream(stream).into_response()
}

async fn port_forward_uid(
    state: State<Arc<Agent>>,
    Path((ns, pod, _uid)): Path<(String, String, String)>,
    q: RawQuery,
    ws: WebSocketUpgrade,
) -> Response {
    port_forward(state, Path((ns, pod)), q, ws).await
}

async fn port_forward(
    State(agent): State<Arc<Agent>>,
    Path((ns, pod)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    ws: WebSocketUpgrade,
) -> Response {
    let Some((Some(ip), _)) = agent.find(&ns, &pod) else {
        return (
            StatusCode::NOT_FOUND,
            format!("pod {ns}/{pod} does not run here\n"),
        )
            .into_response();
    };
    // The API server passes each port as its own `port=N` (kubelet's PortHeader);
    // `ports=N,M` is what clients send to the API server, accepted here too.
    let ports: Vec<u16> = raw
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| *k == "port" || *k == "ports")
        .flat_map(|(_, v)| {
            v.split(',')
                .filter_map(|x| x.trim().parse().ok())
                .collect::<Vec<u16>>()
        })
        .collect();
    if ports.is_empty() {
        return (StatusCode::BAD_REQUEST, "no ports given\n").into_response();
    }
    ws.protocols(["v4.channel.k8s.io", "portforward.k8s.io"])
        .on_upgrade(move |socket| pump(agent, socket, ip, ports))
}

async fn pump(agent: Arc<Agent>, ws: WebSocket, ip: std::net::IpAddr, ports: Vec<u16>) {
    let (mut sink, mut stream) = ws.split();
    for (i, p) in ports.iter().enumerate() {
        let [lo, hi] = p.to_le_bytes();
        for ch in [2 * i as u8, 2 * i as u8 + 1] {
            if sink
                .send(Message::Binary(vec![ch, lo, hi].into()))
                .await
                .is_err()
            {
                return;
            }
        }
    }
    let (to_ws, mut from_tcp) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
    let mut writers = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let data_ch = 2 * i as u8;
        match agent.hub.connect(SocketAddr::new(ip, *p)).await {
            Ok(tcp) => {
                let (mut rd, wr) = tcp.into_split();
                writers.push(Some(wr));
                let to_ws = to_ws.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 32 * 1024];
                    loop {
                        match rd.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                let mut m = Vec::with_capacity(n + 1);
                                m.push(data_ch);
                                m.extend_from_slice(&buf[..n]);
                                if to_ws.send(m).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                });
            }
            Err(e) => {
                writers.push(None);
                let mut m = vec![data_ch + 1];
                m.extend_from_slice(format!("error forwarding port {p} to pod: {e}").as_bytes());
                let _ = to_ws.send(m).await;
            }
        }
    }
    drop(to_ws);
    loop {
        tokio::select! {
            out = from_tcp.recv() => match out {
                Some(m) => if sink.send(Message::Binary(m.into())).await.is_err() { break },
                None => break,
            },
            msg = stream.next() => match msg {
                Some(Ok(Message::Binary(b))) => {
                    let Some((&ch, data)) = b.split_first() else { continue };
                    if ch % 2 == 0
                        && let Some(Some(w)) = writers.get_mut(usize::from(ch / 2))
                        && w.write_all(data).await.is_err()
                    {
                        break;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                _ => {}
            },
        }
    }
    let _ = sink.send(Message::Close(None)).await;
}
