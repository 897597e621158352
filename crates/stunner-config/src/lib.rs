//! The STUNner v1 config contract, shared by every STUNner-rs component.
//!
//! - [`StunnerConfig`]: the types (`admin`, `auth`, `listeners`, `clusters`) with the
//!   JSON field names of upstream's `pkg/apis/v1`, so that configs written for the Go
//!   STUNner work unchanged.
//! - [`StunnerConfig::from_str`]: YAML or JSON, keys matched case-insensitively, unknown
//!   keys ignored, `v1alpha1` converted, `$VAR` expanded (not in credentials), defaults
//!   injected, every error reported with its field path.
//! - [`diff()`]: what a new config changes, per object, and which listeners must restart.
//! - [`TurnUri`], [`StunnerConfig::from_turn_uri`]: TURN URIs and one-line configs.
//! - [`Endpoint`]: cluster endpoints `IP[/prefix][:<lo-hi>]`.
//! - [`ListenerConfig::ice_uri`]: the ICE URI clients use.
//! - [`credential`]: TURN REST API usernames and passwords.
//!
//! `Debug` and `Display` of every type print `<SECRET>` in place of passwords, secrets
//! and private keys. Serialization (the wire format) does not mask.
//!
//! ```
//! use stunner_config::{Change, StunnerConfig, diff};
//!
//! let env = |name: &str| (name == "STUNNER_ADDR").then(|| "10.0.0.7".to_string());
//! let text = r#"
//! version: v1
//! auth: {type: static, credentials: {username: user, password: "pa$$"}}
//! listeners: [{name: udp, protocol: udp, address: $STUNNER_ADDR, routes: [media]}]
//! clusters: [{name: media, endpoints: ["10.80.0.0/16:<10000-20000>"]}]
//! "#;
//! let old = StunnerConfig::from_str_with_env(text, &env).unwrap();
//! assert_eq!(old.listeners[0].address, "10.0.0.7");
//! assert_eq!(old.auth.password(), Some("pa$$"));
//! assert_eq!(old.listeners[0].ice_uri(), "turn:10.0.0.7:3478?transport=udp");
//! assert!(!format!("{old}").contains("pa$$"));
//!
//! let mut new = old.clone();
//! new.listeners[0].port = 3479;
//! let d = diff(&old, &new);
//! assert_eq!(d.listeners[0].change, Change::Restart);
//!
//! let err = StunnerConfig::from_str_with_env("version: v1\nlisteners: [{name: a, port: 70000}]", &env);
//! assert!(err.unwrap_err().to_string().starts_with("listeners[0].port: 70000 is not in 1..65535"));
//! ```
//!
//! This crate does no I/O beyond reading environment variables in
//! [`StunnerConfig::from_str`], and reads no clock: time is an argument.

mod admin;
mod auth;
mod cluster;
pub mod credential;
mod decode;
pub mod defaults;
mod diff;
mod endpoint;
pub mod env;
mod error;
mod kind;
mod listener;
mod parse;
mod stunner;
mod uri;

pub use admin::{AdminConfig, HttpEndpoint, LicenseConfig};
pub use auth::AuthConfig;
pub use cluster::ClusterConfig;
pub use diff::{Change, ConfigDiff, NamedChange, diff};
pub use endpoint::{Endpoint, EndpointError};
pub use error::{Error, Errors};
pub use kind::{AuthType, ClusterProtocol, ClusterType, ListenerProtocol, OffloadEngine};
pub use listener::ListenerConfig;
pub use stunner::StunnerConfig;
pub use uri::TurnUri;

/// What `Debug` and `Display` print in place of a secret.
pub const SECRET: &str = "<SECRET>";

/// `<SECRET>` for a non-empty secret, `<MISSING>` for an empty one.
pub(crate) fn mask(s: &str) -> &'static str {
    if s.is_empty() { "<MISSING>" } else { SECRET }
}
