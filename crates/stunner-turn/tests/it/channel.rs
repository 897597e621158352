//! CreatePermission and ChannelBind: grants, policy denials, rebinding rules, and
//! ChannelData both ways.

use stunner_turn::*;

use crate::sim::*;

const PEER: &str = "10.1.0.5:9000";

fn allocated(policy: &[&str]) -> (Sim, TestClient, std::net::SocketAddr) {
    let mut sim = Sim::new(static_config(policy));
    let mut c = TestClient::user("192.0.2.10:40000");
    let relay = c.allocate(&mut sim);
    (sim, c, relay)
}

#[test]
fn permission_then_send_and_data_indications() {
    let (mut sim, mut c, relay) = allocated(&["10.1.0.0/16"]);
    let peer = addr(PEER);
    let r = c.exchange(&mut sim, Request::CreatePermission { peers: vec![peer] });
    assert_eq!(r, Received::PermissionCreated);
    assert!(
        sim.events
            .iter()
            .any(|e| matches!(e, Event::PermissionCreated { peer: p, .. } if *p == peer.ip()))
    );
    let send = c.client.send_indication(peer, b"hello");
    sim.client_sends(c.ft, &send);
    assert_eq!(sim.peer_got(peer), vec![(relay, b"hello".to_vec())]);
    sim.peer_sends(relay, peer, b"world");
    let (got, _) = c.next(&mut sim).unwrap();
    assert_eq!(
        got,
        Received::Data {
            peer,
            payload: b"world".to_vec()
        }
    );
    let stats = sim.server.stats();
    assert_eq!(
        stats.clusters[0].to_peer,
        Counter {
            packets: 1,
            bytes: 5
        }
    );
    assert_eq!(
        stats.clusters[0].from_peer,
        Counter {
            packets: 1,
            bytes: 5
        }
    );
}

#[test]
fn several_peers_in_one_request() {
    let (mut sim, mut c, relay) = allocated(&["10.1.0.0/16"]);
    let peers = vec![addr("10.1.0.5:1"), addr("10.1.0.6:1")];
    let r = c.exchange(
        &mut sim,
        Request::CreatePermission {
            peers: peers.clone(),
        },
    );
    assert_eq!(r, Received::PermissionCreated);
    for p in peers {
        // Permissions are per IP: any port of the peer may send (RFC 8656 §9).
        sim.peer_sends(relay, std::net::SocketAddr::new(p.ip(), 7777), b"x");
        assert!(matches!(c.next(&mut sim), Some((Received::Data { .. }, _))));
    }
}

#[test]
fn denied_peers_are_403_all_or_nothing() {
    let (mut sim, mut c, relay) = allocated(&["10.1.0.0/16"]);
    let peers = vec![addr("10.1.0.5:1"), addr("10.2.0.1:1")];
    assert_eq!(
        c.expect_error(&mut sim, Request::CreatePermission { peers }),
        403
    );
    // The allowed one was not installed either.
    sim.peer_sends(relay, addr("10.1.0.5:1"), b"x");
    assert!(c.next(&mut sim).is_none());
    assert_eq!(sim.server.stats().drops(DropReason::NoPermission), 1);
}

#[test]
fn open_cluster_does_not_reach_loopback_or_metadata() {
    let (mut sim, mut c, _) = allocated(&["0.0.0.0/0"]);
    for p in [
        "127.0.0.1:80",
        "169.254.169.254:80",
        "0.0.0.0:1",
        "224.0.0.1:5",
    ] {
        assert_eq!(
            c.expect_error(
                &mut sim,
                Request::CreatePermission {
                    peers: vec![addr(p)]
                }
            ),
            403,
            "{p}"
        );
    }
    let (mut sim, mut c, _) = allocated(&["127.0.0.1/32"]);
    assert_eq!(
        c.exchange(
            &mut sim,
            Request::CreatePermission {
                peers: vec![addr("127.0.0.1:80")]
            }
        ),
        Received::PermissionCreated
    );
}

#[test]
fn peer_of_the_wrong_family_is_443() {
    let (mut sim, mut c, _) = allocated(&["0.0.0.0/0", "::/0"]);
    assert_eq!(
        c.expect_error(
            &mut sim,
            Request::CreatePermission {
                peers: vec![addr("[2001:db8::1]:1")]
            }
        ),
        443
    );
}

#[test]
fn create_permission_without_allocation_is_437() {
    let mut sim = Sim::open_cluster();
    let mut c = TestClient::user("192.0.2.10:40000");
    assert_eq!(
        c.expect_error(
            &mut sim,
            Request::CreatePermission {
                peers: vec![addr(PEER)]
            }
        ),
        437
    );
}

#[test]
fn channel_data_both_ways() {
    let (mut sim, mut c, relay) = allocated(&["10.1.0.0/16"]);
    let peer = addr(PEER);
    let r = c.exchange(
        &mut sim,
        Request::ChannelBind {
            channel: 0x4000,
            peer,
        },
    );
    assert_eq!(r, Received::ChannelBound);
    assert!(sim.events.iter().any(|e| matches!(
        e,
        Event::ChannelCreated {
            channel: 0x4000,
            ..
        }
    )));
    // Client to peer: the payload, from the relay.
    let frame = c.client.channel_data(0x4000, b"ping");
    sim.client_sends(c.ft, &frame);
    assert_eq!(sim.peer_got(peer), vec![(relay, b"ping".to_vec())]);
    // Peer to client: ChannelData.
    sim.peer_sends(relay, peer, b"pong!");
    let (got, bytes) = c.next(&mut sim).unwrap();
    let Received::ChannelData { channel, range } = got else {
        panic!("{got:?}")
    };
    assert_eq!(channel, 0x4000);
    assert_eq!(&bytes[range], b"pong!");
    // Over datagrams no padding is added.
    assert_eq!(bytes.len(), 4 + 5);
}

#[test]
fn channel_data_is_padded_over_streams() {
    let mut cfg = static_config(&["10.1.0.0/16"]);
    cfg.transport = TransportKind::Stream;
    let mut sim = Sim::new(cfg);
    let mut c = TestClient::user("192.0.2.10:40000");
    let relay = c.allocate(&mut sim);
    let peer = addr(PEER);
    c.exchange(
        &mut sim,
        Request::ChannelBind {
            channel: 0x4001,
            peer,
        },
    );
    sim.peer_sends(relay, peer, b"pong!");
    let (_, bytes) = c.next(&mut sim).unwrap();
    assert_eq!(bytes.len(), 12);
    assert_eq!(&bytes[..4], &[0x40, 0x01, 0, 5]);
    assert_eq!(&bytes[9..], &[0, 0, 0]);
    // A padded frame from the client is accepted.
    let mut stream_client = Client::new("user", "pass", TransportKind::Stream, 1);
    let frame = stream_client.channel_data(0x4001, b"abcde");
    assert_eq!(frame.len(), 12);
    sim.client_sends(c.ft, &frame);
    assert_eq!(sim.peer_got(peer), vec![(relay, b"abcde".to_vec())]);
    let _ = stream_client.request(Request::Binding);
}

#[test]
fn channel_data_is_padded_over_dtls() {
    // Datagrams, but padded: pion/turn reads DTLS with its stream framer.
    let mut cfg = static_config(&["10.1.0.0/16"]);
    cfg.transport = TransportKind::PaddedDatagram;
    let mut sim = Sim::new(cfg);
    let mut c = TestClient::user("192.0.2.10:40000");
    let relay = c.allocate(&mut sim);
    let peer = addr(PEER);
    c.exchange(
        &mut sim,
        Request::ChannelBind {
            channel: 0x4001,
            peer,
        },
    );
    sim.peer_sends(relay, peer, b"pong!");
    let (_, bytes) = c.next(&mut sim).unwrap();
    assert_eq!(bytes.len(), 12);
    assert_eq!(&bytes[9..], &[0, 0, 0]);
    // Unpadded frames from a client that follows RFC 8656 §12.5 to the letter still relay.
    let plain =
        Client::new("user", "pass", TransportKind::Datagram, 1).channel_data(0x4001, b"abcde");
    assert_eq!(plain.len(), 9);
    sim.client_sends(c.ft, &plain);
    let padded = Client::new("user", "pass", TransportKind::PaddedDatagram, 2)
        .channel_data(0x4001, b"fghij");
    assert_eq!(padded.len(), 12);
    sim.client_sends(c.ft, &padded);
    assert_eq!(
        sim.peer_got(peer),
        vec![(relay, b"abcde".to_vec()), (relay, b"fghij".to_vec())]
    );
}

#[test]
fn channel_bind_errors_and_rebinding_rules() {
    let (mut sim, mut c, _) = allocated(&["10.1.0.0/16:<9000-9100>"]);
    let peer = addr(PEER);
    let other = addr("10.1.0.6:9001");
    for bad in [0x3FFF, 0x7FFF, 0xFFFF] {
        assert_eq!(
            c.expect_error(&mut sim, Request::ChannelBind { channel: bad, peer }),
            400
        );
    }
    assert_eq!(
        c.exchange(
            &mut sim,
            Request::ChannelBind {
                channel: 0x4000,
                peer
            }
        ),
        Received::ChannelBound
    );
    // The same binding again refreshes it.
    assert_eq!(
        c.exchange(
            &mut sim,
            Request::ChannelBind {
                channel: 0x4000,
                peer
            }
        ),
        Received::ChannelBound
    );
    // The channel to another peer, or the peer on another channel: 400.
    assert_eq!(
        c.expect_error(
            &mut sim,
            Request::ChannelBind {
                channel: 0x4000,
                peer: other
            }
        ),
        400
    );
    assert_eq!(
        c.expect_error(
            &mut sim,
            Request::ChannelBind {
                channel: 0x4001,
                peer
            }
        ),
        400
    );
    // A port outside the cluster's range: 403.
    assert_eq!(
        c.expect_error(
            &mut sim,
            Request::ChannelBind {
                channel: 0x4002,
                peer: addr("10.1.0.5:80")
            }
        ),
        403
    );
}

#[test]
fn unbound_channel_and_foreign_client_are_dropped() {
    let (mut sim, c, _) = allocated(&["10.1.0.0/16"]);
    let frame = c.client.channel_data(0x4005, b"x");
    sim.client_sends(c.ft, &frame);
    assert_eq!(sim.server.stats().drops(DropReason::NoChannel), 1);
    let stranger = TestClient::user("192.0.2.99:1");
    sim.client_sends(stranger.ft, &frame);
    assert_eq!(sim.server.stats().drops(DropReason::NoAllocation), 1);
    assert!(sim.to_peers.is_empty());
}
