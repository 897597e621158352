//! Dataplane: the pod template of the stunnerd Deployments (cluster-scoped).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, EnvFromSource, EnvVar, LocalObjectReference, PodSecurityContext,
    ResourceRequirements, SecurityContext, Toleration, TopologySpreadConstraint,
};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The spec of a Dataplane (`stunner.l7mp.io/v1`).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "stunner.l7mp.io",
    version = "v1",
    kind = "Dataplane",
    doc = "Dataplane: the stunnerd pod template used for the Gateways of the classes naming it.",
    shortname = "dps",
    category = "stunner"
)]
#[serde(rename_all = "camelCase")]
pub struct DataplaneSpec {
    /// Container image; default `l7mp/stunnerd:latest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Image pull policy; default `Always`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    /// Pull secrets, looked up in the Gateway's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,
    /// `Deployment` (default) or `DaemonSet`; only Deployment is generated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^Deployment|DaemonSet$"))]
    pub dataplane_resource: Option<String>,
    /// Pod-template labels; the mandatory labels win on conflict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Pod-template annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Entrypoint; default `["stunnerd"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Arguments; default `["-w", "--udp-thread-num=16"]`, replaced when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    /// Environment sources (applied; upstream declares but ignores this field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_from: Option<Vec<EnvFromSource>>,
    /// Extra environment, appended to the mandatory variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<EnvVar>>,
    /// Container security context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_security_context: Option<SecurityContext>,
    /// Replicas; applied only when set and not 1, so an HPA keeps control otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Resources; default limits memory 20M, requests cpu 250m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Grace period for draining allocations; default 3600 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 3600))]
    pub termination_grace_period_seconds: Option<i64>,
    /// Run in the host network namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_network: Option<bool>,
    /// Pod affinity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Pod security context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<PodSecurityContext>,
    /// Tolerations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
    /// Topology spread constraints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology_spread_constraints: Option<Vec<TopologySpreadConstraint>>,
    /// Drop both probes and the health-check endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_health_check: Option<bool>,
    /// Serve Prometheus metrics at `http://:8080/metrics`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_metrics_endpoint: Option<bool>,
    /// Offload engine: `None`, `XDP`, `TC` or `Auto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^None|XDP|TC|Auto$"))]
    pub offload_engine: Option<String>,
    /// Interfaces for the offload engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offload_interfaces: Option<Vec<String>>,
}
