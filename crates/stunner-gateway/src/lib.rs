//! The STUNner gateway operator's core, pure and clock-free.
//!
//! Watchers (or the manifest loader) fill a [`World`]; [`render`] turns it into the
//! [`Desired`] state: one stunnerd config per Gateway (managed mode) or one ConfigMap per
//! GatewayClass (legacy mode), the Deployments and LoadBalancer Services of the
//! dataplane, the objects to delete, and the status of every GatewayClass, Gateway and
//! UDPRoute we control. Nothing here talks to Kubernetes or reads a clock: the time that
//! goes into status conditions is [`RenderOptions::now`].

pub mod crd;
mod desired;
mod error;
pub mod names;
mod options;
mod render;
mod world;
pub mod yaml;

pub use desired::{Desired, ObjectRef, StatusPatch};
pub use error::Error;
pub use options::{DataplaneMode, RenderOptions};
pub use render::{finalize, render};
pub use world::{Key, Kind, Object, World};
