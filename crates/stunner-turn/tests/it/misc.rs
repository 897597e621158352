//! Binding, malformed input, and arbitrary input sequences.

use std::time::Duration;

use proptest::prelude::*;
use stunner_turn::*;

use crate::sim::*;

#[test]
fn binding_reflects_the_client_address() {
    let mut sim = Sim::open_cluster();
    let mut c = TestClient::user("192.0.2.10:40000");
    assert_eq!(
        c.exchange(&mut sim, Request::Binding),
        Received::Mapped(c.ft.client)
    );
}

#[test]
fn malformed_input_is_dropped() {
    let mut sim = Sim::open_cluster();
    let ft = TestClient::user("192.0.2.10:40000").ft;
    for junk in [
        &b""[..],
        b"\x00",
        b"\x00\x01\x00\x00",
        b"\xff\xff",
        b"\x40\x00\x00\x10ab",
        b"\x80abc",
    ] {
        sim.client_sends(ft, junk);
    }
    assert!(sim.take_client(ft.client).is_none());
    assert!(sim.server.stats().drops(DropReason::Malformed) >= 5);
}

#[derive(Debug, Clone)]
enum Step {
    Client(u8, Vec<u8>),
    Request(u8, u8),
    Peer(u8, Vec<u8>),
    Advance(u16),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u8..3, proptest::collection::vec(any::<u8>(), 0..80))
            .prop_map(|(c, b)| Step::Client(c, b)),
        (0u8..3, 0u8..7).prop_map(|(c, r)| Step::Request(c, r)),
        (0u8..3, proptest::collection::vec(any::<u8>(), 0..40)).prop_map(|(c, b)| Step::Peer(c, b)),
        any::<u16>().prop_map(Step::Advance),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any sequence of requests, junk, peer datagrams and time never panics, and the
    /// server's books stay consistent.
    #[test]
    fn arbitrary_input_sequences_never_panic(steps in proptest::collection::vec(step(), 0..40)) {
        let mut sim = Sim::new(static_config(&["10.1.0.0/16"]));
        let mut clients: Vec<TestClient> =
            (0..3).map(|i| TestClient::user(&format!("192.0.2.10:{}", 1000 + i))).collect();
        let peer = addr("10.1.0.5:9000");
        for s in steps {
            match s {
                Step::Client(c, b) => sim.client_sends(clients[usize::from(c)].ft, &b),
                Step::Request(c, r) => {
                    let req = match r {
                        0 => Request::Binding,
                        1 => Request::Allocate { lifetime: Some(700) },
                        2 => Request::Refresh { lifetime: 0 },
                        3 => Request::Refresh { lifetime: 800 },
                        4 => Request::CreatePermission { peers: vec![peer] },
                        5 => Request::ChannelBind { channel: 0x4000, peer },
                        _ => Request::ChannelBind { channel: 0x3000, peer },
                    };
                    let _ = clients[usize::from(c)].exchange(&mut sim, req);
                }
                Step::Peer(c, b) => {
                    let relay = std::net::SocketAddr::new(ip(RELAY_IP), 50001 + u16::from(c));
                    sim.peer_sends(relay, peer, &b);
                }
                Step::Advance(s) => sim.advance(Duration::from_secs(u64::from(s % 700))),
            }
        }
        prop_assert!(sim.server.allocation_count() <= 3);
        sim.server.close_all(sim.now);
        sim.drain();
        prop_assert_eq!(sim.server.allocation_count(), 0);
    }

    #[test]
    fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut sim = Sim::open_cluster();
        let ft = TestClient::user("192.0.2.10:1").ft;
        sim.client_sends(ft, &b);
        let mut c = Client::new("u", "p", TransportKind::Stream, 3);
        let _ = c.receive(&b);
    }
}

fn socket_addr() -> impl Strategy<Value = std::net::SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, p)| (std::net::IpAddr::from(ip), p).into()),
        (any::<[u8; 16]>(), any::<u16>())
            .prop_map(|(ip, p)| (std::net::IpAddr::from(ip), p).into()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// What the client encodes, the codec decodes to the same values.
    #[test]
    fn requests_round_trip(peer in socket_addr(), ch in MIN_CHANNEL..=MAX_CHANNEL, life in any::<u32>()) {
        use stun_types::message::Message;
        use turn_types::attribute::{ChannelNumber, Lifetime, XorPeerAddress};
        let mut c = Client::new("u", "p", TransportKind::Datagram, 9);
        let b = c.request(Request::ChannelBind { channel: ch, peer });
        let m = Message::from_bytes(&b).unwrap();
        prop_assert_eq!(m.attribute::<XorPeerAddress>().unwrap().addr(m.transaction_id()), peer);
        prop_assert_eq!(m.attribute::<ChannelNumber>().unwrap().channel(), ch);
        let b = c.request(Request::Refresh { lifetime: life });
        let m = Message::from_bytes(&b).unwrap();
        prop_assert_eq!(m.attribute::<Lifetime>().unwrap().seconds(), life);
        let b = c.send_indication(peer, b"abc");
        let m = Message::from_bytes(&b).unwrap();
        prop_assert_eq!(m.attribute::<XorPeerAddress>().unwrap().addr(m.transaction_id()), peer);
    }

    #[test]
    fn channel_data_round_trips(ch in MIN_CHANNEL..=MAX_CHANNEL, payload in proptest::collection::vec(any::<u8>(), 0..300), stream in any::<bool>()) {
        let t = if stream { TransportKind::Stream } else { TransportKind::Datagram };
        let mut c = Client::new("u", "p", t, 9);
        let frame = c.channel_data(ch, &payload);
        if stream { prop_assert_eq!(frame.len() % 4, 0); }
        match c.receive(&frame) {
            Received::ChannelData { channel, range } => {
                prop_assert_eq!(channel, ch);
                prop_assert_eq!(&frame[range], &payload[..]);
            }
            other => prop_assert!(false, "{:?}", other),
        }
    }
}

#[test]
fn bad_fingerprint_is_dropped() {
    let mut sim = Sim::open_cluster();
    let mut c = TestClient::user("192.0.2.10:40000");
    let mut b = c.client.request(Request::Binding);
    let last = b.len() - 1;
    b[last] ^= 0xFF;
    sim.client_sends(c.ft, &b);
    assert!(sim.take_client(c.ft.client).is_none());
    assert_eq!(sim.server.stats().drops(DropReason::Malformed), 1);
}

#[test]
fn a_byte_stream_splits_into_frames() {
    let mut cfg = static_config(&["10.1.0.0/16"]);
    cfg.transport = TransportKind::Stream;
    let mut sim = Sim::new(cfg);
    let mut c = TestClient::user("192.0.2.10:40000");
    c.client = Client::new("user", "pass", TransportKind::Stream, 5);
    c.allocate(&mut sim);
    let peer = addr("10.1.0.5:9000");
    c.exchange(
        &mut sim,
        Request::ChannelBind {
            channel: 0x4000,
            peer,
        },
    );
    // Three frames in one read, then the stream is split mid-frame.
    let mut stream = c.client.request(Request::Refresh { lifetime: 700 });
    stream.extend(c.client.channel_data(0x4000, b"one"));
    stream.extend(c.client.channel_data(0x4000, b"two!!"));
    let mut buf: Vec<u8> = Vec::new();
    for chunk in stream.chunks(7) {
        buf.extend_from_slice(chunk);
        while let Ok(Some(n)) = frame_len(&buf) {
            if buf.len() < n {
                break;
            }
            let frame: Vec<u8> = buf.drain(..n).collect();
            sim.client_sends(c.ft, &frame);
        }
    }
    assert!(buf.is_empty());
    let got: Vec<Vec<u8>> = sim.peer_got(peer).into_iter().map(|(_, d)| d).collect();
    assert_eq!(got, vec![b"one".to_vec(), b"two!!".to_vec()]);
    let (answer, _) = c.next(&mut sim).unwrap();
    assert_eq!(answer, Received::Refreshed { lifetime: 700 });
}

/// A challenge that cannot carry its REALM is not sent at all (an error without it tells
/// the client nothing): the request goes unanswered and the drop is counted.
#[test]
fn a_response_that_cannot_be_encoded_is_not_sent_and_is_counted() {
    let mut cfg = static_config(&["0.0.0.0/0"]);
    cfg.realm = "r".repeat(764);
    let mut sim = Sim::new(cfg);
    let mut c = TestClient::user("192.0.2.10:40000");
    let req = c.client.request(Request::Allocate { lifetime: None });
    sim.client_sends(c.ft, &req);
    assert!(sim.take_client(c.ft.client).is_none());
    assert_eq!(sim.server.stats().drops(DropReason::Unencodable), 1);
    assert!(
        sim.opened.is_empty(),
        "no relay opened for an unanswered request"
    );
}
