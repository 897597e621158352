//! The crate's error type: why a request failed, with its STUN error code.

/// Why a TURN request was refused. Each maps to a STUN error code
/// ([`code`](Self::code)) and a stable metric label ([`kind`](Self::kind)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Malformed or missing attributes (400).
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// Auth type `none`: this server answers STUN Binding only (400, as upstream, so
    /// clients do not retry).
    #[error("TURN is disabled: STUN-only server")]
    StunOnly,
    /// No or wrong credentials (401).
    #[error("unauthorized: {0}")]
    Unauthorized(&'static str),
    /// The peer is not admitted by any routed cluster (403; upstream sends 401 or a bare
    /// error, RFC 8656 §9.1 says 403).
    #[error("peer not allowed")]
    PeerNotAllowed,
    /// Comprehension-required attributes the server does not know (420).
    #[error("unknown comprehension-required attributes")]
    UnknownAttributes,
    /// Allocate on a five-tuple that has one, or a request without one (437).
    #[error("allocation mismatch")]
    AllocationMismatch,
    /// The nonce expired or was never ours (438).
    #[error("stale nonce")]
    StaleNonce,
    /// The requested relay address family is not available (440).
    #[error("address family not supported")]
    AddressFamilyNotSupported,
    /// A request on an allocation with another user's credentials (441).
    #[error("wrong credentials")]
    WrongCredentials,
    /// REQUESTED-TRANSPORT other than UDP, or TCP (RFC 6062) where the server cannot
    /// give it (442).
    #[error("unsupported transport protocol")]
    UnsupportedTransport,
    /// A peer address of the other family than the relay (443).
    #[error("peer address family mismatch")]
    PeerAddressFamilyMismatch,
    /// Connect to a peer the TCP allocation has a connection with (446, RFC 6062 §6.3).
    #[error("connection already exists")]
    ConnectionAlreadyExists,
    /// Connect could not reach the peer in time (447, RFC 6062 §6.3).
    #[error("connection timeout or failure")]
    ConnectionFailed,
    /// The user has as many allocations as the quota allows (486).
    #[error("allocation quota reached")]
    QuotaReached,
    /// No relay port available, or a reservation was asked for (508).
    #[error("insufficient capacity: {0}")]
    InsufficientCapacity(&'static str),
}

impl Error {
    /// The STUN error code (RFC 8489 §14.8, RFC 8656 §18).
    pub fn code(&self) -> u16 {
        match self {
            Self::BadRequest(_) | Self::StunOnly => 400,
            Self::Unauthorized(_) => 401,
            Self::PeerNotAllowed => 403,
            Self::UnknownAttributes => 420,
            Self::AllocationMismatch => 437,
            Self::StaleNonce => 438,
            Self::AddressFamilyNotSupported => 440,
            Self::WrongCredentials => 441,
            Self::UnsupportedTransport => 442,
            Self::PeerAddressFamilyMismatch => 443,
            Self::ConnectionAlreadyExists => 446,
            Self::ConnectionFailed => 447,
            Self::QuotaReached => 486,
            Self::InsufficientCapacity(_) => 508,
        }
    }

    /// A stable, low-cardinality label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::StunOnly => "stun_only",
            Self::Unauthorized(_) => "unauthorized",
            Self::PeerNotAllowed => "peer_not_allowed",
            Self::UnknownAttributes => "unknown_attributes",
            Self::AllocationMismatch => "allocation_mismatch",
            Self::StaleNonce => "stale_nonce",
            Self::AddressFamilyNotSupported => "address_family_not_supported",
            Self::WrongCredentials => "wrong_credentials",
            Self::UnsupportedTransport => "unsupported_transport",
            Self::PeerAddressFamilyMismatch => "peer_address_family_mismatch",
            Self::ConnectionAlreadyExists => "connection_already_exists",
            Self::ConnectionFailed => "connection_failed",
            Self::QuotaReached => "quota_reached",
            Self::InsufficientCapacity(_) => "insufficient_capacity",
        }
    }

    /// The reason phrase sent in ERROR-CODE.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::BadRequest(_) | Self::StunOnly => "Bad Request",
            Self::Unauthorized(_) => "Unauthorized",
            Self::PeerNotAllowed => "Forbidden",
            Self::UnknownAttributes => "Unknown Attribute",
            Self::AllocationMismatch => "Allocation Mismatch",
            Self::StaleNonce => "Stale Nonce",
            Self::AddressFamilyNotSupported => "Address Family not Supported",
            Self::WrongCredentials => "Wrong Credentials",
            Self::UnsupportedTransport => "Unsupported Transport Protocol",
            Self::PeerAddressFamilyMismatch => "Peer Address Family Mismatch",
            Self::ConnectionAlreadyExists => "Connection Already Exists",
            Self::ConnectionFailed => "Connection Timeout or Failure",
            Self::QuotaReached => "Allocation Quota Reached",
            Self::InsufficientCapacity(_) => "Insufficient Capacity",
        }
    }
}
