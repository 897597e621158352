//! Property tests: parse(render(x)) == x, and no input panics.

use std::net::IpAddr;

use proptest::prelude::*;
use stunner_config::credential::{
    check_ephemeral_username, ephemeral_password, ephemeral_username,
};
use stunner_config::*;

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from),
    ]
}

fn endpoint() -> impl Strategy<Value = Endpoint> {
    (
        ip(),
        any::<bool>(),
        any::<u8>(),
        proptest::option::of((any::<u16>(), any::<u16>())),
    )
        .prop_map(|(ip, explicit, len, ports)| {
            let max = if ip.is_ipv4() { 33 } else { 129 };
            let len = explicit.then_some(len % max);
            let ports = ports.map(|(a, b)| (a.min(b), a.max(b)));
            Endpoint::new(ip, len, ports).expect("valid by construction")
        })
}

fn protocol() -> impl Strategy<Value = ListenerProtocol> {
    prop::sample::select(ListenerProtocol::ALL.to_vec())
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        ip().prop_map(|ip| ip.to_string()),
        "[a-z][a-z0-9-]{0,10}(\\.[a-z][a-z0-9-]{0,10}){0,3}",
    ]
}

fn turn_uri() -> impl Strategy<Value = TurnUri> {
    (
        protocol(),
        host(),
        1u16..,
        proptest::option::of(("\\PC{0,12}", proptest::option::of("\\PC{0,12}"))),
    )
        .prop_map(|(protocol, host, port, creds)| TurnUri {
            protocol,
            host,
            port,
            username: creds.as_ref().map(|c| c.0.clone()),
            password: creds.and_then(|c| c.1),
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn endpoint_round_trips(e in endpoint()) {
        let text = e.to_string();
        let back: Endpoint = text.parse().unwrap();
        prop_assert_eq!(back, e);
        prop_assert!(back.contains(e.network()));
    }

    #[test]
    fn endpoint_parse_never_panics(s in "\\PC{0,40}") {
        let _ = s.parse::<Endpoint>();
    }

    #[test]
    fn endpoint_parse_never_panics_on_near_misses(s in "[0-9a-f:./<>-]{0,40}") {
        if let Ok(e) = s.parse::<Endpoint>() {
            // Whatever parses renders to something that parses to the same.
            prop_assert_eq!(e.to_string().parse::<Endpoint>().unwrap(), e);
        }
    }

    #[test]
    fn turn_uri_round_trips(u in turn_uri()) {
        let back = TurnUri::parse(&u.render()).unwrap();
        prop_assert_eq!(back, u);
    }

    #[test]
    fn turn_uri_parse_never_panics(s in "(turns?:(//)?)?\\PC{0,40}") {
        let _ = TurnUri::parse(&s);
    }

    #[test]
    fn ice_uri_is_a_turn_uri(p in protocol(), h in host(), port in 1u16..) {
        let l = ListenerConfig { name: "l".into(), protocol: p, public_address: h.clone(), port, ..Default::default() };
        let u = TurnUri::parse(&l.ice_uri()).unwrap();
        prop_assert_eq!((u.protocol, u.host, u.port), (p, h, port));
    }

    #[test]
    fn credential_check_never_panics(s in "\\PC{0,40}", now in any::<i64>()) {
        let _ = check_ephemeral_username(&s, now);
    }

    #[test]
    fn generated_credentials_check_out(expiry in 1i64..i64::MAX, id in "[a-z0-9]{0,12}") {
        let u = ephemeral_username(expiry, &id);
        let checked = check_ephemeral_username(&u, expiry).unwrap();
        prop_assert_eq!(checked.expiry, expiry);
        if !id.is_empty() { prop_assert_eq!(checked.user_id, id); }
        prop_assert_eq!(ephemeral_password("s", &u).len(), 28);
    }

    #[test]
    fn config_parse_never_panics(s in "\\PC{0,200}") {
        let _ = StunnerConfig::from_str_with_env(&s, &|_: &str| None);
    }

    #[test]
    fn validated_config_round_trips_through_json(port in 1u16.., e in endpoint(), p in protocol()) {
        let mut c = StunnerConfig::zero("ns/gw");
        c.listeners.push(ListenerConfig {
            name: "l".into(), protocol: p, port,
            cert: "eA==".into(), key: "eA==".into(),
            routes: vec!["c".into()], ..Default::default()
        });
        c.clusters.push(ClusterConfig { name: "c".into(), endpoints: vec![e.to_string()], ..Default::default() });
        c.validate().unwrap();
        let back = StunnerConfig::from_str_with_env(&c.to_json(), &|_: &str| None).unwrap();
        prop_assert_eq!(back, c);
    }
}
