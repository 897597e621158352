//! turncat tunnels a UDP echo exchange through stunnerd over TURN-UDP, TURN-TCP and
//! TURN-TLS, with stdin/stdout and with a UDP client.
#![allow(clippy::unwrap_used)] // a test fails loudly by design

use std::io::Write;
use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::Duration;

use clap::Parser;

use stunner_test_support::free_port;

fn echo_peer() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = s.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut b = [0u8; 2048];
        while let Ok((n, from)) = s.recv_from(&mut b) {
            let _ = s.send_to(&b[..n], from);
        }
    });
    port
}

/// Runs stunnerd in this process with a UDP+TCP listener on `port` and a TLS one on
/// `tls_port`, routed to 127.0.0.1.
fn stunnerd(port: u16, tls_port: u16) {
    let (cert, key) = stunnerd::tls::self_signed("127.0.0.1").unwrap();
    stunnerd_with(port, tls_port, &cert, &key);
}

/// As [`stunnerd`], with this certificate and key (base64 PEM).
fn stunnerd_with(port: u16, tls_port: u16, cert: &str, key: &str) {
    // DTLS shares the TLS port number (UDP and TCP do not collide).
    let health = free_port();
    let conf = format!(
        "version: v1
admin: {{healthcheck_endpoint: \"http://127.0.0.1:{health}\"}}
auth: {{type: static, credentials: {{username: user, password: pass}}}}
listeners:
  - {{name: udp, protocol: TURN-UDP, address: 127.0.0.1, port: {port}, routes: [loop, tcp-loop]}}
  - {{name: tcp, protocol: TURN-TCP, address: 127.0.0.1, port: {port}, routes: [loop, tcp-loop]}}
  - {{name: tls, protocol: TURN-TLS, address: 127.0.0.1, port: {tls_port}, routes: [loop, tcp-loop], cert: {cert}, key: {key}}}
  - {{name: dtls, protocol: TURN-DTLS, address: 127.0.0.1, port: {tls_port}, routes: [loop, tcp-loop], cert: {cert}, key: {key}}}
clusters:
  - {{name: loop, endpoints: [127.0.0.1/32]}}
  - {{name: tcp-loop, protocol: TCP, endpoints: [127.0.0.1/32]}}
"
    );
    let path = std::env::temp_dir().join(format!("turncat-it-{}-{port}.conf", std::process::id()));
    std::fs::write(&path, conf).unwrap();
    let args = stunnerd::cli::Args::parse_from([
        "stunnerd",
        "-c",
        path.to_str().unwrap(),
        "-l",
        "all:WARN",
    ]);
    stunnerd::run::spawn(args);
    // Wait for the health server, which starts after the listeners.
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", health)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("stunnerd did not start");
}

/// Runs `turncat <args>` with `msg` on stdin (closed after half a second) and checks
/// that the same bytes come back on stdout; returns its output.
fn echoed_through(args: &[String], msg: &str) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_turncat"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(msg.as_bytes()).unwrap();
    stdin.flush().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        msg,
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The arguments for a `-` client through a `transport` server to `peer`.
fn stdio_args(transport: &str, port: u16, extra: &[&str], peer: &str) -> Vec<String> {
    let mut a: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    a.push("-".into());
    a.push(format!(
        "turn://user:pass@127.0.0.1:{port}?transport={transport}"
    ));
    a.push(peer.to_string());
    a
}

fn through_stdio(transport: &str, port: u16, extra: &[&str]) {
    let peer = format!("udp://127.0.0.1:{}", echo_peer());
    let out = echoed_through(
        &stdio_args(transport, port, extra, &peer),
        "hello through turncat\n",
    );
    assert!(out.status.success());
}

#[test]
fn tunnels_over_udp_tcp_tls_and_dtls() {
    let (port, tls_port) = (free_port(), free_port());
    stunnerd(port, tls_port);
    through_stdio("udp", port, &[]);
    through_stdio("tcp", port, &[]);
    through_stdio("tls", tls_port, &["--insecure"]);
    through_stdio("dtls", tls_port, &["--insecure"]);

    // A UDP client: two clients, each its own allocation.
    let peer = echo_peer();
    let listen = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_turncat"))
        .arg(format!("udp://127.0.0.1:{listen}"))
        .arg(format!("turn://user:pass@127.0.0.1:{port}?transport=udp"))
        .arg(format!("udp://127.0.0.1:{peer}"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..2 {
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let msg = format!("client {i}");
        c.send_to(msg.as_bytes(), ("127.0.0.1", listen)).unwrap();
        let mut b = [0u8; 100];
        let (n, _) = c.recv_from(&mut b).unwrap();
        assert_eq!(&b[..n], msg.as_bytes());
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A CA and a certificate it signed for 127.0.0.1: (CA PEM, leaf base64 PEM, key base64 PEM).
fn ca_and_leaf() -> (String, String, String) {
    use base64::Engine as _;
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "turncat test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    (
        ca_cert.pem(),
        b64.encode(leaf.pem()),
        b64.encode(leaf_key.serialize_pem()),
    )
}

fn failing(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_turncat"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "{args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn verifies_the_server_certificate_with_a_ca() {
    let (port, tls_port) = (free_port(), free_port());
    let (ca, cert, key) = ca_and_leaf();
    stunnerd_with(port, tls_port, &cert, &key);
    let dir = std::env::temp_dir().join(format!("turncat-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, &ca).unwrap();
    let ca_arg = ca_path.to_str().unwrap();
    through_stdio("tls", tls_port, &["--ca", ca_arg]);
    through_stdio("dtls", tls_port, &["--ca", ca_arg]);
    // Another CA's certificate, or no way to check at all, is refused.
    let (other_ca, _, _) = ca_and_leaf();
    let other = dir.join("other.pem");
    std::fs::write(&other, &other_ca).unwrap();
    let peer = format!("udp://127.0.0.1:{}", echo_peer());
    for transport in ["tls", "dtls"] {
        let server = format!("turn://user:pass@127.0.0.1:{tls_port}?transport={transport}");
        let err = failing(&["--ca", other.to_str().unwrap(), "-", &server, &peer]);
        assert!(err.contains("certificate"), "{transport}: {err}");
        let err = failing(&["-", &server, &peer]);
        assert!(err.contains("--ca"), "{transport}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tcp_client_side_gets_one_allocation_per_connection() {
    use std::io::Read;
    let (port, tls_port) = (free_port(), free_port());
    stunnerd(port, tls_port);
    let peer = echo_peer();
    let listen = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_turncat"))
        .arg(format!("tcp://127.0.0.1:{listen}"))
        .arg(format!("turn://user:pass@127.0.0.1:{port}?transport=udp"))
        .arg(format!("udp://127.0.0.1:{peer}"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut conns = Vec::new();
    for _ in 0..50 {
        match std::net::TcpStream::connect(("127.0.0.1", listen)) {
            Ok(c) => {
                conns.push(c);
                break;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    conns.push(std::net::TcpStream::connect(("127.0.0.1", listen)).unwrap());
    for (i, c) in conns.iter_mut().enumerate() {
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let msg = format!("over tcp {i}");
        c.write_all(msg.as_bytes()).unwrap();
        let mut b = [0u8; 100];
        let n = c.read(&mut b).unwrap();
        assert_eq!(&b[..n], msg.as_bytes());
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn clear_errors() {
    let out = Command::new(env!("CARGO_BIN_EXE_turncat"))
        .args(["-", "turn://127.0.0.1:1", "udp://127.0.0.1:1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("user:pass@"));
    let out = Command::new(env!("CARGO_BIN_EXE_turncat"))
        .args(["-", "turn://u:p@127.0.0.1:1", "tcp://127.0.0.1:1"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs a TCP relay (RFC 6062)"));
    let out = Command::new(env!("CARGO_BIN_EXE_turncat"))
        .args(["-", "turn://u:p@127.0.0.1:1", "sctp://127.0.0.1:1"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("peer must be udp://"));
}

/// A `tcp://` peer through a TCP allocation (RFC 6062): stdin to the echo peer and
/// back over TURN-TCP and TURN-TLS, a stream client's megabyte byte-exact, and the
/// server's refusal of a peer no TCP cluster routes.
#[test]
fn tcp_peers_through_a_tcp_allocation() {
    use std::io::Read;
    let (port, tls_port) = (free_port(), free_port());
    stunnerd(port, tls_port);
    let echo = stunner_test_support::TcpEchoPeer::start().addr;
    for (transport, port, extra) in [
        ("tcp", port, &[][..]),
        ("tls", tls_port, &["--insecure"][..]),
    ] {
        let args = stdio_args(transport, port, extra, &format!("tcp://{echo}"));
        let out = echoed_through(&args, "a stream through turncat\n");
        assert!(out.status.success());
    }

    let listen = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_turncat"))
        .arg(format!("tcp://127.0.0.1:{listen}"))
        .arg(format!("turn://user:pass@127.0.0.1:{port}?transport=tcp"))
        .arg(format!("tcp://{echo}"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut c = (0..100)
        .find_map(|_| {
            std::net::TcpStream::connect(("127.0.0.1", listen))
                .map_err(|_| std::thread::sleep(Duration::from_millis(50)))
                .ok()
        })
        .unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let sent: Vec<u8> = (0..1 << 20).map(|i: u32| (i * 7 + i / 251) as u8).collect();
    let mut w = c.try_clone().unwrap();
    let chunk = sent.clone();
    let writer = std::thread::spawn(move || w.write_all(&chunk).unwrap());
    let mut got = vec![0u8; sent.len()];
    c.read_exact(&mut got).unwrap();
    writer.join().unwrap();
    assert!(got == sent, "the megabyte came back altered");
    let _ = child.kill();
    let _ = child.wait();

    // 127.0.0.2 is in no cluster: Connect is refused, turncat says so and exits 1.
    let out = Command::new(env!("CARGO_BIN_EXE_turncat"))
        .arg("-")
        .arg(format!("turn://user:pass@127.0.0.1:{port}?transport=tcp"))
        .arg(format!("tcp://127.0.0.2:{}", echo.port()))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("connect to 127.0.0.2") && err.contains("403"),
        "{err}"
    );
}

#[test]
fn k8s_target_from_the_cds() {
    let (port, tls_port) = (free_port(), free_port());
    stunnerd(port, tls_port);
    // A CDS server that knows the same gateway under the operator's names.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let store = stunner_cds::server::ConfigStore::new();
    let text = format!(
        "version: v1\nadmin: {{name: ns/gw}}\nauth: {{type: static, credentials: {{username: user, password: pass}}}}\n\
         listeners: [{{name: ns/gw/udp, address: 127.0.0.1, port: {port}}}]"
    );
    store.upsert(stunner_config::StunnerConfig::from_str_with_env(&text, &|_: &str| None).unwrap());
    let cds = rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let p = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            axum::serve(l, stunner_cds::server::router(store))
                .await
                .unwrap()
        });
        p
    });
    let peer = echo_peer();
    let args = [
        "--cds-server-address".to_string(),
        format!("127.0.0.1:{cds}"),
        "-".into(),
        "k8s://ns/gw:udp".into(),
        format!("udp://127.0.0.1:{peer}"),
    ];
    echoed_through(&args, "via k8s target\n");
    let out = Command::new(env!("CARGO_BIN_EXE_turncat"))
        .args([
            "--cds-server-address",
            &format!("127.0.0.1:{cds}"),
            "-",
            "k8s://ns/gw:nope",
            "udp://127.0.0.1:1",
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("no listener \"nope\""));
}
