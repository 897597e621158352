//! The auth service and stunnerd fed by the same CDS: the credentials it hands out are
//! accepted by stunnerd (ephemeral and static), and its /ice answer, used as is by
//! headless Chromium, opens a relayed data channel.

use std::time::{Duration, Instant};

use stunner_auth_service::{AppState, router as auth_router};
use stunner_cds::server::{ConfigStore, router as cds_router};
use stunner_config::StunnerConfig;
use stunner_turn::{Received, Request};

use crate::browser::{page_with, run_browser_with};
use crate::harness::*;

fn gw(port: u16, health: u16, auth: &str) -> StunnerConfig {
    let text = format!(
        "version: v1
admin: {{name: ns/gw, healthcheck_endpoint: \"http://127.0.0.1:{health}\"}}
auth: {auth}
listeners:
  - {{name: ns/gw/udp, protocol: TURN-UDP, address: 127.0.0.1, port: {port}, routes: [ns/peers]}}
  - {{name: ns/gw/tcp, protocol: TURN-TCP, address: 127.0.0.1, port: {port}, routes: [ns/peers]}}
clusters:
  - {{name: ns/peers, endpoints: [127.0.0.1/32]}}
"
    );
    StunnerConfig::from_str_with_env(&text, &|_: &str| None).unwrap()
}

fn get_json(port: u16, path: &str) -> serde_json::Value {
    let (code, body) = http_get(port, path).unwrap();
    assert_eq!(code, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn auth_service_credentials_work_on_stunnerd() {
    let _guard = DEFAULT_HEALTH_PORT
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (port, health) = (free_port(), free_port());
    let store = ConfigStore::new();
    store.upsert(gw(
        port,
        health,
        "{type: ephemeral, credentials: {secret: shared-secret}}",
    ));
    let state = AppState::new(None, None);
    let (cds, auth) = rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let cds = l.local_addr().unwrap().port();
        let s = store.clone();
        tokio::spawn(async move { axum::serve(l, cds_router(s)).await.unwrap() });
        // The auth service watches every config, as in a cluster.
        let (tx, mut rx) = tokio::sync::mpsc::channel(8);
        tokio::spawn(stunner_cds::client::watch(
            format!("127.0.0.1:{cds}"),
            None,
            None,
            tx,
        ));
        let feed = state.clone();
        tokio::spawn(async move {
            while let Some(c) = rx.recv().await {
                feed.apply(c);
            }
        });
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let auth = l.local_addr().unwrap().port();
        let st = state.clone();
        tokio::spawn(async move { axum::serve(l, auth_router(st)).await.unwrap() });
        (cds, auth)
    });
    let (mut child, dir, log) = start_raw(
        "auth",
        &["-w", "-c", &format!("127.0.0.1:{cds}"), "-i", "ns/gw"],
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while http_get(health, "/ready").map(|r| r.0) != Some(200)
        || http_get(auth, "/readyz").map(|r| r.0) != Some(200)
    {
        assert!(
            Instant::now() < deadline,
            "not ready: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Ephemeral credentials.
    let v = get_json(auth, "/?service=turn&username=alice&ttl=3600");
    assert_eq!(v["uris"][0], format!("turn:127.0.0.1:{port}?transport=udp"));
    let user = v["username"].as_str().unwrap();
    assert!(user.ends_with(":alice"));
    let mut c = TurnClient::new(port, user, v["password"].as_str().unwrap());
    assert!(matches!(
        c.request(Request::Allocate { lifetime: None }),
        Received::Allocated { .. }
    ));

    // Chromium uses the /ice answer as its RTCConfiguration.
    let ice = get_json(auth, "/ice?service=turn&iceTransportPolicy=relay");
    let result = run_browser_with(page_with(&ice.to_string()), &[]);
    assert!(
        result.contains("msg=hello+through+stunnerd") && result.contains("pair=relay%2Frelay"),
        "{result}"
    );

    // Static credentials, after the operator switches the Gateway over.
    store.upsert(gw(
        port,
        health,
        "{type: static, credentials: {username: fixed, password: s3cret}}",
    ));
    let deadline = Instant::now() + Duration::from_secs(10);
    let v = loop {
        let v = get_json(auth, "/?service=turn");
        if v["username"] == "fixed" {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "auth service never saw the update: {v}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut c2 = TurnClient::new(port, "fixed", v["password"].as_str().unwrap());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !matches!(
        c2.request(Request::Allocate { lifetime: None }),
        Received::Allocated { .. }
    ) {
        assert!(
            Instant::now() < deadline,
            "stunnerd never took the static credentials"
        );
        c2 = TurnClient::new(port, "fixed", v["password"].as_str().unwrap());
        std::thread::sleep(Duration::from_millis(200));
    }

    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(dir);
}
