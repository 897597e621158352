//! Kubernetes I/O against a mock API server (kube-rs `tower-test`): the exact requests
//! of the updater for create, update, no-op, status and delete, and of leader election.

use std::sync::{Arc, Mutex};

use http::{Request, Response};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use std::time::Duration;
use stunner_gateway::{RenderOptions, World, render};

use stunner_gateway_operator::k8s::lease::{Elector, Lead, Timing};
use stunner_gateway_operator::k8s::metrics::Metrics;
use stunner_gateway_operator::k8s::updater::Updater;
use tokio::time::Instant;

type Log = Arc<Mutex<Vec<(String, String, Value)>>>;

/// A mock API server: records every request as (method, path?query, body) and answers
/// with `respond`.
fn mock(respond: fn(&str, &str, &Value) -> (u16, Value)) -> (Client, Log) {
    let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let log: Log = Arc::default();
    let l = log.clone();
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let method = req.method().to_string();
            let uri = req.uri().to_string();
            let bytes = req.into_body().collect_bytes().await.unwrap();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let (code, resp) = respond(&method, &uri, &body);
            l.lock().unwrap().push((method, uri, body));
            send.send_response(
                Response::builder()
                    .status(code)
                    .body(Body::from(serde_json::to_vec(&resp).unwrap()))
                    .unwrap(),
            );
        }
    });
    (Client::new(svc, "default"), log)
}

/// Echoes the written object back, as the API server does (a status write returns the
/// whole object, so a minimal valid spec is added).
fn echo(_: &str, uri: &str, body: &Value) -> (u16, Value) {
    if body.is_null() {
        return (
            200,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {}}),
        );
    }
    let mut b = body.clone();
    b["metadata"]["resourceVersion"] = json!("2");
    if uri.contains("/status") {
        b["metadata"]["name"] = json!("x");
        b["spec"] = match b["kind"].as_str() {
            Some("GatewayClass") => json!({"controllerName": "x"}),
            Some("Gateway") => json!({"gatewayClassName": "x", "listeners": []}),
            _ => json!({"rules": []}),
        };
    }
    (200, b)
}

fn world(case: &str) -> World {
    let dir = format!(
        "{}/../stunner-gateway/testdata/render",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(format!("{dir}/{case}/in.yaml")).unwrap();
    let mut all = String::new();
    if let Some(list) = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("# fixtures:"))
    {
        for f in list.split_whitespace() {
            all.push_str("---\n");
            all.push_str(&std::fs::read_to_string(format!("{dir}/_fixtures/{f}.yaml")).unwrap());
        }
    }
    all.push_str("---\n");
    all.push_str(&text);
    let mut w = World::new();
    w.load_yaml(case, &all).unwrap();
    w
}

/// The World after the API server stored everything in `d` (objects and statuses).
fn stored(mut w: World, d: &stunner_gateway::Desired) -> World {
    for s in &d.services {
        let mut s = s.clone();
        // The API server adds defaults; they must not cause writes.
        if let Some(spec) = s.spec.as_mut() {
            spec.cluster_ip = Some("10.96.0.10".into());
            for p in spec.ports.iter_mut().flatten() {
                p.node_port.get_or_insert(31234);
            }
        }
        w.insert(stunner_gateway::Object::Service(s));
    }
    for dep in &d.deployments {
        w.insert(stunner_gateway::Object::Deployment(dep.clone()));
    }
    for st in &d.statuses {
        let key = (st.target.namespace.clone(), st.target.name.clone());
        match st.target.kind.as_str() {
            "GatewayClass" => {
                std::sync::Arc::make_mut(w.gateway_classes.get_mut(&key).unwrap()).status =
                    serde_json::from_value(st.status.clone()).unwrap()
            }
            "Gateway" => {
                std::sync::Arc::make_mut(w.gateways.get_mut(&key).unwrap()).status =
                    serde_json::from_value(st.status.clone()).unwrap()
            }
            _ => {
                std::sync::Arc::make_mut(w.udp_routes.get_mut(&key).unwrap()).status =
                    serde_json::from_value(st.status.clone()).unwrap()
            }
        }
    }
    w
}

fn requests(log: &Log) -> Vec<(String, String)> {
    log.lock()
        .unwrap()
        .iter()
        .map(|(m, u, _)| (m.clone(), u.clone()))
        .collect()
}

/// Objects are applied unforced (a conflict is reported, not fought); statuses forced.
const APPLY: &str = "?&fieldManager=stunner-gateway-operator";
const FORCE: &str = "?&force=true&fieldManager=stunner-gateway-operator";

#[tokio::test]
async fn create_writes_objects_and_statuses_with_server_side_apply() {
    let (client, log) = mock(echo);
    let w = world("managed-basic");
    let d = render(&w, &RenderOptions::default());
    let written = Updater::new(client, Metrics::default()).apply(&d, &w).await;
    assert_eq!(
        (written.applied, written.statuses, written.errors),
        (2, 3, 0)
    );
    let p = |path: &str| ("PATCH".to_string(), format!("{path}{APPLY}"));
    let f = |path: &str| ("PATCH".to_string(), format!("{path}{FORCE}"));
    assert_eq!(
        requests(&log),
        vec![
            p("/api/v1/namespaces/stunner/services/udp-gateway"),
            p("/apis/apps/v1/namespaces/stunner/deployments/udp-gateway"),
            f("/apis/gateway.networking.k8s.io/v1/namespaces/stunner/gateways/udp-gateway/status"),
            f("/apis/gateway.networking.k8s.io/v1/gatewayclasses/stunner-gatewayclass/status"),
            f("/apis/stunner.l7mp.io/v1/namespaces/stunner/udproutes/iperf-server/status"),
        ]
    );
    let bodies = log.lock().unwrap().clone();
    // Apply bodies are whole objects with their type; status bodies hold only status.
    assert_eq!(bodies[0].2["kind"], "Service");
    assert_eq!(bodies[0].2["spec"]["type"], "LoadBalancer");
    assert!(
        bodies[1].2["spec"].get("replicas").is_none(),
        "replicas must stay unowned"
    );
    assert_eq!(bodies[2].2["kind"], "Gateway");
    assert!(bodies[2].2.get("spec").is_none());
    assert_eq!(bodies[2].2["status"]["conditions"][0]["type"], "Accepted");
}

#[tokio::test]
async fn nothing_is_written_when_nothing_changed() {
    let (client, log) = mock(echo);
    let w = world("managed-basic");
    let d = render(&w, &RenderOptions::default());
    let w = stored(w, &d);
    let again = render(&w, &RenderOptions::default());
    let written = Updater::new(client, Metrics::default())
        .apply(&again, &w)
        .await;
    assert_eq!(written, Default::default());
    assert!(requests(&log).is_empty(), "{:?}", requests(&log));
}

#[tokio::test]
async fn a_changed_field_we_own_is_written_back_alone() {
    let (client, log) = mock(echo);
    let w = world("managed-basic");
    let d = render(&w, &RenderOptions::default());
    let mut w = stored(w, &d);
    let key = ("stunner".to_string(), "udp-gateway".to_string());
    std::sync::Arc::make_mut(w.services.get_mut(&key).unwrap())
        .spec
        .as_mut()
        .unwrap()
        .session_affinity = Some("None".into());
    let again = render(&w, &RenderOptions::default());
    Updater::new(client, Metrics::default())
        .apply(&again, &w)
        .await;
    assert_eq!(
        requests(&log),
        vec![(
            "PATCH".to_string(),
            format!("/api/v1/namespaces/stunner/services/udp-gateway{APPLY}")
        )]
    );
    assert_eq!(
        log.lock().unwrap()[0].2["spec"]["sessionAffinity"],
        "ClientIP"
    );
}

#[tokio::test]
async fn objects_of_a_removed_gateway_are_deleted() {
    let (client, log) = mock(echo);
    let w = world("deletes-objects-of-removed-gateway");
    let d = render(&w, &RenderOptions::default());
    let written = Updater::new(client, Metrics::default()).apply(&d, &w).await;
    assert_eq!(written.deleted, 1);
    let reqs = requests(&log);
    let deletes: Vec<_> = reqs.iter().filter(|(m, _)| m == "DELETE").collect();
    assert_eq!(
        deletes,
        vec![&(
            "DELETE".to_string(),
            "/apis/apps/v1/namespaces/stunner/deployments/old-gateway?".to_string()
        )]
    );
    assert_eq!(
        log.lock()
            .unwrap()
            .iter()
            .find(|(m, _, _)| m == "DELETE")
            .unwrap()
            .2["propagationPolicy"],
        "Background"
    );
}

#[tokio::test]
async fn a_failed_write_is_counted_and_the_rest_proceed() {
    let (client, log) = mock(|_, uri, body| {
        if uri.contains("/services/") {
            (
                500,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "boom", "reason": "InternalError", "code": 500, "metadata": {}}),
            )
        } else {
            echo("", uri, body)
        }
    });
    let w = world("managed-basic");
    let d = render(&w, &RenderOptions::default());
    let written = Updater::new(client, Metrics::default()).apply(&d, &w).await;
    assert_eq!(
        (written.applied, written.statuses, written.errors),
        (1, 3, 1)
    );
    assert_eq!(requests(&log).len(), 5);
}

fn lease(holder: &str, renewed: Timestamp) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "92062b70.l7mp.io", "namespace": "stunner-system", "resourceVersion": "7"},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "renewTime": renewed.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(), "leaseTransitions": 3}
    })
}

/// A renewTime that no longer changes (its holder stopped renewing).
fn stale() -> Timestamp {
    "2026-01-01T00:00:00Z".parse().unwrap()
}

/// The replica "me" competing for upstream's Lease.
fn elector(client: Client) -> Elector {
    Elector::new(
        client,
        "stunner-system",
        "92062b70.l7mp.io",
        "me",
        Timing::default(),
    )
}

#[tokio::test]
async fn leadership_is_not_taken_from_a_live_holder() {
    let (client, log) = mock(|m, _, b| {
        if m == "GET" {
            (200, lease("other", Timestamp::now()))
        } else {
            echo(m, "", b)
        }
    });
    let mut e = elector(client);
    let t0 = Instant::now();
    assert!(!e.try_acquire_or_renew(Timestamp::now(), t0).await.unwrap());
    // renewTime changes on every read: the holder is alive however late we look.
    assert!(
        !e.try_acquire_or_renew(Timestamp::now(), t0 + Duration::from_secs(60))
            .await
            .unwrap()
    );
    assert_eq!(
        requests(&log)[..1],
        vec![(
            "GET".to_string(),
            "/apis/coordination.k8s.io/v1/namespaces/stunner-system/leases/92062b70.l7mp.io"
                .to_string()
        )]
    );
}

#[tokio::test]
async fn an_expired_lease_is_taken_over_with_compare_and_swap() {
    let (client, log) = mock(|m, _, b| {
        if m == "GET" {
            (200, lease("other", stale()))
        } else {
            echo(m, "", b)
        }
    });
    let mut e = elector(client);
    let t0 = Instant::now();
    // Its record is new to us: it is live for a lease duration from now, whatever its
    // renewTime says; unchanged after that, it is taken over.
    assert!(!e.try_acquire_or_renew(Timestamp::now(), t0).await.unwrap());
    assert!(
        !e.try_acquire_or_renew(Timestamp::now(), t0 + Duration::from_secs(14))
            .await
            .unwrap()
    );
    assert!(
        e.try_acquire_or_renew(Timestamp::now(), t0 + Duration::from_secs(16))
            .await
            .unwrap()
    );
    let log = log.lock().unwrap().clone();
    assert_eq!((log[1].0.as_str(), log[2].0.as_str()), ("GET", "GET"));
    assert_eq!(log[3].0, "PUT");
    assert_eq!(log[3].2["metadata"]["resourceVersion"], "7");
    assert_eq!(log[3].2["spec"]["holderIdentity"], "me");
    assert_eq!(log[3].2["spec"]["leaseTransitions"], 4);
}

#[tokio::test]
async fn losing_the_race_for_a_lease_is_not_leadership() {
    let (client, _) = mock(|m, _, b| match m {
        "GET" => (200, lease("other", stale())),
        "PUT" => (
            409,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409, "message": "conflict", "metadata": {}}),
        ),
        _ => echo(m, "", b),
    });
    let mut e = elector(client);
    let t0 = Instant::now();
    assert!(!e.try_acquire_or_renew(Timestamp::now(), t0).await.unwrap());
    assert!(
        !e.try_acquire_or_renew(Timestamp::now(), t0 + Duration::from_secs(16))
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn a_missing_lease_is_created() {
    let (client, log) = mock(|m, _, b| match m {
        "GET" => (
            404,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found", "metadata": {}}),
        ),
        _ => echo(m, "", b),
    });
    let mut e = elector(client);
    assert!(
        e.try_acquire_or_renew(Timestamp::now(), Instant::now())
            .await
            .unwrap()
    );
    let log = log.lock().unwrap().clone();
    assert_eq!(
        (log[1].0.as_str(), log[1].1.as_str()),
        (
            "POST",
            "/apis/coordination.k8s.io/v1/namespaces/stunner-system/leases?"
        )
    );
}

static REFUSALS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Refuses the first two writes (403, as RBAC does), then accepts.
fn refuse_twice(m: &str, uri: &str, b: &Value) -> (u16, Value) {
    if m == "PATCH" && REFUSALS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 2 {
        return (
            403,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403, "message": "forbidden", "metadata": {}}),
        );
    }
    echo(m, uri, b)
}

/// A refused write is retried with backoff, without any new render, until it is written;
/// the metrics show the failures and then nothing left unwritten.
#[tokio::test]
async fn a_refused_write_is_retried_until_written() {
    let (client, log) = mock(refuse_twice);
    let mut w = world("managed-basic");
    let d = render(&w, &RenderOptions::default());
    // Only the Service differs from what is stored.
    let mut st = stored(w.clone(), &d);
    st.services.clear();
    w = st;
    let metrics = Metrics::default();
    let (desired_tx, desired_rx) = tokio::sync::watch::channel(None);
    let (_lead_tx, lead_rx) = tokio::sync::watch::channel(Lead::Always);
    let task = tokio::spawn(Updater::new(client, metrics.clone()).run(desired_rx, lead_rx));
    desired_tx
        .send(Some((1, Arc::new(d), Arc::new(w))))
        .unwrap();
    // 0.5 s, then 1 s of backoff.
    let deadline = Instant::now() + Duration::from_secs(5);
    while requests(&log).len() < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = requests(&log);
    assert_eq!(r.len(), 3, "{r:?}");
    assert!(
        r.iter()
            .all(|(m, u)| m == "PATCH" && u.contains("/services/udp-gateway"))
    );
    let text = metrics.text();
    assert!(
        text.contains("stunner_gateway_operator_unwritten_objects 0\n"),
        "{text}"
    );
    assert!(
        text.contains("stunner_gateway_operator_resource_operation_failures_total{kind=\"Service\",operation=\"apply\"} 2\n"),
        "{text}"
    );
    assert!(
        text.contains("stunner_gateway_operator_generation_last_acked 1\n"),
        "{text}"
    );
    task.abort();
}

/// A leader whose lease deadline has passed starts no write.
#[tokio::test]
async fn a_leader_past_its_deadline_writes_nothing() {
    let (client, log) = mock(echo);
    let w = world("managed-basic");
    let d = render(&w, &RenderOptions::default());
    let (_tx, lead) = tokio::sync::watch::channel(Lead::Until(Instant::now()));
    let written = Updater::new(client, Metrics::default())
        .with_lead(lead)
        .apply(&d, &w)
        .await;
    assert_eq!((written.applied, written.skipped), (0, 5));
    assert!(requests(&log).is_empty());
}

fn conflict_with(manager: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409,
        "message": format!("Apply failed with 1 conflict: conflict with \"{manager}\" using v1: .spec.sessionAffinity"),
        "details": {"causes": [{"reason": "FieldManagerConflict", "message": format!("conflict with \"{manager}\" using v1"), "field": ".spec.sessionAffinity"}]},
        "metadata": {}})
}

/// `kubectl edit` owns a field we render: one unforced apply, refused, reported; no force.
fn user_owns(m: &str, uri: &str, b: &Value) -> (u16, Value) {
    if m == "PATCH" && uri.contains("/services/") && !uri.contains("force=true") {
        return (409, conflict_with("kubectl-edit"));
    }
    echo(m, uri, b)
}

/// Upstream's operator (manager "manager") owns it: taken over with a forced apply.
fn upstream_owns(m: &str, uri: &str, b: &Value) -> (u16, Value) {
    if m == "PATCH" && uri.contains("/services/") && !uri.contains("force=true") {
        return (409, conflict_with("manager"));
    }
    echo(m, uri, b)
}

fn service_only() -> (stunner_gateway::Desired, World) {
    let w = world("managed-basic");
    let d = render(&w, &RenderOptions::default());
    let mut st = stored(w, &d);
    st.services.clear();
    (d, st)
}

#[tokio::test]
async fn a_conflict_with_another_manager_is_reported_not_forced() {
    let (client, log) = mock(user_owns);
    let (d, w) = service_only();
    let metrics = Metrics::default();
    let written = Updater::new(client, metrics.clone()).apply(&d, &w).await;
    assert_eq!(
        (written.applied, written.conflicts, written.errors),
        (0, 1, 0)
    );
    assert!(written.complete(), "a conflict is not retried");
    assert_eq!(
        requests(&log),
        vec![(
            "PATCH".to_string(),
            format!("/api/v1/namespaces/stunner/services/udp-gateway{APPLY}")
        )]
    );
    assert!(metrics.text().contains(
        "stunner_gateway_operator_resource_operation_conflicts_total{kind=\"Service\"} 1\n"
    ));
}

#[tokio::test]
async fn fields_of_the_upstream_operator_are_taken_over() {
    let (client, log) = mock(upstream_owns);
    let (d, w) = service_only();
    let written = Updater::new(client, Metrics::default()).apply(&d, &w).await;
    assert_eq!((written.applied, written.conflicts), (1, 0));
    let path = "/api/v1/namespaces/stunner/services/udp-gateway";
    assert_eq!(
        requests(&log),
        vec![
            ("PATCH".to_string(), format!("{path}{APPLY}")),
            ("PATCH".to_string(), format!("{path}{FORCE}"))
        ]
    );
}

/// The updater sees only the live objects a render writes: unrelated Services are not
/// copied, and against that subset nothing stored is written again.
#[tokio::test]
async fn the_updater_works_on_the_live_objects_it_writes_only() {
    let (client, log) = mock(echo);
    let w = world("managed-basic");
    let d = render(&w, &RenderOptions::default());
    let mut st = stored(w, &d);
    for i in 0..1000 {
        let mut s = k8s_openapi::api::core::v1::Service::default();
        s.metadata.namespace = Some(format!("ns-{}", i % 20));
        s.metadata.name = Some(format!("svc-{i}"));
        st.insert(stunner_gateway::Object::Service(s));
    }
    let live = stunner_gateway_operator::k8s::updater::live_subset(&d, &st);
    assert_eq!(live.services.len(), d.services.len());
    assert_eq!(live.deployments.len(), d.deployments.len());
    assert_eq!(live.gateways.len(), 1);
    assert!(live.nodes.is_empty() && live.endpoint_slices.is_empty());
    let written = Updater::new(client, Metrics::default())
        .apply(&d, &live)
        .await;
    assert_eq!(written, Default::default());
    assert!(requests(&log).is_empty());
}
