//! stunnerd follows a CDS server: not ready before the first config, applies updates,
//! keeps its config while the server is down, resumes when it returns.

use std::time::{Duration, Instant};

use stunner_cds::server::{ConfigStore, router};
use stunner_config::StunnerConfig;
use stunner_turn::{Received, Request};

use crate::harness::*;

fn gw_config(port: u16, health: u16, password: &str) -> StunnerConfig {
    let text = config(
        port,
        health,
        &format!("  type: static\n  credentials: {{username: user, password: {password}}}"),
        "127.0.0.1/32",
    )
    .replace("admin:\n", "admin:\n  name: ns/gw\n");
    StunnerConfig::from_str_with_env(&text, &|_: &str| None).unwrap()
}

fn serve(
    rt: &tokio::runtime::Runtime,
    store: ConfigStore,
    addr: &str,
) -> (u16, tokio::task::JoinHandle<()>) {
    rt.block_on(async {
        let l = tokio::net::TcpListener::bind(addr).await.unwrap();
        let port = l.local_addr().unwrap().port();
        let t = tokio::spawn(async move {
            let _ = axum::serve(l, router(store)).await;
        });
        (port, t)
    })
}

fn wait_for(what: &str, log: &std::path::Path, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !ok() {
        assert!(
            Instant::now() < deadline,
            "{what}: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn follows_the_cds_server() {
    let _guard = DEFAULT_HEALTH_PORT
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let store = ConfigStore::new();
    let (cds, task) = serve(&rt, store.clone(), "127.0.0.1:0");
    let (port, health) = (free_port(), free_port());
    let (mut child, dir, log) = start_raw(
        "cds",
        &[
            "-w",
            "-c",
            &format!("http://127.0.0.1:{cds}"),
            "-i",
            "ns/gw",
        ],
    );
    // Watching, with no config yet: alive, not ready (on the zero config's port).
    wait_for("zero config health", &log, || {
        http_get(8086, "/live").is_some()
    });
    assert_eq!(http_get(8086, "/ready").map(|r| r.0), Some(503));

    store.upsert(gw_config(port, health, "one"));
    wait_for("ready after the first config", &log, || {
        http_get(health, "/ready").map(|r| r.0) == Some(200)
    });
    let mut c = TurnClient::new(port, "user", "one");
    assert!(matches!(
        c.request(Request::Allocate { lifetime: None }),
        Received::Allocated { .. }
    ));

    // The server goes away: stunnerd keeps its config and its allocations.
    task.abort();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        c.request(Request::Refresh { lifetime: 600 }),
        Received::Refreshed { lifetime: 600 }
    );
    assert_eq!(http_get(health, "/ready").map(|r| r.0), Some(200));

    // It comes back with a new password: stunnerd reconnects and applies it.
    store.upsert(gw_config(port, health, "two"));
    let (_cds2, _task2) = serve(&rt, store.clone(), &format!("127.0.0.1:{cds}"));
    c.client.set_credentials("user", "two");
    wait_for("new password applied", &log, || {
        c.request(Request::Refresh { lifetime: 600 }) == Received::Refreshed { lifetime: 600 }
    });
    // A deletion (zero config) is ignored by a running stunnerd.
    store.delete("ns/gw");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        c.request(Request::Refresh { lifetime: 600 }),
        Received::Refreshed { lifetime: 600 }
    );

    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn one_shot_load_from_cds() {
    // A watching (or not yet loaded) stunnerd serves its zero config on port 8086.
    let _guard = DEFAULT_HEALTH_PORT
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let store = ConfigStore::new();
    let (port, health) = (free_port(), free_port());
    store.upsert(gw_config(port, health, "pw"));
    let (cds, _task) = serve(&rt, store, "127.0.0.1:0");
    let (mut child, dir, log) =
        start_raw("cds1", &["-c", &format!("127.0.0.1:{cds}"), "-i", "ns/gw"]);
    wait_for("ready", &log, || {
        http_get(health, "/ready").map(|r| r.0) == Some(200)
    });
    let _ = child.kill();
    let _ = child.wait();
    // An unknown id is a clear error.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stunnerd"))
        .args(["-c", &format!("127.0.0.1:{cds}"), "-i", "ns/nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Config not found for ID ns/nope"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

/// A self-signed certificate for 127.0.0.1 as PEM files in `dir`: (cert, key).
fn pem_cert(dir: &std::path::Path, tag: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let (c, k) = (
        dir.join(format!("{tag}.crt")),
        dir.join(format!("{tag}.key")),
    );
    std::fs::write(&c, ck.cert.pem()).unwrap();
    std::fs::write(&k, ck.signing_key.serialize_pem()).unwrap();
    (c, k)
}

#[test]
fn follows_a_tls_cds_server_and_refuses_one_it_cannot_verify() {
    // A watching (or not yet loaded) stunnerd serves its zero config on port 8086.
    let _guard = DEFAULT_HEALTH_PORT
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = stunner_test_support::tempdir("cds-tls");
    let (crt, key) = pem_cert(&dir, "cds");
    let (other, _) = pem_cert(&dir, "other");
    let store = ConfigStore::new();
    let (port, health) = (free_port(), free_port());
    store.upsert(gw_config(port, health, "over-tls"));
    let tls = stunner_cds::tls::server_config(&crt, &key).unwrap();
    let cds = rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = l.local_addr().unwrap();
        tokio::spawn(stunner_cds::tls::serve(l, router(store.clone()), Some(tls)));
        a
    });
    // Watching over wss:// (an https:// origin), verified against the CDS's CA.
    let (mut child, tmp, log) = start_raw(
        "cds-tls",
        &[
            "-w",
            "-c",
            &format!("https://{cds}"),
            "-i",
            "ns/gw",
            "--cds-ca-file",
            crt.to_str().unwrap(),
        ],
    );
    wait_for("ready on the config from the TLS CDS", &log, || {
        http_get(health, "/ready").map(|r| r.0) == Some(200)
    });
    let mut c = TurnClient::new(port, "user", "over-tls");
    assert!(matches!(
        c.request(Request::Allocate { lifetime: None }),
        Received::Allocated { .. }
    ));
    // An update arrives over the same TLS watch.
    store.upsert(gw_config(port, health, "rotated"));
    c.client.set_credentials("user", "rotated");
    wait_for("the update over TLS", &log, || {
        c.request(Request::Refresh { lifetime: 600 }) == Received::Refreshed { lifetime: 600 }
    });
    let _ = child.kill();
    let _ = child.wait();
    // One-shot loads: the right CA works; a wrong one, or none (the system's roots do not
    // know a self-signed certificate), fails in one line naming the server.
    let load = |ca: Option<&std::path::Path>| {
        let mut args = vec![
            "-d".to_string(),
            "-c".into(),
            format!("https://{cds}"),
            "-i".into(),
            "ns/gw".into(),
        ];
        if let Some(ca) = ca {
            args.extend(["--cds-ca-file".into(), ca.display().to_string()]);
        }
        std::process::Command::new(env!("CARGO_BIN_EXE_stunnerd"))
            .args(&args)
            .output()
            .unwrap()
    };
    let ok = load(Some(&crt));
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    for ca in [Some(other.as_path()), None] {
        let out = load(ca);
        assert_eq!(out.status.code(), Some(1), "{ca:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{ca:?}: {err}");
        assert!(
            err.contains(&cds.to_string()) && err.contains("certificate"),
            "{ca:?}: {err}"
        );
    }
    let _ = std::fs::remove_dir_all(tmp);
    let _ = std::fs::remove_dir_all(dir);
}
