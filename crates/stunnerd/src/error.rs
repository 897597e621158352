//! The daemon's error type.

use std::net::SocketAddr;

/// Why stunnerd could not do what it was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The config is invalid.
    #[error("invalid config: {0}")]
    Config(#[from] stunner_config::Errors),
    /// A config field is invalid at apply time.
    #[error("invalid config: {0}")]
    ConfigField(#[from] stunner_config::Error),
    /// The config origin cannot be read.
    #[error("cannot read config {origin}: {source}")]
    Read {
        /// The origin (file path or URL).
        origin: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The config origin cannot be used.
    #[error("config origin {0:?}: {1}")]
    Origin(String, String),
    /// A socket could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// A listener of a new config could not be prepared; the running config stays.
    #[error("listener {name:?}: {source}")]
    Listener {
        /// The listener.
        name: String,
        /// The cause.
        source: Box<Self>,
    },
    /// A feature this build does not have yet.
    #[error("{0}")]
    Unsupported(String),
    /// Another I/O failure.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The cause.
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(context: &'static str) -> impl FnOnce(std::io::Error) -> Self {
        move |source| Self::Io { context, source }
    }
}
