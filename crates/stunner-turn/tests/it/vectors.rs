//! RFC 5769 test vectors, and a real browser's Allocate requests (captured from
//! headless Chromium by `testdata/browser/capture.py`).

use std::path::PathBuf;

use stun_types::attribute::{ErrorCode, Nonce, Realm, XorMappedAddress};
use stun_types::message::{
    LongTermKeyCredentials, Message, MessageClass, MessageIntegrityCredentials,
    ShortTermCredentials,
};
use stunner_turn::*;
use turn_types::attribute::{Lifetime, XorRelayedAddress};

use crate::sim::*;

fn hex(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name);
    let text = std::fs::read_to_string(&p).unwrap();
    let digits: String = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .flat_map(|l| l.chars().filter(char::is_ascii_hexdigit))
        .collect();
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).unwrap())
        .collect()
}

fn short_term() -> MessageIntegrityCredentials {
    ShortTermCredentials::new("VOkJxbRl1RmTxUk/WvJxBt".into()).into()
}

#[test]
fn rfc5769_sample_request_is_answered() {
    let req = hex("rfc5769/sample-request.hex");
    let msg = Message::from_bytes(&req).unwrap();
    // The integrity and fingerprint of the vector check out with the codec we use.
    assert!(msg.validate_integrity(&short_term()).is_ok());
    // Our server answers the Binding (its ICE attributes are understood, not 420).
    let mut sim = Sim::open_cluster();
    let ft = TestClient::user("192.0.2.1:32853").ft;
    sim.client_sends(ft, &req);
    let resp = sim.take_client(ft.client).unwrap();
    let r = Message::from_bytes(&resp).unwrap();
    assert_eq!(r.class(), MessageClass::Success);
    assert_eq!(r.transaction_id(), msg.transaction_id());
    let mapped = r
        .attribute::<XorMappedAddress>()
        .unwrap()
        .addr(r.transaction_id());
    assert_eq!(mapped, ft.client);
}

#[test]
fn rfc5769_sample_responses_decode() {
    for (file, want) in [
        ("rfc5769/sample-ipv4-response.hex", "192.0.2.1:32853"),
        (
            "rfc5769/sample-ipv6-response.hex",
            "[2001:db8:1234:5678:11:2233:4455:6677]:32853",
        ),
    ] {
        let b = hex(file);
        let m = Message::from_bytes(&b).unwrap();
        assert!(m.validate_integrity(&short_term()).is_ok(), "{file}");
        let a = m
            .attribute::<XorMappedAddress>()
            .unwrap()
            .addr(m.transaction_id());
        assert_eq!(a, addr(want));
    }
}

#[test]
fn rfc5769_long_term_request() {
    let b = hex("rfc5769/sample-request-long-term.hex");
    let m = Message::from_bytes(&b).unwrap();
    let user = "\u{30DE}\u{30C8}\u{30EA}\u{30C3}\u{30AF}\u{30B9}";
    let key: MessageIntegrityCredentials =
        LongTermKeyCredentials::new(user.into(), "TheMatrIX".into(), "example.org".into()).into();
    assert!(m.validate_integrity(&key).is_ok());
    // It is a Binding: our server answers it without checking credentials, also when
    // the same user and realm are configured.
    let mut cfg = static_config(&["0.0.0.0/0"]);
    cfg.realm = "example.org".into();
    cfg.credentials = Credentials::Static {
        username: user.into(),
        password: "TheMatrIX".into(),
    };
    let mut sim = Sim::new(cfg);
    let ft = TestClient::user("192.0.2.1:1").ft;
    sim.client_sends(ft, &b);
    let r = sim.take_client(ft.client).unwrap();
    assert_eq!(
        Message::from_bytes(&r).unwrap().class(),
        MessageClass::Success
    );
}

#[test]
fn chromium_allocate_is_answered() {
    let unsigned = hex("browser/allocate-unsigned.hex");
    let signed = hex("browser/allocate-signed.hex");
    // The capture's 401 carried the nonce our server makes at t=0 with key [42; 32]
    // (the simulator's), so the signed request is valid at t=0.
    let mut sim = Sim::new(static_config(&["0.0.0.0/0"]));
    let ft = TestClient::user("127.0.0.1:50000").ft;
    sim.client_sends(ft, &unsigned);
    let r = sim.take_client(ft.client).unwrap();
    let m = Message::from_bytes(&r).unwrap();
    assert_eq!(m.attribute::<ErrorCode>().unwrap().code(), 401);
    assert_eq!(m.attribute::<Realm>().unwrap().realm(), "stunner.l7mp.io");
    let nonce = m.attribute::<Nonce>().unwrap().nonce().to_string();
    assert!(
        String::from_utf8_lossy(&signed).contains(&nonce),
        "capture used another nonce"
    );

    sim.client_sends(ft, &signed);
    let r = sim.take_client(ft.client).unwrap();
    let m = Message::from_bytes(&r).unwrap();
    assert_eq!(
        m.class(),
        MessageClass::Success,
        "{:?}",
        m.attribute::<ErrorCode>()
    );
    let key: MessageIntegrityCredentials =
        LongTermKeyCredentials::new("user".into(), "pass".into(), "stunner.l7mp.io".into()).into();
    assert!(m.validate_integrity(&key).is_ok());
    let relayed = m
        .attribute::<XorRelayedAddress>()
        .unwrap()
        .addr(m.transaction_id());
    assert_eq!(relayed, addr("10.0.0.1:50001"));
    assert_eq!(m.attribute::<Lifetime>().unwrap().seconds(), 600);
    assert_eq!(
        m.attribute::<XorMappedAddress>()
            .unwrap()
            .addr(m.transaction_id()),
        ft.client
    );
}
