//! Integration tests of stunnerd: the real binary on loopback, driven by coturn's
//! client tools and by our own sans-IO client over real sockets.
#![allow(clippy::unwrap_used)] // a test fails loudly by design
#![allow(unreachable_pub)] // helpers are shared between modules

mod auth;
mod browser;
mod cds;
mod coturn;
mod file_watch;
mod gso;
mod harness;
mod lifecycle;
mod metrics;
mod offload;
mod policy;
mod reconcile;
mod tcp_relay;
mod webrtc_rs;
