//! The crate's error type.

/// What can go wrong outside rendering (rendering reports problems in statuses).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A manifest document is not valid YAML or JSON.
    #[error("{source_name}: document {doc}: {message}")]
    Syntax {
        /// The file (or `-`).
        source_name: String,
        /// 1-based document index.
        doc: usize,
        /// The parser's message.
        message: String,
    },
    /// A manifest has the right kind but a field of the wrong shape.
    #[error("{source_name}: {kind} {name}: {message}")]
    Decode {
        /// The file (or `-`).
        source_name: String,
        /// `apiVersion/kind`.
        kind: String,
        /// `namespace/name`.
        name: String,
        /// The decoder's message.
        message: String,
    },
    /// A manifest lacks `apiVersion`, `kind` or `metadata.name`.
    #[error("{source_name}: document {doc}: {message}")]
    Incomplete {
        /// The file (or `-`).
        source_name: String,
        /// 1-based document index.
        doc: usize,
        /// What is missing.
        message: String,
    },
    /// Generating the CRDs failed.
    #[error("CRD generation: {0}")]
    Crd(String),
    /// Serializing output failed.
    #[error("serialize: {0}")]
    Serialize(String),
    /// An unknown dataplane mode.
    #[error("unknown dataplane mode {0:?}: expected managed or legacy")]
    UnknownMode(String),
}
