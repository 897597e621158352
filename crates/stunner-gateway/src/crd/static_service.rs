//! StaticService: IP prefixes reachable through a route, all ports exposed.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The spec of a StaticService (`stunner.l7mp.io/v1`).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "stunner.l7mp.io",
    version = "v1",
    kind = "StaticService",
    doc = "StaticService: a set of IP prefixes usable as a UDPRoute backend.",
    namespaced,
    shortname = "ssvc",
    category = "stunner"
)]
pub struct StaticServiceSpec {
    /// IP prefixes (`10.0.0.0/8`, `192.0.2.1`) of the backend.
    pub prefixes: Vec<String>,
}
