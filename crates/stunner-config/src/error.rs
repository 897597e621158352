//! The crate's one error type.
//!
//! Every variant names the offending field (a path such as `listeners[1].port`) and the
//! offending value, so a binary can report it in one line.

use std::fmt;

/// An error found while parsing or validating a config, a URI, an endpoint or a
/// credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The text is neither valid YAML nor valid JSON.
    #[error("config is not valid {format}: {message}")]
    Syntax {
        /// `YAML` or `JSON`.
        format: &'static str,
        /// The parser's message, with its position.
        message: String,
    },
    /// The `version` field is missing or names an API this crate does not speak.
    #[error("version: unsupported API version {0:?} (expected \"v1\" or \"v1alpha1\")")]
    UnsupportedVersion(String),
    /// A field holds a value of the wrong JSON type.
    #[error("{field}: expected {expected}, found {found}")]
    Type {
        /// Path of the field.
        field: String,
        /// What was expected (`a string`, `an integer`, …).
        expected: &'static str,
        /// A short rendering of what was found.
        found: String,
    },
    /// A required field is missing or empty.
    #[error("{field}: required field is missing or empty")]
    Missing {
        /// Path of the field.
        field: String,
    },
    /// An integer lies outside its allowed range.
    #[error("{field}: {value} is not in {min}..{max}")]
    OutOfRange {
        /// Path of the field.
        field: String,
        /// The offending value.
        value: i64,
        /// Smallest allowed value.
        min: i64,
        /// Largest allowed value.
        max: i64,
    },
    /// A string is not one of the values an enumeration allows.
    #[error("{field}: {value:?} is not one of {allowed}")]
    UnknownValue {
        /// Path of the field.
        field: String,
        /// The offending value.
        value: String,
        /// The allowed values, comma separated.
        allowed: &'static str,
    },
    /// A credential required by the auth type is absent.
    #[error("{field}: {auth_type} authentication requires credential {key:?}")]
    MissingCredential {
        /// Path of the credentials map.
        field: String,
        /// The auth type (`static` or `ephemeral`).
        auth_type: &'static str,
        /// The missing key.
        key: &'static str,
    },
    /// A TLS or DTLS listener has no certificate or key.
    #[error("{field}: a {protocol} listener requires a TLS certificate and key")]
    MissingCertificate {
        /// Path of the missing field (`listeners[0].cert`).
        field: String,
        /// The listener protocol.
        protocol: &'static str,
    },
    /// A cluster endpoint does not parse as `IP[/prefix][:<lo-hi>]`.
    #[error("{field}: invalid endpoint {value:?}: {reason}")]
    InvalidEndpoint {
        /// Path of the field.
        field: String,
        /// The offending endpoint.
        value: String,
        /// Why it is invalid.
        reason: String,
    },
    /// An admin endpoint URL does not parse as `http://[host][:port][/path]`.
    #[error("{field}: invalid URL {value:?}: {reason}")]
    InvalidUrl {
        /// Path of the field.
        field: String,
        /// The offending URL.
        value: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A certificate or key is not valid base64.
    #[error("{field}: not valid base64 (expected base64 of a PEM block)")]
    InvalidBase64 {
        /// Path of the field.
        field: String,
    },
    /// Two listeners or two clusters share a name.
    #[error("{field}: duplicate name {value:?}")]
    Duplicate {
        /// Path of the second occurrence.
        field: String,
        /// The name.
        value: String,
    },
    /// Two listeners would bind the same port with the same socket type.
    #[error("{field}: port {port} is already used by listener {other:?}")]
    PortConflict {
        /// Path of the second listener's port.
        field: String,
        /// The port.
        port: u16,
        /// The listener that has it first.
        other: String,
    },
    /// A string longer than its wire encoding allows.
    #[error("{field}: {len} bytes is longer than the {max} allowed")]
    TooLong {
        /// Path of the field.
        field: String,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A listener address is not an IP address.
    #[error("{field}: {value:?} is not an IP address")]
    InvalidAddress {
        /// Path of the field.
        field: String,
        /// The offending address.
        value: String,
    },
    /// A TURN URI does not parse.
    #[error("invalid TURN URI {uri:?}: {reason}")]
    InvalidUri {
        /// The URI (with any password replaced by `<SECRET>`).
        uri: String,
        /// Why it is invalid.
        reason: String,
    },
    /// An ephemeral (TURN REST API) username carries no usable expiry timestamp.
    #[error("invalid ephemeral username {0:?}: no positive unix timestamp found")]
    InvalidTimestamp(String),
    /// An ephemeral (TURN REST API) username has expired.
    #[error("ephemeral username {username:?} expired at {expiry} (now {now})")]
    ExpiredCredential {
        /// The username.
        username: String,
        /// Its expiry, in unix seconds.
        expiry: i64,
        /// The time it was checked at, in unix seconds.
        now: i64,
    },
}

impl Error {
    /// The path of the offending field, where the error has one.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Type { field, .. }
            | Self::Missing { field }
            | Self::OutOfRange { field, .. }
            | Self::UnknownValue { field, .. }
            | Self::MissingCredential { field, .. }
            | Self::MissingCertificate { field, .. }
            | Self::InvalidEndpoint { field, .. }
            | Self::InvalidUrl { field, .. }
            | Self::InvalidBase64 { field }
            | Self::Duplicate { field, .. }
            | Self::PortConflict { field, .. }
            | Self::TooLong { field, .. }
            | Self::InvalidAddress { field, .. } => Some(field),
            Self::UnsupportedVersion(_) => Some("version"),
            Self::Syntax { .. }
            | Self::InvalidUri { .. }
            | Self::InvalidTimestamp(_)
            | Self::ExpiredCredential { .. } => None,
        }
    }

    /// A stable, low-cardinality name for the error, for metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Syntax { .. } => "syntax",
            Self::UnsupportedVersion(_) => "unsupported_version",
            Self::Type { .. } => "type",
            Self::Missing { .. } => "missing",
            Self::OutOfRange { .. } => "out_of_range",
            Self::UnknownValue { .. } => "unknown_value",
            Self::MissingCredential { .. } => "missing_credential",
            Self::MissingCertificate { .. } => "missing_certificate",
            Self::InvalidEndpoint { .. } => "invalid_endpoint",
            Self::InvalidUrl { .. } => "invalid_url",
            Self::InvalidBase64 { .. } => "invalid_base64",
            Self::Duplicate { .. } => "duplicate",
            Self::PortConflict { .. } => "port_conflict",
            Self::InvalidAddress { .. } => "invalid_address",
            Self::TooLong { .. } => "too_long",
            Self::InvalidUri { .. } => "invalid_uri",
            Self::InvalidTimestamp(_) => "invalid_timestamp",
            Self::ExpiredCredential { .. } => "expired_credential",
        }
    }
}

/// All the errors found in one config. Never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Errors(pub Vec<Error>);

impl Errors {
    /// The errors, in the order they were found (document order).
    pub fn iter(&self) -> std::slice::Iter<'_, Error> {
        self.0.iter()
    }

    /// The first error.
    pub fn first(&self) -> &Error {
        // An `Errors` is only built from a non-empty list (see `from_vec`).
        &self.0[0]
    }

    /// Wraps a list; `None` when it is empty.
    pub(crate) fn from_vec(errors: Vec<Error>) -> Option<Self> {
        (!errors.is_empty()).then_some(Self(errors))
    }
}

impl From<Error> for Errors {
    fn from(e: Error) -> Self {
        Self(vec![e])
    }
}

impl fmt::Display for Errors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Errors {}

impl<'a> IntoIterator for &'a Errors {
    type Item = &'a Error;
    type IntoIter = std::slice::Iter<'a, Error>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}
