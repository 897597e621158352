//! The operator binary's error type.

/// Errors of the operator's commands.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A manifest file or directory cannot be read.
    #[error("{path}: {source}")]
    Read {
        /// The path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A manifest is malformed.
    #[error(transparent)]
    Manifest(#[from] stunner_gateway::Error),
    /// A listen address is malformed or cannot be bound.
    #[error("{address}: {message}")]
    Listen {
        /// The address.
        address: String,
        /// Why.
        message: String,
    },
    /// Writing output failed.
    #[error("output: {0}")]
    Output(std::io::Error),
}
