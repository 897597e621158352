//! Integration tests of the CDS server and client on loopback.
#![allow(clippy::unwrap_used)] // a test fails loudly by design

use std::net::SocketAddr;
use std::time::Duration;

use stunner_cds::client;
use stunner_cds::server::{ConfigStore, router};
use stunner_config::StunnerConfig;
use tokio::sync::mpsc;

fn config(id: &str, password: &str) -> StunnerConfig {
    let text = format!(
        "version: v1\nadmin: {{name: {id}}}\nauth: {{type: static, credentials: {{username: u, password: \"{password}\"}}}}\n\
         listeners: [{{name: {id}/udp, port: 3478, routes: [{id}/c]}}]\nclusters: [{{name: {id}/c, endpoints: [10.0.0.0/8]}}]"
    );
    StunnerConfig::from_str_with_env(&text, &|_: &str| None).unwrap()
}

async fn serve(store: ConfigStore, addr: &str) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind(addr).await.unwrap();
    let a = l.local_addr().unwrap();
    let t = tokio::spawn(async move {
        let _ = axum::serve(l, router(store)).await;
    });
    (a, t)
}

async fn http(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut b = String::new();
    s.read_to_string(&mut b).await.unwrap();
    let code = b.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, b.split_once("\r\n\r\n").unwrap().1.to_string())
}

#[tokio::test]
async fn get_one_list_and_license() {
    let store = ConfigStore::new();
    store.upsert(config("ns1/gw1", "p1"));
    store.upsert(config("ns1/gw2", "p2"));
    store.upsert(config("ns2/gw3", "p3"));
    let (addr, _t) = serve(store, "127.0.0.1:0").await;
    let c = client::load(&format!("http://{addr}"), "ns1/gw2", None)
        .await
        .unwrap();
    assert_eq!(c.auth.password(), Some("p2"));
    let err = client::load(&addr.to_string(), "ns1/nope", None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("404") && err.contains("Config not found for ID ns1/nope"),
        "{err}"
    );
    let (code, body) = http(addr, "/api/v1/configs/ns1").await;
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["version"], "v1");
    assert_eq!(v["items"].as_array().unwrap().len(), 2);
    let (_, body) = http(addr, "/api/v1/configs").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["items"].as_array().unwrap().len(), 3);
    let (code, body) = http(addr, "/api/v1/license").await;
    assert_eq!(code, 200);
    assert!(body.contains("subscriptionType"));
}

async fn next(rx: &mut mpsc::Receiver<StunnerConfig>) -> StunnerConfig {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn watch_gets_current_updates_and_deletions() {
    let store = ConfigStore::new();
    store.upsert(config("ns/gw", "one"));
    store.upsert(config("ns/other", "x"));
    let (addr, _t) = serve(store.clone(), "127.0.0.1:0").await;
    let (tx, mut rx) = mpsc::channel(8);
    tokio::spawn(client::watch(
        addr.to_string(),
        Some("ns/gw".into()),
        Some("node-a".into()),
        tx,
    ));
    assert_eq!(next(&mut rx).await.auth.password(), Some("one"));
    store.upsert(config("ns/other", "y")); // not ours: not sent
    store.upsert(config("ns/gw", "two"));
    assert_eq!(next(&mut rx).await.auth.password(), Some("two"));
    store.delete("ns/gw");
    let z = next(&mut rx).await;
    assert!(z.is_zero() && z.admin.name == "ns/gw");
}

#[tokio::test]
async fn watch_all_and_update_all() {
    let store = ConfigStore::new();
    let (addr, _t) = serve(store.clone(), "127.0.0.1:0").await;
    let (tx, mut rx) = mpsc::channel(8);
    tokio::spawn(client::watch(addr.to_string(), None, None, tx));
    tokio::time::sleep(Duration::from_millis(300)).await;
    store.update_all(vec![config("a/x", "1"), config("b/y", "2")]);
    let mut got = vec![
        next(&mut rx).await.admin.name,
        next(&mut rx).await.admin.name,
    ];
    got.sort();
    assert_eq!(got, vec!["a/x", "b/y"]);
    store.update_all(vec![config("b/y", "2")]);
    let z = next(&mut rx).await;
    assert!(z.is_zero() && z.admin.name == "a/x");
}

#[tokio::test]
async fn watch_reconnects_when_the_server_returns() {
    let store = ConfigStore::new();
    store.upsert(config("ns/gw", "one"));
    let (addr, task) = serve(store.clone(), "127.0.0.1:0").await;
    let (tx, mut rx) = mpsc::channel(8);
    tokio::spawn(client::watch(
        addr.to_string(),
        Some("ns/gw".into()),
        None,
        tx,
    ));
    assert_eq!(next(&mut rx).await.auth.password(), Some("one"));
    task.abort();
    tokio::time::sleep(Duration::from_millis(500)).await;
    store.upsert(config("ns/gw", "two"));
    let (_a2, _t2) = serve(store.clone(), &addr.to_string()).await;
    assert_eq!(next(&mut rx).await.auth.password(), Some("two"));
}

/// A self-signed certificate for 127.0.0.1 and localhost, written as PEM files.
fn cert(dir: &std::path::Path, tag: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (c, k) = (
        dir.join(format!("{tag}.crt")),
        dir.join(format!("{tag}.key")),
    );
    std::fs::write(&c, ck.cert.pem()).unwrap();
    std::fs::write(&k, ck.signing_key.serialize_pem()).unwrap();
    (c, k)
}

fn tempdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("cds-it-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

async fn serve_tls(
    store: ConfigStore,
    cert: &std::path::Path,
    key: &std::path::Path,
) -> SocketAddr {
    let tls = stunner_cds::tls::server_config(cert, key).unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    tokio::spawn(stunner_cds::tls::serve(l, router(store), Some(tls)));
    a
}

#[tokio::test]
async fn load_and_watch_over_tls_with_the_servers_ca() {
    let dir = tempdir("tls");
    let (crt, key) = cert(&dir, "server");
    let store = ConfigStore::new();
    store.upsert(config("ns1/gw1", "p1"));
    let addr = serve_tls(store.clone(), &crt, &key).await;
    let trust = client::Trust {
        ca_file: Some(crt.clone()),
        ca_pem: None,
    };
    let c = client::load_with(&format!("https://{addr}"), "ns1/gw1", None, &trust)
        .await
        .unwrap();
    assert_eq!(c.auth.password(), Some("p1"));
    // The CA as PEM text (what the operator renders into STUNNER_CDS_CA) does the same.
    let text = client::Trust {
        ca_file: None,
        ca_pem: Some(std::fs::read_to_string(&crt).unwrap()),
    };
    let c = client::load_with(&format!("https://{addr}"), "ns1/gw1", None, &text)
        .await
        .unwrap();
    assert_eq!(c.auth.password(), Some("p1"));
    let (tx, mut rx) = mpsc::channel(4);
    tokio::spawn(client::watch_with(
        format!("wss://{addr}"),
        Some("ns1/gw1".into()),
        None,
        tx,
        None,
        trust,
    ));
    assert_eq!(next(&mut rx).await.auth.password(), Some("p1"));
    store.upsert(config("ns1/gw1", "p2"));
    assert_eq!(next(&mut rx).await.auth.password(), Some("p2"));
    // Plaintext to a TLS server gets no config.
    assert!(
        client::load(&format!("http://{addr}"), "ns1/gw1", None)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_server_whose_certificate_does_not_verify_is_refused_in_one_line() {
    let dir = tempdir("wrong-ca");
    let (crt, key) = cert(&dir, "server");
    let (other, _) = cert(&dir, "other");
    let store = ConfigStore::new();
    store.upsert(config("ns1/gw1", "p1"));
    let addr = serve_tls(store, &crt, &key).await;
    let wrong = client::Trust {
        ca_file: Some(other),
        ca_pem: None,
    };
    let e = client::load_with(&format!("https://{addr}"), "ns1/gw1", None, &wrong)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&addr.to_string()) && e.contains("TLS") && e.contains("certificate"),
        "{e}"
    );
    assert!(!e.contains('\n'), "{e}");
    // The system's roots do not know a self-signed certificate either.
    let e = client::load(&format!("https://{addr}"), "ns1/gw1", None)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("certificate") || e.contains("CA"), "{e}");
    // A CA file that is not one names the file.
    let bad = dir.join("bad.pem");
    std::fs::write(&bad, "not a certificate").unwrap();
    let e = client::load_with(
        &format!("https://{addr}"),
        "ns1/gw1",
        None,
        &client::Trust {
            ca_file: Some(bad),
            ca_pem: None,
        },
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("bad.pem"), "{e}");
}

#[tokio::test]
async fn a_chunked_answer_is_read_whole() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = serde_json::to_string(&config("ns1/gw1", "chunky")).unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut req = [0u8; 1024];
        let _ = s.read(&mut req).await.unwrap();
        let mut out = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for part in body.as_bytes().chunks(7) {
            out.extend(format!("{:x}\r\n", part.len()).as_bytes());
            out.extend(part);
            out.extend(b"\r\n");
        }
        out.extend(b"0\r\n\r\n");
        s.write_all(&out).await.unwrap();
    });
    let c = client::load(&format!("http://{addr}"), "ns1/gw1", None)
        .await
        .unwrap();
    assert_eq!(c.auth.password(), Some("chunky"));
}
