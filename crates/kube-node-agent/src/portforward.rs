//! The kubelet's port-forward endpoint, `/portForward/{ns}/{pod}`, in both forms the API
//! server uses: SPDY (`portforward.k8s.io`, what `kubectl port-forward` ends up speaking:
//! kubectl tunnels SPDY through its WebSocket to the API server, which upgrades to the
//! kubelet with SPDY and copies bytes) and WebSocket (`v4.channel.k8s.io`, per requested
//! port a data and an error channel, each opened with the port number).
//!
//! SPDY: each forwarded connection is a pair of streams with the same `requestID`, one
//! `streamType: error` and one `streamType: data`, both naming the `port`. The agent
//! connects to the pod's address on that port once both are open; bytes go both ways on
//! the data stream; a failure is written on the error stream.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Path, RawQuery, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::agent::Agent;
use crate::spdy::{self, header};
use crate::spdy_session::{self, Out, Stream};

/// Read size from the pod side.
const CHUNK: usize = 32 * 1024;
/// The sub-protocol of SPDY port-forward.
const SPDY_PROTOCOL: &str = "portforward.k8s.io";

/// `/portForward/{ns}/{pod}/{uid}`: as without the UID.
pub async fn with_uid(
    state: State<Arc<Agent>>,
    Path((ns, pod, _uid)): Path<(String, String, String)>,
    q: RawQuery,
    req: Request,
) -> Response {
    handle(state, Path((ns, pod)), q, req).await
}

/// `/portForward/{ns}/{pod}`: SPDY or WebSocket, by the request's `Upgrade`.
pub async fn handle(
    State(agent): State<Arc<Agent>>,
    Path((ns, pod)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    mut req: Request,
) -> Response {
    let Some((Some(ip), _)) = agent.find(&ns, &pod) else {
        return (
            StatusCode::NOT_FOUND,
            format!("pod {ns}/{pod} does not run here\n"),
        )
            .into_response();
    };
    if spdy_session::wants_spdy(req.headers()) {
        let Some(proto) = spdy_session::negotiate(req.headers(), &[SPDY_PROTOCOL]) else {
            return (
                StatusCode::FORBIDDEN,
                format!("no common stream protocol: we speak {SPDY_PROTOCOL}\n"),
            )
                .into_response();
        };
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            match upgrade.await {
                Ok(up) => serve_spdy(agent, hyper_util::rt::TokioIo::new(up), ip).await,
                Err(e) => tracing::warn!(error = %e, "port-forward upgrade"),
            }
        });
        return spdy_session::switching(proto);
    }
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
    let (mut parts, _) = req.into_parts();
    let ws = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(ws) => ws,
        Err(e) => return e.into_response(),
    };
    ws.protocols(["v4.channel.k8s.io", "portforward.k8s.io"])
        .on_upgrade(move |socket| pump(agent, socket, ip, ports))
}

/// One half of a forwarded connection, waiting for the other.
#[derive(Default)]
struct Pending {
    error: Option<u32>,
    data: Option<Stream>,
}

async fn serve_spdy<IO>(agent: Arc<Agent>, io: IO, ip: IpAddr)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let mut pending: HashMap<String, Pending> = HashMap::new();
    spdy_session::run(io, move |s, out| {
        let port = header(&s.headers, "port").and_then(|p| p.parse::<u16>().ok());
        let kind = header(&s.headers, "streamtype").map(str::to_string);
        let (Some(port), Some(kind)) = (port, kind) else {
            let out = out.clone();
            tokio::spawn(async move { out.reset(s.id, spdy::status::PROTOCOL_ERROR).await });
            return;
        };
        // Old clients send no requestID: the data stream follows its error stream.
        let key = match header(&s.headers, "requestid") {
            Some(r) => r.to_string(),
            None if kind == "data" => format!("#{}", s.id.saturating_sub(2)),
            None => format!("#{}", s.id),
        };
        let entry = pending.entry(key.clone()).or_default();
        match kind.as_str() {
            "error" => entry.error = Some(s.id),
            "data" => entry.data = Some(s),
            _ => {
                let out = out.clone();
                tokio::spawn(async move { out.reset(s.id, spdy::status::PROTOCOL_ERROR).await });
                return;
            }
        }
        if entry.error.is_some() && entry.data.is_some() {
            let Some(Pending {
                error: Some(err),
                data: Some(data),
            }) = pending.remove(&key)
            else {
                return;
            };
            let agent = agent.clone();
            let out = out.clone();
            tokio::spawn(forward(agent, SocketAddr::new(ip, port), err, data, out));
        }
    })
    .await;
}

/// Connects to `addr` and relays it over the data stream until either side ends.
async fn forward(agent: Arc<Agent>, addr: SocketAddr, err: u32, data: Stream, out: Out) {
    let id = data.id;
    let tcp = match agent.hub.connect(addr).await {
        Ok(t) => t,
        Err(e) => {
            let msg = format!("error forwarding port {} to pod: {e}", addr.port());
            out.data(err, msg.into_bytes()).await;
            out.fin(err).await;
            out.fin(id).await;
            return;
        }
    };
    let (mut rd, mut wr) = tcp.into_split();
    let mut rx = data.rx;
    let up = tokio::spawn(async move {
        while let Some(b) = rx.recv().await {
            if wr.write_all(&b).await.is_err() {
                return;
            }
        }
        // The client's FIN: the pod sees end of input and may still answer.
        let _ = wr.shutdown().await;
    });
    let mut buf = vec![0u8; CHUNK];
    loop {
        match rd.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if !out.data(id, buf[..n].to_vec()).await {
                    break;
                }
            }
        }
    }
    up.abort();
    out.fin(id).await;
    out.fin(err).await;
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
