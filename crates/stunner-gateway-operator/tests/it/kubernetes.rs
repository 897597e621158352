//! End to end against the in-repo fake API server: the operator binary watches a
//! Gateway, UDPRoute and backend EndpointSlice, writes the Deployment, Service and
//! statuses, and a real stunnerd that takes its config from the operator's CDS relays a
//! TURN client's traffic to the backend peer.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stunner_turn::Received;

use crate::support::{EchoPeer, TurnClient, free_port, stunnerd, tempdir};
use fake_kube_api::FakeApi;

struct Operator(Child);

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn seed(api: &FakeApi, turn_port: u16, peer_port: u16) {
    let gw = "/apis/gateway.networking.k8s.io/v1";
    let st = "/apis/stunner.l7mp.io/v1";
    api.put(&format!("{gw}/gatewayclasses"), json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
        "metadata": {"name": "stunner-gatewayclass"},
        "spec": {"controllerName": "stunner.l7mp.io/gateway-operator",
            "parametersRef": {"group": "stunner.l7mp.io", "kind": "GatewayConfig", "name": "stunner-gatewayconfig", "namespace": "stunner"}}}));
    api.put(&format!("{st}/namespaces/stunner/gatewayconfigs"), json!({
        "apiVersion": "stunner.l7mp.io/v1", "kind": "GatewayConfig",
        "metadata": {"name": "stunner-gatewayconfig", "namespace": "stunner"},
        "spec": {"realm": "stunner.l7mp.io", "authType": "static", "userName": "user-1", "password": "pass-1"}}));
    api.put(
        &format!("{st}/dataplanes"),
        json!({
        "apiVersion": "stunner.l7mp.io/v1", "kind": "Dataplane", "metadata": {"name": "default"},
        "spec": {"image": "docker.io/l7mp/stunnerd:latest", "disableHealthCheck": true}}),
    );
    api.put(
        &format!("{gw}/namespaces/stunner/gateways"),
        json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "udp-gateway", "namespace": "stunner"},
        "spec": {"gatewayClassName": "stunner-gatewayclass", "addresses": [{"value": "127.0.0.1"}],
            "listeners": [{"name": "udp-listener", "port": turn_port, "protocol": "TURN-UDP"}]}}),
    );
    api.put(&format!("{st}/namespaces/stunner/udproutes"), json!({
        "apiVersion": "stunner.l7mp.io/v1", "kind": "UDPRoute",
        "metadata": {"name": "media", "namespace": "stunner"},
        "spec": {"parentRefs": [{"name": "udp-gateway"}],
            "rules": [{"backendRefs": [{"name": "media", "namespace": "default", "port": peer_port}]}]}}));
    api.put("/api/v1/namespaces/default/services", json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "media", "namespace": "default"},
        "spec": {"clusterIP": "None", "ports": [{"port": peer_port, "protocol": "UDP"}]}}));
    api.put("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices", json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "media-1", "namespace": "default", "labels": {"kubernetes.io/service-name": "media"}},
        "addressType": "IPv4", "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": true}}]}));
}

/// Starts the operator binary against `api`: CDS on `cds_port`, metrics on
/// `metrics_port` (or off), a 50 ms throttle, quiet logs, plus `extra` flags and `env`.
fn start_operator(
    api: &FakeApi,
    tag: &str,
    cds_port: u16,
    metrics_port: Option<u16>,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Child {
    let kubeconfig = tempdir(tag).join("config");
    api.write_kubeconfig(&kubeconfig);
    let metrics = metrics_port.map_or_else(|| "0".to_string(), |p| format!("127.0.0.1:{p}"));
    Command::new(env!("CARGO_BIN_EXE_stunner-gateway-operator"))
        .env("KUBECONFIG", &kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .envs(env.iter().copied())
        .args(extra)
        .args([
            "--config-discovery-address",
            &format!("127.0.0.1:{cds_port}"),
            "--health-probe-bind-address",
            &format!("127.0.0.1:{}", free_port()),
            "--metrics-bind-address",
            &metrics,
            "--throttle-timeout",
            "50ms",
            "--zap-log-level",
            "warn",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

fn lease(holder: &str, seconds: u32) -> Value {
    let now = k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "92062b70.l7mp.io", "namespace": "stunner-system"},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": seconds, "renewTime": now, "acquireTime": now}})
}

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/stunner-system/leases";

/// Only the Lease holder writes; every replica serves CDS. A follower takes over an
/// expired Lease, and stops writing when another replica holds it again.
#[test]
fn only_the_leader_writes() {
    let api = FakeApi::start_local();
    seed(&api, free_port(), 9);
    api.put(LEASES, lease("other-replica", 2));
    let cds_port = free_port();
    let _op = Operator(start_operator(
        &api,
        "leader",
        cds_port,
        None,
        &["--leader-elect"],
        &[("POD_NAME", "replica-under-test")],
    ));
    let deployment = "/apis/apps/v1/namespaces/stunner/deployments/udp-gateway";
    // A follower serves the rendered config over CDS but writes nothing.
    wait_for("the CDS config", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", cds_port))
            .ok()
            .and_then(|mut s| {
                use std::io::{Read, Write};
                s.write_all(b"GET /api/v1/configs/stunner/udp-gateway HTTP/1.0\r\n\r\n")
                    .ok()?;
                let mut b = String::new();
                s.read_to_string(&mut b).ok()?;
                b.contains("\"stunner/udp-gateway\"").then_some(())
            })
            .is_some()
    });
    assert!(
        api.get(deployment).is_none(),
        "a follower wrote the Deployment"
    );
    // The holder stops renewing: the Lease expires and the replica takes over.
    wait_for("the takeover", Duration::from_secs(20), || {
        api.get(deployment).is_some()
    });
    assert_eq!(
        api.get(&format!("{LEASES}/92062b70.l7mp.io")).unwrap()["spec"]["holderIdentity"],
        "replica-under-test"
    );
    // Another replica holds the Lease again: changes are no longer written.
    api.put(LEASES, lease("other-replica", 60));
    std::thread::sleep(Duration::from_secs(4)); // one renewal period (lease duration / 5) and more
    let gw = "/apis/gateway.networking.k8s.io/v1/namespaces/stunner/gateways";
    let mut g = api.get(&format!("{gw}/udp-gateway")).unwrap();
    g["metadata"]["annotations"] = json!({"stunner.l7mp.io/disable-session-affinity": "true"});
    api.put(gw, g);
    std::thread::sleep(Duration::from_secs(2));
    let svc = api
        .get("/api/v1/namespaces/stunner/services/udp-gateway")
        .unwrap();
    assert_eq!(
        svc["spec"]["sessionAffinity"], "ClientIP",
        "a replica that lost the Lease wrote"
    );
}

fn condition(obj: &Value, ty: &str) -> Option<String> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == ty)
        .map(|c| c["status"].as_str().unwrap_or("").to_string())
}

#[test]
fn operator_against_fake_api_feeds_stunnerd_over_cds() {
    let api = FakeApi::start_local();
    let echo = EchoPeer::start();
    let peer = echo.addr;
    let turn_port = free_port();
    seed(&api, turn_port, peer.port());
    let cds_port = free_port();
    let cds = format!("127.0.0.1:{cds_port}");
    let _op = Operator(start_operator(&api, "e2e", cds_port, None, &[], &[]));

    // The operator writes the dataplane objects and the statuses.
    wait_for("the Deployment", Duration::from_secs(30), || {
        api.get("/apis/apps/v1/namespaces/stunner/deployments/udp-gateway")
            .is_some()
    });
    let dep = api
        .get("/apis/apps/v1/namespaces/stunner/deployments/udp-gateway")
        .unwrap();
    let env = &dep["spec"]["template"]["spec"]["containers"][0]["env"];
    assert!(
        env.as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "STUNNER_CONFIG_ORIGIN"
                && e["value"] == "http://stunner-config-discovery.stunner-system.svc:13478")
    );
    let svc = api
        .get("/api/v1/namespaces/stunner/services/udp-gateway")
        .unwrap();
    assert_eq!(svc["spec"]["type"], "LoadBalancer");
    assert_eq!(
        svc["metadata"]["ownerReferences"][0]["uid"],
        "uid-udp-gateway"
    );
    wait_for("the Gateway status", Duration::from_secs(10), || {
        api.get("/apis/gateway.networking.k8s.io/v1/namespaces/stunner/gateways/udp-gateway")
            .is_some_and(|g| condition(&g, "Programmed").as_deref() == Some("True"))
    });
    // Statuses are written one after the other; wait for the last ones too.
    wait_for("the UDPRoute status", Duration::from_secs(10), || {
        api.get("/apis/stunner.l7mp.io/v1/namespaces/stunner/udproutes/media")
            .is_some_and(|r| r["status"]["parents"][0]["conditions"][0]["status"] == "True")
    });
    wait_for("the GatewayClass status", Duration::from_secs(10), || {
        api.get("/apis/gateway.networking.k8s.io/v1/gatewayclasses/stunner-gatewayclass")
            .is_some_and(|c| condition(&c, "Accepted").as_deref() == Some("True"))
    });

    // A real stunnerd fed from the operator's CDS relays to the backend.
    stunnerd(&[
        "-c",
        &cds,
        "-i",
        "stunner/udp-gateway",
        "-w",
        "-l",
        "all:WARN",
    ]);
    let mut client = TurnClient::new(turn_port, "user-1", "pass-1");
    let r = client.allocate(Duration::from_secs(20));
    assert!(matches!(r, Received::Allocated { .. }), "allocate: {r:?}");
    assert!(
        client.bind_and_echo(0x4000, peer),
        "no echo through the relay"
    );

    // A backend change in the API (the endpoint goes away) reaches stunnerd: the peer is
    // no longer allowed.
    let rv_before = api
        .get("/apis/apps/v1/namespaces/stunner/deployments/udp-gateway")
        .unwrap()["metadata"]["resourceVersion"]
        .clone();
    api.put("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices", json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "media-1", "namespace": "default", "labels": {"kubernetes.io/service-name": "media"}},
        "addressType": "IPv4", "endpoints": [{"addresses": ["10.244.9.9"]}]}));
    let mut denied = TurnClient::new(turn_port, "user-1", "pass-1");
    assert!(matches!(
        denied.allocate(Duration::from_secs(5)),
        Received::Allocated { .. }
    ));
    wait_for("the peer to be refused", Duration::from_secs(20), || {
        matches!(
            denied.request(stunner_turn::Request::CreatePermission { peers: vec![peer] }),
            Received::Failed { code: 403, .. }
        )
    });
    // Nothing about the Deployment changed, so it was not written again.
    let rv_after = api
        .get("/apis/apps/v1/namespaces/stunner/deployments/udp-gateway")
        .unwrap()["metadata"]["resourceVersion"]
        .clone();
    assert_eq!(
        rv_before, rv_after,
        "the Deployment was rewritten without a change"
    );
}

fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .ok()?;
    let mut b = String::new();
    s.read_to_string(&mut b).ok()?;
    Some(b)
}

/// Metrics are served, and with `--enable-finalizer` a SIGTERM leaves the Gateways
/// marked unavailable and their dataplanes deleted.
#[test]
fn metrics_and_the_finalizer() {
    let api = FakeApi::start_local();
    seed(&api, free_port(), 9);
    let metrics_port = free_port();
    let mut op = start_operator(
        &api,
        "finalizer",
        free_port(),
        Some(metrics_port),
        &["--enable-finalizer"],
        &[],
    );
    let deployment = "/apis/apps/v1/namespaces/stunner/deployments/udp-gateway";
    let service = "/api/v1/namespaces/stunner/services/udp-gateway";
    wait_for("the Deployment", Duration::from_secs(30), || {
        api.get(deployment).is_some()
    });
    wait_for("an acked generation", Duration::from_secs(10), || {
        http_get(metrics_port, "/metrics")
            .is_some_and(|m| m.contains("stunner_gateway_operator_generation_last_acked 1"))
    });
    let m = http_get(metrics_port, "/metrics").unwrap();
    for name in [
        "stunner_gateway_operator_render_total",
        "stunner_gateway_operator_render_time_seconds_count",
        "stunner_gateway_operator_update_total{result=\"success\"}",
        "stunner_gateway_operator_update_time_seconds_sum",
        "stunner_gateway_operator_resource_operations_total{kind=\"Deployment\",operation=\"apply\"} 1",
        "stunner_gateway_operator_renderer_loop_last_active_timestamp_seconds",
    ] {
        assert!(m.contains(name), "{name} missing from:\n{m}");
    }
    let _ = Command::new("kill")
        .args(["-TERM", &op.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if op.try_wait().unwrap().is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the operator did not exit on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        api.get(deployment).is_none(),
        "the Deployment was not deleted"
    );
    assert!(api.get(service).is_none(), "the Service was not deleted");
    let gw = api
        .get("/apis/gateway.networking.k8s.io/v1/namespaces/stunner/gateways/udp-gateway")
        .unwrap();
    assert_eq!(condition(&gw, "Programmed").as_deref(), Some("False"));
    let msg = gw["status"]["conditions"][0]["message"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(msg.contains("operator unavailable"), "{msg}");
}

/// The endpoint addresses of the first cluster of `stunner/udp-gateway`'s config on the
/// CDS, without the port range suffix (`10.0.0.1:<9-9>`; IPv4 only).
fn cds_cluster_endpoints(cds_port: u16) -> Option<Vec<String>> {
    let body = http_get(cds_port, "/api/v1/configs/stunner/udp-gateway")?;
    let (_, json) = body.split_once("\r\n\r\n")?;
    let cfg: Value = serde_json::from_str(json).ok()?;
    let eps = cfg["clusters"][0]["endpoints"].as_array()?;
    let ip = |e: &Value| {
        e.as_str()
            .map(|s| s.split(':').next().unwrap_or(s).to_string())
    };
    Some(eps.iter().filter_map(ip).collect())
}

fn put_endpoints(api: &FakeApi, ips: &[&str]) {
    let addresses: Vec<Value> = ips.iter().map(|ip| json!({"ip": ip})).collect();
    api.put("/api/v1/namespaces/default/endpoints", json!({
        "apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "media", "namespace": "default"},
        "subsets": [{"addresses": addresses, "notReadyAddresses": [{"ip": "10.244.5.5"}]}]}));
}

/// `--disable-endpontslice-controller` takes backend addresses from v1 Endpoints (ready
/// and not ready), not from the EndpointSlices that are also there.
#[test]
fn endpoints_instead_of_endpoint_slices_when_disabled() {
    let api = FakeApi::start_local();
    seed(&api, free_port(), 9); // its EndpointSlice says 127.0.0.1
    put_endpoints(&api, &["10.244.1.1"]);
    let cds_port = free_port();
    let _op = Operator(start_operator(
        &api,
        "no-eps",
        cds_port,
        None,
        &["--disable-endpontslice-controller"],
        &[],
    ));
    wait_for(
        "the Endpoints addresses on the CDS",
        Duration::from_secs(20),
        || cds_cluster_endpoints(cds_port).is_some_and(|e| e == ["10.244.1.1", "10.244.5.5"]),
    );
}

/// An API that refuses EndpointSlices (RBAC without `endpointslices`, or a cluster that
/// does not serve them) makes the operator fall back to v1 Endpoints, and watch them.
#[test]
fn falls_back_to_endpoints_when_endpoint_slices_are_refused() {
    let api = FakeApi::start_local();
    api.refuse("/apis/discovery.k8s.io/v1/endpointslices", 403);
    seed(&api, free_port(), 9);
    put_endpoints(&api, &["10.244.1.1"]);
    let cds_port = free_port();
    let _op = Operator(start_operator(&api, "eps-403", cds_port, None, &[], &[]));
    wait_for(
        "the Endpoints addresses on the CDS",
        Duration::from_secs(20),
        || cds_cluster_endpoints(cds_port).is_some_and(|e| e == ["10.244.1.1", "10.244.5.5"]),
    );
    // A change of the Endpoints reaches the CDS: the fallback watches, not only lists.
    put_endpoints(&api, &["10.244.1.1", "10.244.1.2"]);
    wait_for(
        "the new address on the CDS",
        Duration::from_secs(20),
        || {
            cds_cluster_endpoints(cds_port)
                .is_some_and(|e| e == ["10.244.1.1", "10.244.1.2", "10.244.5.5"])
        },
    );
}
