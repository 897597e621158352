//! stunnerctl against a CDS server, a stunnerd and an auth service on loopback.
#![allow(clippy::unwrap_used)] // a test fails loudly by design

use std::process::Command;
use std::time::Duration;

use clap::Parser;
use stunner_config::StunnerConfig;

use stunner_test_support::free_port;

fn ctl(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_stunnerctl"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn config_status_auth_and_license() {
    let (port, health) = (free_port(), free_port());
    let text = format!(
        "version: v1
admin: {{name: ns/gw, healthcheck_endpoint: \"http://127.0.0.1:{health}\"}}
auth: {{type: static, credentials: {{username: alice, password: hunter2}}}}
listeners:
  - {{name: ns/gw/udp, address: 127.0.0.1, public_address: 1.2.3.4, port: {port}, routes: [ns/media]}}
clusters:
  - {{name: ns/media, endpoints: [10.0.0.0/8]}}
"
    );
    let cfg = StunnerConfig::from_str_with_env(&text, &|_: &str| None).unwrap();
    let other = StunnerConfig::from_str_with_env(
        "version: v1\nadmin: {name: other/gw2}\nauth: {type: ephemeral, credentials: {secret: s3cr3t}}",
        &|_: &str| None,
    )
    .unwrap();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store = stunner_cds::server::ConfigStore::new();
    store.upsert(cfg.clone());
    store.upsert(other);
    let store2 = store.clone();
    let auth_state = stunner_auth_service::AppState::new(None, None);
    auth_state.apply(cfg.clone());
    let (cds, auth) = rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let cds = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            axum::serve(l, stunner_cds::server::router(store))
                .await
                .unwrap()
        });
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let auth = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            axum::serve(l, stunner_auth_service::router(auth_state))
                .await
                .unwrap()
        });
        (cds, auth)
    });
    // A stunnerd running the same config, for `status`.
    let path = std::env::temp_dir().join(format!("stunnerctl-it-{}.conf", std::process::id()));
    std::fs::write(&path, &text).unwrap();
    let args = stunnerd::cli::Args::parse_from([
        "stunnerd",
        "-c",
        path.to_str().unwrap(),
        "-l",
        "all:WARN",
    ]);
    stunnerd::run::spawn(args);
    let cds_addr = format!("127.0.0.1:{cds}");
    let base = ["--cds-server-address", cds_addr.as_str(), "-n", "ns"];

    // config: summary, masked.
    let (ok, out, err) = ctl(&[&base[..], &["config", "gw"]].concat());
    assert!(ok, "{err}");
    assert!(out.contains("Gateway: ns/gw"), "{out}");
    assert!(
        out.contains("Authentication type: static, username/password: <SECRET>/<SECRET>"),
        "{out}"
    );
    assert!(out.contains("ICE URI: turn:1.2.3.4:"), "{out}");
    assert!(out.contains("Endpoints: [10.0.0.0/8]"), "{out}");
    assert!(!out.contains("hunter2") && !out.contains("alice"), "{out}");
    // JSON and YAML, masked unless asked.
    let (_, out, _) = ctl(&[&base[..], &["config", "gw", "-o", "json"]].concat());
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["auth"]["credentials"]["password"], "<SECRET>");
    let (_, out, _) = ctl(&[&base[..], &["config", "gw", "-o", "json", "--show-secrets"]].concat());
    assert!(out.contains("hunter2"));
    let (_, out, _) = ctl(&[&base[..], &["config", "gw", "-o", "yaml"]].concat());
    assert!(
        out.contains("loglevel: all:INFO") && out.contains("<SECRET>") && !out.contains("hunter2"),
        "{out}"
    );
    let (_, out, _) = ctl(&[
        &base[..],
        &["config", "gw", "-o", "jsonpath={.listeners[0].name}"],
    ]
    .concat());
    assert_eq!(out.trim(), "ns/gw/udp");
    // A namespace, or all of them.
    let (_, out, _) = ctl(&[&base[..], &["config"]].concat());
    assert!(out.contains("ns/gw") && !out.contains("other/gw2"), "{out}");
    let (_, out, _) = ctl(&[&base[..], &["config", "-a"]].concat());
    assert!(
        out.contains("ns/gw") && out.contains("other/gw2") && !out.contains("s3cr3t"),
        "{out}"
    );
    // An unknown gateway: a clear error.
    let (ok, _, err) = ctl(&[&base[..], &["config", "nope"]].concat());
    assert!(
        !ok && err.contains("Config not found for ID ns/nope"),
        "{err}"
    );

    // status, from stunnerd's /status.
    let pod = format!("127.0.0.1:{health}");
    let mut out = String::new();
    for _ in 0..50 {
        out = ctl(&["status", "--pod-address", &pod]).1;
        if out.contains("status=READY") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(out.contains("ns/gw: allocs:0/status=READY"), "{out}");
    assert!(out.contains("listener ns/gw/udp: TURN-UDP"), "{out}");
    let (_, out, _) = ctl(&["status", "--pod-address", &pod, "-o", "json"]);
    assert!(
        out.contains("\"<SECRET>\"") && !out.contains("hunter2"),
        "{out}"
    );

    // auth, from the auth service.
    let auth_addr = format!("127.0.0.1:{auth}");
    let (ok, out, err) = ctl(&[
        "-n",
        "ns",
        "auth",
        "gw",
        "--auth-server-address",
        &auth_addr,
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["iceServers"][0]["username"], "alice");
    assert_eq!(v["iceServers"][0]["credential"], "<SECRET>");
    let (_, out, _) = ctl(&[
        "-n",
        "ns",
        "auth",
        "gw",
        "--auth-server-address",
        &auth_addr,
        "--auth-turn-credential",
        "--show-secrets",
    ]);
    assert!(out.contains("hunter2") && out.contains("\"uris\""), "{out}");

    // config -w: the current config, then a deletion.
    let mut child = Command::new(env!("CARGO_BIN_EXE_stunnerctl"))
        .args(base)
        .args(["config", "gw", "-w"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let wait_for = |want: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Ok(l) = rx.recv_timeout(Duration::from_millis(200))
                && l.contains(want)
            {
                return;
            }
        }
        panic!("never printed {want:?}");
    };
    wait_for("Gateway: ns/gw (loglevel");
    store2.delete("ns/gw");
    wait_for("Gateway: ns/gw <deleted>");
    let _ = child.kill();
    let _ = child.wait();

    // license, from the CDS.
    let (_, out, _) = ctl(&["--cds-server-address", &cds_addr, "license"]);
    assert!(out.contains("Subscription type: free"), "{out}");
    let (ok, _, err) = ctl(&["-o", "xml", "license"]);
    assert!(!ok && err.contains("unknown output format"), "{err}");
}
