//! Integration tests of the TURN core: a virtual network with a virtual clock drives
//! clients, the server and peers through every method and error.
#![allow(clippy::unwrap_used)] // a test fails loudly by design
#![allow(unreachable_pub)] // test helpers are shared between modules

mod allocate;
mod channel;
mod data;
mod family;
mod lifecycle;
mod misc;
mod offload;
mod sim;
mod tcp_relay;
mod vectors;
