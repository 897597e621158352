//! A small fake Kubernetes API server for end-to-end tests: list (with label
//! selectors), watch (newline-delimited JSON events from a resourceVersion), get,
//! create, replace (compare-and-swap on resourceVersion), server-side apply (merge into
//! the stored object; `/status` merges only the status), delete, and pod port-forward
//! (the `v4.channel.k8s.io` WebSocket protocol, forwarding to the address in the pod's
//! [`FORWARD_ANNOTATION`]). Objects are untyped JSON keyed by API group, plural,
//! namespace and name. Test support only.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::broadcast;

type Coll = (String, String); // (api prefix like "/api/v1" or "/apis/g/v", plural)

/// Pod annotation naming the `host:port` a port-forward to that pod reaches.
pub const FORWARD_ANNOTATION: &str = "test.stunner.l7mp.io/forward-to";

#[derive(Clone, Debug)]
struct Event {
    rv: u64,
    coll: Coll,
    kind: &'static str,
    object: Value,
}

#[derive(Default)]
struct Store {
    rv: u64,
    objects: BTreeMap<Coll, BTreeMap<(String, String), Value>>,
    history: Vec<Event>,
    /// Collections answered with an error status (RBAC denial, API not served).
    refused: BTreeMap<Coll, u16>,
}

/// The fake API server's state, shared with the test.
#[derive(Clone)]
pub struct FakeApi {
    store: Arc<Mutex<Store>>,
    events: broadcast::Sender<Event>,
    port: u16,
}

struct Path {
    coll: Coll,
    ns: Option<String>,
    name: Option<String>,
    status: bool,
}

fn parse(uri: &Uri) -> Option<Path> {
    let parts: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    let (prefix, rest) = match *parts.first()? {
        "api" => (format!("/api/{}", parts.get(1)?), &parts[2..]),
        "apis" => (
            format!("/apis/{}/{}", parts.get(1)?, parts.get(2)?),
            &parts[3..],
        ),
        _ => return None,
    };
    let (ns, rest) = match rest {
        ["namespaces", ns, r @ ..] if !r.is_empty() => (Some(ns.to_string()), r),
        r => (None, r),
    };
    let (plural, name, status) = match rest {
        [p] => (p, None, false),
        [p, n] => (p, Some(n.to_string()), false),
        [p, n, "status"] => (p, Some(n.to_string()), true),
        _ => return None,
    };
    Some(Path {
        coll: (prefix, plural.to_string()),
        ns,
        name,
        status,
    })
}

fn status(code: u16, reason: &str, message: &str) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "reason": reason, "message": message, "code": code});
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        axum::Json(body),
    )
        .into_response()
}

fn ok(v: Value) -> Response {
    (StatusCode::OK, axum::Json(v)).into_response()
}

fn labels_match(obj: &Value, selector: Option<&String>) -> bool {
    let Some(sel) = selector.filter(|s| !s.is_empty()) else {
        return true;
    };
    sel.split(',').all(|term| match term.split_once('=') {
        Some((k, v)) => obj["metadata"]["labels"][k].as_str() == Some(v),
        None => !obj["metadata"]["labels"][term].is_null(),
    })
}

/// Merges `patch` into `base`: maps recursively, everything else replaced.
fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, p) => *b = p.clone(),
    }
}

impl FakeApi {
    /// Starts the server on `listener`.
    pub fn start(listener: std::net::TcpListener) -> Self {
        let (events, _) = broadcast::channel(4096);
        let api = Self {
            store: Arc::default(),
            events,
            port: listener.local_addr().map_or(0, |a| a.port()),
        };
        let app = Router::new()
            .route(
                "/api/v1/namespaces/{ns}/pods/{name}/portforward",
                axum::routing::get(portforward),
            )
            .fallback(handle)
            .with_state(api.clone());
        listener.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let l = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(l, app).await.unwrap();
            });
        });
        api
    }

    fn commit(&self, s: &mut Store, coll: &Coll, kind: &'static str, mut obj: Value) -> Value {
        s.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(s.rv.to_string());
        let ev = Event {
            rv: s.rv,
            coll: coll.clone(),
            kind,
            object: obj.clone(),
        };
        s.history.push(ev.clone());
        let _ = self.events.send(ev);
        obj
    }

    /// Creates or replaces an object given as YAML/JSON (test setup).
    pub fn put(&self, path: &str, obj: Value) {
        let uri: Uri = path.parse().unwrap();
        let p = parse(&uri).unwrap();
        let ns = obj["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let name = obj["metadata"]["name"].as_str().unwrap().to_string();
        let mut s = self.store.lock().unwrap();
        let mut obj = obj;
        obj["metadata"]["uid"] = json!(format!("uid-{name}"));
        obj["metadata"]["generation"] = json!(1);
        let kind = if s
            .objects
            .get(&p.coll)
            .is_some_and(|m| m.contains_key(&(ns.clone(), name.clone())))
        {
            "MODIFIED"
        } else {
            "ADDED"
        };
        let obj = self.commit(&mut s, &p.coll, kind, obj);
        s.objects.entry(p.coll).or_default().insert((ns, name), obj);
    }

    /// Starts a server on a free loopback port.
    pub fn start_local() -> Self {
        Self::start(std::net::TcpListener::bind("127.0.0.1:0").unwrap())
    }

    /// Writes a kubeconfig for this server to `path` (plain HTTP, no credentials).
    pub fn write_kubeconfig(&self, path: &std::path::Path) {
        let port = self.port;
        std::fs::write(
            path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters: [{{name: fake, cluster: {{server: \"http://127.0.0.1:{port}\"}}}}]\n\
                 users: [{{name: u, user: {{}}}}]\ncontexts: [{{name: c, context: {{cluster: fake, user: u, namespace: default}}}}]\n\
                 current-context: c\n"
            ),
        )
        .unwrap();
    }

    /// Adds a running pod with `labels` whose port-forwards reach `forward_to`.
    pub fn put_pod(&self, ns: &str, name: &str, labels: Value, ready: bool, forward_to: &str) {
        self.put(
            &format!("/api/v1/namespaces/{ns}/pods"),
            json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": ns, "labels": labels,
                    "annotations": {FORWARD_ANNOTATION: forward_to}},
                "spec": {"containers": [{"name": "c", "image": "x"}]},
                "status": {"phase": "Running", "conditions": [
                    {"type": "Ready", "status": if ready { "True" } else { "False" }}]}}),
        );
    }

    /// Adds a ready config-discovery-service pod in `stunner-system` forwarding to `cds`.
    pub fn put_cds_pod(&self, cds: &str) {
        let labels = json!({"stunner.l7mp.io/config-discovery-service": "enabled"});
        self.put_pod("stunner-system", "operator", labels, true, cds);
    }

    /// Answers every request on the collection of `path` (e.g.
    /// `/apis/discovery.k8s.io/v1/endpointslices`) with `code` from now on.
    pub fn refuse(&self, path: &str, code: u16) {
        let p = parse(&path.parse().unwrap()).unwrap();
        self.store.lock().unwrap().refused.insert(p.coll, code);
    }

    /// Reads an object (test checks).
    pub fn get(&self, path: &str) -> Option<Value> {
        let uri: Uri = path.parse().unwrap();
        let p = parse(&uri)?;
        let s = self.store.lock().unwrap();
        s.objects
            .get(&p.coll)?
            .get(&(p.ns.unwrap_or_default(), p.name?))
            .cloned()
    }

    fn watch(
        &self,
        coll: Coll,
        ns: Option<String>,
        from: u64,
        selector: Option<String>,
    ) -> Response {
        let (backlog, mut rx) = {
            let s = self.store.lock().unwrap();
            let backlog: Vec<Event> = s.history.iter().filter(|e| e.rv > from).cloned().collect();
            (backlog, self.events.subscribe())
        };
        let keep = move |e: &Event| {
            e.coll == coll
                && ns
                    .as_deref()
                    .is_none_or(|n| e.object["metadata"]["namespace"].as_str() == Some(n))
                && labels_match(&e.object, selector.as_ref())
        };
        let stream = async_stream(backlog, move |tx| async move {
            loop {
                match rx.recv().await {
                    Ok(e) => {
                        if tx.send(e).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => return,
                }
            }
        });
        let body = futures_util::StreamExt::filter_map(stream, move |e| {
            let line = keep(&e).then(|| {
                let mut b = serde_json::to_vec(&json!({"type": e.kind, "object": e.object}))
                    .unwrap_or_default();
                b.push(b'\n');
                Ok::<Bytes, Infallible>(Bytes::from(b))
            });
            async move { line }
        });
        Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(Body::from_stream(body))
            .unwrap()
    }
}

/// A stream of `backlog` followed by what `feed` sends.
fn async_stream<F, Fut>(
    backlog: Vec<Event>,
    feed: F,
) -> impl futures_util::Stream<Item = Event> + Send
where
    F: FnOnce(tokio::sync::mpsc::Sender<Event>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    let tx2 = tx.clone();
    tokio::spawn(async move {
        for e in backlog {
            if tx2.send(e).await.is_err() {
                return;
            }
        }
        feed(tx2).await;
    });
    drop(tx);
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) })
}

async fn handle(
    State(api): State<FakeApi>,
    method: Method,
    uri: Uri,
    Query(q): Query<BTreeMap<String, String>>,
    body: Bytes,
) -> Response {
    let Some(p) = parse(&uri) else {
        return status(404, "NotFound", "unknown path");
    };
    let refused = api.store.lock().unwrap().refused.get(&p.coll).copied();
    if let Some(code) = refused {
        let reason = if code == 403 { "Forbidden" } else { "NotFound" };
        return status(code, reason, "refused by the test");
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let ns = p.ns.clone().unwrap_or_default();
    match (method.as_str(), &p.name) {
        ("GET", None) => {
            if q.get("watch").is_some_and(|w| w == "true" || w == "1") {
                let from = q
                    .get("resourceVersion")
                    .and_then(|r| r.parse().ok())
                    .unwrap_or(0);
                return api.watch(p.coll, p.ns, from, q.get("labelSelector").cloned());
            }
            let s = api.store.lock().unwrap();
            let items: Vec<Value> = s
                .objects
                .get(&p.coll)
                .into_iter()
                .flatten()
                .filter(|((ons, _), o)| {
                    p.ns.as_deref().is_none_or(|n| n == ons)
                        && labels_match(o, q.get("labelSelector"))
                })
                .map(|(_, o)| o.clone())
                .collect();
            ok(
                json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": s.rv.to_string()}, "items": items}),
            )
        }
        ("GET", Some(name)) => {
            let s = api.store.lock().unwrap();
            match s
                .objects
                .get(&p.coll)
                .and_then(|m| m.get(&(ns, name.clone())))
            {
                Some(o) => ok(o.clone()),
                None => status(404, "NotFound", &format!("{name} not found")),
            }
        }
        ("POST", None) => {
            let name = body["metadata"]["name"].as_str().unwrap_or("").to_string();
            let mut s = api.store.lock().unwrap();
            if s.objects
                .get(&p.coll)
                .is_some_and(|m| m.contains_key(&(ns.clone(), name.clone())))
            {
                return status(409, "AlreadyExists", "exists");
            }
            let mut obj = body;
            obj["metadata"]["namespace"] = if ns.is_empty() {
                Value::Null
            } else {
                json!(ns)
            };
            let obj = api.commit(&mut s, &p.coll, "ADDED", obj);
            s.objects
                .entry(p.coll)
                .or_default()
                .insert((ns, name), obj.clone());
            ok(obj)
        }
        ("PUT", Some(name)) => {
            let mut s = api.store.lock().unwrap();
            let current = s
                .objects
                .get(&p.coll)
                .and_then(|m| m.get(&(ns.clone(), name.clone())))
                .cloned();
            let Some(current) = current else {
                return status(404, "NotFound", "not found");
            };
            if body["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"] {
                return status(409, "Conflict", "the object has been modified");
            }
            let obj = api.commit(&mut s, &p.coll, "MODIFIED", body);
            s.objects
                .entry(p.coll)
                .or_default()
                .insert((ns, name.clone()), obj.clone());
            ok(obj)
        }
        ("PATCH", Some(name)) => {
            let mut s = api.store.lock().unwrap();
            let current = s
                .objects
                .get(&p.coll)
                .and_then(|m| m.get(&(ns.clone(), name.clone())))
                .cloned();
            let (kind, mut obj) = match current {
                Some(c) => ("MODIFIED", c),
                None if p.status => return status(404, "NotFound", "not found"),
                None => {
                    let mut m = json!({"metadata": {"name": name, "uid": format!("uid-{name}"), "generation": 1}});
                    if !ns.is_empty() {
                        m["metadata"]["namespace"] = json!(ns);
                    }
                    ("ADDED", m)
                }
            };
            if p.status {
                obj["status"] = body["status"].clone();
            } else {
                let mut b = body;
                if let Some(m) = b.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.remove("resourceVersion");
                }
                merge(&mut obj, &b);
            }
            let obj = api.commit(&mut s, &p.coll, kind, obj);
            s.objects
                .entry(p.coll)
                .or_default()
                .insert((ns, name.clone()), obj.clone());
            ok(obj)
        }
        ("DELETE", Some(name)) => {
            let mut s = api.store.lock().unwrap();
            let removed = s
                .objects
                .get_mut(&p.coll)
                .and_then(|m| m.remove(&(ns, name.clone())));
            match removed {
                Some(o) => {
                    api.commit(&mut s, &p.coll, "DELETED", o);
                    ok(
                        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}),
                    )
                }
                None => status(404, "NotFound", "not found"),
            }
        }
        _ => status(405, "MethodNotAllowed", "unsupported"),
    }
}

/// Pod port-forward over WebSocket (`v4.channel.k8s.io`): channel 0 carries the data of
/// the one requested port, channel 1 its errors; each starts with the port number.
async fn portforward(
    State(api): State<FakeApi>,
    axum::extract::Path((ns, name)): axum::extract::Path<(String, String)>,
    Query(q): Query<BTreeMap<String, String>>,
    ws: axum::extract::ws::WebSocketUpgrade,
) -> Response {
    let port: u16 = q.get("ports").and_then(|p| p.parse().ok()).unwrap_or(0);
    let pod = api.get(&format!("/api/v1/namespaces/{ns}/pods/{name}"));
    let Some(target) = pod
        .as_ref()
        .and_then(|p| p["metadata"]["annotations"][FORWARD_ANNOTATION].as_str())
        .map(str::to_string)
    else {
        return status(404, "NotFound", "no such pod or no forward target");
    };
    ws.protocols(["v4.channel.k8s.io"])
        .on_upgrade(move |socket| pump(socket, target, port))
}

async fn pump(ws: axum::extract::ws::WebSocket, target: String, port: u16) {
    use axum::extract::ws::Message;
    use futures_util::{SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut sink, mut stream) = ws.split();
    let [lo, hi] = port.to_le_bytes();
    for ch in [0u8, 1] {
        if sink
            .send(Message::Binary(vec![ch, lo, hi].into()))
            .await
            .is_err()
        {
            return;
        }
    }
    let Ok(tcp) = tokio::net::TcpStream::connect(&target).await else {
        let _ = sink
            .send(Message::Binary(
                [&[1u8][..], b"connection refused"].concat().into(),
            ))
            .await;
        return;
    };
    let (mut rd, mut wr) = tcp.into_split();
    let up = tokio::spawn(async move {
        while let Some(Ok(m)) = stream.next().await {
            match m {
                Message::Binary(b)
                    if b.first() == Some(&0) && wr.write_all(&b[1..]).await.is_err() =>
                {
                    break;
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = wr.shutdown().await;
    });
    let mut buf = vec![0u8; 16384];
    loop {
        match rd.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let mut m = Vec::with_capacity(n + 1);
                m.push(0u8);
                m.extend_from_slice(&buf[..n]);
                if sink.send(Message::Binary(m.into())).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = sink.send(Message::Close(None)).await;
    up.abort();
}
