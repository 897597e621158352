//! The health-check server (`/live`, `/ready`, `/status`), upstream-compatible.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::{Value, json};
use stunner_config::StunnerConfig;

/// What the admin server reports; written by the control loop.
#[derive(Debug, Default)]
pub struct AdminState {
    /// A non-zero config is applied and its listeners run.
    pub ready: AtomicBool,
    /// Graceful shutdown has begun.
    pub terminating: AtomicBool,
    /// Keep `/ready` at 200 while draining.
    pub force_ready: bool,
    /// The `/status` document.
    pub status: Mutex<Value>,
    /// The latest metrics snapshot.
    pub metrics: Mutex<crate::metrics::Snapshot>,
}

impl AdminState {
    fn is_ready(&self) -> bool {
        let terminating = self.terminating.load(Ordering::Relaxed);
        self.ready.load(Ordering::Relaxed) && (!terminating || self.force_ready)
    }
}

/// The config as `/status` shows it: credentials and key material masked.
pub fn masked_json(c: &StunnerConfig) -> Value {
    let mut v = serde_json::to_value(c).unwrap_or(Value::Null);
    if let Some(creds) = v
        .pointer_mut("/auth/credentials")
        .and_then(Value::as_object_mut)
    {
        for val in creds.values_mut() {
            *val = json!(stunner_config::SECRET);
        }
    }
    if let Some(ls) = v.pointer_mut("/listeners").and_then(Value::as_array_mut) {
        for l in ls {
            for k in ["cert", "key"] {
                if let Some(x) = l.get_mut(k) {
                    *x = json!(stunner_config::SECRET);
                }
            }
        }
    }
    if let Some(h) = v.pointer_mut("/admin/license_config/hmac") {
        *h = json!(stunner_config::SECRET);
    }
    v
}

fn router(state: Arc<AdminState>) -> Router {
    let ready = state.clone();
    let status = state;
    Router::new()
        .route("/live", get(|| async { axum::Json(json!({})) }))
        .route(
            "/ready",
            get(move || {
                let ok = ready.is_ready();
                async move {
                    if ok {
                        (
                            StatusCode::OK,
                            axum::Json(json!({"status": 200, "message": "READY"})),
                        )
                    } else {
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            axum::Json(json!({"status": 503, "message": "stunnerd not ready"})),
                        )
                    }
                }
            }),
        )
        .route(
            "/status",
            get(move || {
                let doc = status
                    .status
                    .lock()
                    .map(|s| s.clone())
                    .unwrap_or(Value::Null);
                async move { axum::Json(doc).into_response() }
            }),
        )
}

fn metrics_router(state: Arc<AdminState>, path: &str) -> Router {
    Router::new().route(
        path,
        get(move || {
            let body = state
                .metrics
                .lock()
                .map(|m| crate::metrics::render(&m))
                .unwrap_or_default();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    body,
                )
            }
        }),
    )
}

/// A running admin server.
pub(crate) struct AdminServer {
    /// The bound address.
    pub(crate) addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl AdminServer {
    /// Binds and serves.
    pub(crate) async fn start(
        addr: SocketAddr,
        state: Arc<AdminState>,
        metrics_path: Option<&str>,
    ) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let app = match metrics_path {
            None => router(state),
            Some(p) => metrics_router(state, p),
        };
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, task })
    }

    /// Stops serving, and returns once the socket is closed: a server for the same
    /// port on another address (a zero config's `:8086`, then the real config's
    /// `<pod IP>:8086`) can bind right after.
    pub(crate) async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}
