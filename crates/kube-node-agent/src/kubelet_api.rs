//! The kubelet endpoints that the API server proxies to: container logs
//! (`kubectl logs`), port-forward (`portforward.rs`) and exec (`exec.rs`). Served over
//! TLS with a self-signed certificate on loopback (the API server does not verify
//! kubelet certificates unless told to). Attach is not emulated.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::AsyncReadExt;

use crate::agent::Agent;
use crate::error::{Error, Result};
use crate::{exec, portforward};

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
        .route(
            "/exec/{ns}/{pod}/{container}",
            get(exec::handle).post(exec::handle),
        )
        .route(
            "/exec/{ns}/{pod}/{uid}/{container}",
            get(exec::with_uid).post(exec::with_uid),
        )
        .route(
            "/portForward/{ns}/{pod}",
            get(portforward::handle).post(portforward::handle),
        )
        .route(
            "/portForward/{ns}/{pod}/{uid}",
            get(portforward::with_uid).post(portforward::with_uid),
        )
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
