//! Every example config shape: YAML and JSON, v1 and v1alpha1, camelCase and unknown
//! keys, env expansion.

use stunner_config::*;

use crate::{env_of, testdata};

const ENV: &[(&str, &str)] = &[("STUNNER_ADDR", "10.0.0.7")];

#[test]
fn full_v1_yaml() {
    let c = StunnerConfig::from_str_with_env(&testdata("full-v1.yaml"), &env_of(ENV)).unwrap();
    assert_eq!(c.version, "v1");
    assert_eq!(c.admin.name, "stunner/udp-gateway");
    assert_eq!(c.admin.metrics_endpoint, "http://:8080/metrics");
    let m = c.admin.metrics().unwrap();
    assert_eq!(
        (m.host.as_str(), m.port, m.path.as_str()),
        ("", 8080, "/metrics")
    );
    assert_eq!(c.admin.healthcheck().unwrap().port, 8086);
    assert_eq!(c.auth.auth_type, AuthType::Ephemeral);
    assert_eq!(c.auth.secret(), Some("my-shared-secret"));
    assert_eq!(c.listeners.len(), 2);
    let udp = c.listener("stunner/udp-gateway/udp-listener").unwrap();
    assert_eq!(udp.address, "10.0.0.7");
    assert_eq!(udp.relay_ip().unwrap().to_string(), "10.0.0.7");
    assert_eq!(udp.ice_uri(), "turn:34.118.88.91:3478?transport=udp");
    let tls = c.listener("stunner/tls-gateway/tls-listener").unwrap();
    assert_eq!(tls.protocol, ListenerProtocol::TurnTls);
    assert_eq!(tls.cert_pem().unwrap(), b"CERTIFICATE");
    assert_eq!(tls.ice_uri(), "turns:10.0.0.7:443?transport=tcp");
    let media = c.cluster("stunner/media-plane").unwrap();
    // Endpoints are sorted.
    assert_eq!(
        media.endpoints,
        vec!["10.76.1.3", "10.80.0.0/16:<10000-20000>"]
    );
    assert_eq!(media.static_endpoints().len(), 2);
    let dns = c.cluster("stunner/dns-backend").unwrap();
    assert_eq!(dns.cluster_type, ClusterType::StrictDns);
    assert!(dns.static_endpoints().is_empty());
}

#[test]
fn yaml_and_json_of_the_same_config_are_equal() {
    let yaml = StunnerConfig::from_str_with_env(&testdata("full-v1.yaml"), &env_of(ENV)).unwrap();
    let json = yaml.to_json();
    let again = StunnerConfig::from_str_with_env(&json, &env_of(&[])).unwrap();
    assert_eq!(yaml, again);
}

#[test]
fn cds_wire_json_with_camel_case_keys() {
    let c = StunnerConfig::from_str_with_env(&testdata("cds-wire.json"), &env_of(&[])).unwrap();
    assert_eq!(c.admin.log_level, "all:INFO");
    assert_eq!(c.listeners[0].protocol, ListenerProtocol::TurnUdp);
    assert_eq!(c.auth.username(), Some("a"));
}

#[test]
fn managed_gateway_json_and_wire_output() {
    let c =
        StunnerConfig::from_str_with_env(&testdata("managed-gateway.json"), &env_of(ENV)).unwrap();
    assert_eq!(c.listeners[0].address, "10.0.0.7");
    assert_eq!(c.listeners[0].public_address, "1.2.3.4");
    // The wire format keeps upstream's field names and omits empty fields.
    let v: serde_json::Value = serde_json::from_str(&c.to_json()).unwrap();
    assert_eq!(v["admin"]["loglevel"], "all:INFO");
    assert_eq!(v["admin"]["healthcheck_endpoint"], "http://:8086");
    assert_eq!(v["auth"]["type"], "static");
    assert_eq!(v["listeners"][0]["protocol"], "TURN-UDP");
    assert_eq!(v["listeners"][0]["public_port"], 3478);
    assert!(v["listeners"][0].get("cert").is_none());
    assert_eq!(v["clusters"][0]["type"], "STATIC");
    assert!(v["admin"].get("user_quota").is_none());
}

#[test]
fn v1alpha1_is_converted() {
    let c = StunnerConfig::from_str_with_env(&testdata("v1alpha1.yaml"), &env_of(&[])).unwrap();
    assert_eq!(c.version, "v1");
    assert_eq!(c.admin.log_level, "all:DEBUG");
    assert_eq!(c.auth.auth_type, AuthType::Static);
    assert_eq!(c.auth.realm, "my-realm.example.com");
    assert_eq!(c.listeners[0].protocol, ListenerProtocol::TurnUdp);
    assert_eq!(c.clusters[0].cluster_type, ClusterType::Static);
    assert!(!c.to_json().contains("relay_port"));
}

#[test]
fn keys_match_case_insensitively_and_unknown_keys_are_ignored() {
    let c = StunnerConfig::from_str_with_env(&testdata("camelcase-unknown.yaml"), &env_of(&[]))
        .unwrap();
    assert_eq!(c.admin.name, "ns/gw");
    assert_eq!(c.admin.log_level, "all:WARN");
    assert_eq!(
        c.admin.healthcheck_endpoint.as_deref(),
        Some("http://:9999")
    );
    assert_eq!(c.auth.auth_type, AuthType::Ephemeral);
    assert_eq!(c.auth.realm, "stunner.l7mp.io");
    assert_eq!(c.listeners[0].protocol, ListenerProtocol::TurnTcp);
    assert_eq!(c.listeners[0].port, 3479);
    assert_eq!(c.listeners[0].routes, vec!["c1", "c2"]);
    assert_eq!(
        c.clusters[0].endpoints,
        vec!["a.example.com", "b.example.com"]
    );
    assert_eq!(c.clusters[1].protocol, ClusterProtocol::Tcp);
}

#[test]
fn env_expansion_skips_credentials() {
    let text = r#"
version: v1
auth:
  type: static
  realm: $REALM
  credentials:
    username: $USER_NAME
    password: pa$$word${X}
listeners:
  - name: l
    address: ${STUNNER_ADDR}
    port: $STUNNER_PORT
"#;
    let env = env_of(&[
        ("REALM", "expanded.example.com"),
        ("USER_NAME", "expanded-user"),
        ("X", "expanded"),
        ("STUNNER_ADDR", "192.0.2.1"),
    ]);
    let c = StunnerConfig::from_str_with_env(text, &env).unwrap();
    assert_eq!(c.auth.realm, "expanded.example.com");
    assert_eq!(c.auth.username(), Some("$USER_NAME"));
    assert_eq!(c.auth.password(), Some("pa$$word${X}"));
    assert_eq!(c.listeners[0].address, "192.0.2.1");
    // STUNNER_PORT is unset: it defaults to 3478.
    assert_eq!(c.listeners[0].port, 3478);

    let env = env_of(&[("STUNNER_PUBLIC_PORT", "31000")]);
    let c = StunnerConfig::from_str_with_env(text, &env).unwrap();
    assert_eq!(c.listeners[0].port, 31000);
    // An unset STUNNER_ADDR expands to empty, which defaults to 0.0.0.0.
    assert_eq!(c.listeners[0].address, "0.0.0.0");
}

#[test]
fn env_expansion_in_json_secret_stays_literal() {
    let text = r#"{"version":"v1","auth":{"type":"ephemeral","credentials":{"secret":"$SECRET"}}}"#;
    let c = StunnerConfig::from_str_with_env(text, &env_of(&[("SECRET", "leaked")])).unwrap();
    assert_eq!(c.auth.secret(), Some("$SECRET"));
}

#[test]
fn minimal_config_gets_every_default() {
    let c = StunnerConfig::from_str_with_env(
        "version: v1\nauth: {credentials: {username: u, password: p}}\nlisteners: [{name: l}]\nclusters: [{name: c}]",
        &env_of(&[]),
    )
    .unwrap();
    assert_eq!(c.admin.name, "default-stunnerd");
    assert_eq!(c.admin.log_level, "all:INFO");
    assert_eq!(
        c.admin.healthcheck_endpoint.as_deref(),
        Some("http://:8086")
    );
    assert_eq!(c.admin.metrics(), None);
    assert_eq!(c.admin.offload_engine, OffloadEngine::None);
    assert_eq!(c.auth.auth_type, AuthType::Static);
    assert_eq!(c.auth.realm, "stunner.l7mp.io");
    let l = &c.listeners[0];
    assert_eq!(
        (l.protocol, l.address.as_str(), l.port),
        (ListenerProtocol::TurnUdp, "0.0.0.0", 3478)
    );
    let cl = &c.clusters[0];
    assert_eq!(
        (cl.cluster_type, cl.protocol),
        (ClusterType::Static, ClusterProtocol::Udp)
    );
}

#[test]
fn healthcheck_can_be_disabled_with_an_empty_string() {
    let c = StunnerConfig::from_str_with_env(
        "version: v1\nadmin: {healthcheck_endpoint: \"\"}\nauth: {type: none}",
        &env_of(&[]),
    )
    .unwrap();
    assert_eq!(c.admin.healthcheck_endpoint.as_deref(), Some(""));
    assert_eq!(c.admin.healthcheck(), None);
}

#[test]
fn serde_deserialize_decodes_and_validates() {
    let c: StunnerConfig = serde_json::from_str(&testdata("cds-wire.json")).unwrap();
    assert_eq!(c.admin.log_level, "all:INFO");
    let e = serde_json::from_str::<StunnerConfig>(r#"{"version":"v2"}"#).unwrap_err();
    assert!(e.to_string().contains("unsupported API version"), "{e}");
}

#[test]
fn from_str_trait_and_display_mask_secrets() {
    let c: StunnerConfig = testdata("cds-wire.json").parse().unwrap();
    let shown = format!("{c} {c:?}");
    assert!(
        !shown.contains("\"a\"") && !shown.contains("\"b\""),
        "{shown}"
    );
    assert!(shown.contains("<SECRET>"));
    let c = StunnerConfig::from_str_with_env(&testdata("full-v1.yaml"), &env_of(ENV)).unwrap();
    let shown = format!("{c} {c:?} {:?} {}", c.listeners[1], c.auth);
    for secret in ["my-shared-secret", "Q0VSVElGSUNBVEU=", "UFJJVkFURSBLRVk="] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
}

#[test]
fn zero_config() {
    let z = StunnerConfig::zero("ns/gw");
    assert!(z.is_zero());
    assert_eq!(z.admin.name, "ns/gw");
    assert_eq!(z.auth.username(), Some("dummy-username"));
    // The log level does not matter; anything else does.
    let mut y = z.clone();
    y.admin.log_level = "all:DEBUG".into();
    assert!(y.is_zero());
    // A zero config on the wire (as the CDS pushes it) is recognised.
    let wire = StunnerConfig::from_str_with_env(&z.to_json(), &env_of(&[])).unwrap();
    assert!(wire.is_zero());
    let mut x = z.clone();
    x.auth.realm = "other".into();
    assert!(!x.is_zero());
    let c = StunnerConfig::from_str_with_env(&testdata("cds-wire.json"), &env_of(&[])).unwrap();
    assert!(!c.is_zero());
    // An unvalidated zero config (no defaults injected yet) is a zero config too.
    let raw = StunnerConfig::decode_with_env(
        r#"{"version":"v1","admin":{"name":"a/b"},"auth":{"type":"static","realm":"stunner.l7mp.io","credentials":{"username":"dummy-username","password":"dummy-password"}}}"#,
        &env_of(&[]),
    )
    .unwrap();
    assert!(raw.is_zero());
}
