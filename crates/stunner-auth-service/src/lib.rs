//! The STUNner auth service: hands WebRTC applications TURN credentials (`GET /`, the
//! TURN REST API of draft-uberti-behave-turn-rest-00) and ICE server configs
//! (`GET /ice`, an RTCConfiguration) for the Gateways it learns from the config discovery
//! service. The API is upstream's (`api/openapi.yaml` here); `/healthz` and `/readyz`
//! are ours, and so is the optional bearer-token check (`--require-token`): upstream
//! accepts a `key` parameter but checks nothing, so anybody who can reach the service
//! gets credentials.

pub mod cli;
pub mod ice;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use stunner_config::StunnerConfig;

pub use ice::{AuthError, Endpoint, IceConfig, IceServer, TurnResponse};

/// The configs the service knows, by id; fed by a CDS watch.
#[derive(Clone, Default)]
pub struct AppState {
    configs: Arc<RwLock<BTreeMap<String, StunnerConfig>>>,
    /// A required `Authorization: Bearer <token>`, if set.
    pub token: Option<String>,
    /// `STUNNER_PUBLIC_ADDR`: overrides every public address.
    pub public_addr: Option<String>,
    synced: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("configs", &self.ids())
            .field(
                "token",
                &self.token.as_ref().map(|_| stunner_config::SECRET),
            )
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// An empty state with an optional bearer token and public address override.
    pub fn new(token: Option<String>, public_addr: Option<String>) -> Self {
        Self {
            token,
            public_addr,
            ..Default::default()
        }
    }

    /// Applies a config from the CDS: a zero config deletes its id.
    pub fn apply(&self, c: StunnerConfig) {
        self.synced
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let Ok(mut m) = self.configs.write() else {
            return;
        };
        if c.is_zero() {
            m.remove(&c.admin.name);
        } else {
            m.insert(c.admin.name.clone(), c);
        }
    }

    /// Records that the CDS has answered (even with no config at all).
    pub fn mark_synced(&self) {
        self.synced
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// The ids known.
    pub fn ids(&self) -> Vec<String> {
        self.configs
            .read()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn snapshot(&self) -> BTreeMap<String, StunnerConfig> {
        self.configs.read().map(|m| m.clone()).unwrap_or_default()
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(want) = &self.token else { return true };
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|got| got.as_bytes() == want.as_bytes())
    }
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn answer<T: serde::Serialize>(at: Endpoint, r: Result<T, AuthError>) -> Response {
    match r {
        Ok(v) => {
            let body = serde_json::to_string(&v).unwrap_or_default();
            (
                [(header::CONTENT_TYPE, "application/json; charset=UTF-8")],
                body,
            )
                .into_response()
        }
        Err(e) => {
            let code =
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (code, e.wire_text(at)).into_response()
        }
    }
}

/// The signature shared by `/` and `/ice`.
type Answer<T> =
    fn(&BTreeMap<String, StunnerConfig>, &ice::Query, Option<&str>, i64) -> Result<T, AuthError>;

/// Checks the token and the query, then answers with `f`.
fn serve<T: serde::Serialize>(
    s: &AppState,
    headers: &HeaderMap,
    q: Result<Query<ice::Query>, QueryRejection>,
    at: Endpoint,
    f: Answer<T>,
) -> Response {
    if !s.authorized(headers) {
        return (StatusCode::UNAUTHORIZED, "missing or wrong bearer token").into_response();
    }
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("invalid query: {}", e.body_text()),
            )
                .into_response();
        }
    };
    answer(
        at,
        f(&s.snapshot(), &q, s.public_addr.as_deref(), now_unix()),
    )
}

async fn turn(
    State(s): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<ice::Query>, QueryRejection>,
) -> Response {
    serve(&s, &headers, q, Endpoint::Turn, ice::turn_response)
}

async fn ice_config(
    State(s): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<ice::Query>, QueryRejection>,
) -> Response {
    serve(&s, &headers, q, Endpoint::Ice, ice::ice_response)
}

async fn readyz(State(s): State<AppState>) -> Response {
    if s.synced.load(std::sync::atomic::Ordering::Relaxed) {
        (StatusCode::OK, "ok").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "no config received from the CDS yet",
        )
            .into_response()
    }
}

/// The HTTP API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(turn))
        .route("/ice", get(ice_config))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}
