//! Every validation rule, with its error message.

use stunner_config::*;

use crate::env_of;

fn errors(text: &str) -> Vec<String> {
    match StunnerConfig::from_str_with_env(text, &env_of(&[])) {
        Ok(c) => panic!("accepted: {c}"),
        Err(e) => e.iter().map(ToString::to_string).collect(),
    }
}

fn one_error(text: &str) -> String {
    let e = errors(text);
    assert_eq!(e.len(), 1, "{e:?}");
    e.into_iter().next().unwrap_or_default()
}

const AUTH: &str = "auth: {credentials: {username: u, password: p}}";

#[test]
fn syntax_errors_name_the_format() {
    assert!(one_error("").starts_with("config is not valid YAML"));
    assert!(one_error("version: [v1").starts_with("config is not valid YAML"));
    assert!(one_error("{\"version\": \"v1\",").starts_with("config is not valid JSON"));
}

#[test]
fn version() {
    assert_eq!(
        one_error("version: v2"),
        "version: unsupported API version \"v2\" (expected \"v1\" or \"v1alpha1\")"
    );
    assert!(one_error("admin: {name: x}").contains("unsupported API version \"\""));
    let mut c = StunnerConfig::zero("x");
    c.version = "v0".into();
    assert_eq!(
        c.validate().unwrap_err().first().kind(),
        "unsupported_version"
    );
}

#[test]
fn port_range() {
    let e = errors(&format!(
        "version: v1\n{AUTH}\nlisteners: [{{name: a, port: 3478}}, {{name: b, port: 70000}}]"
    ));
    assert_eq!(e, vec!["listeners[1].port: 70000 is not in 1..65535"]);
    let e = one_error(&format!(
        "version: v1\n{AUTH}\nlisteners: [{{name: a, port: -1}}]"
    ));
    assert_eq!(e, "listeners[0].port: -1 is not in 1..65535");
    let e = one_error(&format!(
        "version: v1\n{AUTH}\nlisteners: [{{name: a, public_port: 65536}}]"
    ));
    assert_eq!(e, "listeners[0].public_port: 65536 is not in 0..65535");
}

#[test]
fn types() {
    let e = one_error(&format!(
        "version: v1\n{AUTH}\nlisteners: [{{name: a, port: abc}}]"
    ));
    assert_eq!(
        e,
        "listeners[0].port: expected an integer, found string \"abc\""
    );
    let e = one_error(&format!("version: v1\n{AUTH}\nlisteners: {{name: a}}"));
    assert_eq!(e, "listeners: expected a list, found an object");
    let e = one_error(&format!("version: v1\n{AUTH}\nlisteners: [{{name: [a]}}]"));
    assert_eq!(e, "listeners[0].name: expected a string, found a list");
    let e = one_error("version: v1\nauth: {credentials: {username: u, password: 1234}}");
    assert_eq!(
        e,
        "auth.credentials.password: expected a string, found number 1234"
    );
    let e = one_error(&format!(
        "version: v1\n{AUTH}\nclusters: [{{name: c, endpoints: [1]}}]"
    ));
    assert_eq!(
        e,
        "clusters[0].endpoints[0]: expected a string, found number 1"
    );
    let e = one_error("version: v1\nadmin: 5");
    assert_eq!(e, "admin: expected an object, found number 5");
}

#[test]
fn enumerations() {
    let e = one_error(&format!(
        "version: v1\n{AUTH}\nlisteners: [{{name: a, protocol: SCTP}}]"
    ));
    assert_eq!(
        e,
        "listeners[0].protocol: \"SCTP\" is not one of TURN-UDP, TURN-TCP, TURN-TLS, TURN-DTLS (or UDP, TCP, TLS, DTLS)"
    );
    let e = one_error("version: v1\nauth: {type: oauth}");
    assert!(
        e.starts_with("auth.type: \"oauth\" is not one of static, ephemeral, none"),
        "{e}"
    );
    let e = one_error(&format!(
        "version: v1\n{AUTH}\nclusters: [{{name: c, type: EDS}}]"
    ));
    assert_eq!(
        e,
        "clusters[0].type: \"EDS\" is not one of STATIC, STRICT_DNS"
    );
    let e = one_error(&format!(
        "version: v1\n{AUTH}\nclusters: [{{name: c, protocol: SCTP}}]"
    ));
    assert_eq!(e, "clusters[0].protocol: \"SCTP\" is not one of UDP, TCP");
    let e = one_error(&format!(
        "version: v1\n{AUTH}\nadmin: {{offload_engine: GPU}}"
    ));
    assert_eq!(
        e,
        "admin.offload_engine: \"GPU\" is not one of None, XDP, TC, Auto"
    );
}

#[test]
fn credentials() {
    assert_eq!(
        one_error("version: v1\nauth: {type: static, credentials: {username: u}}"),
        "auth.credentials: static authentication requires credential \"password\""
    );
    assert_eq!(
        errors("version: v1\nauth: {type: plaintext}").len(),
        2,
        "username and password both reported"
    );
    assert_eq!(
        one_error("version: v1\nauth: {type: ephemeral, credentials: {username: u}}"),
        "auth.credentials: ephemeral authentication requires credential \"secret\""
    );
    // Empty values are refused (upstream accepts them).
    assert_eq!(
        one_error("version: v1\nauth: {type: longterm, credentials: {secret: \"\"}}"),
        "auth.credentials: ephemeral authentication requires credential \"secret\""
    );
    // `none` needs nothing.
    assert!(
        StunnerConfig::from_str_with_env("version: v1\nauth: {type: none}", &env_of(&[])).is_ok()
    );
}

#[test]
fn names() {
    assert_eq!(
        one_error(&format!("version: v1\n{AUTH}\nlisteners: [{{port: 1}}]")),
        "listeners[0].name: required field is missing or empty"
    );
    assert_eq!(
        one_error(&format!(
            "version: v1\n{AUTH}\nclusters: [{{endpoints: []}}]"
        )),
        "clusters[0].name: required field is missing or empty"
    );
    assert_eq!(
        one_error(&format!(
            "version: v1\n{AUTH}\nlisteners: [{{name: a, port: 1}}, {{name: a, port: 2}}]"
        )),
        "listeners[1].name: duplicate name \"a\""
    );
    assert_eq!(
        one_error(&format!(
            "version: v1\n{AUTH}\nclusters: [{{name: c}}, {{name: c}}]"
        )),
        "clusters[1].name: duplicate name \"c\""
    );
}

#[test]
fn port_conflicts() {
    assert_eq!(
        one_error(&format!(
            "version: v1\n{AUTH}\nlisteners: [{{name: a}}, {{name: b, protocol: DTLS, cert: eA==, key: eA==}}]"
        )),
        "listeners[1].port: port 3478 is already used by listener \"a\""
    );
    // UDP and TCP may share a port.
    assert!(
        StunnerConfig::from_str_with_env(
            &format!("version: v1\n{AUTH}\nlisteners: [{{name: a}}, {{name: b, protocol: TCP}}]"),
            &env_of(&[])
        )
        .is_ok()
    );
}

#[test]
fn certificates() {
    let e = errors(&format!(
        "version: v1\n{AUTH}\nlisteners: [{{name: a, protocol: TLS}}]"
    ));
    assert_eq!(
        e,
        vec![
            "listeners[0].cert: a TURN-TLS listener requires a TLS certificate and key",
            "listeners[0].key: a TURN-TLS listener requires a TLS certificate and key",
        ]
    );
    assert_eq!(
        one_error(&format!(
            "version: v1\n{AUTH}\nlisteners: [{{name: a, protocol: turn-dtls, cert: '!!!', key: eA==}}]"
        )),
        "listeners[0].cert: not valid base64 (expected base64 of a PEM block)"
    );
}

#[test]
fn endpoints() {
    assert_eq!(
        one_error(&format!(
            "version: v1\n{AUTH}\nclusters: [{{name: c, endpoints: [10.0.0.0/8, '10.0.0.0/33']}}]"
        )),
        "clusters[0].endpoints[1]: invalid endpoint \"10.0.0.0/33\": prefix length 33 is longer than 32"
    );
    assert_eq!(
        one_error(&format!(
            "version: v1\n{AUTH}\nclusters: [{{name: c, endpoints: ['1.2.3.4:<9-1>']}}]"
        )),
        "clusters[0].endpoints[0]: invalid endpoint \"1.2.3.4:<9-1>\": port range 9-1 is reversed"
    );
    assert_eq!(
        one_error(&format!(
            "version: v1\n{AUTH}\nclusters: [{{name: c, type: STRICT_DNS, endpoints: ['a b']}}]"
        )),
        "clusters[0].endpoints[0]: invalid endpoint \"a b\": not a DNS name"
    );
}

#[test]
fn admin_urls() {
    assert_eq!(
        one_error(&format!(
            "version: v1\n{AUTH}\nadmin: {{metrics_endpoint: 'ftp://x'}}"
        )),
        "admin.metrics_endpoint: invalid URL \"ftp://x\": scheme \"ftp\" is not http"
    );
    assert_eq!(
        one_error(&format!(
            "version: v1\n{AUTH}\nadmin: {{healthcheck_endpoint: 'http://:0'}}"
        )),
        "admin.healthcheck_endpoint: invalid URL \"http://:0\": port \"0\" is not in 1..65535"
    );
}

#[test]
fn quota() {
    let c = StunnerConfig::from_str_with_env(
        &format!("version: v1\n{AUTH}\nadmin: {{user_quota: -5}}"),
        &env_of(&[]),
    )
    .unwrap();
    assert_eq!(c.admin.user_quota, 0);
    let c = StunnerConfig::from_str_with_env(
        &format!("version: v1\n{AUTH}\nadmin: {{user_quota: 10}}"),
        &env_of(&[]),
    )
    .unwrap();
    assert_eq!(c.admin.user_quota, 10);
}

#[test]
fn every_error_is_reported() {
    let e = errors(
        "version: v1\nauth: {type: static}\nlisteners: [{port: 99999}, {name: b, protocol: x}]\nclusters: [{name: c, endpoints: [nope]}]",
    );
    // Type errors first, then semantic ones; none about an object whose field failed
    // to decode (listeners[0] has no name, but its port already failed).
    assert_eq!(
        e,
        vec![
            "listeners[0].port: 99999 is not in 1..65535",
            "listeners[1].protocol: \"x\" is not one of TURN-UDP, TURN-TCP, TURN-TLS, TURN-DTLS (or UDP, TCP, TLS, DTLS)",
            "auth.credentials: static authentication requires credential \"username\"",
            "auth.credentials: static authentication requires credential \"password\"",
            "clusters[0].endpoints[0]: invalid endpoint \"nope\": \"nope\" is not an IP address",
        ]
    );
    let all = StunnerConfig::from_str_with_env(
        "version: v1\nauth: {type: static}\nlisteners: [{port: 99999}]",
        &env_of(&[]),
    )
    .unwrap_err();
    // The whole list renders on one line.
    assert!(!all.to_string().contains('\n'));
    assert!(all.to_string().contains("; "));
}

#[test]
fn a_realm_longer_than_realm_can_carry_is_refused() {
    let long = "r".repeat(764);
    assert_eq!(
        one_error(&format!(
            "version: v1\nauth: {{realm: {long}, credentials: {{username: u, password: p}}}}"
        )),
        "auth.realm: 764 bytes is longer than the 763 allowed"
    );
    let ok = "r".repeat(763);
    assert!(
        StunnerConfig::from_str_with_env(
            &format!(
                "version: v1\nauth: {{realm: {ok}, credentials: {{username: u, password: p}}}}"
            ),
            &env_of(&[])
        )
        .is_ok()
    );
}
