//! Offload reports (`admin.offload_engine`): the core says when a channel can be relayed
//! in the kernel and when it must stop, on a virtual clock.

use std::time::Duration;

use stunner_turn::*;

use crate::sim::*;

const PEER: &str = "10.1.0.5:9000";

fn bound(offload: bool) -> (Sim, TestClient, std::net::SocketAddr) {
    let mut sim = Sim::new(static_config(&["10.1.0.0/16"]));
    sim.server.set_offload(offload, sim.now);
    let mut c = TestClient::user("192.0.2.10:40000");
    let relay = c.allocate(&mut sim);
    let bind = Request::ChannelBind {
        channel: 0x4000,
        peer: addr(PEER),
    };
    assert_eq!(c.exchange(&mut sim, bind), Received::ChannelBound);
    (sim, c, relay)
}

fn take(sim: &mut Sim) -> Vec<(bool, u16, std::net::SocketAddr)> {
    std::mem::take(&mut sim.offloads)
        .into_iter()
        .map(|(up, c)| (up, c.channel, c.peer))
        .collect()
}

#[test]
fn nothing_is_reported_while_offload_is_off() {
    let (mut sim, mut c, _) = bound(false);
    assert!(sim.offloads.is_empty());
    c.exchange(&mut sim, Request::Refresh { lifetime: 0 });
    assert!(sim.offloads.is_empty());
}

#[test]
fn a_bound_channel_is_up_with_its_five_tuple_relay_and_cluster() {
    let (mut sim, c, relay) = bound(true);
    let [(true, ch)] = sim.offloads.as_slice() else {
        panic!("{:?}", sim.offloads)
    };
    assert_eq!(
        *ch,
        OffloadChannel {
            client: c.ft,
            channel: 0x4000,
            relay,
            peer: addr(PEER),
            cluster: 0,
        }
    );
    sim.offloads.clear();
    // A refresh of the binding reports it again (idempotent for the IO layer).
    let mut c = c;
    let bind = Request::ChannelBind {
        channel: 0x4000,
        peer: addr(PEER),
    };
    assert_eq!(c.exchange(&mut sim, bind), Received::ChannelBound);
    assert_eq!(take(&mut sim), [(true, 0x4000, addr(PEER))]);
}

#[test]
fn a_lost_permission_takes_the_channel_down_and_a_new_one_brings_it_back() {
    let (mut sim, mut c, _) = bound(true);
    sim.offloads.clear();
    // Keep the allocation, let the permission (300 s) lapse; the channel lives 600 s.
    c.exchange(&mut sim, Request::Refresh { lifetime: 3600 });
    sim.advance(Duration::from_secs(301));
    assert_eq!(take(&mut sim), [(false, 0x4000, addr(PEER))]);
    let perm = Request::CreatePermission {
        peers: vec![addr(PEER)],
    };
    assert_eq!(c.exchange(&mut sim, perm), Received::PermissionCreated);
    assert_eq!(take(&mut sim), [(true, 0x4000, addr(PEER))]);
}

#[test]
fn an_expired_channel_goes_down() {
    let (mut sim, mut c, _) = bound(true);
    sim.offloads.clear();
    c.exchange(&mut sim, Request::Refresh { lifetime: 3600 });
    // The permission is refreshed on its own; the channel is not.
    for _ in 0..3 {
        sim.advance(Duration::from_secs(200));
        let perm = Request::CreatePermission {
            peers: vec![addr(PEER)],
        };
        assert_eq!(c.exchange(&mut sim, perm), Received::PermissionCreated);
    }
    let reports = take(&mut sim);
    assert_eq!(
        reports.last(),
        Some(&(false, 0x4000, addr(PEER))),
        "{reports:?}"
    );
    // With the binding gone, a new permission does not bring it back.
    let perm = Request::CreatePermission {
        peers: vec![addr(PEER)],
    };
    c.exchange(&mut sim, perm);
    assert_eq!(take(&mut sim), []);
}

#[test]
fn a_deleted_allocation_takes_its_channels_down() {
    let (mut sim, mut c, _) = bound(true);
    sim.offloads.clear();
    c.exchange(&mut sim, Request::Refresh { lifetime: 0 });
    assert_eq!(take(&mut sim), [(false, 0x4000, addr(PEER))]);
}

#[test]
fn a_config_that_no_longer_routes_the_peer_takes_it_down() {
    let (mut sim, _, _) = bound(true);
    sim.offloads.clear();
    sim.server.set_config(static_config(&["10.2.0.0/16"]));
    sim.server.resync_offload(sim.now);
    sim.drain();
    assert_eq!(take(&mut sim), [(false, 0x4000, addr(PEER))]);
    sim.server.set_config(static_config(&["10.1.0.5/32"]));
    sim.server.resync_offload(sim.now);
    sim.drain();
    assert_eq!(take(&mut sim), [(true, 0x4000, addr(PEER))]);
}

#[test]
fn turning_offload_on_reports_existing_channels_and_streams_are_never_offloaded() {
    let (mut sim, _, _) = bound(false);
    sim.server.set_offload(true, sim.now);
    sim.drain();
    assert_eq!(take(&mut sim), [(true, 0x4000, addr(PEER))]);
    assert!(sim.server.offload());

    let mut cfg = static_config(&["10.1.0.0/16"]);
    cfg.transport = TransportKind::Stream;
    let mut tcp = Sim::new(cfg);
    tcp.server.set_offload(true, tcp.now);
    assert!(
        !tcp.server.offload(),
        "ChannelData over TCP stays in user space"
    );
}
