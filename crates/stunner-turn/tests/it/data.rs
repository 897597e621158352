//! The peer policy on every datagram, both ways: a denied peer never gets a byte.

use stunner_turn::*;

use crate::sim::*;

#[test]
fn policy_change_cuts_relayed_traffic_both_ways() {
    let mut sim = Sim::new(static_config(&["10.1.0.0/16"]));
    let mut c = TestClient::user("192.0.2.10:40000");
    let relay = c.allocate(&mut sim);
    let peer = addr("10.1.0.5:9000");
    c.exchange(
        &mut sim,
        Request::ChannelBind {
            channel: 0x4000,
            peer,
        },
    );
    c.exchange(&mut sim, Request::CreatePermission { peers: vec![peer] });
    // Reconfigure: the cluster no longer covers the peer.
    sim.server.set_config(static_config(&["10.2.0.0/16"]));
    let frame = c.client.channel_data(0x4000, b"secret");
    sim.client_sends(c.ft, &frame);
    let send = c.client.send_indication(peer, b"secret");
    sim.client_sends(c.ft, &send);
    assert!(sim.peer_got(peer).is_empty(), "a denied peer got bytes");
    sim.peer_sends(relay, peer, b"reply");
    assert!(
        c.next(&mut sim).is_none(),
        "a denied peer reached the client"
    );
    assert_eq!(sim.server.stats().drops(DropReason::PolicyDenied), 3);
    // The allocation itself stays.
    assert_eq!(sim.server.allocation_count(), 1);
}

#[test]
fn port_ranges_apply_per_datagram() {
    let mut sim = Sim::new(static_config(&["10.1.0.0/16:<9000-9000>"]));
    let mut c = TestClient::user("192.0.2.10:40000");
    let relay = c.allocate(&mut sim);
    // The permission is per IP (RFC 8656 §9); the port is checked per datagram.
    c.exchange(
        &mut sim,
        Request::CreatePermission {
            peers: vec![addr("10.1.0.5:1")],
        },
    );
    let send = c.client.send_indication(addr("10.1.0.5:9001"), b"x");
    sim.client_sends(c.ft, &send);
    assert!(sim.peer_got(addr("10.1.0.5:9001")).is_empty());
    sim.peer_sends(relay, addr("10.1.0.5:9001"), b"x");
    assert!(c.next(&mut sim).is_none());
    let send = c.client.send_indication(addr("10.1.0.5:9000"), b"ok");
    sim.client_sends(c.ft, &send);
    assert_eq!(sim.peer_got(addr("10.1.0.5:9000")).len(), 1);
}

#[test]
fn strict_dns_clusters_admit_resolved_addresses() {
    let cfg = config_from_yaml(
        "version: v1\nauth: {credentials: {username: user, password: pass}}\n\
         listeners: [{name: l, address: 10.0.0.1, routes: [media]}]\n\
         clusters: [{name: media, type: STRICT_DNS, endpoints: [media.ns.svc]}]",
        "l",
    );
    let mut sim = Sim::new(cfg);
    let mut c = TestClient::user("192.0.2.10:40000");
    c.allocate(&mut sim);
    let peer = addr("10.3.0.7:5000");
    assert_eq!(
        c.expect_error(&mut sim, Request::CreatePermission { peers: vec![peer] }),
        403
    );
    sim.server
        .policy_mut()
        .set_resolved("media.ns.svc", vec![peer.ip()]);
    assert_eq!(
        c.exchange(&mut sim, Request::CreatePermission { peers: vec![peer] }),
        Received::PermissionCreated
    );
    assert_eq!(sim.server.stats().clusters[0].name, "media");
}

#[test]
fn send_without_permission_is_dropped() {
    let mut sim = Sim::open_cluster();
    let mut c = TestClient::user("192.0.2.10:40000");
    c.allocate(&mut sim);
    let send = c.client.send_indication(addr("10.9.9.9:1"), b"x");
    sim.client_sends(c.ft, &send);
    assert!(sim.to_peers.is_empty());
    assert_eq!(sim.server.stats().drops(DropReason::NoPermission), 1);
}
