//! The updater: makes the cluster match a `Desired` with server-side apply under one
//! field manager, writing only the fields we render and nothing at all when the live
//! object already holds them. Status goes to the status subresource the same way.
//! Only the leader writes.

use gateway_api::apis::experimental::udproutes::UdpRoute;
use gateway_api::apis::standard::gatewayclasses::GatewayClass;
use gateway_api::apis::standard::gateways::Gateway;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use stunner_gateway::crd::UDPRoute;
use stunner_gateway::{Desired, Key, World};

use super::metrics::Metrics;

/// The field manager of every write.
pub const FIELD_MANAGER: &str = "stunner-gateway-operator";

/// Whether `want` is contained in `have`: every field of `want` is present in `have`
/// with the same value (arrays element by element). The API server adds defaults and
/// other managers add fields; neither is a reason to write.
pub fn is_subset(want: &Value, have: &Value) -> bool {
    match (want, have) {
        (Value::Object(w), Value::Object(h)) => w.iter().all(|(k, v)| match h.get(k) {
            Some(hv) => is_subset(v, hv),
            None => v.is_null(),
        }),
        (Value::Array(w), Value::Array(h)) => {
            w.len() == h.len() && w.iter().zip(h).all(|(a, b)| is_subset(a, b))
        }
        (Value::Null, _) => true,
        (a, b) => a == b,
    }
}

/// What one pass wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Objects applied.
    pub applied: usize,
    /// Statuses applied.
    pub statuses: usize,
    /// Objects deleted.
    pub deleted: usize,
    /// Writes that failed.
    pub errors: usize,
}

/// Applies desired states.
pub struct Updater {
    client: Client,
    metrics: Metrics,
}

fn key_of<K: Resource>(o: &K) -> Key {
    (
        o.meta().namespace.clone().unwrap_or_default(),
        o.meta().name.clone().unwrap_or_default(),
    )
}

impl Updater {
    /// An updater writing through `client`.
    pub fn new(client: Client, metrics: Metrics) -> Self {
        Self { client, metrics }
    }

    fn note(&self, kind: &str, op: &str, r: &Result<(), kube::Error>, w: &mut Written) {
        match r {
            Ok(()) => self.metrics.resource_op(kind, op),
            Err(e) => {
                w.errors += 1;
                tracing::warn!(target: "operator", kind, op, error = %e, "write failed");
            }
        }
    }

    async fn apply_obj<K>(&self, obj: &K, live: Option<&K>, w: &mut Written)
    where
        K: Resource<DynamicType = ()> + Serialize + DeserializeOwned + Clone + std::fmt::Debug,
        K: Resource<Scope = kube::core::NamespaceResourceScope>,
    {
        let want = serde_json::to_value(obj).unwrap_or_default();
        if let Some(l) = live
            && is_subset(&want, &serde_json::to_value(l).unwrap_or_default())
        {
            return;
        }
        let (ns, name) = key_of(obj);
        let api: Api<K> = Api::namespaced(self.client.clone(), &ns);
        let r = api
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&want),
            )
            .await
            .map(|_| ());
        if r.is_ok() {
            w.applied += 1;
        }
        self.note(&K::kind(&()), "apply", &r, w);
    }

    async fn apply_status<K>(
        &self,
        api: Api<K>,
        name: &str,
        body: Value,
        live: Option<Value>,
        w: &mut Written,
    ) where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    {
        if let Some(l) = live
            && is_subset(&body["status"], &l)
            && is_subset(&l, &body["status"])
        {
            return;
        }
        let r = api
            .patch_status(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&body),
            )
            .await
            .map(|_| ());
        if r.is_ok() {
            w.statuses += 1;
        }
        self.note(&K::kind(&()), "status", &r, w);
    }

    /// Writes what differs between `desired` and the live objects in `world`.
    pub async fn apply(&self, desired: &Desired, world: &World) -> Written {
        let mut w = Written::default();
        for s in &desired.services {
            self.apply_obj::<Service>(s, world.services.get(&key_of(s)), &mut w)
                .await;
        }
        for d in &desired.deployments {
            self.apply_obj::<Deployment>(d, world.deployments.get(&key_of(d)), &mut w)
                .await;
        }
        for c in &desired.config_maps {
            self.apply_obj::<ConfigMap>(c, world.config_maps.get(&key_of(c)), &mut w)
                .await;
        }
        for s in &desired.statuses {
            let t = &s.target;
            let key = (t.namespace.clone(), t.name.clone());
            let body = json!({"apiVersion": t.api_version, "kind": t.kind, "status": s.status});
            let c = self.client.clone();
            let to = |v: Option<Value>| v.filter(|v| !v.is_null());
            match (t.kind.as_str(), t.api_version.as_str()) {
                ("GatewayClass", _) => {
                    let live = to(world
                        .gateway_classes
                        .get(&key)
                        .map(|o| serde_json::to_value(&o.status).unwrap_or_default()));
                    self.apply_status(Api::<GatewayClass>::all(c), &t.name, body, live, &mut w)
                        .await;
                }
                ("Gateway", _) => {
                    let live = to(world
                        .gateways
                        .get(&key)
                        .map(|o| serde_json::to_value(&o.status).unwrap_or_default()));
                    self.apply_status(
                        Api::<Gateway>::namespaced(c, &t.namespace),
                        &t.name,
                        body,
                        live,
                        &mut w,
                    )
                    .await;
                }
                ("UDPRoute", v) if v.starts_with("stunner.l7mp.io") => {
                    let live = to(world
                        .udp_routes
                        .get(&key)
                        .map(|o| serde_json::to_value(&o.status).unwrap_or_default()));
                    self.apply_status(
                        Api::<UDPRoute>::namespaced(c, &t.namespace),
                        &t.name,
                        body,
                        live,
                        &mut w,
                    )
                    .await;
                }
                ("UDPRoute", _) => {
                    let live = to(world
                        .udp_routes_v1a2
                        .get(&key)
                        .map(|o| serde_json::to_value(&o.status).unwrap_or_default()));
                    self.apply_status(
                        Api::<UdpRoute>::namespaced(c, &t.namespace),
                        &t.name,
                        body,
                        live,
                        &mut w,
                    )
                    .await;
                }
                _ => {}
            }
        }
        for d in &desired.deletes {
            let c = self.client.clone();
            let dp = DeleteParams::background();
            let r = match d.kind.as_str() {
                "Service" => Api::<Service>::namespaced(c, &d.namespace)
                    .delete(&d.name, &dp)
                    .await
                    .map(|_| ()),
                "Deployment" => Api::<Deployment>::namespaced(c, &d.namespace)
                    .delete(&d.name, &dp)
                    .await
                    .map(|_| ()),
                "ConfigMap" => Api::<ConfigMap>::namespaced(c, &d.namespace)
                    .delete(&d.name, &dp)
                    .await
                    .map(|_| ()),
                _ => continue,
            };
            // Already gone is what we wanted.
            let r = match r {
                Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
                other => other,
            };
            if r.is_ok() {
                w.deleted += 1;
            }
            self.note(&d.kind, "delete", &r, &mut w);
        }
        self.metrics.update(w.errors == 0);
        w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subset_ignores_added_fields_and_defaults() {
        let want =
            json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 3478, "protocol": "UDP"}]}});
        let have = json!({"spec": {"type": "LoadBalancer", "clusterIP": "10.0.0.1",
            "ports": [{"port": 3478, "protocol": "UDP", "nodePort": 31000, "targetPort": 3478}]}});
        assert!(is_subset(&want, &have));
        let changed = json!({"spec": {"type": "NodePort"}});
        assert!(!is_subset(&changed, &have));
        let more_ports = json!({"spec": {"ports": [{"port": 3478}, {"port": 3479}]}});
        assert!(!is_subset(&more_ports, &have));
        assert!(!is_subset(
            &json!({"metadata": {"labels": {"a": "b"}}}),
            &json!({"metadata": {}})
        ));
    }
}
