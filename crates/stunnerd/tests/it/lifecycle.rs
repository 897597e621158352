//! Config errors, dry runs, readiness, reconfiguration under traffic, graceful shutdown.

use std::process::Command;
use std::time::{Duration, Instant};

use stunner_turn::{Received, Request};

use crate::harness::*;

#[test]
fn malformed_config_gives_one_clear_line_and_exit_1() {
    let dir = tempdir("bad");
    let conf = dir.join("bad.conf");
    std::fs::write(
        &conf,
        "version: v1\nlisteners: [{name: a, port: 70000}]\nauth: {type: none}\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_stunnerd"))
        .arg("-c")
        .arg(&conf)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("listeners[0].port: 70000 is not in 1..65535"),
        "{err}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_stunnerd"))
        .arg("-c")
        .arg(dir.join("missing.conf"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.conf"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn dry_run_plans_without_sockets_and_masks_secrets() {
    let dir = tempdir("dry");
    let conf = dir.join("c.conf");
    let port = free_port();
    let auth = "  type: static\n  credentials: {username: alice, password: hunter2}";
    std::fs::write(&conf, config(port, free_port(), auth, "10.0.0.0/8")).unwrap();
    // The port is taken: a dry run must not care, since it binds nothing.
    let _busy = std::net::UdpSocket::bind(("0.0.0.0", port)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_stunnerd"))
        .arg("-d")
        .arg("-c")
        .arg(&conf)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("listener \"udp\": TURN-UDP"), "{text}");
    assert!(
        text.contains("<SECRET>") && !text.contains("hunter2") && !text.contains("alice"),
        "{text}"
    );
    let bad = dir.join("bad.conf");
    std::fs::write(&bad, "version: v1\nauth: {type: static}\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_stunnerd"))
        .arg("-d")
        .arg("-c")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn one_line_server_from_a_turn_uri() {
    let _guard = DEFAULT_HEALTH_PORT
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let (port, peer) = (free_port(), EchoPeer::start());
    let mut child = Command::new(env!("CARGO_BIN_EXE_stunnerd"))
        .arg(format!("turn://user:pass@127.0.0.1:{port}?transport=udp"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // The open cluster of a one-line server does not reach loopback peers.
    let mut c = TurnClient::new(port, "user", "pass");
    assert!(matches!(
        c.request(Request::Allocate { lifetime: None }),
        Received::Allocated { .. }
    ));
    let r = c.request(Request::CreatePermission {
        peers: vec![peer.addr],
    });
    assert!(matches!(r, Received::Failed { code: 403, .. }), "{r:?}");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn watch_mode_is_not_ready_until_a_config_arrives() {
    let _guard = DEFAULT_HEALTH_PORT
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let (port, health) = (free_port(), free_port());
    let dir = tempdir("watch");
    let conf = dir.join("stunnerd.conf");
    let mut child = Command::new(env!("CARGO_BIN_EXE_stunnerd"))
        .args(["-w", "-c"])
        .arg(format!("file://{}", conf.display()))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The zero config serves the default health port 8086: alive, not ready.
    let deadline = Instant::now() + Duration::from_secs(10);
    while http_get(8086, "/live").is_none() {
        assert!(Instant::now() < deadline, "no health server on 8086");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(http_get(8086, "/ready").map(|r| r.0), Some(503));
    std::fs::write(&conf, config(port, health, STATIC_AUTH, "127.0.0.1/32")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while http_get(health, "/ready").map(|r| r.0) != Some(200) {
        assert!(Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, status) = http_get(health, "/status").unwrap();
    assert!(
        status.contains("\"READY\"") && !status.contains("\"pass\""),
        "{status}"
    );
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(dir);
}

/// Relays `n` ChannelData round trips; returns how many came back.
fn round_trips(c: &mut TurnClient, n: usize) -> usize {
    let mut ok = 0;
    for i in 0..n {
        let msg = format!("ping {i}");
        c.send_channel(0x4000, msg.as_bytes());
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline {
            match c.recv() {
                Some((Received::ChannelData { range, .. }, b))
                    if b[range.clone()] == *msg.as_bytes() =>
                {
                    ok += 1;
                    break;
                }
                Some(_) => {}
                None => break,
            }
        }
    }
    ok
}

#[test]
fn reconfiguration_keeps_allocations() {
    let _guard = DEFAULT_HEALTH_PORT
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let (port, health) = (free_port(), free_port());
    let peer = EchoPeer::start();
    let base = config(port, health, STATIC_AUTH, "127.0.0.1/32");
    let d = Stunnerd::start("reconf", &base, health, &["-w"]);
    d.wait_ready(200, Duration::from_secs(5));
    let mut c = TurnClient::new(port, "user", "pass");
    assert!(matches!(
        c.request(Request::Allocate { lifetime: None }),
        Received::Allocated { .. }
    ));
    assert_eq!(
        c.request(Request::ChannelBind {
            channel: 0x4000,
            peer: peer.addr
        }),
        Received::ChannelBound
    );
    assert_eq!(round_trips(&mut c, 20), 20);
    // New credentials, a new cluster and route, and the TCP listener on another port.
    let other = free_port();
    let next = format!(
        "version: v1
admin: {{healthcheck_endpoint: \"http://127.0.0.1:{health}\", loglevel: \"all:DEBUG\"}}
auth: {{type: static, credentials: {{username: user, password: rotated}}}}
listeners:
  - {{name: udp, protocol: TURN-UDP, address: 127.0.0.1, port: {port}, routes: [peers, more]}}
  - {{name: tcp, protocol: TURN-TCP, address: 127.0.0.1, port: {other}, routes: [peers]}}
clusters:
  - {{name: peers, endpoints: [127.0.0.1/32, 127.0.0.2/32]}}
  - {{name: more, endpoints: [10.0.0.0/8]}}
"
    );
    d.write_config(&next);
    let deadline = Instant::now() + Duration::from_secs(5);
    while d.log_text().matches("config applied").count() < 3 {
        assert!(
            Instant::now() < deadline,
            "config not applied: {}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(round_trips(&mut c, 50), 50, "{}", d.log_text());
    // The old password no longer authenticates; the new one does.
    assert!(matches!(
        c.request(Request::Refresh { lifetime: 600 }),
        Received::Failed { code: 401, .. }
    ));
    c.client.set_credentials("user", "rotated");
    assert_eq!(
        c.request(Request::Refresh { lifetime: 600 }),
        Received::Refreshed { lifetime: 600 }
    );
    // An invalid config is rejected whole: relaying goes on.
    d.write_config("version: v1\nlisteners: [{name: x, port: 99999}]\n");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(round_trips(&mut c, 10), 10);
    assert!(d.log_text().contains("invalid config"), "{}", d.log_text());
}

#[test]
fn sigterm_drains_then_exits() {
    let (port, health) = (free_port(), free_port());
    let peer = EchoPeer::start();
    let mut d = Stunnerd::start(
        "drain",
        &config(port, health, STATIC_AUTH, "127.0.0.1/32"),
        health,
        &[],
    );
    d.wait_ready(200, Duration::from_secs(5));
    let mut c = TurnClient::new(port, "user", "pass");
    assert!(matches!(
        c.request(Request::Allocate { lifetime: None }),
        Received::Allocated { .. }
    ));
    assert_eq!(
        c.request(Request::ChannelBind {
            channel: 0x4000,
            peer: peer.addr
        }),
        Received::ChannelBound
    );
    d.signal("TERM");
    d.wait_ready(503, Duration::from_secs(5));
    // Relaying and refreshes go on; new allocations are refused.
    assert_eq!(round_trips(&mut c, 10), 10);
    assert_eq!(
        c.request(Request::Refresh { lifetime: 600 }),
        Received::Refreshed { lifetime: 600 }
    );
    let mut late = TurnClient::new(port, "user", "pass");
    assert!(matches!(
        late.request(Request::Allocate { lifetime: None }),
        Received::Failed { code: 508, .. }
    ));
    assert_eq!(
        d.wait_exit(Duration::from_millis(1500)),
        None,
        "exited with a live allocation"
    );
    // The last allocation goes: the process exits 0.
    assert_eq!(
        c.request(Request::Refresh { lifetime: 0 }),
        Received::Refreshed { lifetime: 0 }
    );
    assert_eq!(
        d.wait_exit(Duration::from_secs(5)),
        Some(0),
        "{}",
        d.log_text()
    );
}

#[test]
fn second_signal_exits_at_once() {
    let (port, health) = (free_port(), free_port());
    let mut d = Stunnerd::start(
        "drain2",
        &config(port, health, STATIC_AUTH, "127.0.0.1/32"),
        health,
        &[],
    );
    let mut c = TurnClient::new(port, "user", "pass");
    assert!(matches!(
        c.request(Request::Allocate { lifetime: None }),
        Received::Allocated { .. }
    ));
    d.signal("TERM");
    d.wait_ready(503, Duration::from_secs(5));
    d.signal("INT");
    assert_eq!(d.wait_exit(Duration::from_secs(5)), Some(0));
}
