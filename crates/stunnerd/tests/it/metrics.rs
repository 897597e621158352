//! The Prometheus endpoint: upstream metric names, with live values.

use std::time::Duration;

use stunner_turn::{Received, Request};

use crate::harness::*;

#[test]
fn metrics_report_allocations_and_traffic() {
    let (port, health, mport) = (free_port(), free_port(), free_port());
    let peer = EchoPeer::start();
    let conf = with_metrics(&config(port, health, STATIC_AUTH, "127.0.0.1/32"), mport);
    let d = Stunnerd::start("metrics", &conf, health, &[]);
    d.wait_ready(200, Duration::from_secs(5));
    let mut c = TurnClient::new(port, "user", "pass");
    assert!(matches!(
        c.request(Request::Allocate { lifetime: None }),
        Received::Allocated { .. }
    ));
    assert_eq!(
        c.request(Request::ChannelBind {
            channel: 0x4000,
            peer: peer.addr
        }),
        Received::ChannelBound
    );
    for _ in 0..5 {
        c.send_channel(0x4000, b"0123456789");
        let _ = c.recv();
    }
    let mut bad = TurnClient::new(port, "user", "wrong");
    assert!(matches!(
        bad.request(Request::Allocate { lifetime: None }),
        Received::Failed { code: 401, .. }
    ));
    let want = [
        "stunner_allocations_active 1",
        "stunner_listener_connections{name=\"udp\"} 1",
        "stunner_cluster_packets_total{name=\"peers\",direction=\"tx\"} 5",
        "stunner_cluster_bytes_total{name=\"peers\",direction=\"rx\"} 50",
        "stunner_auth_failures_total{reason=\"unauthorized\"} 1",
    ];
    let body = wait_metrics(mport, "allocations and traffic", |b| {
        want.iter().all(|w| b.contains(w))
    });
    assert!(body.contains("stunner_listener_packets_total{name=\"udp\",direction=\"rx\"}"));
    assert!(body.contains("# TYPE stunner_listener_connections_total counter"));
    // An ended allocation shows in the lifetime histogram.
    assert_eq!(
        c.request(Request::Refresh { lifetime: 0 }),
        Received::Refreshed { lifetime: 0 }
    );
    wait_metrics(mport, "lifetime histogram", |b| {
        b.contains("stunner_allocation_duration_seconds_count 1")
            && b.contains("stunner_allocations_active 0")
    });
}
