//! The crate's error type.

/// A CDS failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The id is not `namespace/name`.
    #[error("invalid config id {0:?}: expected <namespace>/<name>")]
    InvalidId(String),
    /// The server address is not a usable URL.
    #[error("invalid CDS address {0:?}")]
    InvalidAddress(String),
    /// Connecting or talking to the server failed.
    #[error("CDS server {addr}: {reason}")]
    Transport {
        /// The server.
        addr: String,
        /// What went wrong.
        reason: String,
    },
    /// The server answered with an HTTP error.
    #[error("CDS server {addr} answered {status}: {body}")]
    Status {
        /// The server.
        addr: String,
        /// The HTTP status.
        status: u16,
        /// The body.
        body: String,
    },
    /// TLS to the server cannot be set up (a bad CA bundle).
    #[error("CDS TLS: {0}")]
    Tls(String),
    /// A config from the server is invalid.
    #[error("invalid config from the CDS server: {0}")]
    Config(#[from] stunner_config::Errors),
}
