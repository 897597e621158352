//! Addresses, five-tuples, and what the core asks the IO layer to send.

use std::net::SocketAddr;

/// The transport a client reached a listener over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportKind {
    /// UDP datagrams: ChannelData goes unpadded.
    Datagram,
    /// DTLS records, already decrypted by the IO layer: datagrams, but ChannelData is
    /// padded to 4 bytes. RFC 8656 §12.5 lets datagrams carry the padding, and pion/turn
    /// (the upstream STUNner's server and its turncat) reads DTLS with its stream framer,
    /// which loses its place on an unpadded frame: found by tests/upstream/diff.py.
    PaddedDatagram,
    /// A byte stream (TCP, TLS): ChannelData is padded to 4 bytes (RFC 8656 §12.5).
    Stream,
}

impl TransportKind {
    /// Whether ChannelData frames sent on it are padded to a multiple of 4 bytes.
    pub fn pads_channel_data(self) -> bool {
        !matches!(self, Self::Datagram)
    }
}

/// The client side of an allocation: RFC 8656 §2 "5-tuple" (the protocol is fixed per
/// server instance, so client and server addresses suffice).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FiveTuple {
    /// The client's address (as seen by the server).
    pub client: SocketAddr,
    /// The listener address the client sent to.
    pub server: SocketAddr,
}

/// Where a transmit is sent from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// The listener socket (or stream) the five-tuple names: to the client.
    Listener(SocketAddr),
    /// A relay socket, by its relayed address: to a peer.
    Relay(SocketAddr),
}

/// Bytes to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The socket to send from.
    pub from: Source,
    /// The destination.
    pub to: SocketAddr,
    /// The bytes.
    pub data: Vec<u8>,
}
