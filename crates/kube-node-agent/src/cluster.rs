//! Reads of cluster objects that pods are built from (ConfigMaps, Secrets, tokens).

use std::collections::BTreeMap;

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, ServiceAccount};
use kube::Api;
use kube::api::PostParams;

/// ConfigMap, Secret and token reads for one agent.
#[derive(Clone)]
pub struct Lookup {
    /// The agent's client.
    pub client: kube::Client,
}

impl Lookup {
    /// A ConfigMap's data (binary data decoded lossily), if it exists.
    pub async fn config_map(&self, ns: &str, name: &str) -> Option<BTreeMap<String, String>> {
        let cm = Api::<ConfigMap>::namespaced(self.client.clone(), ns)
            .get_opt(name)
            .await
            .ok()
            .flatten()?;
        let mut data = cm.data.unwrap_or_default();
        for (k, v) in cm.binary_data.unwrap_or_default() {
            data.insert(k, String::from_utf8_lossy(&v.0).into_owned());
        }
        Some(data)
    }

    /// A Secret's data, if it exists.
    pub async fn secret(&self, ns: &str, name: &str) -> Option<BTreeMap<String, String>> {
        let s = Api::<Secret>::namespaced(self.client.clone(), ns)
            .get_opt(name)
            .await
            .ok()
            .flatten()?;
        let mut data: BTreeMap<String, String> = s
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
            .collect();
        data.extend(s.string_data.unwrap_or_default());
        Some(data)
    }

    /// A token for the pod's ServiceAccount bound to the pod, through the TokenRequest API
    /// (as the kubelet does for projected `serviceAccountToken` sources).
    pub async fn token(
        &self,
        pod: &Pod,
        audience: Option<String>,
        seconds: Option<i64>,
    ) -> Result<String, String> {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let sa = pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into());
        let req = TokenRequest {
            spec: Some(TokenRequestSpec {
                audiences: audience.map(|a| vec![a]),
                expiration_seconds: seconds,
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: pod.metadata.name.clone(),
                    uid: pod.metadata.uid.clone(),
                }),
            }),
            ..TokenRequest::default()
        };
        Api::<ServiceAccount>::namespaced(self.client.clone(), &ns)
            .create_token_request(&sa, &PostParams::default(), &req)
            .await
            .map_err(|e| format!("token for serviceaccount {ns}/{sa}: {e}"))?
            .status
            .and_then(|s| s.token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| format!("token for serviceaccount {ns}/{sa}: no status"))
    }
}
