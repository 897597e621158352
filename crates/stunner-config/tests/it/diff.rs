//! `diff` for every field class.

use stunner_config::*;

use crate::{env_of, testdata};

fn base() -> StunnerConfig {
    StunnerConfig::from_str_with_env(
        &testdata("full-v1.yaml"),
        &env_of(&[("STUNNER_ADDR", "10.0.0.1")]),
    )
    .unwrap()
}

fn changed(f: impl FnOnce(&mut StunnerConfig)) -> ConfigDiff {
    let old = base();
    let mut new = old.clone();
    f(&mut new);
    new.validate().unwrap();
    diff(&old, &new)
}

fn listener_change(d: &ConfigDiff, name: &str) -> Change {
    d.listeners
        .iter()
        .find(|c| c.name == name)
        .map(|c| c.change)
        .unwrap()
}

fn cluster_change(d: &ConfigDiff, name: &str) -> Change {
    d.clusters
        .iter()
        .find(|c| c.name == name)
        .map(|c| c.change)
        .unwrap()
}

const UDP: &str = "stunner/udp-gateway/udp-listener";
const TLS: &str = "stunner/tls-gateway/tls-listener";

#[test]
fn identical_configs_have_an_empty_diff() {
    let d = diff(&base(), &base());
    assert!(d.is_empty());
    assert_eq!(d.restarts().count(), 0);
}

#[test]
fn admin_changes_are_in_place() {
    for f in [
        (|c: &mut StunnerConfig| c.admin.log_level = "all:DEBUG".into()) as fn(&mut StunnerConfig),
        |c| c.admin.metrics_endpoint = "http://:9090/metrics".into(),
        |c| c.admin.healthcheck_endpoint = Some(String::new()),
        |c| c.admin.user_quota = 5,
        |c| c.admin.name = "other".into(),
    ] {
        let d = changed(f);
        assert_eq!(d.admin, Change::InPlace);
        assert!(!d.is_empty());
        assert_eq!(d.restarts().count(), 0);
    }
}

#[test]
fn auth_changes_are_in_place() {
    for f in [
        (|c: &mut StunnerConfig| {
            c.auth.credentials.insert("secret".into(), "new".into());
        }) as fn(&mut StunnerConfig),
        |c| c.auth.realm = "other.example.com".into(),
        |c| c.auth.auth_type = AuthType::None,
    ] {
        let d = changed(f);
        assert_eq!(d.auth, Change::InPlace);
        assert_eq!(d.restarts().count(), 0);
    }
}

#[test]
fn only_port_or_protocol_restart_a_listener() {
    let d = changed(|c| c.listeners[0].port = 3479);
    assert_eq!(listener_change(&d, UDP), Change::Restart);
    assert_eq!(listener_change(&d, TLS), Change::Unchanged);
    assert_eq!(d.restarts().collect::<Vec<_>>(), vec![UDP]);
    let d = changed(|c| c.listeners[0].protocol = ListenerProtocol::TurnTcp);
    assert_eq!(listener_change(&d, UDP), Change::Restart);

    for f in [
        (|c: &mut StunnerConfig| c.listeners[0].address = "10.0.0.2".into())
            as fn(&mut StunnerConfig),
        |c| c.listeners[0].public_address = "5.6.7.8".into(),
        |c| c.listeners[0].public_port = 1,
        |c| c.listeners[0].routes.push("extra".into()),
        |c| c.listeners[1].cert = "bmV3".into(),
        |c| c.listeners[1].key = "bmV3".into(),
    ] {
        let d = changed(f);
        assert!(
            d.listeners.iter().any(|c| c.change == Change::InPlace),
            "{d:?}"
        );
        assert_eq!(d.restarts().count(), 0, "{d:?}");
    }
}

#[test]
fn listeners_added_and_removed() {
    let d = changed(|c| {
        c.listeners.remove(1);
        c.listeners.push(ListenerConfig {
            name: "new".into(),
            protocol: ListenerProtocol::TurnTcp,
            ..Default::default()
        });
    });
    assert_eq!(listener_change(&d, "new"), Change::Added);
    assert_eq!(listener_change(&d, TLS), Change::Removed);
    assert_eq!(listener_change(&d, UDP), Change::Unchanged);
}

#[test]
fn clusters_change_in_place_and_come_and_go() {
    let d = changed(|c| c.clusters[0].endpoints.push("10.9.9.9".into()));
    assert_eq!(cluster_change(&d, "stunner/media-plane"), Change::InPlace);
    assert_eq!(cluster_change(&d, "stunner/dns-backend"), Change::Unchanged);
    let d = changed(|c| {
        c.clusters[1].cluster_type = ClusterType::Static;
        c.clusters[1].endpoints = vec!["10.1.1.1".into()];
    });
    assert_eq!(cluster_change(&d, "stunner/dns-backend"), Change::InPlace);
    let d = changed(|c| c.clusters[0].protocol = ClusterProtocol::Tcp);
    assert_eq!(cluster_change(&d, "stunner/media-plane"), Change::InPlace);
    let d = changed(|c| {
        c.clusters.remove(0);
        c.clusters.push(ClusterConfig {
            name: "x".into(),
            ..Default::default()
        });
    });
    assert_eq!(cluster_change(&d, "x"), Change::Added);
    assert_eq!(cluster_change(&d, "stunner/media-plane"), Change::Removed);
    assert_eq!(d.restarts().count(), 0);
}
