//! The served API matches `api/openapi.yaml`: paths, parameters, status codes and the
//! required fields of the responses.
#![allow(clippy::unwrap_used)] // a test fails loudly by design

use std::collections::BTreeSet;

use serde_json::Value;
use stunner_auth_service::{AppState, router};
use stunner_config::StunnerConfig;

fn spec() -> Value {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/api/openapi.yaml")).unwrap();
    serde_saphyr::from_str(&text).unwrap()
}

fn resolve<'a>(spec: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => spec
            .pointer(&r.trim_start_matches('#').replace("~1", "/"))
            .unwrap(),
        None => v,
    }
}

fn params(spec: &Value, path: &str) -> BTreeSet<String> {
    spec["paths"][path]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| resolve(spec, p)["name"].as_str().unwrap().to_string())
        .collect()
}

async fn get(port: u16, path: &str, auth: Option<&str>) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let h = auth
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n{h}Connection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut b = String::new();
    s.read_to_string(&mut b).await.unwrap();
    (
        b.split_whitespace().nth(1).unwrap().parse().unwrap(),
        b.split_once("\r\n\r\n").unwrap().1.to_string(),
    )
}

fn required(spec: &Value, schema: &str) -> BTreeSet<String> {
    spec["components"]["schemas"][schema]["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

#[tokio::test]
async fn served_api_matches_the_openapi_document() {
    let spec = spec();
    let query_fields: BTreeSet<String> = [
        "service",
        "username",
        "ttl",
        "key",
        "namespace",
        "gateway",
        "listener",
        "public-addr",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(params(&spec, "/"), query_fields);
    let mut ice_fields = query_fields.clone();
    ice_fields.insert("iceTransportPolicy".into());
    assert_eq!(params(&spec, "/ice"), ice_fields);

    let state = AppState::new(Some("t0k".into()), None);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let s2 = state.clone();
    tokio::spawn(async move { axum::serve(l, router(s2)).await.unwrap() });

    // Before any config: not ready, and 500 as upstream.
    assert_eq!(get(port, "/readyz", None).await.0, 503);
    assert_eq!(get(port, "/?service=turn", Some("t0k")).await.0, 500);
    let c = StunnerConfig::from_str_with_env(
        "version: v1\nadmin: {name: ns/gw}\nauth: {type: ephemeral, credentials: {secret: s}}\nlisteners: [{name: ns/gw/udp, address: 10.0.0.1}]",
        &|_: &str| None,
    )
    .unwrap();
    state.apply(c);
    assert_eq!(get(port, "/readyz", None).await.0, 200);
    assert_eq!(get(port, "/healthz", None).await.0, 200);

    // Every status the document lists for / and /ice is one the service gives.
    for (path, code) in [
        ("/?service=turn", 200),
        ("/?service=stun", 400),
        ("/?service=turn&namespace=other", 404),
        ("/ice?service=turn&iceTransportPolicy=relay", 200),
        ("/ice?service=turn&iceTransportPolicy=bogus", 400),
    ] {
        let (got, body) = get(port, path, Some("t0k")).await;
        assert_eq!(got, code, "{path}: {body}");
        let p = path.split('?').next().unwrap();
        assert!(
            spec["paths"][p]["get"]["responses"]
                .get(code.to_string())
                .is_some(),
            "{path} {code} not documented"
        );
    }
    let (code, _) = get(port, "/?service=turn", None).await;
    assert_eq!(code, 401, "the token is required");
    assert!(spec["paths"]["/"]["get"]["responses"].get("401").is_some());

    let (_, body) = get(port, "/?service=turn&username=alice&ttl=60", Some("t0k")).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(keys(&v), required(&spec, "TurnAuthenticationToken"));
    assert!(v["username"].as_str().unwrap().ends_with(":alice"));
    let (_, body) = get(port, "/ice?service=turn", Some("t0k")).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(keys(&v), required(&spec, "IceConfig"));
    assert_eq!(keys(&v["iceServers"][0]), required(&spec, "IceServer"));
    assert_eq!(
        v["iceServers"][0]["urls"][0],
        "turn:10.0.0.1:3478?transport=udp"
    );

    // A deletion from the CDS removes the Gateway.
    state.apply(StunnerConfig::zero("ns/gw"));
    assert_eq!(get(port, "/?service=turn", Some("t0k")).await.0, 500);
}

/// The service follows a TLS CDS (`--cds-ca-file`) and hands out its credentials; with a
/// CA that does not verify the server it stays not ready and says why, once per retry.
#[tokio::test]
async fn follows_a_tls_cds_and_refuses_one_it_cannot_verify() {
    use std::process::{Command, Stdio};
    let dir = std::env::temp_dir().join(format!("auth-cds-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pem = |tag: &str| {
        let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
        let (c, k) = (
            dir.join(format!("{tag}.crt")),
            dir.join(format!("{tag}.key")),
        );
        std::fs::write(&c, ck.cert.pem()).unwrap();
        std::fs::write(&k, ck.signing_key.serialize_pem()).unwrap();
        (c, k)
    };
    let (crt, key) = pem("cds");
    let (other, _) = pem("other");
    let store = stunner_cds::server::ConfigStore::new();
    store.upsert(
        StunnerConfig::from_str_with_env(
            "version: v1\nadmin: {name: ns/gw}\nauth: {type: static, credentials: {username: u, password: over-tls}}\nlisteners: [{name: ns/gw/udp, address: 10.0.0.1, port: 3478}]",
            &|_: &str| None,
        )
        .unwrap(),
    );
    let tls = stunner_cds::tls::server_config(&crt, &key).unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cds = l.local_addr().unwrap();
    tokio::spawn(stunner_cds::tls::serve(
        l,
        stunner_cds::server::router(store),
        Some(tls),
    ));
    for (ca, good) in [(&crt, true), (&other, false)] {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let err = dir.join(format!("stderr-{good}"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_stunner-auth-service"))
            .args([
                "--address",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "--cds-server-address",
                &format!("https://{cds}"),
                "--cds-ca-file",
                ca.to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap();
        // The good case waits for ready; the bad one gives it the first connection and a
        // retry (1 s), then looks.
        let within = std::time::Duration::from_secs(if good { 10 } else { 3 });
        let deadline = std::time::Instant::now() + within;
        let mut ready = false;
        while std::time::Instant::now() < deadline && !ready {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            ready = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
                && get(port, "/readyz", None).await.0 == 200;
        }
        let log = std::fs::read_to_string(&err).unwrap();
        if good {
            assert!(ready, "not ready on the TLS CDS: {log}");
            let (code, body) = get(port, "/?service=turn", None).await;
            assert_eq!(code, 200, "{body}");
            assert!(body.contains("over-tls"), "{body}");
        } else {
            assert!(!ready, "ready on a CDS it cannot verify");
            assert!(
                log.contains("invalid peer certificate") && log.contains(&cds.to_string()),
                "{log}"
            );
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    let _ = std::fs::remove_dir_all(dir);
}
