//! Allocate: the 401 dance, lifetimes, retransmits and every error code.

use std::time::Duration;

use stun_types::AddressFamily;
use stun_types::attribute::{
    AttributeStaticType, AttributeWrite, ErrorCode, Nonce, Realm, UnknownAttributes, Username,
};
use stun_types::message::{
    IntegrityAlgorithm, LongTermKeyCredentials, Message, MessageClass, MessageType, MessageWrite,
    MessageWriteExt, MessageWriteVec, Method, TransactionId,
};
use stunner_turn::*;
use turn_types::attribute::{
    EvenPort, Lifetime, RequestedAddressFamily, RequestedTransport, ReservationToken,
};
use turn_types::message::ALLOCATE;

use crate::sim::*;

/// Gets a nonce for `ft` with an unsigned Allocate.
pub fn nonce(sim: &mut Sim, ft: FiveTuple) -> (String, String) {
    let req = Message::builder_request(ALLOCATE, MessageWriteVec::new()).finish();
    sim.client_sends(ft, &req);
    let resp = sim.take_client(ft.client).unwrap();
    let msg = Message::from_bytes(&resp).unwrap();
    assert_eq!(msg.attribute::<ErrorCode>().unwrap().code(), 401);
    (
        msg.attribute::<Realm>().unwrap().realm().to_string(),
        msg.attribute::<Nonce>().unwrap().nonce().to_string(),
    )
}

/// A request signed with user/pass, with `attrs`, and the server's answer.
pub fn signed(
    sim: &mut Sim,
    ft: FiveTuple,
    method: Method,
    tid: u128,
    attrs: &[&dyn AttributeWrite],
    algorithm: IntegrityAlgorithm,
) -> (u16, Vec<u8>) {
    let key = send_signed(sim, ft, method, tid, attrs, algorithm);
    let resp = sim.take_client(ft.client).unwrap();
    let msg = Message::from_bytes(&resp).unwrap();
    let code = msg.attribute::<ErrorCode>().map_or(0, |e| e.code());
    if msg.class() == MessageClass::Success {
        assert!(
            msg.validate_integrity(&key).is_ok(),
            "success must be signed"
        );
    }
    (code, resp)
}

/// Sends a request signed with user/pass, with `attrs`; returns the key it was signed
/// with.
pub fn send_signed(
    sim: &mut Sim,
    ft: FiveTuple,
    method: Method,
    tid: u128,
    attrs: &[&dyn AttributeWrite],
    algorithm: IntegrityAlgorithm,
) -> stun_types::message::MessageIntegrityCredentials {
    let (realm, nonce) = nonce(sim, ft);
    let mut w = Message::builder(
        MessageType::from_class_method(MessageClass::Request, method),
        TransactionId::from(tid),
        MessageWriteVec::new(),
    );
    for a in attrs {
        w.add_attribute(*a).unwrap();
    }
    w.add_attribute(&Username::new("user").unwrap()).unwrap();
    w.add_attribute(&Realm::new(&realm).unwrap()).unwrap();
    w.add_attribute(&Nonce::new(&nonce).unwrap()).unwrap();
    let key = LongTermKeyCredentials::new("user".into(), "pass".into(), realm).into();
    w.add_message_integrity(&key, algorithm).unwrap();
    w.add_fingerprint().unwrap();
    let bytes = w.finish();
    sim.client_sends(ft, &bytes);
    key
}

#[test]
fn allocate_with_the_401_dance() {
    let mut sim = Sim::open_cluster();
    let mut c = TestClient::user("192.0.2.10:40000");
    let r = c.exchange(&mut sim, Request::Allocate { lifetime: None });
    let Received::Allocated {
        relayed,
        mapped,
        lifetime,
    } = r
    else {
        panic!("{r:?}")
    };
    assert_eq!(relayed, addr("10.0.0.1:50001"));
    assert_eq!(mapped, Some(c.ft.client));
    assert_eq!(lifetime, 600);
    assert_eq!(sim.server.allocation_count(), 1);
    assert!(
        sim.events
            .iter()
            .any(|e| matches!(e, Event::AllocationCreated { user, .. } if user == "user"))
    );
    assert!(
        sim.events
            .iter()
            .any(|e| matches!(e, Event::AuthAccepted { .. }))
    );
    assert!(!sim.opened[0].ipv6 && !sim.opened[0].even_port && !sim.opened[0].dont_fragment);
}

#[test]
fn lifetimes_are_clamped() {
    for (asked, granted) in [
        (Some(10), 600),
        (Some(1200), 1200),
        (Some(100_000), 3600),
        (None, 600),
    ] {
        let mut sim = Sim::open_cluster();
        let mut c = TestClient::user("192.0.2.10:40000");
        match c.exchange(&mut sim, Request::Allocate { lifetime: asked }) {
            Received::Allocated { lifetime, .. } => assert_eq!(lifetime, granted, "{asked:?}"),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn retransmitted_allocate_gets_the_same_answer() {
    let mut sim = Sim::open_cluster();
    let ft = TestClient::user("192.0.2.10:40000").ft;
    let (_, first) = signed(
        &mut sim,
        ft,
        ALLOCATE,
        77,
        &[&RequestedTransport::new(RequestedTransport::UDP)],
        IntegrityAlgorithm::Sha1,
    );
    assert_eq!(
        Message::from_bytes(&first).unwrap().class(),
        MessageClass::Success
    );
    // The same transaction again (even with a fresh nonce): the cached answer, no new
    // relay socket.
    let (_, again) = signed(
        &mut sim,
        ft,
        ALLOCATE,
        77,
        &[&RequestedTransport::new(RequestedTransport::UDP)],
        IntegrityAlgorithm::Sha1,
    );
    assert_eq!(again, first);
    assert_eq!(sim.opened.len(), 1);
    // A new transaction on the same five-tuple: 437.
    let (code, _) = signed(
        &mut sim,
        ft,
        ALLOCATE,
        78,
        &[&RequestedTransport::new(RequestedTransport::UDP)],
        IntegrityAlgorithm::Sha1,
    );
    assert_eq!(code, 437);
}

#[test]
fn message_integrity_sha256_is_accepted_and_answered_in_kind() {
    let mut sim = Sim::open_cluster();
    let ft = TestClient::user("192.0.2.10:40000").ft;
    let (code, resp) = signed(
        &mut sim,
        ft,
        ALLOCATE,
        5,
        &[&RequestedTransport::new(RequestedTransport::UDP)],
        IntegrityAlgorithm::Sha256,
    );
    assert_eq!(code, 0);
    let msg = Message::from_bytes(&resp).unwrap();
    assert!(msg.has_attribute(stun_types::attribute::MessageIntegritySha256::TYPE));
}

fn allocate_error(attrs: &[&dyn AttributeWrite]) -> u16 {
    let mut sim = Sim::new(static_config(&["0.0.0.0/0"]));
    let ft = TestClient::user("192.0.2.10:40000").ft;
    signed(&mut sim, ft, ALLOCATE, 9, attrs, IntegrityAlgorithm::Sha1).0
}

#[test]
fn allocate_errors() {
    let udp = RequestedTransport::new(RequestedTransport::UDP);
    assert_eq!(allocate_error(&[]), 400, "no REQUESTED-TRANSPORT");
    assert_eq!(
        allocate_error(&[&RequestedTransport::new(RequestedTransport::TCP)]),
        400,
        "a TCP relay over UDP (RFC 6062 §5.1)"
    );
    assert_eq!(
        allocate_error(&[&RequestedTransport::new(132)]),
        442,
        "SCTP"
    );
    assert_eq!(
        allocate_error(&[&udp, &RequestedAddressFamily::new(AddressFamily::IPV6)]),
        440
    );
    assert_eq!(
        allocate_error(&[&udp, &RequestedAddressFamily::new(AddressFamily::IPV4)]),
        0
    );
    assert_eq!(allocate_error(&[&udp, &EvenPort::new(true)]), 0);
    assert_eq!(
        allocate_error(&[&udp, &ReservationToken::new(1)]),
        508,
        "unknown token"
    );
    assert_eq!(
        allocate_error(&[&udp, &ReservationToken::new(1), &EvenPort::new(false)]),
        400
    );
    assert_eq!(allocate_error(&[&udp, &EvenPort::new(false)]), 0);
    assert_eq!(allocate_error(&[&udp, &Lifetime::new(0)]), 0);
}

#[test]
fn even_port_and_dont_fragment_reach_the_relay_request() {
    let mut sim = Sim::open_cluster();
    let ft = TestClient::user("192.0.2.10:40000").ft;
    let udp = RequestedTransport::new(RequestedTransport::UDP);
    let df = turn_types::attribute::DontFragment::new();
    signed(
        &mut sim,
        ft,
        ALLOCATE,
        9,
        &[&udp, &EvenPort::new(false), &df],
        IntegrityAlgorithm::Sha1,
    );
    assert!(sim.opened[0].even_port);
    assert!(sim.opened[0].dont_fragment);
}

#[test]
fn ipv6_relay() {
    let mut cfg = static_config(&["::/0"]);
    cfg.relay_ip = ip("2001:db8::1");
    let mut sim = Sim::new(cfg);
    let ft = FiveTuple {
        client: addr("[2001:db8::10]:4000"),
        server: addr("[2001:db8::1]:3478"),
    };
    let udp = RequestedTransport::new(RequestedTransport::UDP);
    let (code, resp) = signed(
        &mut sim,
        ft,
        ALLOCATE,
        9,
        &[&udp, &RequestedAddressFamily::new(AddressFamily::IPV6)],
        IntegrityAlgorithm::Sha1,
    );
    assert_eq!(code, 0);
    let msg = Message::from_bytes(&resp).unwrap();
    let relayed = msg
        .attribute::<turn_types::attribute::XorRelayedAddress>()
        .unwrap()
        .addr(msg.transaction_id());
    assert_eq!(relayed, addr("[2001:db8::1]:50001"));
    assert!(sim.opened[0].ipv6);
    let (code, _) = signed(
        &mut Sim::new({
            let mut c = static_config(&["::/0"]);
            c.relay_ip = ip("2001:db8::1");
            c
        }),
        ft,
        ALLOCATE,
        9,
        &[&udp, &RequestedAddressFamily::new(AddressFamily::IPV4)],
        IntegrityAlgorithm::Sha1,
    );
    assert_eq!(code, 440);
}

#[test]
fn no_relay_port_is_508() {
    let mut sim = Sim::open_cluster();
    sim.no_ports = true;
    let mut c = TestClient::user("192.0.2.10:40000");
    assert_eq!(
        c.expect_error(&mut sim, Request::Allocate { lifetime: None }),
        508
    );
    assert_eq!(sim.server.allocation_count(), 0);
    // The quota slot was given back: with quota 1 a later allocation works.
}

#[test]
fn quota_is_486_per_user() {
    let mut cfg = static_config(&["0.0.0.0/0"]);
    cfg.user_quota = 2;
    let mut sim = Sim::new(cfg);
    TestClient::user("192.0.2.10:1").allocate(&mut sim);
    TestClient::user("192.0.2.10:2").allocate(&mut sim);
    let mut third = TestClient::user("192.0.2.10:3");
    assert_eq!(
        third.expect_error(&mut sim, Request::Allocate { lifetime: None }),
        486
    );
    // Deleting one frees a slot.
    let mut first = TestClient::user("192.0.2.10:1");
    first.exchange(&mut sim, Request::Refresh { lifetime: 0 });
    // (the new client object has no nonce: the 401 dance runs; the old allocation is
    // deleted through it)
    assert_eq!(sim.server.allocation_count(), 1);
    third.allocate(&mut sim);
}

#[test]
fn quota_counts_pending_allocations_and_relay_failures_release_them() {
    let mut cfg = static_config(&["0.0.0.0/0"]);
    cfg.user_quota = 1;
    let mut sim = Sim::new(cfg);
    sim.no_ports = true;
    let mut c = TestClient::user("192.0.2.10:1");
    assert_eq!(
        c.expect_error(&mut sim, Request::Allocate { lifetime: None }),
        508
    );
    sim.no_ports = false;
    c.allocate(&mut sim);
}

#[test]
fn wrong_credentials_are_401() {
    let mut sim = Sim::open_cluster();
    let mut bad = TestClient::new("192.0.2.10:40000", "user", "wrong");
    assert_eq!(
        bad.expect_error(&mut sim, Request::Allocate { lifetime: None }),
        401
    );
    let mut unknown = TestClient::new("192.0.2.10:40001", "mallory", "pass");
    assert_eq!(
        unknown.expect_error(&mut sim, Request::Allocate { lifetime: None }),
        401
    );
    assert_eq!(sim.server.allocation_count(), 0);
    assert!(sim.events.iter().any(|e| matches!(
        e,
        Event::AuthRejected {
            reason: "unauthorized",
            ..
        }
    )));
}

#[test]
fn stale_nonce_is_438_and_the_client_recovers() {
    let mut sim = Sim::open_cluster();
    let mut c = TestClient::user("192.0.2.10:40000");
    c.allocate(&mut sim);
    for _ in 0..7 {
        sim.advance(Duration::from_secs(500));
        let r = c.exchange(&mut sim, Request::Refresh { lifetime: 600 });
        assert_eq!(r, Received::Refreshed { lifetime: 600 });
    }
    sim.advance(Duration::from_secs(200));
    // The nonce (1 h) is now stale; the client retries with the fresh one.
    let bytes = c.client.request(Request::Refresh { lifetime: 600 });
    sim.client_sends(c.ft, &bytes);
    let resp = sim.take_client(c.ft.client).unwrap();
    let msg = Message::from_bytes(&resp).unwrap();
    assert_eq!(msg.attribute::<ErrorCode>().unwrap().code(), 438);
    assert!(msg.has_attribute(Nonce::TYPE) && msg.has_attribute(Realm::TYPE));
    let Received::Retry(again) = c.client.receive(&resp) else {
        panic!()
    };
    sim.client_sends(c.ft, &again);
    let resp = sim.take_client(c.ft.client).unwrap();
    assert!(matches!(
        c.client.receive(&resp),
        Received::Refreshed { .. }
    ));
}

#[test]
fn unknown_comprehension_required_attribute_is_420() {
    let mut sim = Sim::open_cluster();
    let ft = TestClient::user("192.0.2.10:40000").ft;
    let change_request = stun_types::attribute::RawAttribute::new(0x0003.into(), &[0, 0, 0, 0]);
    let mut w = Message::builder_request(ALLOCATE, MessageWriteVec::new());
    w.add_attribute(&change_request).unwrap();
    sim.client_sends(ft, &w.finish());
    let resp = sim.take_client(ft.client).unwrap();
    let msg = Message::from_bytes(&resp).unwrap();
    assert_eq!(msg.attribute::<ErrorCode>().unwrap().code(), 420);
    let unknown = msg.attribute::<UnknownAttributes>().unwrap();
    assert!(unknown.has_attribute(0x0003.into()));
    // Comprehension-optional unknowns (>= 0x8000) are ignored: the request goes on to
    // the 401 challenge.
    let optional = stun_types::attribute::RawAttribute::new(0x8123.into(), &[1, 2, 3, 4]);
    let mut w = Message::builder_request(ALLOCATE, MessageWriteVec::new());
    w.add_attribute(&optional).unwrap();
    sim.client_sends(ft, &w.finish());
    let msg_bytes = sim.take_client(ft.client).unwrap();
    let msg = Message::from_bytes(&msg_bytes).unwrap();
    assert_eq!(msg.attribute::<ErrorCode>().unwrap().code(), 401);
}

#[test]
fn ephemeral_credentials() {
    let mut cfg = static_config(&["0.0.0.0/0"]);
    cfg.credentials = Credentials::Ephemeral {
        secret: "s3cr3t".into(),
    };
    let mut sim = Sim::new(cfg);
    let user = stunner_config::credential::ephemeral_username(UNIX_START + 3600, "alice");
    let pass = stunner_config::credential::ephemeral_password("s3cr3t", &user);
    let mut c = TestClient::new("192.0.2.10:1", &user, &pass);
    c.allocate(&mut sim);
    // A bare timestamp works too (coturn's and pion's clients send it).
    let bare = (UNIX_START + 60).to_string();
    let bare_pass = stunner_config::credential::ephemeral_password("s3cr3t", &bare);
    TestClient::new("192.0.2.10:2", &bare, &bare_pass).allocate(&mut sim);
    // Expired and forged usernames are refused.
    let old = stunner_config::credential::ephemeral_username(UNIX_START - 1, "bob");
    let old_pass = stunner_config::credential::ephemeral_password("s3cr3t", &old);
    let mut expired = TestClient::new("192.0.2.10:3", &old, &old_pass);
    assert_eq!(
        expired.expect_error(&mut sim, Request::Allocate { lifetime: None }),
        401
    );
    let mut forged = TestClient::new("192.0.2.10:4", &user, "guess");
    assert_eq!(
        forged.expect_error(&mut sim, Request::Allocate { lifetime: None }),
        401
    );
    // After its expiry (virtual clock) the first user can no longer refresh.
    sim.advance(Duration::from_secs(3601));
    assert_eq!(
        c.expect_error(&mut sim, Request::Refresh { lifetime: 600 }),
        401
    );
}

#[test]
fn stun_only_mode() {
    let mut cfg = static_config(&["0.0.0.0/0"]);
    cfg.credentials = Credentials::None;
    let mut sim = Sim::new(cfg);
    let mut c = TestClient::user("192.0.2.10:40000");
    assert_eq!(
        c.exchange(&mut sim, Request::Binding),
        Received::Mapped(addr("192.0.2.10:40000"))
    );
    assert_eq!(
        c.expect_error(&mut sim, Request::Allocate { lifetime: None }),
        400
    );
}

#[test]
fn even_port_reservations() {
    let mut sim = Sim::open_cluster();
    let udp = RequestedTransport::new(RequestedTransport::UDP);
    let first = TestClient::user("192.0.2.10:1").ft;
    let (code, resp) = signed(
        &mut sim,
        first,
        ALLOCATE,
        1,
        &[&udp, &EvenPort::new(true)],
        IntegrityAlgorithm::Sha1,
    );
    assert_eq!(code, 0);
    assert!(sim.opened[0].even_port);
    let m = Message::from_bytes(&resp).unwrap();
    let relayed = m
        .attribute::<turn_types::attribute::XorRelayedAddress>()
        .unwrap()
        .addr(m.transaction_id());
    assert_eq!(relayed.port() % 2, 0);
    let token = m.attribute::<ReservationToken>().unwrap().token();
    assert_eq!(sim.opened[0].reserve, Some(token));
    // A second allocation with the token gets the next port up.
    let second = TestClient::user("192.0.2.10:2").ft;
    let (code, resp) = signed(
        &mut sim,
        second,
        ALLOCATE,
        2,
        &[&udp, &ReservationToken::new(token)],
        IntegrityAlgorithm::Sha1,
    );
    assert_eq!(code, 0);
    assert_eq!(sim.opened[1].reservation, Some(token));
    let m = Message::from_bytes(&resp).unwrap();
    let r2 = m
        .attribute::<turn_types::attribute::XorRelayedAddress>()
        .unwrap()
        .addr(m.transaction_id());
    assert_eq!(r2.port(), relayed.port() + 1);
    // A token is good once.
    let third = TestClient::user("192.0.2.10:3").ft;
    let (code, _) = signed(
        &mut sim,
        third,
        ALLOCATE,
        3,
        &[&udp, &ReservationToken::new(token)],
        IntegrityAlgorithm::Sha1,
    );
    assert_eq!(code, 508);
}
