//! The node agent of the test control plane, as a library for its binary (see
//! docs/TESTING.md).

pub mod agent;
pub mod cluster;
pub mod container;
pub mod dns;
pub mod env;
pub mod error;
pub mod exec;
pub mod image;
pub mod kubelet_api;
pub mod launch;
pub mod netns;
pub mod node;
pub mod pod;
pub mod portforward;
pub mod probe;
pub mod proxy;
pub mod scheduler;
pub mod spdy;
pub mod spdy_session;
pub mod volume;
