//! Refresh, expiry of allocations, permissions and channels, credential rotation,
//! closed streams.

use std::time::Duration;

use stunner_turn::*;

use crate::sim::*;

#[test]
fn refresh_extends_and_zero_deletes() {
    let mut sim = Sim::open_cluster();
    let mut c = TestClient::user("192.0.2.10:40000");
    let relay = c.allocate(&mut sim);
    sim.advance(Duration::from_secs(500));
    assert_eq!(
        c.exchange(&mut sim, Request::Refresh { lifetime: 1000 }),
        Received::Refreshed { lifetime: 1000 }
    );
    sim.advance(Duration::from_secs(900));
    assert_eq!(
        sim.server.allocation_count(),
        1,
        "refreshed allocation expired"
    );
    assert_eq!(
        c.exchange(&mut sim, Request::Refresh { lifetime: 0 }),
        Received::Refreshed { lifetime: 0 }
    );
    assert_eq!(sim.server.allocation_count(), 0);
    assert_eq!(sim.closed, vec![relay]);
    assert!(
        sim.events
            .iter()
            .any(|e| matches!(e, Event::AllocationDeleted { expired: false, .. }))
    );
    assert_eq!(
        c.expect_error(&mut sim, Request::Refresh { lifetime: 600 }),
        437
    );
    // After deletion the five-tuple may allocate again.
    c.allocate(&mut sim);
}

#[test]
fn allocations_expire() {
    let mut sim = Sim::open_cluster();
    let mut c = TestClient::user("192.0.2.10:40000");
    let relay = c.allocate(&mut sim);
    assert_eq!(sim.server.poll_timeout(), Some(sim.now + DEFAULT_LIFETIME));
    sim.advance(Duration::from_secs(599));
    assert_eq!(sim.server.allocation_count(), 1);
    sim.advance(Duration::from_secs(1));
    assert_eq!(sim.server.allocation_count(), 0);
    assert_eq!(sim.closed, vec![relay]);
    assert!(
        sim.events
            .iter()
            .any(|e| matches!(e, Event::AllocationDeleted { expired: true, .. }))
    );
    assert_eq!(sim.server.poll_timeout(), None);
}

#[test]
fn permissions_and_channels_expire() {
    let mut sim = Sim::open_cluster();
    let mut c = TestClient::user("192.0.2.10:40000");
    let relay = c.allocate(&mut sim);
    c.exchange(&mut sim, Request::Refresh { lifetime: 3600 });
    let peer = addr("10.1.0.5:9000");
    c.exchange(
        &mut sim,
        Request::ChannelBind {
            channel: 0x4000,
            peer,
        },
    );
    sim.advance(Duration::from_secs(299));
    sim.peer_sends(relay, peer, b"a");
    assert!(c.next(&mut sim).is_some());
    // The permission (300 s) lapses before the channel (600 s): traffic stops.
    sim.advance(Duration::from_secs(1));
    assert!(
        sim.events
            .iter()
            .any(|e| matches!(e, Event::PermissionDeleted { .. }))
    );
    sim.peer_sends(relay, peer, b"b");
    assert!(c.next(&mut sim).is_none());
    let frame = c.client.channel_data(0x4000, b"c");
    sim.client_sends(c.ft, &frame);
    assert!(sim.peer_got(peer).is_empty());
    // Refreshing the permission brings the channel back until it expires.
    c.exchange(&mut sim, Request::CreatePermission { peers: vec![peer] });
    sim.client_sends(c.ft, &frame);
    assert_eq!(sim.peer_got(peer).len(), 1);
    sim.advance(Duration::from_secs(300));
    assert!(sim.events.iter().any(|e| matches!(
        e,
        Event::ChannelDeleted {
            channel: 0x4000,
            ..
        }
    )));
    // The channel number is free again: it can go to another peer.
    assert_eq!(
        c.exchange(
            &mut sim,
            Request::ChannelBind {
                channel: 0x4000,
                peer: addr("10.1.0.6:1")
            }
        ),
        Received::ChannelBound
    );
}

#[test]
fn credential_rotation_keeps_allocations() {
    let mut sim = Sim::open_cluster();
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
    let mut cfg = static_config(&["0.0.0.0/0"]);
    cfg.credentials = Credentials::Static {
        username: "user".into(),
        password: "new".into(),
    };
    sim.server.set_config(cfg);
    // Relaying goes on: data needs no credentials.
    let frame = c.client.channel_data(0x4000, b"still here");
    sim.client_sends(c.ft, &frame);
    assert_eq!(sim.peer_got(peer), vec![(relay, b"still here".to_vec())]);
    // The next authenticated request needs the new password.
    assert_eq!(
        c.expect_error(&mut sim, Request::Refresh { lifetime: 600 }),
        401
    );
    c.client.set_credentials("user", "new");
    assert_eq!(
        c.exchange(&mut sim, Request::Refresh { lifetime: 600 }),
        Received::Refreshed { lifetime: 600 }
    );
}

#[test]
fn realm_change_applies_to_new_requests() {
    let mut sim = Sim::open_cluster();
    let mut c = TestClient::user("192.0.2.10:40000");
    c.allocate(&mut sim);
    let mut cfg = static_config(&["0.0.0.0/0"]);
    cfg.realm = "new.example.com".into();
    sim.server.set_config(cfg);
    // The old realm's key no longer matches: 401; a new client learns the new realm.
    assert_eq!(
        c.expect_error(&mut sim, Request::Refresh { lifetime: 600 }),
        401
    );
    TestClient::user("192.0.2.10:40001").allocate(&mut sim);
}

#[test]
fn another_user_on_the_five_tuple_is_441() {
    let mut cfg = static_config(&["0.0.0.0/0"]);
    cfg.credentials = Credentials::Ephemeral { secret: "s".into() };
    let mut sim = Sim::new(cfg);
    let u1 = stunner_config::credential::ephemeral_username(UNIX_START + 9999, "a");
    let u2 = stunner_config::credential::ephemeral_username(UNIX_START + 9999, "b");
    let p = |u: &str| stunner_config::credential::ephemeral_password("s", u);
    let mut a = TestClient::new("192.0.2.10:1", &u1, &p(&u1));
    a.allocate(&mut sim);
    let mut b = TestClient::new("192.0.2.10:1", &u2, &p(&u2));
    assert_eq!(
        b.expect_error(&mut sim, Request::Refresh { lifetime: 600 }),
        441
    );
}

#[test]
fn closed_stream_ends_its_allocation() {
    let mut sim = Sim::open_cluster();
    let mut c = TestClient::user("192.0.2.10:40000");
    let relay = c.allocate(&mut sim);
    sim.server.handle_client_closed(sim.now, c.ft);
    sim.drain();
    assert_eq!(sim.server.allocation_count(), 0);
    assert_eq!(sim.closed, vec![relay]);
}

#[test]
fn relay_opened_after_the_client_left_is_closed() {
    let mut sim = Sim::open_cluster();
    sim.hold_relays = true;
    let mut c = TestClient::user("192.0.2.10:40000");
    assert_eq!(
        c.exchange(&mut sim, Request::Allocate { lifetime: None }),
        Received::Ignored
    );
    let req = sim.held.pop().unwrap();
    sim.server.handle_client_closed(sim.now, c.ft);
    sim.server
        .handle_relay_opened(sim.now, req.token, Some(40000));
    sim.drain();
    assert_eq!(sim.closed, vec![addr("10.0.0.1:40000")]);
    assert_eq!(sim.server.allocation_count(), 0);
}

#[test]
fn close_all_ends_everything() {
    let mut sim = Sim::open_cluster();
    for port in 1..=5 {
        TestClient::user(&format!("192.0.2.10:{port}")).allocate(&mut sim);
    }
    sim.server.close_all(sim.now);
    sim.drain();
    assert_eq!(sim.server.allocation_count(), 0);
    assert_eq!(sim.closed.len(), 5);
}

#[test]
fn draining_refuses_new_allocations_and_keeps_old_ones() {
    let mut sim = Sim::open_cluster();
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
    sim.server.set_draining(true);
    let mut late = TestClient::user("192.0.2.10:40001");
    assert_eq!(
        late.expect_error(&mut sim, Request::Allocate { lifetime: None }),
        508
    );
    assert_eq!(
        c.exchange(&mut sim, Request::Refresh { lifetime: 600 }),
        Received::Refreshed { lifetime: 600 }
    );
    let frame = c.client.channel_data(0x4000, b"x");
    sim.client_sends(c.ft, &frame);
    assert_eq!(sim.peer_got(peer), vec![(relay, b"x".to_vec())]);
}
