//! coturn's `turnutils_uclient` relays through stunnerd with 0 % loss against
//! `turnutils_peer`, over UDP and TCP, with static and ephemeral credentials.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness::*;

fn need(tool: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "{tool} is missing: install Debian's coturn (scripts/test does)"
    );
}

struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn peer(port: u16) -> Peer {
    need("turnutils_peer");
    let p = Command::new("turnutils_peer")
        .args(["-p", &port.to_string(), "-L", "127.0.0.1", "-L", "::1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    Peer(p)
}

/// Runs turnutils_uclient; returns (lost, sent, received) from its report.
pub fn uclient(server: u16, peer: u16, extra: &[&str]) -> (u64, u64, u64) {
    uclient_at(("127.0.0.1", server), ("127.0.0.1", peer), extra)
}

/// Runs turnutils_uclient against the server at `host:port` with the peer at
/// `host:port`; returns (lost, sent, received) from its report.
pub fn uclient_at(
    (server_host, server): (&str, u16),
    (peer_host, peer): (&str, u16),
    extra: &[&str],
) -> (u64, u64, u64) {
    let text = uclient_output((server_host, server), (peer_host, peer), extra);
    let num_after = |key: &str| -> Option<u64> {
        let i = text.rfind(key)? + key.len();
        text[i..]
            .trim_start_matches([' ', '='])
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    let lost = num_after("Total lost packets")
        .unwrap_or_else(|| panic!("no report from uclient {extra:?}:\n{text}"));
    let sent = num_after("tot_send_msgs").unwrap_or(0);
    let recv = num_after("tot_recv_msgs").unwrap_or(0);
    (lost, sent, recv)
}

/// What turnutils_uclient printed.
fn uclient_output(
    (server_host, server): (&str, u16),
    (peer_host, peer): (&str, u16),
    extra: &[&str],
) -> String {
    need("turnutils_uclient");
    let mut args: Vec<String> = vec![
        "-p".into(),
        server.to_string(),
        "-e".into(),
        peer_host.into(),
        "-r".into(),
        peer.to_string(),
        "-n".into(),
        "30".into(),
        "-m".into(),
        "4".into(),
        "-l".into(),
        "120".into(),
        "-z".into(),
        "5".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(server_host.into());
    let out = Command::new("timeout")
        .arg("60")
        .arg("turnutils_uclient")
        .args(&args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

fn relays_without_loss(auth: &str, extra: &[&str]) {
    let (port, health, peer_port) = (free_port(), free_port(), free_port());
    let _peer = peer(peer_port);
    let conf = if extra.contains(&"-S") && !extra.contains(&"-t") {
        tls_config(port, health, auth, "127.0.0.1/32").replace("TURN-TLS", "TURN-DTLS")
    } else if extra.contains(&"-S") {
        tls_config(port, health, auth, "127.0.0.1/32")
    } else {
        config(port, health, auth, "127.0.0.1/32")
    };
    // coturn's client picks DTLS 1.0 for some connections: allow it for this test.
    let args: &[&str] = if extra.contains(&"-S") && !extra.contains(&"-t") {
        &["-u", "2", "--dtls-legacy"]
    } else {
        &["-u", "2"]
    };
    let d = Stunnerd::start("coturn", &conf, health, args);
    d.wait_ready(200, Duration::from_secs(5));
    let (lost, sent, recv) = uclient(port, peer_port, extra);
    assert_eq!(lost, 0, "lost packets ({extra:?}): {}", d.log_text());
    assert!(sent > 0 && recv == sent, "sent {sent}, received {recv}");
}

#[test]
fn uclient_udp_static() {
    relays_without_loss(STATIC_AUTH, &["-u", "user", "-w", "pass"]);
}

#[test]
fn uclient_udp_send_indications() {
    relays_without_loss(STATIC_AUTH, &["-s", "-u", "user", "-w", "pass"]);
}

#[test]
fn uclient_tcp_static() {
    relays_without_loss(STATIC_AUTH, &["-t", "-u", "user", "-w", "pass"]);
}

#[test]
fn uclient_udp_ephemeral() {
    relays_without_loss(
        "  type: ephemeral\n  credentials: {secret: my-secret}",
        &["-W", "my-secret"],
    );
}

#[test]
fn uclient_tcp_ephemeral_with_user_id() {
    relays_without_loss(
        "  type: ephemeral\n  credentials: {secret: my-secret}",
        &["-t", "-W", "my-secret", "-u", "bob"],
    );
}

#[test]
fn wrong_password_relays_nothing() {
    let (port, health, peer_port) = (free_port(), free_port(), free_port());
    let p = peer(peer_port);
    let d = Stunnerd::start(
        "coturn-bad",
        &config(port, health, STATIC_AUTH, "127.0.0.1/32"),
        health,
        &[],
    );
    d.wait_ready(200, Duration::from_secs(5));
    let out = Command::new("timeout")
        .args([
            "20",
            "turnutils_uclient",
            "-p",
            &port.to_string(),
            "-e",
            "127.0.0.1",
            "-r",
            &peer_port.to_string(),
            "-n",
            "5",
            "-m",
            "1",
            "-u",
            "user",
            "-w",
            "wrong",
            "127.0.0.1",
        ])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!text.contains("Total lost packets 0"), "{text}");
    drop(p);
}

#[test]
fn uclient_tls_static() {
    relays_without_loss(STATIC_AUTH, &["-t", "-S", "-u", "user", "-w", "pass"]);
}

#[test]
fn uclient_tls_ephemeral() {
    relays_without_loss(
        "  type: ephemeral\n  credentials: {secret: my-secret}",
        &["-t", "-S", "-W", "my-secret"],
    );
}

#[test]
fn uclient_dtls_static() {
    relays_without_loss(STATIC_AUTH, &["-S", "-u", "user", "-w", "pass"]);
}

#[test]
fn uclient_dtls_ephemeral() {
    relays_without_loss(
        "  type: ephemeral\n  credentials: {secret: my-secret}",
        &["-S", "-W", "my-secret"],
    );
}

#[test]
fn dtls_12_handshake_by_default() {
    let (port, health) = (free_port(), free_port());
    let conf =
        tls_config(port, health, STATIC_AUTH, "127.0.0.1/32").replace("TURN-TLS", "TURN-DTLS");
    let d = Stunnerd::start("dtls12", &conf, health, &[]);
    d.wait_ready(200, Duration::from_secs(5));
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo | timeout 5 openssl s_client -dtls1_2 -connect 127.0.0.1:{port} 2>&1"
        ))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("DTLSv1.2"), "{text}\n{}", d.log_text());
}

#[test]
fn tls_certificate_change_keeps_allocations() {
    let _guard = DEFAULT_HEALTH_PORT
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let (port, health, peer_port) = (free_port(), free_port(), free_port());
    let _peer = peer(peer_port);
    let conf = tls_config(port, health, STATIC_AUTH, "127.0.0.1/32");
    let d = Stunnerd::start("tls-rotate", &conf, health, &["-w"]);
    d.wait_ready(200, Duration::from_secs(5));
    // About 3 s of traffic; the certificate changes in the middle.
    let run = std::thread::spawn(move || {
        uclient(
            port,
            peer_port,
            &[
                "-t", "-S", "-u", "user", "-w", "pass", "-n", "300", "-z", "10",
            ],
        )
    });
    std::thread::sleep(Duration::from_millis(1200));
    d.write_config(&tls_config(port, health, STATIC_AUTH, "127.0.0.1/32"));
    let (lost, sent, recv) = run.join().unwrap();
    assert!(
        d.log_text().matches("config applied").count() >= 3,
        "{}",
        d.log_text()
    );
    assert!(
        !d.log_text().contains("listener stopped"),
        "{}",
        d.log_text()
    );
    assert_eq!(lost, 0, "{}", d.log_text());
    assert!(sent > 0 && recv == sent);
}

/// Address families (RFC 8656 §7.2): the pod has 127.0.0.1 and ::1, the listener
/// address is 127.0.0.1, the peers are reached over either family.
fn dual_stack_relays(server_host: &str, peer_host: &str, extra: &[&str]) {
    let (port, health, peer_port) = (free_port(), free_port(), free_port());
    let _peer = peer(peer_port);
    let conf = config(port, health, STATIC_AUTH, "127.0.0.1/32, \"::1/128\"");
    let d = Stunnerd::start(
        "coturn-family",
        &conf,
        health,
        &["--pod-addresses", "127.0.0.1,::1"],
    );
    d.wait_ready(200, Duration::from_secs(5));
    let mut args = vec!["-u", "user", "-w", "pass"];
    args.extend_from_slice(extra);
    let (lost, sent, recv) = uclient_at((server_host, port), (peer_host, peer_port), &args);
    assert_eq!(lost, 0, "lost packets ({extra:?}): {}", d.log_text());
    assert!(sent > 0 && recv == sent, "sent {sent}, received {recv}");
}

#[test]
fn uclient_ipv6_relay_over_an_ipv4_listener() {
    dual_stack_relays("127.0.0.1", "::1", &["-x"]);
}

#[test]
fn uclient_ipv6_relay_over_tcp() {
    dual_stack_relays("127.0.0.1", "::1", &["-t", "-x"]);
}

#[test]
fn uclient_dual_allocation_to_an_ipv6_peer() {
    dual_stack_relays("127.0.0.1", "::1", &["-Z"]);
}

#[test]
fn uclient_dual_allocation_to_an_ipv4_peer() {
    dual_stack_relays("127.0.0.1", "127.0.0.1", &["-Z"]);
}

#[test]
fn uclient_udp_over_an_ipv6_listener() {
    dual_stack_relays("::1", "::1", &[]);
}

#[test]
fn ipv6_relay_without_an_ipv6_pod_address_is_440() {
    let (port, health, peer_port) = (free_port(), free_port(), free_port());
    let _peer = peer(peer_port);
    let conf = config(port, health, STATIC_AUTH, "127.0.0.1/32, \"::1/128\"");
    let d = Stunnerd::start("coturn-440", &conf, health, &[]);
    d.wait_ready(200, Duration::from_secs(5));
    let text = uclient_output(
        ("127.0.0.1", port),
        ("::1", peer_port),
        &["-u", "user", "-w", "pass", "-x", "-n", "2", "-m", "1"],
    );
    assert!(text.contains("error 440"), "{text}");
}
