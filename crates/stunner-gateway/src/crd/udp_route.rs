//! STUNner's own UDPRoute (`stunner.l7mp.io/v1`): Gateway API parent references, backends
//! with an optional port range, and the Gateway API route status.

use gateway_api::apis::experimental::udproutes::{UdpRouteParentRefs, UdpRouteStatus};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The spec of a UDPRoute (`stunner.l7mp.io/v1`).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "stunner.l7mp.io",
    version = "v1",
    kind = "UDPRoute",
    doc = "UDPRoute: STUNner's UDP route with port ranges on backends.",
    namespaced,
    category = "stunner",
    status = "UdpRouteStatus",
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct UDPRouteSpec {
    /// The Gateways (and listeners) the route attaches to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub parent_refs: Option<Vec<UdpRouteParentRefs>>,
    /// The rules; every rule's backends belong to the route's cluster.
    #[schemars(length(min = 1, max = 16))]
    pub rules: Vec<UDPRouteRule>,
}

/// One rule of a UDPRoute.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UDPRouteRule {
    /// The backends.
    #[schemars(length(min = 1, max = 16))]
    pub backend_refs: Vec<BackendRef>,
}

/// A backend: a Service or StaticService, with an optional port range `[port, endPort]`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackendRef {
    /// `""` (core) or `stunner.l7mp.io`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = ""))]
    pub group: Option<String>,
    /// `Service` (default) or `StaticService`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Service"))]
    pub kind: Option<String>,
    /// Name of the backend.
    pub name: String,
    /// Namespace; defaults to the route's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// First port of the range; all ports when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    /// Last port of the range (with `port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub end_port: Option<i32>,
}
