//! The renderer's output: everything the updater and the CDS server should make true.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use serde::Serialize;
use stunner_config::StunnerConfig;

/// A Kubernetes object by kind and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    /// `apiVersion`.
    pub api_version: String,
    /// `kind`.
    pub kind: String,
    /// Namespace (empty for cluster-scoped kinds).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ObjectRef {
    /// A reference by kind and key.
    pub fn new(api_version: &str, kind: &str, key: &crate::Key) -> Self {
        Self {
            api_version: api_version.into(),
            kind: kind.into(),
            namespace: key.0.clone(),
            name: key.1.clone(),
        }
    }
}

/// The status subresource to write for one object.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StatusPatch {
    /// Which object.
    #[serde(flatten)]
    pub target: ObjectRef,
    /// The complete status (ours to own).
    pub status: serde_json::Value,
}

impl StatusPatch {
    /// The status of the object with `meta`.
    pub(crate) fn new(
        api_version: &str,
        kind: &str,
        meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
        status: serde_json::Value,
    ) -> Self {
        Self {
            target: ObjectRef::new(api_version, kind, &crate::world::key(meta)),
            status,
        }
    }
}

/// The desired state computed from a World.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Desired {
    /// stunnerd configs served over CDS, keyed by `admin.name` (managed mode).
    pub configs: Vec<StunnerConfig>,
    /// ConfigMaps to apply (legacy mode).
    pub config_maps: Vec<ConfigMap>,
    /// Services to apply.
    pub services: Vec<Service>,
    /// Deployments to apply.
    pub deployments: Vec<Deployment>,
    /// Existing objects to delete.
    pub deletes: Vec<ObjectRef>,
    /// Status subresources to write.
    pub statuses: Vec<StatusPatch>,
}

impl Desired {
    /// The whole desired state as YAML (what `stunner-gateway-operator render` prints).
    pub fn to_yaml(&self) -> Result<String, crate::Error> {
        crate::yaml::to_string(self)
    }
}
