//! TURN URIs (RFC 7065 with upstream's extensions) and the one-line default config
//! built from one.
//!
//! Accepted: `turn:` / `turns:` with or without `//`, optional `user:pass@`, host (IPv4,
//! `[IPv6]` or a name), optional port, optional `?transport=udp|tcp|tls|dtls`, and the
//! schemes `turn+udp`, `turn+tcp`, `turns+udp`, `turns+tcp`.

use std::fmt;

use crate::admin::AdminConfig;
use crate::auth::AuthConfig;
use crate::cluster::ClusterConfig;
use crate::kind::{AuthType, ClusterType, ListenerProtocol};
use crate::listener::ListenerConfig;
use crate::stunner::StunnerConfig;
use crate::{Error, Errors, defaults};

/// A parsed TURN URI. `Display` and `Debug` mask the password; [`render`](Self::render)
/// gives the full text.
#[derive(Clone, PartialEq, Eq)]
pub struct TurnUri {
    /// The transport, from the scheme and `transport=`.
    pub protocol: ListenerProtocol,
    /// Host: an IP address (IPv6 without brackets) or a DNS name.
    pub host: String,
    /// Port (default 3478, or 443 for TLS/DTLS).
    pub port: u16,
    /// Username, percent-decoded.
    pub username: Option<String>,
    /// Password, percent-decoded.
    pub password: Option<String>,
}

impl TurnUri {
    /// Parses a TURN URI.
    pub fn parse(uri: &str) -> Result<Self, Error> {
        let fail = |reason: &str| Error::InvalidUri {
            uri: mask_uri(uri),
            reason: reason.to_string(),
        };
        let (scheme, rest) = uri
            .split_once(':')
            .ok_or_else(|| fail("missing scheme (turn: or turns:)"))?;
        let scheme = scheme.to_ascii_lowercase();
        let (secure, scheme_transport) = match scheme.as_str() {
            "turn" => (false, None),
            "turns" => (true, None),
            "turn+udp" => (false, Some("udp")),
            "turn+tcp" => (false, Some("tcp")),
            "turns+udp" => (true, Some("udp")),
            "turns+tcp" => (true, Some("tcp")),
            _ => return Err(fail("scheme is not turn or turns")),
        };
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        let (authority, query) = match rest.split_once('?') {
            Some((a, q)) => (a, Some(q)),
            None => (rest, None),
        };
        let authority = authority.strip_suffix('/').unwrap_or(authority);
        let mut transport = scheme_transport.map(str::to_string);
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if k.eq_ignore_ascii_case("transport") {
                transport = Some(v.to_ascii_lowercase());
            }
        }
        let protocol = match (secure, transport.as_deref()) {
            (_, Some("tls")) => ListenerProtocol::TurnTls,
            (_, Some("dtls")) => ListenerProtocol::TurnDtls,
            (false, None | Some("udp")) => ListenerProtocol::TurnUdp,
            (false, Some("tcp")) => ListenerProtocol::TurnTcp,
            (true, None | Some("tcp")) => ListenerProtocol::TurnTls,
            (true, Some("udp")) => ListenerProtocol::TurnDtls,
            (_, Some(_)) => return Err(fail("transport must be udp, tcp, tls or dtls")),
        };
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(u) => {
                let (user, pass) = match u.split_once(':') {
                    Some((a, b)) => (a, Some(b)),
                    None => (u, None),
                };
                let dec = |s: &str| percent_decode(s).ok_or_else(|| fail("bad percent-encoding"));
                (Some(dec(user)?), pass.map(dec).transpose()?)
            }
        };
        let (host, port) = split_host_port(hostport).map_err(|r| fail(&r))?;
        if host.is_empty() {
            return Err(fail("missing host"));
        }
        if host.contains(|c: char| c.is_whitespace() || "/?#@[]".contains(c))
            || (host.contains(':') && host.parse::<std::net::Ipv6Addr>().is_err())
        {
            return Err(fail("invalid host"));
        }
        let port = match port {
            None | Some("") => protocol.default_uri_port(),
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0 && !p.to_string().is_empty())
                .ok_or_else(|| fail("port is not in 1..65535"))?,
        };
        Ok(Self {
            protocol,
            host: host.to_string(),
            port,
            username,
            password,
        })
    }

    /// The full URI in URL form, credentials included:
    /// `turn[s]://[user[:pass]@]host:port?transport=udp|tcp`.
    pub fn render(&self) -> String {
        self.render_with(self.password.as_deref().map(percent_encode))
    }

    fn render_with(&self, password: Option<String>) -> String {
        let mut s = format!("{}://", self.protocol.uri_scheme());
        if let Some(u) = &self.username {
            s.push_str(&percent_encode(u));
            if let Some(p) = password {
                s.push(':');
                s.push_str(&p);
            }
            s.push('@');
        }
        if self.host.contains(':') {
            s.push_str(&format!("[{}]", self.host));
        } else {
            s.push_str(&self.host);
        }
        s.push_str(&format!(
            ":{}?transport={}",
            self.port,
            self.protocol.uri_transport()
        ));
        s
    }
}

impl fmt::Display for TurnUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let masked = self.password.as_ref().map(|_| crate::SECRET.to_string());
        f.write_str(&self.render_with(masked))
    }
}

impl fmt::Debug for TurnUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TurnUri({self})")
    }
}

impl std::str::FromStr for TurnUri {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Replaces the password of a URI-like string with `<SECRET>`, for error messages.
fn mask_uri(uri: &str) -> String {
    let start = uri
        .find("//")
        .map_or_else(|| uri.find(':').map_or(0, |i| i + 1), |i| i + 2);
    let Some(at) = uri[start..].rfind('@').map(|i| i + start) else {
        return uri.to_string();
    };
    match uri[start..at].find(':') {
        Some(c) => format!("{}{}{}", &uri[..start + c + 1], crate::SECRET, &uri[at..]),
        None => uri.to_string(),
    }
}

fn split_host_port(a: &str) -> Result<(&str, Option<&str>), String> {
    if let Some(inner) = a.strip_prefix('[') {
        let end = inner.find(']').ok_or("unclosed '['")?;
        let after = &inner[end + 1..];
        return match after.strip_prefix(':') {
            Some(p) => Ok((&inner[..end], Some(p))),
            None if after.is_empty() => Ok((&inner[..end], None)),
            None => Err("garbage after IPv6 address".into()),
        };
    }
    if a.matches(':').count() > 1 {
        // A bare IPv6 address without a port.
        return Ok((a, None));
    }
    Ok(match a.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (a, None),
    })
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&b)
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if is_unreserved(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl StunnerConfig {
    /// The config of a one-line server: static credentials from the URI's user and
    /// password (both required), one listener `default-listener` on the URI's
    /// transport, address and port, routed to one open cluster `allow-any` that admits
    /// every IPv4 and IPv6 peer (upstream's covers IPv4 only).
    ///
    /// TLS and DTLS need a certificate: pass `tls` as base64 PEM `(cert, key)`;
    /// stunnerd generates a self-signed one when the user gives none.
    pub fn from_turn_uri(uri: &str, tls: Option<(String, String)>) -> Result<Self, Errors> {
        let u = TurnUri::parse(uri)?;
        let (Some(user), Some(pass)) = (&u.username, &u.password) else {
            return Err(Error::InvalidUri {
                uri: mask_uri(uri),
                reason: "username and password must be set (turn://user:pass@host:port)".into(),
            }
            .into());
        };
        if user.is_empty() || pass.is_empty() {
            return Err(Error::InvalidUri {
                uri: mask_uri(uri),
                reason: "username and password must not be empty".into(),
            }
            .into());
        }
        let (cert, key) = tls.unwrap_or_default();
        let mut c = Self {
            version: defaults::API_VERSION.to_string(),
            admin: AdminConfig {
                log_level: defaults::LOG_LEVEL.to_string(),
                healthcheck_endpoint: Some(defaults::HEALTHCHECK_ENDPOINT.to_string()),
                ..Default::default()
            },
            auth: AuthConfig {
                auth_type: AuthType::Static,
                realm: defaults::REALM.to_string(),
                credentials: [
                    ("username".to_string(), user.clone()),
                    ("password".to_string(), pass.clone()),
                ]
                .into(),
            },
            listeners: vec![ListenerConfig {
                name: defaults::DEFAULT_LISTENER_NAME.to_string(),
                protocol: u.protocol,
                address: if u.host.eq_ignore_ascii_case("localhost") {
                    "127.0.0.1".to_string()
                } else {
                    u.host.clone()
                },
                port: u.port,
                cert,
                key,
                routes: vec![defaults::DEFAULT_CLUSTER_NAME.to_string()],
                ..Default::default()
            }],
            clusters: vec![ClusterConfig {
                name: defaults::DEFAULT_CLUSTER_NAME.to_string(),
                cluster_type: ClusterType::Static,
                endpoints: vec!["0.0.0.0/0".to_string(), "::/0".to_string()],
                ..Default::default()
            }],
        };
        c.validate()?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> TurnUri {
        TurnUri::parse(s).unwrap()
    }

    #[test]
    fn schemes_and_transports() {
        use ListenerProtocol::*;
        let cases = [
            ("turn:1.2.3.4", TurnUdp, 3478),
            ("turn:1.2.3.4?transport=tcp", TurnTcp, 3478),
            ("turns:1.2.3.4", TurnTls, 443),
            ("turns:1.2.3.4:5349?transport=udp", TurnDtls, 5349),
            ("turn://u:p@1.2.3.4:3478?transport=tls", TurnTls, 3478),
            ("turn://u:p@1.2.3.4?transport=dtls", TurnDtls, 443),
            ("turn+tcp:1.2.3.4", TurnTcp, 3478),
            ("turns+udp:1.2.3.4", TurnDtls, 443),
            ("TURN:[2001:db8::1]:3478?transport=UDP", TurnUdp, 3478),
        ];
        for (s, proto, port) in cases {
            let u = p(s);
            assert_eq!((u.protocol, u.port), (proto, port), "{s}");
        }
        assert_eq!(p("turn:[2001:db8::1]:3478").host, "2001:db8::1");
        assert_eq!(p("turn:2001:db8::1").host, "2001:db8::1");
    }

    #[test]
    fn credentials_are_decoded_and_masked() {
        let u = p("turn://user%40x:p%3Ass@example.com:3478?transport=udp");
        assert_eq!(u.username.as_deref(), Some("user@x"));
        assert_eq!(u.password.as_deref(), Some("p:ss"));
        assert_eq!(
            u.render(),
            "turn://user%40x:p%3Ass@example.com:3478?transport=udp"
        );
        assert!(!u.to_string().contains("p%3Ass") && !format!("{u:?}").contains("p%3Ass"));
        let e = TurnUri::parse("turn://u:hunter2@:1")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn rejects_bad_uris() {
        for bad in [
            "",
            "http://x",
            "turn:",
            "turn://u:p@",
            "turn:1.2.3.4:0",
            "turn:1.2.3.4:70000",
            "turn:1.2.3.4?transport=sctp",
            "turn:[::1",
            "turn:a b",
            "turn:1.2.3.4:x",
            "turn://u:%zz@1.2.3.4",
        ] {
            assert!(TurnUri::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn default_config_from_uri() {
        let c = StunnerConfig::from_turn_uri("turn://user:pass@127.0.0.1:3478?transport=udp", None)
            .unwrap();
        assert_eq!(c.auth.username(), Some("user"));
        assert_eq!(c.listeners[0].protocol, ListenerProtocol::TurnUdp);
        assert_eq!(c.listeners[0].routes, vec!["allow-any"]);
        assert_eq!(c.clusters[0].endpoints, vec!["0.0.0.0/0", "::/0"]);
        assert!(StunnerConfig::from_turn_uri("turn://127.0.0.1:3478", None).is_err());
        // TLS without a certificate is refused with a clear error.
        let e = StunnerConfig::from_turn_uri("turns://u:p@127.0.0.1:443", None).unwrap_err();
        assert_eq!(e.first().kind(), "missing_certificate");
        let c = StunnerConfig::from_turn_uri(
            "turns://u:p@localhost:443",
            Some(("Q0VSVA==".into(), "S0VZ".into())),
        )
        .unwrap();
        assert_eq!(c.listeners[0].address, "127.0.0.1");
    }
}
