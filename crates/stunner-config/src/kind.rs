//! The enumerations of the config: auth type, listener protocol, cluster type and
//! protocol, offload engine.
//!
//! Each parses case-insensitively, accepts upstream's aliases, and serializes to the
//! canonical spelling that upstream's `Validate` normalises to.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

/// Defines a string enumeration with a canonical spelling per variant and extra aliases.
macro_rules! string_enum {
    (
        $(#[$meta:meta])*
        $name:ident, allowed = $allowed:literal {
            $( $(#[$vmeta:meta])* $variant:ident => $canon:literal $(| $alias:literal)* ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every variant.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];
            /// The allowed spellings, for error messages.
            pub const ALLOWED: &'static str = $allowed;

            /// The canonical spelling.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $canon),+ }
            }

            /// Parses case-insensitively, accepting aliases; `None` if unknown.
            pub fn parse(s: &str) -> Option<Self> {
                $(
                    if s.eq_ignore_ascii_case($canon) $(|| s.eq_ignore_ascii_case($alias))* {
                        return Some(Self::$variant);
                    }
                )+
                None
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = crate::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s).ok_or_else(|| crate::Error::UnknownValue {
                    field: stringify!($name).to_string(),
                    value: s.to_string(),
                    allowed: Self::ALLOWED,
                })
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

string_enum! {
    /// How TURN clients authenticate (`auth.type`).
    AuthType, allowed = "static, ephemeral, none (aliases plaintext, longterm, timewindowed)" {
        /// One fixed username and password (alias `plaintext`).
        Static => "static" | "plaintext",
        /// TURN REST API credentials derived from a shared secret (aliases `longterm`,
        /// `timewindowed`).
        Ephemeral => "ephemeral" | "longterm" | "timewindowed",
        /// No authentication: STUN Binding only, TURN requests are refused.
        None => "none",
    }
}

string_enum! {
    /// The transport a listener serves (`listeners[].protocol`).
    ///
    /// The short names `UDP`, `TCP`, `TLS` and `DTLS` are accepted as aliases of the
    /// `TURN-*` names (upstream accepts them but cannot serve them; we serve them as TURN).
    ListenerProtocol, allowed = "TURN-UDP, TURN-TCP, TURN-TLS, TURN-DTLS (or UDP, TCP, TLS, DTLS)" {
        /// TURN over UDP.
        TurnUdp => "TURN-UDP" | "UDP",
        /// TURN over TCP.
        TurnTcp => "TURN-TCP" | "TCP",
        /// TURN over TLS (over TCP).
        TurnTls => "TURN-TLS" | "TLS",
        /// TURN over DTLS (over UDP).
        TurnDtls => "TURN-DTLS" | "DTLS",
    }
}

impl ListenerProtocol {
    /// Whether the listener needs a certificate and key.
    pub fn needs_certificate(self) -> bool {
        matches!(self, Self::TurnTls | Self::TurnDtls)
    }

    /// Whether the transport runs over UDP datagrams (UDP, DTLS).
    pub fn is_datagram(self) -> bool {
        matches!(self, Self::TurnUdp | Self::TurnDtls)
    }

    /// The `transport=` value of a TURN URI (RFC 7065 §3).
    pub fn uri_transport(self) -> &'static str {
        if self.is_datagram() { "udp" } else { "tcp" }
    }

    /// The TURN URI scheme: `turns` when the transport is secured, else `turn`.
    pub fn uri_scheme(self) -> &'static str {
        if self.needs_certificate() {
            "turns"
        } else {
            "turn"
        }
    }

    /// The default port of a TURN URI that names none (upstream uses 443 for TLS/DTLS).
    pub fn default_uri_port(self) -> u16 {
        if self.needs_certificate() { 443 } else { 3478 }
    }
}

string_enum! {
    /// How a cluster names its endpoints (`clusters[].type`).
    ClusterType, allowed = "STATIC, STRICT_DNS" {
        /// IP prefixes with optional port ranges.
        Static => "STATIC",
        /// DNS names, resolved periodically.
        StrictDns => "STRICT_DNS",
    }
}

string_enum! {
    /// The transport towards a cluster's peers (`clusters[].protocol`).
    ClusterProtocol, allowed = "UDP, TCP" {
        /// UDP relaying (RFC 8656).
        Udp => "UDP",
        /// TCP relaying (RFC 6062).
        Tcp => "TCP",
    }
}

string_enum! {
    /// Kernel offload engine (`admin.offload_engine`; premium upstream, `None` here).
    OffloadEngine, allowed = "None, XDP, TC, Auto" {
        /// No offload.
        None => "None",
        /// eBPF XDP offload.
        Xdp => "XDP",
        /// eBPF TC offload.
        Tc => "TC",
        /// Pick the best available.
        Auto => "Auto",
    }
}

#[allow(clippy::derivable_impls)] // the macro cannot place `#[default]`
impl Default for OffloadEngine {
    fn default() -> Self {
        Self::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_normalise_to_canonical_names() {
        assert_eq!(AuthType::parse("PlainText"), Some(AuthType::Static));
        assert_eq!(AuthType::parse("longterm"), Some(AuthType::Ephemeral));
        assert_eq!(AuthType::parse("timewindowed"), Some(AuthType::Ephemeral));
        assert_eq!(
            ListenerProtocol::parse("udp"),
            Some(ListenerProtocol::TurnUdp)
        );
        assert_eq!(
            ListenerProtocol::parse("turn-dtls"),
            Some(ListenerProtocol::TurnDtls)
        );
        assert_eq!(
            ClusterType::parse("strict_dns"),
            Some(ClusterType::StrictDns)
        );
        assert_eq!(OffloadEngine::parse("xdp"), Some(OffloadEngine::Xdp));
        assert_eq!(ListenerProtocol::parse("SCTP"), None);
    }

    #[test]
    fn canonical_spelling_round_trips() {
        for p in ListenerProtocol::ALL {
            assert_eq!(ListenerProtocol::parse(p.as_str()), Some(*p));
        }
        for a in AuthType::ALL {
            assert_eq!(AuthType::parse(a.as_str()), Some(*a));
        }
    }
}
