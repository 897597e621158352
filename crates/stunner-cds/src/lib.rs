//! The config discovery service (CDS) of STUNner: how the operator hands stunnerd and the
//! auth service their configs. The wire API is upstream's (OpenAPI in
//! `pkg/config/api/stunner_openapi.yaml` there):
//!
//! - `GET /api/v1/configs[/{namespace}[/{name}]]`: the matching configs (a list
//!   `{version, items}`, or one config; 404 `{code, message}` for an unknown id);
//! - the same with `?watch=true`: a WebSocket that sends every matching config now and
//!   on every change, one JSON `StunnerConfig` per text message; a deleted config is sent
//!   as its zero config;
//! - `?node=<name>` on the single-config path: per-node patching (the `node` is kept
//!   for the patcher; none is installed by default);
//! - `GET /api/v1/license`: the license status (always the free tier here).
//!
//! [`server`] holds the store and the axum router, [`tls`] serves it over TLS;
//! [`client`] loads and watches (plaintext or TLS).

pub mod client;
mod error;
pub mod server;
pub mod tls;

pub use error::Error;

/// The path prefix of the config API.
pub const CONFIGS_PATH: &str = "/api/v1/configs";

/// Splits an id `namespace/name`.
pub fn split_id(id: &str) -> Option<(&str, &str)> {
    id.split_once('/')
        .filter(|(ns, n)| !ns.is_empty() && !n.is_empty() && !n.contains('/'))
}
