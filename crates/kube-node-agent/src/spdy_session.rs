//! The server side of a SPDY connection as the kubelet runs it: after the HTTP upgrade,
//! every stream the peer opens is answered (SYN_REPLY, as Kubernetes' `spdystream` waits
//! for one before it writes) and handed to a handler together with its inbound bytes;
//! what handlers send goes out through one writer task that owns the connection's
//! header-compression context.

use std::collections::HashMap;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::spdy::{self, Frame, Headers};

/// Inbound chunks queued per stream before the reader waits for its handler.
const STREAM_QUEUE: usize = 64;
/// Outbound frames queued before handlers wait for the writer.
const OUT_QUEUE: usize = 256;
/// Bytes the writer gathers from queued frames into one write.
const WRITE_BATCH: usize = 256 * 1024;

/// The header in which a client offers stream sub-protocols and the server names its
/// choice (Kubernetes' `httpstream` handshake).
pub const PROTOCOL_HEADER: &str = "x-stream-protocol-version";

/// A stream the peer opened.
pub struct Stream {
    /// Its id.
    pub id: u32,
    /// Its headers (names in lower case).
    pub headers: Headers,
    /// What the peer writes on it; ends at the peer's FIN or RST_STREAM.
    pub rx: mpsc::Receiver<Vec<u8>>,
}

/// Where handlers send frames.
#[derive(Clone)]
pub struct Out(mpsc::Sender<Frame>);

impl Out {
    /// Sends `data` on stream `id`; false once the connection is gone.
    pub async fn data(&self, id: u32, data: Vec<u8>) -> bool {
        self.0
            .send(Frame::Data {
                id,
                fin: false,
                data,
            })
            .await
            .is_ok()
    }

    /// Ends our half of stream `id`.
    pub async fn fin(&self, id: u32) -> bool {
        self.0
            .send(Frame::Data {
                id,
                fin: true,
                data: Vec::new(),
            })
            .await
            .is_ok()
    }

    /// Resets stream `id`.
    pub async fn reset(&self, id: u32, status: u32) {
        let _ = self.0.send(Frame::RstStream { id, status }).await;
    }
}

/// The first protocol of `ours` that the request offers in `X-Stream-Protocol-Version`
/// (one header per offer, or comma-separated).
pub fn negotiate(headers: &HeaderMap, ours: &[&'static str]) -> Option<&'static str> {
    let offered: Vec<String> = headers
        .get_all(PROTOCOL_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|p| p.trim().to_string()))
        .collect();
    ours.iter()
        .copied()
        .find(|p| offered.iter().any(|o| o == p))
}

/// The request asks for a SPDY upgrade.
pub fn wants_spdy(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(spdy::UPGRADE))
}

/// The `101 Switching Protocols` answer to a SPDY upgrade with sub-protocol `protocol`.
pub fn switching(protocol: &'static str) -> Response {
    let mut r = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let h = r.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static(spdy::UPGRADE));
    h.insert(PROTOCOL_HEADER, HeaderValue::from_static(protocol));
    r
}

/// Runs the connection until the peer goes away or sends GOAWAY; `on_stream` sees each
/// new stream (and spawns whatever serves it).
pub async fn run<IO>(io: IO, mut on_stream: impl FnMut(Stream, &Out))
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (rd, mut wr) = tokio::io::split(io);
    let (tx, mut rx) = mpsc::channel::<Frame>(OUT_QUEUE);
    let out = Out(tx);
    tokio::spawn(async move {
        let mut enc = spdy::Writer::new();
        let mut buf = Vec::new();
        while let Some(f) = rx.recv().await {
            buf.clear();
            enc.encode(&f, &mut buf);
            while buf.len() < WRITE_BATCH {
                let Ok(f) = rx.try_recv() else { break };
                enc.encode(&f, &mut buf);
            }
            if wr.write_all(&buf).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    let mut reader = spdy::Reader::new(rd);
    let mut inbound: HashMap<u32, mpsc::Sender<Vec<u8>>> = HashMap::new();
    loop {
        let frame = match reader.next().await {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(error = %e, "spdy connection ends");
                break;
            }
        };
        match frame {
            Frame::SynStream { id, fin, headers } => {
                let reply = Frame::SynReply {
                    id,
                    fin: false,
                    headers: Vec::new(),
                };
                if out.0.send(reply).await.is_err() {
                    break;
                }
                let (itx, irx) = mpsc::channel(STREAM_QUEUE);
                if !fin {
                    inbound.insert(id, itx);
                }
                on_stream(
                    Stream {
                        id,
                        headers,
                        rx: irx,
                    },
                    &out,
                );
            }
            Frame::Data { id, fin, data } => {
                // A slow consumer holds up the whole connection: spdystream has no flow
                // control either, and the queue bounds what we hold.
                if !data.is_empty()
                    && let Some(t) = inbound.get(&id)
                    && t.send(data).await.is_err()
                {
                    inbound.remove(&id);
                }
                if fin {
                    inbound.remove(&id);
                }
            }
            Frame::RstStream { id, .. } => {
                inbound.remove(&id);
            }
            Frame::Ping(n) => {
                if out.0.send(Frame::Ping(n)).await.is_err() {
                    break;
                }
            }
            Frame::GoAway { .. } => break,
            Frame::SynReply { .. } | Frame::Ignored(_) => {}
        }
    }
}
