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

fn dns_config(
    listeners: &[(&str, u16)],
    pass: &str,
    cluster: &str,
) -> stunner_config::StunnerConfig {
    let ls: String = listeners
        .iter()
        .map(|(n, p)| {
            format!("  - {{name: {n}, protocol: TURN-UDP, port: {p}, routes: [peers]}}\n")
        })
        .collect();
    let mut c = stunner_config::StunnerConfig::from_str(&format!(
        "version: v1
admin: {{healthcheck_endpoint: \"\"}}
auth: {{type: static, credentials: {{username: user, password: {pass}}}}}
listeners:
{ls}clusters:
  - {cluster}
"
    ))
    .unwrap();
    c.validate().unwrap();
    c
}

/// Whether a fresh allocation on `port` may bind a channel to `peer`.
fn admits(port: u16, pass: &str, peer: std::net::SocketAddr) -> Received {
    let mut c = TurnClient::new(port, "user", pass);
    assert!(matches!(
        c.request(Request::Allocate { lifetime: None }),
        Received::Allocated { .. }
    ));
    c.request(Request::ChannelBind {
        channel: 0x4000,
        peer,
    })
}

/// A config push keeps the addresses of the STRICT_DNS names it still uses: peers are
/// admitted at once on updated and on new listeners, with no lookup in between (the
/// daemon runs in process, nothing resolves `.invalid`). A name the config drops is
/// forgotten and must be looked up again when it comes back.
#[test]
fn dns_peers_stay_admitted_across_a_config_push() {
    let (a, b) = (free_port(), free_port());
    let peer = EchoPeer::start();
    let dns = "{name: peers, type: STRICT_DNS, endpoints: [peer.invalid]}";
    let mut d = stunnerd::Daemon::new(1);
    let first = dns_config(&[("a", a)], "pass", dns);
    assert_eq!(d.unresolved(&first), vec!["peer.invalid".to_string()]);
    d.apply(first).unwrap();
    d.set_resolved("peer.invalid", &[peer.addr.ip()]);
    assert_eq!(admits(a, "pass", peer.addr), Received::ChannelBound);

    // An update in place (new password) and a new listener.
    let second = dns_config(&[("a", a), ("b", b)], "rotated", dns);
    assert!(d.unresolved(&second).is_empty());
    d.apply(second).unwrap();
    assert_eq!(admits(a, "rotated", peer.addr), Received::ChannelBound);
    assert_eq!(admits(b, "rotated", peer.addr), Received::ChannelBound);

    // Dropped, then back: not known any more.
    d.apply(dns_config(
        &[("a", a)],
        "rotated",
        "{name: peers, endpoints: [127.0.0.1/32]}",
    ))
    .unwrap();
    let back = dns_config(&[("a", a)], "rotated", dns);
    assert_eq!(d.unresolved(&back), vec!["peer.invalid".to_string()]);
    d.apply(back).unwrap();
    let r = admits(a, "rotated", peer.addr);
    assert!(matches!(r, Received::Failed { code: 403, .. }), "{r:?}");
}
