//! TCP allocations (RFC 6062) on the virtual clock: Allocate, Connect and its errors
//! (446, 447, 403, 443), ConnectionAttempt for peers that connect, ConnectionBind, the
//! 30 s timeouts, and the cleanup of every connection when its allocation or either of
//! its streams ends.

use std::time::Duration;

use stunner_turn::*;

use crate::sim::*;

/// A TURN-TCP listener routed to a `protocol: TCP` cluster of 10.1.0.0/16 and a UDP
/// cluster of 10.2.0.0/16.
fn tcp_sim() -> Sim {
    Sim::new(config_from_yaml(
        "version: v1\nauth: {credentials: {username: user, password: pass}}\n\
         listeners: [{name: l, protocol: TURN-TCP, address: 10.0.0.1, routes: [tcp, udp]}]\n\
         clusters: [{name: tcp, protocol: TCP, endpoints: [10.1.0.0/16]},\n\
                    {name: udp, endpoints: [10.2.0.0/16]}]",
        "l",
    ))
}

const PEER: &str = "10.1.0.5:8080";

fn allocate_tcp(sim: &mut Sim, c: &mut TestClient) -> std::net::SocketAddr {
    match c.exchange(sim, Request::AllocateTcp { lifetime: None }) {
        Received::Allocated { relayed, .. } => relayed,
        other => panic!("TCP allocate failed: {other:?}"),
    }
}

/// Connects the allocation of `c` to `peer`; the IO layer's answer is `connected`.
fn connect(sim: &mut Sim, c: &mut TestClient, peer: &str, connected: bool) -> Received {
    assert_eq!(
        c.exchange(sim, Request::Connect { peer: addr(peer) }),
        Received::Ignored,
        "Connect is answered when the IO layer has connected"
    );
    let (id, _, to) = sim.connects.pop().expect("a ConnectPeer output");
    assert_eq!(to, addr(peer));
    sim.server.handle_peer_connected(sim.now, id, connected);
    sim.drain();
    c.next(sim).expect("the Connect answer").0
}

#[test]
fn tcp_allocation_needs_tcp_or_tls_and_no_udp_attributes() {
    let mut sim = Sim::open_cluster();
    let mut c = TestClient::user("192.0.2.10:40000");
    assert_eq!(
        c.expect_error(&mut sim, Request::AllocateTcp { lifetime: None }),
        400,
        "over UDP"
    );
    let mut sim = tcp_sim();
    let relay = allocate_tcp(&mut sim, &mut c);
    assert!(sim.opened[0].tcp);
    assert_eq!(relay.ip(), ip("10.0.0.1"));
    // A TCP allocation has no channels (RFC 6062 §4).
    let r = c.exchange(
        &mut sim,
        Request::ChannelBind {
            channel: 0x4000,
            peer: addr(PEER),
        },
    );
    assert!(matches!(r, Received::Failed { code: 400, .. }), "{r:?}");
}

#[test]
fn connect_then_connection_bind_on_a_new_connection() {
    let mut sim = tcp_sim();
    let mut c = TestClient::user("192.0.2.10:40000");
    let relay = allocate_tcp(&mut sim, &mut c);
    assert_eq!(
        c.exchange(&mut sim, Request::Connect { peer: addr(PEER) }),
        Received::Ignored
    );
    let (id, from, _) = sim.connects[0];
    assert_eq!(
        from, relay,
        "the connection starts from the relayed address"
    );
    sim.server.handle_peer_connected(sim.now, id, true);
    sim.drain();
    assert_eq!(c.next(&mut sim).unwrap().0, Received::Connected { id });
    // The data connection: a new client connection with the same credentials.
    let mut data = TestClient::user("192.0.2.10:40001");
    assert_eq!(
        data.exchange(&mut sim, Request::ConnectionBind { id }),
        Received::ConnectionBound
    );
    assert_eq!(sim.bound, vec![(id, data.ft)]);
    // It cannot be bound twice, and a second Connect to the peer is 446.
    let mut again = TestClient::user("192.0.2.10:40002");
    assert!(matches!(
        again.exchange(&mut sim, Request::ConnectionBind { id }),
        Received::Failed { code: 400, .. }
    ));
    assert_eq!(
        c.expect_error(&mut sim, Request::Connect { peer: addr(PEER) }),
        446
    );
    assert_eq!(sim.server.tcp_connection_count(), 1);
    // The data connection closing closes the pair.
    sim.server.handle_client_closed(sim.now, data.ft);
    sim.drain();
    assert_eq!(sim.closed_connections, vec![id]);
    assert_eq!(sim.server.tcp_connection_count(), 0);
}

#[test]
fn connect_errors() {
    let mut sim = tcp_sim();
    let mut c = TestClient::user("192.0.2.10:40000");
    allocate_tcp(&mut sim, &mut c);
    let code = |r: Received| match r {
        Received::Failed { code, .. } => code,
        other => panic!("expected an error, got {other:?}"),
    };
    // A peer of a UDP cluster, of no cluster, of the other family.
    for (peer, want) in [
        ("10.2.0.5:8080", 403),
        ("10.9.0.5:8080", 403),
        ("[fd00::5]:8080", 443),
    ] {
        let r = c.exchange(&mut sim, Request::Connect { peer: addr(peer) });
        assert_eq!(code(r), want, "{peer}");
    }
    assert!(sim.connects.is_empty());
    // The IO layer could not connect: 447, and nothing is left.
    assert_eq!(code(connect(&mut sim, &mut c, PEER, false)), 447);
    assert_eq!(sim.server.tcp_connection_count(), 0);
    // Connect on a UDP allocation is 400.
    let mut sim = Sim::new({
        let mut cfg = static_config(&["0.0.0.0/0"]);
        cfg.transport = TransportKind::Stream;
        cfg
    });
    let mut u = TestClient::user("192.0.2.10:40000");
    u.allocate(&mut sim);
    assert_eq!(
        u.expect_error(&mut sim, Request::Connect { peer: addr(PEER) }),
        400
    );
}

#[test]
fn connect_that_hangs_fails_with_447_after_30_s() {
    let mut sim = tcp_sim();
    let mut c = TestClient::user("192.0.2.10:40000");
    allocate_tcp(&mut sim, &mut c);
    c.exchange(&mut sim, Request::Connect { peer: addr(PEER) });
    let (id, ..) = sim.connects[0];
    sim.advance(CONNECT_TIMEOUT - Duration::from_secs(1));
    assert!(c.next(&mut sim).is_none());
    sim.advance(Duration::from_secs(1));
    let r = c.next(&mut sim).expect("447").0;
    assert!(matches!(r, Received::Failed { code: 447, .. }), "{r:?}");
    assert_eq!(sim.closed_connections, vec![id]);
    // The IO layer's late answer finds nothing.
    sim.server.handle_peer_connected(sim.now, id, true);
    sim.drain();
    assert!(c.next(&mut sim).is_none());
    assert_eq!(sim.server.tcp_connection_count(), 0);
}

#[test]
fn unbound_connection_is_closed_after_30_s() {
    let mut sim = tcp_sim();
    let mut c = TestClient::user("192.0.2.10:40000");
    allocate_tcp(&mut sim, &mut c);
    let Received::Connected { id } = connect(&mut sim, &mut c, PEER, true) else {
        panic!("not connected")
    };
    sim.advance(CONNECTION_BIND_TIMEOUT);
    assert_eq!(sim.closed_connections, vec![id]);
    let mut data = TestClient::user("192.0.2.10:40001");
    assert!(matches!(
        data.exchange(&mut sim, Request::ConnectionBind { id }),
        Received::Failed { code: 400, .. }
    ));
}

#[test]
fn connection_bind_errors() {
    let mut sim = tcp_sim();
    let mut c = TestClient::user("192.0.2.10:40000");
    allocate_tcp(&mut sim, &mut c);
    let Received::Connected { id } = connect(&mut sim, &mut c, PEER, true) else {
        panic!("not connected")
    };
    // On the control connection itself, with an unknown id, as another user.
    assert!(matches!(
        c.exchange(&mut sim, Request::ConnectionBind { id }),
        Received::Failed { code: 400, .. }
    ));
    let mut data = TestClient::user("192.0.2.10:40001");
    assert!(matches!(
        data.exchange(&mut sim, Request::ConnectionBind { id: id ^ 1 }),
        Received::Failed { code: 400, .. }
    ));
    let cfg = {
        let mut cfg = sim.server.config().clone();
        cfg.credentials = Credentials::Static {
            username: "user".into(),
            password: "pass".into(),
        };
        cfg
    };
    sim.server.set_config(cfg);
    // Unauthenticated: the 401 dance, then refused without credentials that verify.
    let mut wrong = TestClient::new("192.0.2.10:40002", "user", "wrong");
    assert!(matches!(
        wrong.exchange(&mut sim, Request::ConnectionBind { id }),
        Received::Failed { code: 401, .. }
    ));
    // Still bindable by the owner.
    assert_eq!(
        data.exchange(&mut sim, Request::ConnectionBind { id }),
        Received::ConnectionBound
    );
}

#[test]
fn peer_that_connects_is_offered_with_connection_attempt() {
    let mut sim = tcp_sim();
    let mut c = TestClient::user("192.0.2.10:40000");
    let relay = allocate_tcp(&mut sim, &mut c);
    let peer = addr("10.1.0.9:5555");
    // No permission: refused (the IO layer closes it).
    assert_eq!(
        sim.server.handle_peer_connection(sim.now, relay, peer),
        None
    );
    assert_eq!(
        c.exchange(&mut sim, Request::CreatePermission { peers: vec![peer] }),
        Received::PermissionCreated
    );
    let id = sim
        .server
        .handle_peer_connection(sim.now, relay, peer)
        .expect("admitted");
    sim.drain();
    assert_eq!(
        c.next(&mut sim).unwrap().0,
        Received::ConnectionAttempt { id, peer }
    );
    // A second connection from the same peer address is refused.
    assert_eq!(
        sim.server.handle_peer_connection(sim.now, relay, peer),
        None
    );
    let mut data = TestClient::user("192.0.2.10:40001");
    assert_eq!(
        data.exchange(&mut sim, Request::ConnectionBind { id }),
        Received::ConnectionBound
    );
    // A peer of a UDP cluster with a permission is still refused on a TCP relay.
    let udp_peer = addr("10.2.0.9:5555");
    c.exchange(
        &mut sim,
        Request::CreatePermission {
            peers: vec![udp_peer],
        },
    );
    assert_eq!(
        sim.server.handle_peer_connection(sim.now, relay, udp_peer),
        None
    );
}

#[test]
fn allocation_end_closes_every_connection() {
    let mut sim = tcp_sim();
    let mut c = TestClient::user("192.0.2.10:40000");
    let relay = allocate_tcp(&mut sim, &mut c);
    let Received::Connected { id: a } = connect(&mut sim, &mut c, PEER, true) else {
        panic!("not connected")
    };
    let Received::Connected { id: b } = connect(&mut sim, &mut c, "10.1.0.6:8080", true) else {
        panic!("not connected")
    };
    let mut data = TestClient::user("192.0.2.10:40001");
    data.exchange(&mut sim, Request::ConnectionBind { id: a });
    // The control connection goes: the allocation, both peer connections and the data
    // connection end (RFC 6062 §5: they live no longer than the allocation).
    sim.server.handle_client_closed(sim.now, c.ft);
    sim.drain();
    sim.closed_connections.sort();
    let mut want = vec![a, b];
    want.sort();
    assert_eq!(sim.closed_connections, want);
    assert_eq!(sim.closed, vec![relay]);
    assert_eq!(sim.server.tcp_connection_count(), 0);
    // The IO layer's report of the closed data connection changes nothing.
    sim.server.handle_client_closed(sim.now, data.ft);
    sim.server.handle_connection_closed(sim.now, a);
    sim.drain();
    assert_eq!(sim.closed_connections.len(), 2);
}
