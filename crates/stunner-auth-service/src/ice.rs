//! The answers of the auth service, computed from the known configs: pure functions of
//! the configs, the query and the time.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use stunner_config::credential::{ephemeral_password, ephemeral_username};
use stunner_config::{AuthType, ListenerConfig, StunnerConfig};

/// Query parameters of `/` and `/ice`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Query {
    /// Must be `turn`.
    pub service: Option<String>,
    /// User id for ephemeral credentials.
    pub username: Option<String>,
    /// Credential lifetime, seconds (default 86400).
    pub ttl: Option<i64>,
    /// Accepted for compatibility; upstream ignores it too (see `--require-token`).
    pub key: Option<String>,
    /// Only Gateways in this namespace.
    pub namespace: Option<String>,
    /// Only this Gateway (needs `namespace`).
    pub gateway: Option<String>,
    /// Only this listener (needs `namespace` and `gateway`).
    pub listener: Option<String>,
    /// Overrides the public address in every URI.
    #[serde(rename = "public-addr")]
    pub public_addr: Option<String>,
    /// `all`, `public` or `relay` (only `/ice`).
    #[serde(rename = "iceTransportPolicy")]
    pub ice_transport_policy: Option<String>,
}

/// The TURN REST API answer of `/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TurnResponse {
    /// Username.
    pub username: String,
    /// Password.
    pub password: String,
    /// Lifetime, seconds.
    pub ttl: i64,
    /// TURN URIs.
    pub uris: Vec<String>,
}

/// One entry of an RTCConfiguration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    /// Username.
    pub username: String,
    /// Password.
    pub credential: String,
    /// TURN URIs.
    pub urls: Vec<String>,
}

/// The RTCConfiguration answer of `/ice`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceConfig {
    /// One server per Gateway.
    #[serde(rename = "iceServers")]
    pub ice_servers: Vec<IceServer>,
    /// The policy asked for.
    #[serde(rename = "iceTransportPolicy")]
    pub ice_transport_policy: String,
}

/// Why a request cannot be answered; each maps to an HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// `service` is missing or not `turn` (400).
    #[error("\"service\" must be \"turn\"")]
    BadService,
    /// `service` is missing (400).
    #[error("\"service\" must be \"turn\"")]
    MissingService,
    /// A query parameter is invalid (400).
    #[error("invalid query: {0}")]
    BadQuery(String),
    /// No config is known yet (500, as upstream).
    #[error("no STUNner configuration available")]
    NoConfig,
    /// The filters match no listener (404).
    #[error("no valid listener found")]
    NoListener,
    /// A config's credentials are missing (500).
    #[error("config {0:?}: missing credentials")]
    MissingCredentials(String),
}

/// Which endpoint answers: upstream words its errors per endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /`, TURN credentials.
    Turn,
    /// `GET /ice`, an ICE config.
    Ice,
}

impl AuthError {
    /// The response body: upstream's text, byte for byte, for the errors upstream has
    /// (its handler's errors quoted after a per-endpoint prefix, Go's `%q`, which for
    /// these ASCII texts is Rust's `{:?}`); ours for the checks upstream lacks.
    pub fn wire_text(&self, at: Endpoint) -> String {
        let prefix = match at {
            Endpoint::Turn => "could not generate TURN auth token",
            Endpoint::Ice => "could not generate ICE auth token",
        };
        match self {
            Self::NoListener => match at {
                Endpoint::Turn => format!("{prefix}: no valid listener found"),
                Endpoint::Ice => "could not generate ICE config: no valid listener found".into(),
            },
            // `/` declares `service` required, so upstream's router refuses a missing one
            // before its handler runs; `/ice` leaves that to the handler.
            Self::MissingService if at == Endpoint::Turn => {
                "Query argument service is required, but not found".into()
            }
            Self::BadService | Self::MissingService | Self::MissingCredentials(_) => {
                format!("{prefix}: {:?}", self.to_string())
            }
            Self::BadQuery(_) | Self::NoConfig => self.to_string(),
        }
    }

    /// The HTTP status code.
    pub fn status(&self) -> u16 {
        match self {
            Self::BadService | Self::MissingService | Self::BadQuery(_) => 400,
            Self::NoListener => 404,
            Self::NoConfig | Self::MissingCredentials(_) => 500,
        }
    }
}

const DEFAULT_TTL: i64 = 86400;

fn check(q: &Query) -> Result<(), AuthError> {
    match q.service.as_deref() {
        Some("turn") => {}
        None => return Err(AuthError::MissingService),
        Some(_) => return Err(AuthError::BadService),
    }
    if q.gateway.is_some() && q.namespace.is_none() {
        return Err(AuthError::BadQuery(
            "\"gateway\" needs \"namespace\"".into(),
        ));
    }
    if q.listener.is_some() && q.gateway.is_none() {
        return Err(AuthError::BadQuery(
            "\"listener\" needs \"namespace\" and \"gateway\"".into(),
        ));
    }
    if q.ttl.is_some_and(|t| t <= 0) {
        return Err(AuthError::BadQuery("\"ttl\" must be positive".into()));
    }
    if let Some(p) = &q.ice_transport_policy
        && !["all", "public", "relay"].contains(&p.as_str())
    {
        return Err(AuthError::BadQuery(
            "\"iceTransportPolicy\" must be all, public or relay".into(),
        ));
    }
    Ok(())
}

/// Whether a listener named `ns/gw/listener` passes the filters.
fn selected(l: &ListenerConfig, q: &Query) -> bool {
    let parts: Vec<&str> = l.name.split('/').collect();
    let [ns, gw, name] = parts[..] else {
        return false;
    };
    q.namespace.as_deref().is_none_or(|n| n == ns)
        && q.gateway.as_deref().is_none_or(|g| g == gw)
        && q.listener.as_deref().is_none_or(|x| x == name)
}

fn uri(l: &ListenerConfig, public: Option<&str>) -> String {
    match public {
        Some(p) if !p.is_empty() => {
            let mut l = l.clone();
            l.public_address = p.to_string();
            l.ice_uri()
        }
        _ => l.ice_uri(),
    }
}

/// Credentials for `c`: static ones as configured, ephemeral ones for `now + ttl`.
fn credentials(
    c: &StunnerConfig,
    q: &Query,
    now: i64,
) -> Result<Option<(String, String)>, AuthError> {
    let missing = || AuthError::MissingCredentials(c.admin.name.clone());
    match c.auth.auth_type {
        AuthType::None => Ok(None),
        AuthType::Static => {
            let u = c.auth.username().ok_or_else(missing)?;
            let p = c.auth.password().ok_or_else(missing)?;
            Ok(Some((u.to_string(), p.to_string())))
        }
        AuthType::Ephemeral => {
            let secret = c.auth.secret().ok_or_else(missing)?;
            let ttl = q.ttl.unwrap_or(DEFAULT_TTL);
            let user =
                ephemeral_username(now.saturating_add(ttl), q.username.as_deref().unwrap_or(""));
            let pass = ephemeral_password(secret, &user);
            Ok(Some((user, pass)))
        }
    }
}

/// The ICE servers the query selects: one per config with at least one listener left.
fn servers(
    configs: &BTreeMap<String, StunnerConfig>,
    q: &Query,
    env_public: Option<&str>,
    now: i64,
) -> Result<Vec<IceServer>, AuthError> {
    check(q)?;
    if configs.is_empty() {
        return Err(AuthError::NoConfig);
    }
    let public = q.public_addr.as_deref().or(env_public);
    let mut out = Vec::new();
    for c in configs.values() {
        let urls: Vec<String> = c
            .listeners
            .iter()
            .filter(|l| selected(l, q))
            .map(|l| uri(l, public))
            .collect();
        if urls.is_empty() {
            continue;
        }
        let (username, credential) = credentials(c, q, now)?.unwrap_or_default();
        out.push(IceServer {
            username,
            credential,
            urls,
        });
    }
    if out.is_empty() {
        return Err(AuthError::NoListener);
    }
    Ok(out)
}

/// The answer of `/`: the first matching Gateway's credentials and URIs (in id order,
/// so the answer is stable; upstream picks at random).
pub fn turn_response(
    configs: &BTreeMap<String, StunnerConfig>,
    q: &Query,
    env_public: Option<&str>,
    now: i64,
) -> Result<TurnResponse, AuthError> {
    let s = servers(configs, q, env_public, now)?;
    let first = s.into_iter().next().ok_or(AuthError::NoListener)?;
    Ok(TurnResponse {
        username: first.username,
        password: first.credential,
        ttl: q.ttl.unwrap_or(DEFAULT_TTL),
        uris: first.urls,
    })
}

/// The answer of `/ice`: one iceServer per matching Gateway.
pub fn ice_response(
    configs: &BTreeMap<String, StunnerConfig>,
    q: &Query,
    env_public: Option<&str>,
    now: i64,
) -> Result<IceConfig, AuthError> {
    Ok(IceConfig {
        ice_servers: servers(configs, q, env_public, now)?,
        ice_transport_policy: q
            .ice_transport_policy
            .clone()
            .unwrap_or_else(|| "all".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use stunner_config::credential::check_ephemeral_username;

    #[test]
    fn errors_are_worded_as_upstream_words_them() {
        use Endpoint::{Ice, Turn};
        assert_eq!(
            AuthError::NoListener.wire_text(Turn),
            "could not generate TURN auth token: no valid listener found"
        );
        assert_eq!(
            AuthError::NoListener.wire_text(Ice),
            "could not generate ICE config: no valid listener found"
        );
        assert_eq!(
            AuthError::BadService.wire_text(Turn),
            r#"could not generate TURN auth token: "\"service\" must be \"turn\"""#
        );
        assert_eq!(
            AuthError::MissingService.wire_text(Ice),
            r#"could not generate ICE auth token: "\"service\" must be \"turn\"""#
        );
        assert_eq!(
            AuthError::MissingService.wire_text(Turn),
            "Query argument service is required, but not found"
        );
    }

    fn cfg(id: &str, auth: &str) -> StunnerConfig {
        let text = format!(
            "version: v1\nadmin: {{name: {id}}}\nauth: {auth}\n\
             listeners: [{{name: {id}/udp, address: 10.0.0.1, public_address: 1.2.3.4, port: 3478}},\
             {{name: {id}/tls, protocol: TURN-TLS, port: 443, cert: eA==, key: eA==}}, {{name: bad-name, port: 9}}]"
        );
        StunnerConfig::from_str_with_env(&text, &|_: &str| None).unwrap()
    }

    fn store(cs: Vec<StunnerConfig>) -> BTreeMap<String, StunnerConfig> {
        cs.into_iter().map(|c| (c.admin.name.clone(), c)).collect()
    }

    fn q(s: &str) -> Query {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn static_and_ephemeral_credentials() {
        let st = store(vec![
            cfg(
                "a/gw",
                "{type: static, credentials: {username: u, password: p}}",
            ),
            cfg("b/gw", "{type: ephemeral, credentials: {secret: s3}}"),
        ]);
        let r =
            turn_response(&st, &q(r#"{"service":"turn","namespace":"a"}"#), None, 1000).unwrap();
        assert_eq!(
            (r.username.as_str(), r.password.as_str(), r.ttl),
            ("u", "p", 86400)
        );
        assert_eq!(
            r.uris,
            vec![
                "turn:1.2.3.4:3478?transport=udp",
                "turns:0.0.0.0:443?transport=tcp"
            ]
        );
        let r = turn_response(
            &st,
            &q(r#"{"service":"turn","namespace":"b","username":"bob","ttl":60}"#),
            None,
            1000,
        )
        .unwrap();
        assert_eq!(r.username, "1060:bob");
        assert_eq!(r.password, ephemeral_password("s3", "1060:bob"));
        assert_eq!(
            check_ephemeral_username(&r.username, 1000).unwrap().user_id,
            "bob"
        );
    }

    #[test]
    fn ice_config_filters_and_public_address() {
        let st = store(vec![
            cfg(
                "a/gw",
                "{type: static, credentials: {username: u, password: p}}",
            ),
            cfg(
                "b/gw",
                "{type: static, credentials: {username: v, password: q}}",
            ),
        ]);
        let r = ice_response(
            &st,
            &q(r#"{"service":"turn","iceTransportPolicy":"relay"}"#),
            None,
            0,
        )
        .unwrap();
        assert_eq!(r.ice_servers.len(), 2);
        assert_eq!(r.ice_transport_policy, "relay");
        let r = ice_response(
            &st,
            &q(r#"{"service":"turn","namespace":"b","gateway":"gw","listener":"udp","public-addr":"2001:db8::5"}"#),
            Some("9.9.9.9"),
            0,
        )
        .unwrap();
        assert_eq!(
            r.ice_servers[0].urls,
            vec!["turn:[2001:db8::5]:3478?transport=udp"]
        );
        let r = ice_response(
            &st,
            &q(r#"{"service":"turn","namespace":"a","gateway":"gw","listener":"udp"}"#),
            Some("9.9.9.9"),
            0,
        )
        .unwrap();
        assert_eq!(
            r.ice_servers[0].urls,
            vec!["turn:9.9.9.9:3478?transport=udp"]
        );
    }

    #[test]
    fn errors() {
        let empty = BTreeMap::new();
        assert_eq!(
            turn_response(&empty, &q(r#"{"service":"turn"}"#), None, 0),
            Err(AuthError::NoConfig)
        );
        let st = store(vec![cfg(
            "a/gw",
            "{type: static, credentials: {username: u, password: p}}",
        )]);
        assert_eq!(
            turn_response(&st, &q("{}"), None, 0).unwrap_err().status(),
            400
        );
        assert_eq!(
            turn_response(&st, &q(r#"{"service":"stun"}"#), None, 0)
                .unwrap_err()
                .status(),
            400
        );
        assert_eq!(
            turn_response(&st, &q(r#"{"service":"turn","gateway":"gw"}"#), None, 0)
                .unwrap_err()
                .status(),
            400
        );
        assert_eq!(
            turn_response(&st, &q(r#"{"service":"turn","namespace":"zz"}"#), None, 0)
                .unwrap_err()
                .status(),
            404
        );
        assert_eq!(
            ice_response(
                &st,
                &q(r#"{"service":"turn","iceTransportPolicy":"x"}"#),
                None,
                0
            )
            .unwrap_err()
            .status(),
            400
        );
        assert_eq!(
            turn_response(&st, &q(r#"{"service":"turn","ttl":0}"#), None, 0)
                .unwrap_err()
                .status(),
            400
        );
    }
}
