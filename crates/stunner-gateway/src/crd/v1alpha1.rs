//! The v1alpha1 versions still served (not stored) for GatewayConfig, Dataplane and
//! StaticService. The renderer reads objects of either version: v1alpha1 objects are
//! converted with [`GatewayConfig::into_v1`] and friends when the World is loaded.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, EnvVar, PodSecurityContext, ResourceRequirements, ServicePort, Toleration,
};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The spec of a GatewayConfig (`stunner.l7mp.io/v1alpha1`).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "stunner.l7mp.io",
    version = "v1alpha1",
    kind = "GatewayConfig",
    doc = "GatewayConfig (v1alpha1, served for old manifests; stored as v1).",
    namespaced,
    shortname = "gwconf",
    category = "stunner"
)]
#[serde(rename_all = "camelCase")]
pub struct GatewayConfigSpec {
    /// Name of the legacy ConfigMap; default `stunnerd-config`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub stunner_config: Option<String>,
    /// Dataplane name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataplane: Option<String>,
    /// Realm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realm: Option<String>,
    /// Auth type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_type: Option<String>,
    /// Static username.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "userName")]
    pub user_name: Option<String>,
    /// Static password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Shared secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_secret: Option<String>,
    /// Credential lifetime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_lifetime: Option<i32>,
    /// Credentials Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_ref: Option<super::gateway_config::SecretObjectReference>,
    /// LB Service annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer_service_annotations: Option<BTreeMap<String, String>>,
    /// Log level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
    /// Metrics endpoint (v1alpha1 only; not rendered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_endpoint: Option<String>,
    /// Health-check endpoint (v1alpha1 only; not rendered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_endpoint: Option<String>,
    /// Relay port range start (v1alpha1 only; not rendered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub min_port: Option<i32>,
    /// Relay port range end (v1alpha1 only; not rendered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub max_port: Option<i32>,
}

impl GatewayConfig {
    /// The v1 form of this object (v1alpha1-only fields are dropped).
    pub fn into_v1(self) -> super::GatewayConfig {
        let s = self.spec;
        let mut out = super::GatewayConfig::new(
            self.metadata.name.as_deref().unwrap_or_default(),
            super::GatewayConfigSpec {
                dataplane: s.dataplane,
                realm: s.realm,
                auth_type: s.auth_type,
                user_name: s.user_name,
                password: s.password,
                shared_secret: s.shared_secret,
                auth_lifetime: s.auth_lifetime,
                auth_ref: s.auth_ref,
                load_balancer_service_annotations: s.load_balancer_service_annotations,
                log_level: s.log_level,
                user_quota: None,
                stun_mode: None,
            },
        );
        out.metadata = self.metadata;
        out
    }
}

/// The spec of a Dataplane (`stunner.l7mp.io/v1alpha1`).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "stunner.l7mp.io",
    version = "v1alpha1",
    kind = "Dataplane",
    doc = "Dataplane (v1alpha1, served for old manifests; stored as v1).",
    shortname = "dps",
    category = "stunner"
)]
#[serde(rename_all = "camelCase")]
pub struct DataplaneSpec {
    /// Replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Pull policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    /// Command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Args.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    /// Env.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<EnvVar>>,
    /// Resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Grace period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_grace_period_seconds: Option<i64>,
    /// Host network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_network: Option<bool>,
    /// Affinity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Pod security context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<PodSecurityContext>,
    /// Tolerations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
    /// Health-check port (v1alpha1 only; not rendered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_port: Option<i32>,
}

impl Dataplane {
    /// The v1 form of this object.
    pub fn into_v1(self) -> super::Dataplane {
        let s = self.spec;
        let mut out = super::Dataplane::new(
            self.metadata.name.as_deref().unwrap_or_default(),
            super::DataplaneSpec {
                replicas: s.replicas,
                image: s.image,
                image_pull_policy: s.image_pull_policy,
                command: s.command,
                args: s.args,
                env: s.env,
                resources: s.resources,
                termination_grace_period_seconds: s.termination_grace_period_seconds,
                host_network: s.host_network,
                affinity: s.affinity,
                security_context: s.security_context,
                tolerations: s.tolerations,
                ..Default::default()
            },
        );
        out.metadata = self.metadata;
        out
    }
}

/// The spec of a StaticService (`stunner.l7mp.io/v1alpha1`).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "stunner.l7mp.io",
    version = "v1alpha1",
    kind = "StaticService",
    doc = "StaticService (v1alpha1, served for old manifests; stored as v1).",
    namespaced,
    shortname = "ssvc",
    category = "stunner"
)]
pub struct StaticServiceSpec {
    /// Prefixes.
    pub prefixes: Vec<String>,
    /// Ports (v1alpha1 only; ignored, as upstream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<ServicePort>>,
}

impl StaticService {
    /// The v1 form of this object.
    pub fn into_v1(self) -> super::StaticService {
        let mut out = super::StaticService::new(
            self.metadata.name.as_deref().unwrap_or_default(),
            super::StaticServiceSpec {
                prefixes: self.spec.prefixes,
            },
        );
        out.metadata = self.metadata;
        out
    }
}
