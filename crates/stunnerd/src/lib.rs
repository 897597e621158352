//! stunnerd, the STUNner-rs dataplane: TURN listeners served by worker threads (one
//! `SO_REUSEPORT` socket and one sans-IO TURN core each for UDP), configs applied by
//! diff without dropping allocations, upstream-compatible admin endpoints, and a
//! graceful shutdown that waits for allocations to end.

mod admin;
mod batch;
pub mod cli;
mod daemon;
mod dns;
pub mod dtls;
mod error;
mod listener;
pub mod logging;
pub mod metrics;
mod net;
mod offload;
pub mod plan;
mod relays;
pub mod run;
pub mod source;
mod tcp;
mod tcp_relay;
pub mod tls;
mod udp;
mod worker;

pub use admin::{AdminState, masked_json};
pub use daemon::{Daemon, ListenerStats};
pub use error::Error;
#[doc(hidden)]
pub use listener::Step;
