//! Reconcile is all or nothing: a config is applied whole, or the running one stays
//! whole. The daemon is driven in process (its listeners are real sockets on
//! loopback); each step that can fail is made to fail in turn, for real where a real
//! system can be made to (a port taken, a bad certificate), by `Daemon::fail_next`
//! where it cannot (socket duplication, thread start).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use stunner_config::StunnerConfig;
use stunner_test_support::{EchoPeer, TurnClient, free_port};
use stunner_turn::{Client, Received, Request, TransportKind};
use stunnerd::{Daemon, Step};

fn parse(yaml: &str) -> StunnerConfig {
    let mut c = StunnerConfig::from_str(yaml).unwrap();
    c.validate().unwrap();
    c
}

struct Ports {
    keep: u16,
    gone: u16,
    moved: u16,
    moved_to: u16,
    added: u16,
}

/// "keep" stays (new password in B), "gone" goes, "moved" changes port, "added" comes.
fn config(p: &Ports, second: bool, added: &str) -> StunnerConfig {
    let (pass, listeners) = if second {
        (
            "rotated",
            format!(
                "  - {{name: keep, protocol: TURN-UDP, port: {}, routes: [peers]}}
  - {{name: moved, protocol: TURN-UDP, port: {}, routes: [peers]}}
  - {{name: added, {added} port: {}, routes: [peers]}}
",
                p.keep, p.moved_to, p.added
            ),
        )
    } else {
        (
            "pass",
            format!(
                "  - {{name: keep, protocol: TURN-UDP, port: {}, routes: [peers]}}
  - {{name: gone, protocol: TURN-TCP, port: {}, routes: [peers]}}
  - {{name: moved, protocol: TURN-UDP, port: {}, routes: [peers]}}
",
                p.keep, p.gone, p.moved
            ),
        )
    };
    parse(&format!(
        "version: v1
admin: {{healthcheck_endpoint: \"\"}}
auth: {{type: static, credentials: {{username: user, password: {pass}}}}}
listeners:
{listeners}clusters:
  - {{name: peers, endpoints: [127.0.0.1/32]}}
"
    ))
}

/// Whether a STUN Binding over UDP to `port` is answered.
fn udp_answers(port: u16) -> bool {
    let mut c = TurnClient::new(port, "user", "x");
    matches!(c.request(Request::Binding), Received::Mapped(_))
}

/// Whether a STUN Binding over TCP to `port` is answered.
fn tcp_answers(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))) else {
        return false;
    };
    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut c = Client::new("user", "x", TransportKind::Stream, 7);
    if s.write_all(&c.request(Request::Binding)).is_err() {
        return false;
    }
    let mut buf = [0u8; 512];
    match s.read(&mut buf) {
        Ok(n) if n > 0 => matches!(c.receive(&buf[..n]), Received::Mapped(_)),
        _ => false,
    }
}

/// Whether nothing listens on UDP `port` (we can bind it ourselves).
fn udp_free(port: u16) -> bool {
    UdpSocket::bind(("::", port)).is_ok()
}

#[test]
fn a_config_that_fails_at_any_step_leaves_the_running_one_whole() {
    let p = Ports {
        keep: free_port(),
        gone: free_port(),
        moved: free_port(),
        moved_to: free_port(),
        added: free_port(),
    };
    let peer = EchoPeer::start();
    let mut d = Daemon::new(2);
    let a = config(&p, false, "");
    d.apply(a.clone()).unwrap();
    let mut c = TurnClient::new(p.keep, "user", "pass");
    assert!(matches!(
        c.allocate(Duration::from_secs(2)),
        Received::Allocated { .. }
    ));
    assert!(c.bind_and_echo(0x4000, peer.addr));

    let (cert, key) = stunnerd::tls::self_signed("localhost").unwrap();
    let bad_cert = "Y2VydA=="; // base64 "cert": no PEM in it
    let udp = "protocol: TURN-UDP,".to_string();
    let tls_bad = format!("protocol: TURN-TLS, cert: {bad_cert}, key: {key},");
    let dtls_bad = format!("protocol: TURN-DTLS, cert: {cert}, key: {bad_cert},");
    // What fails, the listener "added" (a protocol and certificate), an injected
    // failure, and what the error says.
    type Case<'a> = (&'a str, String, Option<(&'a str, Step)>, &'a str);
    let cases: Vec<Case> = vec![
        ("port taken", udp.clone(), None, "cannot listen on"),
        ("bad TLS certificate", tls_bad, None, "invalid TLS"),
        ("bad DTLS key", dtls_bad, None, "invalid DTLS"),
        (
            "dup fails (added)",
            udp.clone(),
            Some(("added", Step::Duplicate)),
            "duplicate",
        ),
        (
            "dup fails (moved)",
            udp.clone(),
            Some(("moved", Step::Duplicate)),
            "duplicate",
        ),
        (
            "spawn fails (added)",
            udp.clone(),
            Some(("added", Step::Spawn)),
            "worker thread",
        ),
        (
            "spawn fails (moved)",
            udp.clone(),
            Some(("moved", Step::Spawn)),
            "worker thread",
        ),
    ];
    for (what, added, fault, says) in cases {
        // The first case: the port of "added" is taken by someone else, without
        // SO_REUSEPORT, so ours cannot join it.
        let taken = (what == "port taken").then(|| UdpSocket::bind(("::", p.added)).unwrap());
        if let Some((name, step)) = fault {
            d.fail_next(name, step);
        }
        let e = d
            .apply(config(&p, true, &added))
            .expect_err(what)
            .to_string();
        drop(taken);
        assert!(e.contains(says), "{what}: {e}");
        assert!(
            e.contains("listener \""),
            "{what}: the error names no listener: {e}"
        );
        assert_eq!(d.config(), Some(&a), "{what}: the applied config moved");
        assert!(d.listeners_up(), "{what}");
        assert!(
            c.echo(0x4000, what.as_bytes()),
            "{what}: keep stopped relaying"
        );
        assert_eq!(
            c.request(Request::Refresh { lifetime: 600 }),
            Received::Refreshed { lifetime: 600 },
            "{what}: the old password no longer works: the update of keep went out"
        );
        assert!(tcp_answers(p.gone), "{what}: gone stopped");
        assert!(
            udp_answers(p.moved),
            "{what}: moved stopped on its old port"
        );
        assert!(
            udp_free(p.moved_to),
            "{what}: the new port of moved stayed bound"
        );
        assert!(udp_free(p.added), "{what}: the port of added stayed bound");
    }
    d.apply(config(&p, true, &udp)).unwrap();
    assert!(c.echo(0x4000, b"after"), "keep relays after the change");
    assert!(matches!(
        c.request(Request::Refresh { lifetime: 600 }),
        Received::Failed { code: 401, .. }
    ));
    assert!(!tcp_answers(p.gone), "gone still answers");
    assert!(
        udp_answers(p.moved_to) && udp_free(p.moved),
        "moved did not move"
    );
    assert!(udp_answers(p.added), "added does not answer");
    assert!(d.listeners_up());
}

fn one_listener(
    name: &str,
    protocol: &str,
    port: u16,
    tls: Option<&(String, String)>,
) -> StunnerConfig {
    let tls = tls.map_or(String::new(), |(c, k)| format!(", cert: {c}, key: {k}"));
    parse(&format!(
        "version: v1
admin: {{healthcheck_endpoint: \"\"}}
auth: {{type: static, credentials: {{username: user, password: pass}}}}
listeners:
  - {{name: {name}, protocol: {protocol}, port: {port}, routes: [peers]{tls}}}
clusters:
  - {{name: peers, endpoints: [127.0.0.1/32]}}
"
    ))
}

/// A TLS (or DTLS) handshake on `port` completes.
fn handshakes(port: u16, dtls: bool) -> bool {
    let mut args = vec!["5", "openssl", "s_client", "-brief"];
    if dtls {
        args.push("-dtls1_2");
    }
    let to = format!("127.0.0.1:{port}");
    args.extend(["-connect", &to]);
    let out = std::process::Command::new("timeout")
        .args(&args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stderr).contains("CONNECTION ESTABLISHED")
}

#[test]
fn a_successor_on_the_same_port_takes_the_socket_over() {
    let port = free_port();
    let cert = stunnerd::tls::self_signed("localhost").unwrap();
    let mut d = Daemon::new(2);
    d.apply(one_listener("a", "TURN-TCP", port, None)).unwrap();
    assert!(tcp_answers(port));
    // A restart on its own port (TCP to TLS) whose thread cannot start: TCP stays.
    d.fail_next("a", Step::Spawn);
    let e = d
        .apply(one_listener("a", "TURN-TLS", port, Some(&cert)))
        .unwrap_err();
    assert!(e.to_string().contains("worker thread"), "{e}");
    assert!(tcp_answers(port), "the TCP listener stopped");
    // The same restart, for real: the socket is handed over, TLS answers on it.
    d.apply(one_listener("a", "TURN-TLS", port, Some(&cert)))
        .unwrap();
    assert!(handshakes(port, false), "no TLS on the handed-over socket");
    // A rename on the same port (a goes, b comes) and back to TCP.
    d.apply(one_listener("b", "TURN-TCP", port, None)).unwrap();
    assert!(tcp_answers(port), "b does not answer");
    // UDP to DTLS on the same port (the SO_REUSEPORT set is handed over), and back.
    d.apply(one_listener("u", "TURN-UDP", port, None)).unwrap();
    assert!(udp_answers(port) && !tcp_answers(port));
    d.apply(one_listener("u", "TURN-DTLS", port, Some(&cert)))
        .unwrap();
    assert!(
        !udp_answers(port),
        "a plain STUN request is answered on DTLS"
    );
    d.apply(one_listener("u", "TURN-UDP", port, None)).unwrap();
    assert!(udp_answers(port), "UDP does not answer after DTLS");
    assert!(d.listeners_up());
}
