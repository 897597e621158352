//! Address families (RFC 8656 §7.2, §9.1, §18): an IPv6 relay from a listener on an
//! IPv4 address, dual allocations with two relayed addresses, ADDRESS-ERROR-CODE when
//! one family cannot be had, 443 for peers of a family the allocation has no relay in.

use stun_types::AddressFamily;
use stun_types::attribute::{Attribute, AttributeStaticType, AttributeWrite};
use stun_types::message::{IntegrityAlgorithm, Message, MessageClass};
use stunner_turn::*;
use turn_types::attribute::{
    AdditionalAddressFamily, AddressErrorCode, Lifetime, RequestedAddressFamily,
    RequestedTransport, ReservationToken, XorRelayedAddress,
};
use turn_types::message::{ALLOCATE, REFRESH};

use crate::allocate::{send_signed, signed};
use crate::sim::*;

const V6: &str = "fd00::1";

fn dual_config() -> ServerConfig {
    static_config(&["0.0.0.0/0", "::/0"]).with_pod_addresses(&[ip(RELAY_IP), ip(V6)])
}

fn udp() -> RequestedTransport {
    RequestedTransport::new(RequestedTransport::UDP)
}

/// Allocates for `c` with `attrs`; returns the error code (0 on success) and the
/// relayed addresses and address error of the answer.
fn allocate(
    sim: &mut Sim,
    c: &TestClient,
    attrs: &[&dyn AttributeWrite],
) -> (u16, Vec<std::net::SocketAddr>, Option<u16>) {
    let (code, resp) = signed(sim, c.ft, ALLOCATE, 77, attrs, IntegrityAlgorithm::Sha1);
    let msg = Message::from_bytes(&resp).unwrap();
    let tid = msg.transaction_id();
    let relays = (0..)
        .map_while(|n| msg.nth_attribute::<XorRelayedAddress>(n).ok())
        .map(|r| r.addr(tid))
        .collect();
    let address_error = msg
        .attribute::<AddressErrorCode>()
        .ok()
        .map(|e| e.error().code());
    (code, relays, address_error)
}

#[test]
fn requested_ipv6_relay_from_an_ipv4_listener() {
    let mut sim = Sim::new(dual_config());
    let c = TestClient::user("192.0.2.10:40000");
    let v6 = RequestedAddressFamily::new(AddressFamily::IPV6);
    let (code, relays, err) = allocate(&mut sim, &c, &[&udp(), &v6]);
    assert_eq!((code, err), (0, None));
    assert_eq!(relays, vec![addr("[fd00::1]:50001")]);
    assert!(sim.opened[0].ipv6);
    assert_eq!(sim.opened[0].ip, ip(V6));
    // Without the pod's IPv6 address the same request is 440.
    let mut sim = Sim::new(static_config(&["::/0"]));
    assert_eq!(allocate(&mut sim, &c, &[&udp(), &v6]).0, 440);
}

#[test]
fn default_family_is_the_listeners() {
    let mut sim = Sim::new(dual_config());
    let c = TestClient::user("192.0.2.10:40000");
    let (code, relays, _) = allocate(&mut sim, &c, &[&udp()]);
    assert_eq!(code, 0);
    assert_eq!(relays, vec![addr("10.0.0.1:50001")]);
}

#[test]
fn dual_allocation_relays_both_families() {
    let mut sim = Sim::new(dual_config());
    let mut c = TestClient::user("192.0.2.10:40000");
    let dual = AdditionalAddressFamily::new(AddressFamily::IPV6);
    let (code, relays, err) = allocate(&mut sim, &c, &[&udp(), &dual]);
    assert_eq!((code, err), (0, None));
    assert_eq!(
        relays,
        vec![addr("10.0.0.1:50001"), addr("[fd00::1]:50002")],
        "IPv4 first, then IPv6"
    );
    assert_eq!(sim.opened[0].additional, Some(ip(V6)));
    let (p4, p6) = (addr("10.1.0.5:9000"), addr("[fd00::5]:9000"));
    // One CreatePermission may carry peers of both families.
    let r = c.exchange(
        &mut sim,
        Request::CreatePermission {
            peers: vec![p4, p6],
        },
    );
    assert_eq!(r, Received::PermissionCreated, "{r:?}");
    let r = c.exchange(
        &mut sim,
        Request::ChannelBind {
            channel: 0x4001,
            peer: p6,
        },
    );
    assert_eq!(r, Received::ChannelBound, "{r:?}");
    // Client to peer: each family leaves from its own relay.
    let ind = c.client.send_indication(p4, b"to v4");
    sim.client_sends(c.ft, &ind);
    assert_eq!(
        sim.peer_got(p4),
        vec![(addr("10.0.0.1:50001"), b"to v4".to_vec())]
    );
    let cd = c.client.channel_data(0x4001, b"to v6");
    sim.client_sends(c.ft, &cd);
    assert_eq!(
        sim.peer_got(p6),
        vec![(addr("[fd00::1]:50002"), b"to v6".to_vec())]
    );
    // Peer to client, on either relay.
    sim.peer_sends(addr("[fd00::1]:50002"), p6, b"from v6");
    let (got, bytes) = c.next(&mut sim).unwrap();
    let Received::ChannelData { channel, range } = got else {
        panic!("expected ChannelData, got {got:?}")
    };
    assert_eq!((channel, &bytes[range]), (0x4001, &b"from v6"[..]));
    sim.peer_sends(addr("10.0.0.1:50001"), p4, b"from v4");
    let (got, _) = c.next(&mut sim).unwrap();
    assert_eq!(
        got,
        Received::Data {
            peer: p4,
            payload: b"from v4".to_vec()
        }
    );
    // A Refresh naming either family is fine; deleting closes both relays.
    let v6 = RequestedAddressFamily::new(AddressFamily::IPV6);
    let (code, _) = signed(
        &mut sim,
        c.ft,
        REFRESH,
        78,
        &[&v6, &Lifetime::new(0)],
        IntegrityAlgorithm::Sha1,
    );
    assert_eq!(code, 0);
    assert_eq!(sim.server.allocation_count(), 0);
    sim.closed.sort();
    assert_eq!(
        sim.closed,
        vec![addr("10.0.0.1:50001"), addr("[fd00::1]:50002")]
    );
}

#[test]
fn dual_without_an_ipv6_address_gives_ipv4_and_address_error_440() {
    let mut sim = Sim::new(static_config(&["0.0.0.0/0"]));
    let c = TestClient::user("192.0.2.10:40000");
    let dual = AdditionalAddressFamily::new(AddressFamily::IPV6);
    let (code, relays, err) = allocate(&mut sim, &c, &[&udp(), &dual]);
    assert_eq!((code, err), (0, Some(440)));
    assert_eq!(relays, vec![addr("10.0.0.1:50001")]);
    assert_eq!(sim.opened[0].additional, None);
}

#[test]
fn dual_whose_ipv6_socket_fails_gives_address_error_508() {
    let mut sim = Sim::new(dual_config());
    sim.no_v6_ports = true;
    let c = TestClient::user("192.0.2.10:40000");
    let dual = AdditionalAddressFamily::new(AddressFamily::IPV6);
    let (code, relays, err) = allocate(&mut sim, &c, &[&udp(), &dual]);
    assert_eq!((code, err), (0, Some(508)));
    assert_eq!(relays, vec![addr("10.0.0.1:50001")]);
}

#[test]
fn dual_whose_ipv4_socket_fails_is_508_and_closes_the_ipv6_one() {
    let mut sim = Sim::new(dual_config());
    sim.no_ports = true;
    let c = TestClient::user("192.0.2.10:40000");
    let dual = AdditionalAddressFamily::new(AddressFamily::IPV6);
    let (code, relays, _) = allocate(&mut sim, &c, &[&udp(), &dual]);
    assert_eq!((code, relays.len()), (508, 0));
    assert_eq!(sim.closed, vec![addr("[fd00::1]:50001")]);
}

#[test]
fn ipv6_only_listener_cannot_make_a_dual_allocation() {
    let mut cfg = static_config(&["::/0"]);
    cfg.relay_ip = ip(V6);
    let mut sim = Sim::new(cfg);
    let c = TestClient::user("192.0.2.10:40000");
    let dual = AdditionalAddressFamily::new(AddressFamily::IPV6);
    assert_eq!(allocate(&mut sim, &c, &[&udp(), &dual]).0, 440);
}

#[test]
fn family_attribute_errors() {
    let c = TestClient::user("192.0.2.10:40000");
    let v6 = RequestedAddressFamily::new(AddressFamily::IPV6);
    let dual = AdditionalAddressFamily::new(AddressFamily::IPV6);
    let mut sim = Sim::new(dual_config());
    assert_eq!(allocate(&mut sim, &c, &[&udp(), &v6, &dual]).0, 400, "both");
    let mut sim = Sim::new(dual_config());
    let token = ReservationToken::new(5);
    assert_eq!(allocate(&mut sim, &c, &[&udp(), &token, &dual]).0, 400);
    // ADDITIONAL-ADDRESS-FAMILY 0x01 (IPv4) and REQUESTED-ADDRESS-FAMILY 0x03.
    let raw = |t: u16, family: u8| RawAttr(t, [family, 0, 0, 0]);
    let mut sim = Sim::new(dual_config());
    assert_eq!(
        allocate(&mut sim, &c, &[&udp(), &raw(0x8000, 1)]).0,
        400,
        "ADDITIONAL-ADDRESS-FAMILY IPv4"
    );
    let mut sim = Sim::new(dual_config());
    assert_eq!(
        allocate(&mut sim, &c, &[&udp(), &raw(0x0017, 3)]).0,
        440,
        "unknown family"
    );
    assert_eq!(sim.server.allocation_count(), 0);
}

#[test]
fn peer_of_a_family_without_relay_is_443() {
    let mut sim = Sim::new(dual_config());
    let mut c = TestClient::user("192.0.2.10:40000");
    let (code, ..) = allocate(&mut sim, &c, &[&udp()]);
    assert_eq!(code, 0);
    let p6 = addr("[fd00::5]:9000");
    assert_eq!(
        c.expect_error(&mut sim, Request::CreatePermission { peers: vec![p6] }),
        443
    );
    assert_eq!(
        c.expect_error(
            &mut sim,
            Request::ChannelBind {
                channel: 0x4000,
                peer: p6
            }
        ),
        443
    );
    // A Refresh naming the family the allocation lacks is 443 too (RFC 8656 §7.3).
    let v6 = RequestedAddressFamily::new(AddressFamily::IPV6);
    let (code, resp) = signed(
        &mut sim,
        c.ft,
        REFRESH,
        79,
        &[&v6],
        IntegrityAlgorithm::Sha1,
    );
    assert_eq!(code, 443);
    assert_eq!(
        Message::from_bytes(&resp).unwrap().class(),
        MessageClass::Error
    );
}

#[test]
fn client_gone_while_dual_relays_open_closes_both() {
    let mut sim = Sim::new(dual_config());
    sim.hold_relays = true;
    let c = TestClient::user("192.0.2.10:40000");
    let dual = AdditionalAddressFamily::new(AddressFamily::IPV6);
    send_signed(
        &mut sim,
        c.ft,
        ALLOCATE,
        80,
        &[&udp(), &dual],
        IntegrityAlgorithm::Sha1,
    );
    let req = sim.held.pop().expect("an OpenRelay");
    sim.server.handle_client_closed(sim.now, c.ft);
    sim.server
        .handle_relays_opened(sim.now, req.token, Some(41000), Some(41001));
    sim.drain();
    assert_eq!(
        sim.closed,
        vec![addr("10.0.0.1:41000"), addr("[fd00::1]:41001")]
    );
    assert_eq!(sim.server.allocation_count(), 0);
}

/// An attribute written as raw bytes, for values the typed ones refuse to build.
#[derive(Debug)]
struct RawAttr(u16, [u8; 4]);

impl Attribute for RawAttr {
    fn get_type(&self) -> stun_types::attribute::AttributeType {
        stun_types::attribute::AttributeType::new(self.0)
    }
    fn length(&self) -> u16 {
        4
    }
}

impl AttributeWrite for RawAttr {
    fn to_raw(&self) -> stun_types::attribute::RawAttribute<'_> {
        stun_types::attribute::RawAttribute::new(self.get_type(), &self.1)
    }
    fn write_into_unchecked(&self, dest: &mut [u8]) {
        use stun_types::attribute::AttributeWriteExt;
        let n = self.write_header_unchecked(dest);
        dest[n..n + 4].copy_from_slice(&self.1);
    }
}

#[test]
fn reserved_ipv6_port_is_advertised_at_the_ipv6_address() {
    let mut sim = Sim::new(dual_config());
    let c = TestClient::user("192.0.2.10:40000");
    let v6 = RequestedAddressFamily::new(AddressFamily::IPV6);
    let even = turn_types::attribute::EvenPort::new(true);
    let (code, resp) = signed(
        &mut sim,
        c.ft,
        ALLOCATE,
        81,
        &[&udp(), &v6, &even],
        IntegrityAlgorithm::Sha1,
    );
    assert_eq!(code, 0);
    let token = Message::from_bytes(&resp)
        .unwrap()
        .attribute::<ReservationToken>()
        .unwrap()
        .token();
    // The second allocation (coturn's RTCP one) presents the token and no family.
    let rtcp = TestClient::user("192.0.2.10:40001");
    let (code, relays, _) = allocate(&mut sim, &rtcp, &[&udp(), &ReservationToken::new(token)]);
    assert_eq!(code, 0);
    assert_eq!(relays.len(), 1);
    assert!(relays[0].ip() == ip(V6), "{relays:?}");
}

#[test]
fn coturns_draft_codepoints_make_a_dual_allocation_too() {
    // coturn's client sends ADDITIONAL-ADDRESS-FAMILY as 0x8032 (the draft before
    // RFC 8656) and reads ADDRESS-ERROR-CODE from 0x8033.
    let c = TestClient::user("192.0.2.10:40000");
    let mut sim = Sim::new(dual_config());
    let (code, relays, _) = allocate(&mut sim, &c, &[&udp(), &RawAttr(0x8032, [2, 0, 0, 0])]);
    assert_eq!((code, relays.len()), (0, 2));
    let mut sim = Sim::new(static_config(&["0.0.0.0/0"]));
    let (code, resp) = signed(
        &mut sim,
        c.ft,
        ALLOCATE,
        82,
        &[&udp(), &RawAttr(0x8032, [2, 0, 0, 0])],
        IntegrityAlgorithm::Sha1,
    );
    assert_eq!(code, 0);
    let msg = Message::from_bytes(&resp).unwrap();
    let raw = msg
        .raw_attribute(stun_types::attribute::AttributeType::new(0x8033))
        .expect("ADDRESS-ERROR-CODE at coturn's codepoint");
    assert_eq!(&raw.value[..4], &[2, 0, 4, 40], "IPv6, 440");
    assert!(!msg.has_attribute(AddressErrorCode::TYPE));
    let mut sim = Sim::new(dual_config());
    assert_eq!(
        allocate(&mut sim, &c, &[&udp(), &RawAttr(0x8032, [1, 0, 0, 0])]).0,
        400
    );
}

#[test]
fn the_client_asks_for_a_family_or_both() {
    for (family, relayed) in [
        (RelayFamily::Ipv6, "[fd00::1]:50001"),
        (RelayFamily::Ipv4, "10.0.0.1:50001"),
        (RelayFamily::Dual, "10.0.0.1:50001"),
    ] {
        let mut sim = Sim::new(dual_config());
        let mut c = TestClient::user("192.0.2.10:40000");
        let r = c.exchange(
            &mut sim,
            Request::AllocateFamily {
                lifetime: None,
                family,
            },
        );
        assert!(
            matches!(r, Received::Allocated { relayed: a, .. } if a == addr(relayed)),
            "{family:?}: {r:?}"
        );
        assert_eq!(
            sim.opened[0].additional.is_some(),
            family == RelayFamily::Dual
        );
    }
    // No IPv6 pod address: an IPv6 relay is 440.
    let mut sim = Sim::new(static_config(&["0.0.0.0/0"]));
    let mut c = TestClient::user("192.0.2.10:40000");
    let r = c.expect_error(
        &mut sim,
        Request::AllocateFamily {
            lifetime: None,
            family: RelayFamily::Ipv6,
        },
    );
    assert_eq!(r, 440);
}
