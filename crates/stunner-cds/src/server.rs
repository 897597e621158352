//! The CDS server: a store of configs by id (`admin.name`), served over HTTP and pushed
//! over WebSocket to watchers.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::ws::rejection::WebSocketUpgradeRejection as WsRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;
use stunner_config::StunnerConfig;
use tokio::sync::broadcast;

/// Per-node patching of a config (upstream: relay-address discovery).
pub type NodePatcher = Arc<dyn Fn(StunnerConfig, &str) -> StunnerConfig + Send + Sync>;

/// The configs the server serves, and the feed of changes.
#[derive(Clone)]
pub struct ConfigStore {
    inner: Arc<RwLock<BTreeMap<String, StunnerConfig>>>,
    tx: broadcast::Sender<StunnerConfig>,
    patcher: Option<NodePatcher>,
}

impl Default for ConfigStore {
    fn default() -> Self {
        let (tx, _) = broadcast::channel(1024);
        Self {
            inner: Arc::default(),
            tx,
            patcher: None,
        }
    }
}

impl std::fmt::Debug for ConfigStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigStore")
            .field("ids", &self.ids())
            .finish_non_exhaustive()
    }
}

impl ConfigStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Installs a per-node patcher for `?node=` requests.
    pub fn with_node_patcher(mut self, p: NodePatcher) -> Self {
        self.patcher = Some(p);
        self
    }

    /// The ids held.
    pub fn ids(&self) -> Vec<String> {
        self.inner
            .read()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The config of `id`.
    pub fn get(&self, id: &str) -> Option<StunnerConfig> {
        self.inner.read().ok()?.get(id).cloned()
    }

    /// Adds or replaces the config of its `admin.name`; watchers get it if it changed.
    pub fn upsert(&self, c: StunnerConfig) {
        let changed = match self.inner.write() {
            Ok(mut m) => {
                let same = m.get(&c.admin.name) == Some(&c);
                if !same {
                    m.insert(c.admin.name.clone(), c.clone());
                }
                !same
            }
            Err(_) => false,
        };
        if changed {
            let _ = self.tx.send(c);
        }
    }

    /// Removes a config; watchers get its zero config.
    pub fn delete(&self, id: &str) {
        let removed = self.inner.write().ok().and_then(|mut m| m.remove(id));
        if removed.is_some() {
            let _ = self.tx.send(StunnerConfig::zero(id));
        }
    }

    /// Makes the store hold exactly `configs`: upserts the changed, deletes the missing.
    pub fn update_all(&self, configs: Vec<StunnerConfig>) {
        let keep: Vec<String> = configs.iter().map(|c| c.admin.name.clone()).collect();
        for id in self.ids() {
            if !keep.contains(&id) {
                self.delete(&id);
            }
        }
        for c in configs {
            self.upsert(c);
        }
    }

    fn matching(&self, ns: Option<&str>, name: Option<&str>) -> Vec<StunnerConfig> {
        let Ok(m) = self.inner.read() else {
            return Vec::new();
        };
        m.values()
            .filter(|c| matches_id(&c.admin.name, ns, name))
            .cloned()
            .collect()
    }

    fn patch(&self, c: StunnerConfig, node: Option<&str>) -> StunnerConfig {
        match (&self.patcher, node) {
            (Some(p), Some(n)) => p(c, n),
            _ => c,
        }
    }
}

fn matches_id(id: &str, ns: Option<&str>, name: Option<&str>) -> bool {
    let (ins, iname) = id.split_once('/').unwrap_or(("", id));
    ns.is_none_or(|n| n == ins) && name.is_none_or(|n| n == iname)
}

#[derive(Debug, Default, Deserialize)]
struct Params {
    watch: Option<bool>,
    node: Option<String>,
}

/// The CDS router.
pub fn router(store: ConfigStore) -> Router {
    Router::new()
        .route("/api/v1/license", get(license))
        .route("/api/v1/configs", get(all))
        .route("/api/v1/configs/{namespace}", get(by_namespace))
        .route("/api/v1/configs/{namespace}/{name}", get(by_id))
        .with_state(store)
}

async fn license() -> impl IntoResponse {
    axum::Json(json!({
        "enabledFeatures": [],
        "subscriptionType": "free",
        "lastUpdated": "",
        "lastError": ""
    }))
}

async fn all(
    State(s): State<ConfigStore>,
    Query(q): Query<Params>,
    ws: Result<WebSocketUpgrade, WsRejection>,
) -> Response {
    list(s, None, q, ws.ok())
}

async fn by_namespace(
    State(s): State<ConfigStore>,
    Path(ns): Path<String>,
    Query(q): Query<Params>,
    ws: Result<WebSocketUpgrade, WsRejection>,
) -> Response {
    list(s, Some(ns), q, ws.ok())
}

fn list(s: ConfigStore, ns: Option<String>, q: Params, ws: Option<WebSocketUpgrade>) -> Response {
    if q.watch == Some(true) {
        let Some(ws) = ws else {
            return (
                StatusCode::BAD_REQUEST,
                "watch=true needs a WebSocket upgrade",
            )
                .into_response();
        };
        return ws.on_upgrade(move |sock| watch(sock, s, ns, None, None));
    }
    let items: Vec<StunnerConfig> = s.matching(ns.as_deref(), None);
    axum::Json(json!({"version": "v1", "items": items})).into_response()
}

async fn by_id(
    State(s): State<ConfigStore>,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Query<Params>,
    ws: Result<WebSocketUpgrade, WsRejection>,
) -> Response {
    if q.watch == Some(true) {
        let Ok(ws) = ws else {
            return (
                StatusCode::BAD_REQUEST,
                "watch=true needs a WebSocket upgrade",
            )
                .into_response();
        };
        return ws.on_upgrade(move |sock| watch(sock, s, Some(ns), Some(name), q.node));
    }
    let id = format!("{ns}/{name}");
    match s.get(&id) {
        Some(c) => axum::Json(s.patch(c, q.node.as_deref())).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"code": 404, "message": format!("Config not found for ID {id}")})),
        )
            .into_response(),
    }
}

/// Sends the matching configs, then every change, until the client goes away.
async fn watch(
    mut sock: WebSocket,
    s: ConfigStore,
    ns: Option<String>,
    name: Option<String>,
    node: Option<String>,
) {
    // Subscribe before the snapshot so that no change falls between them.
    let mut rx = s.tx.subscribe();
    for c in s.matching(ns.as_deref(), name.as_deref()) {
        let c = s.patch(c, node.as_deref());
        if sock.send(Message::Text(c.to_json().into())).await.is_err() {
            return;
        }
    }
    loop {
        tokio::select! {
            update = rx.recv() => match update {
                Ok(c) if matches_id(&c.admin.name, ns.as_deref(), name.as_deref()) => {
                    let c = s.patch(c, node.as_deref());
                    if sock.send(Message::Text(c.to_json().into())).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Too slow: resend the current state.
                    for c in s.matching(ns.as_deref(), name.as_deref()) {
                        let c = s.patch(c, node.as_deref());
                        if sock.send(Message::Text(c.to_json().into())).await.is_err() {
                            return;
                        }
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            msg = sock.recv() => match msg {
                // Pings are answered by the WebSocket layer; anything else is ignored.
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}
