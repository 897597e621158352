//! GatewayConfig: the parameters of a GatewayClass (realm, auth, dataplane, LB annotations).

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A reference to the Secret that holds the credentials (`authRef`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct SecretObjectReference {
    /// API group; `""` (core) is the only one accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Kind; `Secret` is the only one accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name of the Secret.
    pub name: String,
    /// Namespace; defaults to the GatewayConfig's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// The spec of a GatewayConfig (`stunner.l7mp.io/v1`).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "stunner.l7mp.io",
    version = "v1",
    kind = "GatewayConfig",
    doc = "GatewayConfig: the STUNner parameters of a GatewayClass (realm, authentication, dataplane).",
    namespaced,
    shortname = "gwconf",
    category = "stunner",
    printcolumn = r#"{"name":"Realm","type":"string","jsonPath":".spec.realm"}"#,
    printcolumn = r#"{"name":"Dataplane","type":"string","jsonPath":".spec.dataplane"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct GatewayConfigSpec {
    /// The Dataplane (cluster-scoped) used for the Gateways of this class; default `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "default"))]
    pub dataplane: Option<String>,
    /// The STUN/TURN realm; default `stunner.l7mp.io`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "stunner.l7mp.io"))]
    #[schemars(regex(
        pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
    ))]
    pub realm: Option<String>,
    /// `plaintext`/`static` or `longterm`/`ephemeral`/`timewindowed`; default `plaintext`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "plaintext"))]
    #[schemars(regex(pattern = r"^plaintext|static|longterm|ephemeral|timewindowed$"))]
    pub auth_type: Option<String>,
    /// Static username (note the capital N, as upstream).
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "userName")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$"))]
    pub user_name: Option<String>,
    /// Static password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$"))]
    pub password: Option<String>,
    /// Shared secret of the TURN REST API (ephemeral credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_secret: Option<String>,
    /// Lifetime of ephemeral credentials in seconds (used by the auth service default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_lifetime: Option<i32>,
    /// A Secret holding the credentials; overrides every inline credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_ref: Option<SecretObjectReference>,
    /// Annotations copied onto every LoadBalancer Service of this class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer_service_annotations: Option<BTreeMap<String, String>>,
    /// stunnerd log level (`admin.loglevel`); default `all:INFO`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
    /// Per-user allocation quota (not rendered, as upstream's open-source operator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_quota: Option<i32>,
    /// STUN-only mode (not rendered, as upstream's open-source operator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stun_mode: Option<bool>,
}
