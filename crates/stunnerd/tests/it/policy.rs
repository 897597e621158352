//! A peer outside the routed clusters receives nothing, checked on the peer's socket.

use std::time::Duration;

use stunner_turn::{Received, Request};

use crate::harness::*;

#[test]
fn peer_outside_the_clusters_gets_nothing() {
    let (port, health) = (free_port(), free_port());
    let inside = EchoPeer::start();
    let outside = EchoPeer::start();
    let endpoint = format!("\"127.0.0.1:<{p}-{p}>\"", p = inside.addr.port());
    let d = Stunnerd::start(
        "policy",
        &config(port, health, STATIC_AUTH, &endpoint),
        health,
        &[],
    );
    d.wait_ready(200, Duration::from_secs(5));
    let mut c = TurnClient::new(port, "user", "pass");
    assert!(matches!(
        c.request(Request::Allocate { lifetime: None }),
        Received::Allocated { .. }
    ));
    // Same IP, other port: the permission (per IP) is granted, the channel is not.
    assert_eq!(
        c.request(Request::CreatePermission {
            peers: vec![outside.addr]
        }),
        Received::PermissionCreated
    );
    let r = c.request(Request::ChannelBind {
        channel: 0x4001,
        peer: outside.addr,
    });
    assert!(matches!(r, Received::Failed { code: 403, .. }), "{r:?}");
    let send = c.client.send_indication(outside.addr, b"leak?");
    for _ in 0..5 {
        c.sock.send_to(&send, c.server).unwrap();
    }
    let r = c.request(Request::ChannelBind {
        channel: 0x4000,
        peer: inside.addr,
    });
    assert_eq!(r, Received::ChannelBound);
    c.send_channel(0x4000, b"hello");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(outside.count(), 0, "a peer outside the clusters got bytes");
    assert_eq!(inside.count(), 1);
}

#[test]
fn strict_dns_cluster_admits_what_its_name_resolves_to() {
    let (port, health) = (free_port(), free_port());
    let peer = EchoPeer::start();
    // `localhost` resolves from the hosts file: no DNS traffic leaves the machine.
    let conf = config(port, health, STATIC_AUTH, "localhost").replace(
        "{name: peers, endpoints:",
        "{name: peers, type: STRICT_DNS, endpoints:",
    );
    let d = Stunnerd::start("dns", &conf, health, &[]);
    d.wait_ready(200, Duration::from_secs(5));
    let mut c = TurnClient::new(port, "user", "pass");
    assert!(matches!(
        c.request(Request::Allocate { lifetime: None }),
        Received::Allocated { .. }
    ));
    let r = c.request(Request::ChannelBind {
        channel: 0x4000,
        peer: peer.addr,
    });
    assert_eq!(r, Received::ChannelBound, "{}", d.log_text());
    c.send_channel(0x4000, b"via dns");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(peer.count(), 1);
}
