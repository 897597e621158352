//! RFC 6062 TCP relays through stunnerd: coturn's `turnutils_uclient -T` (two clients
//! connecting to each other's TCP relays) over TCP and TLS, and our client carrying
//! 1 GB through a TCP allocation to an echo peer while a second pair never reads.

use std::io::{Read, Write};
use std::time::Duration;

use stunner_test_support::{StreamTurnClient, TcpEchoPeer};
use stunner_turn::{Received, Request};

use crate::coturn::uclient_at;
use crate::harness::*;

/// A TURN-TCP (or TURN-TLS) listener routed to a `protocol: TCP` cluster of loopback.
fn tcp_config(port: u16, health: u16, tls: bool) -> String {
    let base = if tls {
        tls_config(port, health, STATIC_AUTH, "127.0.0.1/32")
    } else {
        config(port, health, STATIC_AUTH, "127.0.0.1/32")
    };
    base.replace("routes: [peers]", "routes: [peers, tcp-peers]")
        + "  - {name: tcp-peers, protocol: TCP, endpoints: [127.0.0.1/32, \"::1/128\"]}\n"
}

fn uclient_tcp_relay(tls: bool, extra: &[&str]) {
    let (port, health) = (free_port(), free_port());
    let d = Stunnerd::start(
        "tcp-relay",
        &tcp_config(port, health, tls),
        health,
        &["--pod-addresses", "127.0.0.1,::1"],
    );
    d.wait_ready(200, Duration::from_secs(5));
    let mut args = vec!["-T", "-u", "user", "-w", "pass"];
    if tls {
        args.push("-S");
    }
    args.extend_from_slice(extra);
    let peer_host = if extra.contains(&"-x") {
        "::1"
    } else {
        "127.0.0.1"
    };
    // With -T the clients are each other's peers: the peer port is not used.
    let (lost, sent, recv) = uclient_at(("127.0.0.1", port), (peer_host, free_port()), &args);
    assert_eq!(lost, 0, "lost packets ({extra:?}): {}", d.log_text());
    assert!(sent > 0 && recv == sent, "sent {sent}, received {recv}");
}

#[test]
fn uclient_tcp_relay_over_tcp() {
    uclient_tcp_relay(false, &[]);
}

#[test]
fn uclient_tcp_relay_over_tls() {
    uclient_tcp_relay(true, &[]);
}

#[test]
fn uclient_ipv6_tcp_relay() {
    uclient_tcp_relay(false, &["-x"]);
}

/// Allocates a TCP relay and connects it to `peer`; returns the control connection
/// (it must stay open) and the bound data connection.
fn tcp_pair(port: u16, peer: std::net::SocketAddr) -> (StreamTurnClient, std::net::TcpStream) {
    let mut ctl = StreamTurnClient::connect(port, "user", "pass");
    let r = ctl.request(Request::AllocateTcp { lifetime: None });
    assert!(matches!(r, Received::Allocated { .. }), "{r:?}");
    let r = ctl.request(Request::Connect { peer });
    let Received::Connected { id } = r else {
        panic!("Connect: {r:?}")
    };
    let mut data = StreamTurnClient::connect(port, "user", "pass");
    assert_eq!(
        data.request(Request::ConnectionBind { id }),
        Received::ConnectionBound
    );
    let (stream, rest) = data.into_raw();
    assert!(rest.is_empty(), "raw bytes before any were sent");
    (ctl, stream)
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn one_gigabyte_through_a_tcp_allocation_with_a_stalled_neighbour() {
    let (port, health, mport) = (free_port(), free_port(), free_port());
    let conf = with_metrics(&tcp_config(port, health, false), mport);
    let d = Stunnerd::start("tcp-relay-1g", &conf, health, &[]);
    d.wait_ready(200, Duration::from_secs(5));
    let (echo, stalled_echo) = (TcpEchoPeer::start(), TcpEchoPeer::start());
    // The stalled pair writes up to 64 MB and never reads, so its echoes back up into
    // stunnerd, which must stop reading that peer instead of buffering it all: the
    // kernel's buffers fill (about 40 MB on loopback over the four sockets) and the
    // writer is pushed back.
    let (_stalled_ctl, stalled) = tcp_pair(port, stalled_echo.addr);
    let writer = {
        let mut s = stalled.try_clone().unwrap();
        std::thread::spawn(move || {
            s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
            let block = vec![7u8; 1 << 20];
            let mut sent = 0;
            for _ in 0..64 {
                match s.write_all(&block) {
                    Ok(()) => sent += block.len(),
                    Err(_) => break, // pushed back: what this pair is for
                }
            }
            sent
        })
    };
    let (_ctl, stream) = tcp_pair(port, echo.addr);
    const TOTAL: usize = 1 << 30;
    let mut w = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let mut block = vec![0u8; 1 << 16];
        let mut off = 0usize;
        while off < TOTAL {
            for (i, b) in block.iter_mut().enumerate() {
                *b = ((off + i) % 251) as u8;
            }
            w.write_all(&block).unwrap();
            off += block.len();
        }
    });
    let mut r = stream;
    r.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut buf = vec![0u8; 1 << 16];
    let mut got = 0usize;
    while got < TOTAL {
        let n = r.read(&mut buf).expect("echo stalled");
        assert!(n > 0, "connection closed after {got} bytes");
        for (i, b) in buf[..n].iter().enumerate() {
            assert_eq!(*b, ((got + i) % 251) as u8, "byte {} corrupted", got + i);
        }
        got += n;
    }
    sender.join().unwrap();
    let stalled_sent = writer.join().unwrap();
    let peak = peak_rss_kib(d.child.id());
    eprintln!(
        "1 GiB echoed through a TCP allocation; stalled pair wrote {stalled_sent} B; stunnerd peak RSS {peak} KiB"
    );
    assert!(peak < 96 * 1024, "stunnerd peak RSS {peak} KiB");
    assert!(
        stalled_sent < 64 << 20,
        "the stalled writer was never pushed back"
    );
    // The relay counters: both pairs' peer connections are open, and at least the
    // gigabyte went each way.
    let bytes = |b: &str, dir: &str| {
        metric(
            b,
            &format!("stunner_tcp_relay_bytes_total{{name=\"tcp\",direction=\"{dir}\"}}"),
        )
    };
    wait_metrics(mport, "TCP relay counters", |b| {
        metric(b, "stunner_tcp_relay_connections{name=\"tcp\"}") == Some(2)
            && metric(b, "stunner_tcp_relay_connections_total{name=\"tcp\"}") == Some(2)
            && bytes(b, "rx") >= Some(TOTAL as u64)
            && bytes(b, "tx") >= Some(TOTAL as u64)
    });
    // `/status` shows the same counters on the TCP listener (refreshed each second).
    let tcp_relay = |body: &str| -> Option<serde_json::Value> {
        let doc: serde_json::Value = serde_json::from_str(body).ok()?;
        let l = doc["listener_stats"]
            .as_array()?
            .iter()
            .find(|l| l["name"] == "tcp")?;
        Some(l["tcp_relay"].clone())
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = http_get(health, "/status").and_then(|(_, b)| tcp_relay(&b));
        let ok = r.as_ref().is_some_and(|r| {
            r["connections"] == 2
                && r["connections_total"] == 2
                && r["rx_bytes"].as_u64() >= Some(TOTAL as u64)
                && r["tx_bytes"].as_u64() >= Some(TOTAL as u64)
        });
        if ok {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "/status tcp_relay: {r:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(stalled);
}
