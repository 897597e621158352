//! `listeners[]`: one TURN server socket each, and the ICE URI it is reached at.

use std::fmt;
use std::net::IpAddr;

use base64::Engine as _;
use serde::Serialize;

use crate::kind::ListenerProtocol;
use crate::{Error, defaults};

/// One listener of a [`StunnerConfig`](crate::StunnerConfig).
///
/// `Debug` and `Display` mask the certificate and key.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct ListenerConfig {
    /// Listener name, `<namespace>/<gateway>/<listener>` when rendered by the operator.
    /// Required.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Transport. Defaults to `TURN-UDP`.
    pub protocol: ListenerProtocol,
    /// Public address, used only to render ICE URIs.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub public_address: String,
    /// Public port, used only to render ICE URIs; 0 means "same as `port`".
    #[serde(skip_serializing_if = "is_zero")]
    pub public_port: u16,
    /// The relay address advertised to clients (XOR-RELAYED-ADDRESS), usually the pod
    /// IP (`$STUNNER_ADDR`). Not the bind address: listeners bind the wildcard.
    /// Defaults to `0.0.0.0`.
    #[serde(rename = "address", skip_serializing_if = "String::is_empty")]
    pub address: String,
    /// Port to listen on. Defaults to 3478.
    #[serde(skip_serializing_if = "is_zero")]
    pub port: u16,
    /// Base64 of the PEM certificate chain (TLS and DTLS only).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cert: String,
    /// Base64 of the PEM private key (TLS and DTLS only).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub key: String,
    /// Names of the clusters this listener may relay to. Sorted by validation.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<String>,
}

fn is_zero(p: &u16) -> bool {
    *p == 0
}

impl Default for ListenerConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            protocol: ListenerProtocol::TurnUdp,
            public_address: String::new(),
            public_port: 0,
            address: String::new(),
            port: 0,
            cert: String::new(),
            key: String::new(),
            routes: Vec::new(),
        }
    }
}

impl ListenerConfig {
    pub(crate) fn validate_into(&mut self, path: &str, errs: &mut Vec<Error>) {
        if self.name.is_empty() {
            errs.push(Error::Missing {
                field: format!("{path}.name"),
            });
        }
        if self.address.is_empty() {
            self.address = "0.0.0.0".to_string();
        }
        if self.port == 0 {
            self.port = defaults::PORT;
        }
        if self.protocol.needs_certificate() {
            for (field, value) in [("cert", &self.cert), ("key", &self.key)] {
                if value.is_empty() {
                    errs.push(Error::MissingCertificate {
                        field: format!("{path}.{field}"),
                        protocol: self.protocol.as_str(),
                    });
                } else if base64::engine::general_purpose::STANDARD
                    .decode(value.trim())
                    .is_err()
                {
                    errs.push(Error::InvalidBase64 {
                        field: format!("{path}.{field}"),
                    });
                }
            }
        }
        self.routes.sort();
        self.routes.dedup();
    }

    /// The advertised relay IP. `localhost` is read as 127.0.0.1, as upstream does.
    pub fn relay_ip(&self) -> Result<IpAddr, Error> {
        let a = self.address.as_str();
        match a {
            "" => Ok(IpAddr::from([0, 0, 0, 0])),
            "localhost" => Ok(IpAddr::from([127, 0, 0, 1])),
            _ => a
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse()
                .map_err(|_| Error::InvalidAddress {
                    field: format!("listener {:?} address", self.name),
                    value: a.to_string(),
                }),
        }
    }

    /// The PEM certificate chain, decoded from base64.
    pub fn cert_pem(&self) -> Result<Vec<u8>, Error> {
        decode_pem(&self.cert, &self.name, "cert")
    }

    /// The PEM private key, decoded from base64.
    pub fn key_pem(&self) -> Result<Vec<u8>, Error> {
        decode_pem(&self.key, &self.name, "key")
    }

    /// The address clients reach this listener at: `public_address`, else `address`,
    /// else `0.0.0.0` (also for the node-address placeholder).
    pub fn public_host(&self) -> &str {
        let a = if self.public_address.is_empty() {
            self.address.as_str()
        } else {
            self.public_address.as_str()
        };
        if a.is_empty() || a == defaults::NODE_ADDRESS_PLACEHOLDER {
            "0.0.0.0"
        } else {
            a
        }
    }

    /// The port clients reach this listener at: `public_port`, else `port`.
    pub fn public_port(&self) -> u16 {
        if self.public_port != 0 {
            self.public_port
        } else if self.port != 0 {
            self.port
        } else {
            defaults::PORT
        }
    }

    /// The ICE server URI of this listener (RFC 7065), e.g.
    /// `turn:1.2.3.4:3478?transport=udp`, `turns:[2001:db8::1]:443?transport=tcp`.
    pub fn ice_uri(&self) -> String {
        self.render_uri(false)
    }

    /// The same as [`ice_uri`](Self::ice_uri) in URL form (`turn://host:port?…`).
    pub fn turn_url(&self) -> String {
        self.render_uri(true)
    }

    fn render_uri(&self, url: bool) -> String {
        let host = self.public_host();
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        format!(
            "{}:{}{host}:{}?transport={}",
            self.protocol.uri_scheme(),
            if url { "//" } else { "" },
            self.public_port(),
            self.protocol.uri_transport()
        )
    }
}

fn decode_pem(value: &str, name: &str, field: &str) -> Result<Vec<u8>, Error> {
    base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|_| Error::InvalidBase64 {
            field: format!("listener {name:?} {field}"),
        })
}

impl fmt::Debug for ListenerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListenerConfig")
            .field("name", &self.name)
            .field("protocol", &self.protocol)
            .field("public_address", &self.public_address)
            .field("public_port", &self.public_port)
            .field("address", &self.address)
            .field("port", &self.port)
            .field("cert", &crate::mask(&self.cert))
            .field("key", &crate::mask(&self.key))
            .field("routes", &self.routes)
            .finish()
    }
}

impl fmt::Display for ListenerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let or_dash = |s: &str| {
            if s.is_empty() {
                "-".to_string()
            } else {
                s.to_string()
            }
        };
        write!(
            f,
            "{:?}:{{turn://{}:{}?transport={},public={}:{},cert/key={}/{},routes=[{}]}}",
            if self.name.is_empty() {
                "-"
            } else {
                &self.name
            },
            if self.address.contains(':') {
                format!("[{}]", self.address)
            } else {
                or_dash(&self.address)
            },
            self.port,
            self.protocol,
            or_dash(&self.public_address),
            if self.public_port == 0 {
                "-".to_string()
            } else {
                self.public_port.to_string()
            },
            if self.cert.is_empty() {
                "-"
            } else {
                crate::SECRET
            },
            if self.key.is_empty() {
                "-"
            } else {
                crate::SECRET
            },
            self.routes.join(",")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(proto: ListenerProtocol, addr: &str, port: u16) -> ListenerConfig {
        ListenerConfig {
            name: "l".into(),
            protocol: proto,
            address: addr.into(),
            port,
            ..Default::default()
        }
    }

    #[test]
    fn ice_uris() {
        let mut x = l(ListenerProtocol::TurnUdp, "10.0.0.1", 3478);
        assert_eq!(x.ice_uri(), "turn:10.0.0.1:3478?transport=udp");
        x.public_address = "1.2.3.4".into();
        x.public_port = 30478;
        assert_eq!(x.ice_uri(), "turn:1.2.3.4:30478?transport=udp");
        assert_eq!(x.turn_url(), "turn://1.2.3.4:30478?transport=udp");
        let x = l(ListenerProtocol::TurnTls, "2001:db8::1", 443);
        assert_eq!(x.ice_uri(), "turns:[2001:db8::1]:443?transport=tcp");
        let x = l(ListenerProtocol::TurnDtls, "", 0);
        assert_eq!(x.ice_uri(), "turns:0.0.0.0:3478?transport=udp");
        let x = l(
            ListenerProtocol::TurnTcp,
            defaults::NODE_ADDRESS_PLACEHOLDER,
            3478,
        );
        assert_eq!(x.ice_uri(), "turn:0.0.0.0:3478?transport=tcp");
    }

    #[test]
    fn relay_ip() {
        assert_eq!(
            l(ListenerProtocol::TurnUdp, "localhost", 1)
                .relay_ip()
                .unwrap(),
            IpAddr::from([127, 0, 0, 1])
        );
        assert!(
            l(ListenerProtocol::TurnUdp, "$STUNNER_ADDR", 1)
                .relay_ip()
                .is_err()
        );
        assert!(
            l(ListenerProtocol::TurnUdp, "::1", 1)
                .relay_ip()
                .unwrap()
                .is_ipv6()
        );
    }

    #[test]
    fn debug_and_display_mask_key_material() {
        let mut x = l(ListenerProtocol::TurnTls, "1.1.1.1", 443);
        x.cert = "Q0VSVA==".into();
        x.key = "S0VZ".into();
        for s in [format!("{x:?}"), x.to_string()] {
            assert!(!s.contains("Q0VSVA") && !s.contains("S0VZ"), "{s}");
            assert!(s.contains("<SECRET>"));
        }
    }
}
