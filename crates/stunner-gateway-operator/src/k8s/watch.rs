//! Watchers: one per kind, feeding the World through a channel. A relist arrives as one
//! `Replace` so the World never shows a half-listed kind (a render then could delete
//! objects that merely had not arrived yet).

use std::collections::HashMap;
use std::fmt::Debug;

use futures_util::StreamExt;
use gateway_api::apis::experimental::udproutes::UdpRoute;
use gateway_api::apis::standard::gatewayclasses::GatewayClass;
use gateway_api::apis::standard::gateways::Gateway;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Namespace, Node, NodeStatus, Secret, Service,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::watcher;
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use stunner_gateway::crd::{Dataplane, GatewayConfig, StaticService, UDPRoute};
use stunner_gateway::{Kind, Object, names};
use tokio::sync::mpsc;

/// A change to the World.
#[derive(Debug)]
pub enum Change {
    /// An object was created or modified.
    Apply(Object),
    /// An object was deleted.
    Delete(Object),
    /// A full (re)list of one kind.
    Replace(Kind, Vec<Object>),
}

/// What every object loses on arrival: its managedFields (often half its size), which
/// nothing renders from or compares.
fn trim<K: Resource>(o: &mut K) {
    o.meta_mut().managed_fields = None;
}

/// A Node is read for its addresses only (the NodePort fallback): the rest (images,
/// conditions and their heartbeats, capacity, the resourceVersion) is dropped on arrival,
/// and an update that leaves the rest unchanged is not passed on at all, so thousands of
/// nodes reporting status do not keep the renderer busy.
pub fn trim_node(n: &mut Node) {
    let m = std::mem::take(&mut n.metadata);
    n.metadata = ObjectMeta {
        name: m.name,
        uid: m.uid,
        labels: m.labels,
        ..ObjectMeta::default()
    };
    n.spec = None;
    let addresses = n.status.take().and_then(|s| s.addresses);
    n.status = Some(NodeStatus {
        addresses,
        ..NodeStatus::default()
    });
}

/// A fingerprint of a trimmed object, to drop updates that change nothing we keep.
fn fingerprint<K: serde::Serialize>(o: &K) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_vec(o).unwrap_or_default().hash(&mut h);
    h.finish()
}

/// How a kind's objects are cut down on arrival.
#[derive(Clone, Copy)]
struct Trim<K> {
    cut: fn(&mut K),
    /// Drop updates whose trimmed object did not change (only sound when `cut` removes
    /// the resourceVersion, or every update would differ).
    dedupe: bool,
}

impl<K: Resource> Trim<K> {
    fn meta() -> Self {
        Self {
            cut: trim::<K>,
            dedupe: false,
        }
    }
}

fn spawn<K>(
    api: Api<K>,
    cfg: watcher::Config,
    kind: Kind,
    wrap: fn(K) -> Object,
    tx: mpsc::Sender<Change>,
) where
    K: Resource + Clone + DeserializeOwned + serde::Serialize + Debug + Send + Sync + 'static,
{
    spawn_trimmed(api, cfg, kind, wrap, Trim::meta(), tx);
}

fn spawn_trimmed<K>(
    api: Api<K>,
    cfg: watcher::Config,
    kind: Kind,
    wrap: fn(K) -> Object,
    trim: Trim<K>,
    tx: mpsc::Sender<Change>,
) where
    K: Resource + Clone + DeserializeOwned + serde::Serialize + Debug + Send + Sync + 'static,
{
    tokio::spawn(async move {
        let mut stream = watcher(api, cfg).boxed();
        let mut relist: Vec<Object> = Vec::new();
        let mut seen: HashMap<(Option<String>, Option<String>), u64> = HashMap::new();
        let id = |o: &K| (o.meta().namespace.clone(), o.meta().name.clone());
        while let Some(ev) = stream.next().await {
            let change = match ev {
                Ok(watcher::Event::Apply(mut o)) => {
                    (trim.cut)(&mut o);
                    if trim.dedupe && seen.insert(id(&o), fingerprint(&o)) == Some(fingerprint(&o))
                    {
                        continue;
                    }
                    Change::Apply(wrap(o))
                }
                Ok(watcher::Event::Delete(o)) => {
                    seen.remove(&id(&o));
                    Change::Delete(wrap(o))
                }
                Ok(watcher::Event::Init) => {
                    relist.clear();
                    seen.clear();
                    continue;
                }
                Ok(watcher::Event::InitApply(mut o)) => {
                    (trim.cut)(&mut o);
                    if trim.dedupe {
                        seen.insert(id(&o), fingerprint(&o));
                    }
                    relist.push(wrap(o));
                    continue;
                }
                Ok(watcher::Event::InitDone) => Change::Replace(kind, std::mem::take(&mut relist)),
                Err(e) => {
                    tracing::warn!(target: "operator", ?kind, error = %e, "watch error, retrying");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    continue;
                }
            };
            if tx.send(change).await.is_err() {
                return;
            }
        }
    });
}

/// The CRDs without which the operator cannot work, by name, that the API does not
/// serve (the Gateway API's UDPRoute is optional: STUNner's own stands in for it).
pub async fn missing_crds(client: &Client) -> Vec<&'static str> {
    let mut missing = Vec::new();
    if served(&Api::<GatewayClass>::all(client.clone()), false)
        .await
        .is_err()
    {
        missing.push("gatewayclasses.gateway.networking.k8s.io");
    }
    if served(&Api::<Gateway>::all(client.clone()), false)
        .await
        .is_err()
    {
        missing.push("gateways.gateway.networking.k8s.io");
    }
    if served(&Api::<GatewayConfig>::all(client.clone()), false)
        .await
        .is_err()
    {
        missing.push("gatewayconfigs.stunner.l7mp.io");
    }
    if served(&Api::<Dataplane>::all(client.clone()), false)
        .await
        .is_err()
    {
        missing.push("dataplanes.stunner.l7mp.io");
    }
    if served(&Api::<StaticService>::all(client.clone()), false)
        .await
        .is_err()
    {
        missing.push("staticservices.stunner.l7mp.io");
    }
    if served(&Api::<UDPRoute>::all(client.clone()), false)
        .await
        .is_err()
    {
        missing.push("udproutes.stunner.l7mp.io");
    }
    missing
}

/// Whether the API serves a kind (the Gateway API UDPRoute CRD is optional): `Err` with
/// the HTTP status when listing it is refused outright (404, or 403 when `forbidden_too`);
/// other errors count as served, the watcher retries them.
async fn served<K>(api: &Api<K>, forbidden_too: bool) -> Result<(), u16>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    match api.list(&kube::api::ListParams::default().limit(1)).await {
        Err(kube::Error::Api(e)) if e.code == 404 || (forbidden_too && e.code == 403) => {
            Err(e.code)
        }
        _ => Ok(()),
    }
}

/// Where Service backends' addresses come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointSource {
    /// `discovery.k8s.io/v1` EndpointSlices, falling back to `v1.Endpoints` when the API
    /// does not serve them or forbids listing them.
    EndpointSlices,
    /// `v1.Endpoints` only (`--disable-endpontslice-controller`).
    Endpoints,
}

/// Starts every watcher; kinds the API does not serve are reported synced and empty.
pub async fn start(client: Client, tx: mpsc::Sender<Change>, source: EndpointSource) {
    let owned = format!("{}={}", names::OWNED_BY_LABEL, names::OWNED_BY_VALUE);
    let all = watcher::Config::default;
    spawn(
        Api::<GatewayClass>::all(client.clone()),
        all(),
        Kind::GatewayClass,
        Object::GatewayClass,
        tx.clone(),
    );
    spawn(
        Api::<Gateway>::all(client.clone()),
        all(),
        Kind::Gateway,
        Object::Gateway,
        tx.clone(),
    );
    spawn(
        Api::<UDPRoute>::all(client.clone()),
        all(),
        Kind::UDPRoute,
        Object::UDPRoute,
        tx.clone(),
    );
    let v1a2 = Api::<UdpRoute>::all(client.clone());
    if served(&v1a2, false).await.is_ok() {
        spawn(
            v1a2,
            all(),
            Kind::UDPRouteV1A2,
            Object::UDPRouteV1A2,
            tx.clone(),
        );
    } else {
        tracing::info!(target: "operator", "gateway.networking.k8s.io/v1alpha2 UDPRoute is not installed, not watching it");
        let _ = tx
            .send(Change::Replace(Kind::UDPRouteV1A2, Vec::new()))
            .await;
    }
    spawn(
        Api::<GatewayConfig>::all(client.clone()),
        all(),
        Kind::GatewayConfig,
        Object::GatewayConfig,
        tx.clone(),
    );
    spawn(
        Api::<Dataplane>::all(client.clone()),
        all(),
        Kind::Dataplane,
        Object::Dataplane,
        tx.clone(),
    );
    spawn(
        Api::<StaticService>::all(client.clone()),
        all(),
        Kind::StaticService,
        Object::StaticService,
        tx.clone(),
    );
    spawn(
        Api::<Service>::all(client.clone()),
        all(),
        Kind::Service,
        Object::Service,
        tx.clone(),
    );
    let slices = Api::<EndpointSlice>::all(client.clone());
    let use_slices = match source {
        EndpointSource::Endpoints => {
            tracing::info!(target: "operator", "EndpointSlices disabled, watching v1 Endpoints");
            false
        }
        EndpointSource::EndpointSlices => match served(&slices, true).await {
            Ok(()) => true,
            Err(code) => {
                tracing::warn!(target: "operator", code, "cannot list EndpointSlices, falling back to v1 Endpoints");
                false
            }
        },
    };
    // The unused source is reported synced and empty, so renders do not wait for it.
    if use_slices {
        spawn(
            slices,
            all(),
            Kind::EndpointSlice,
            Object::EndpointSlice,
            tx.clone(),
        );
        let _ = tx.send(Change::Replace(Kind::Endpoints, Vec::new())).await;
    } else {
        spawn(
            Api::<Endpoints>::all(client.clone()),
            all(),
            Kind::Endpoints,
            Object::Endpoints,
            tx.clone(),
        );
        let _ = tx
            .send(Change::Replace(Kind::EndpointSlice, Vec::new()))
            .await;
    }
    spawn(
        Api::<Secret>::all(client.clone()),
        all(),
        Kind::Secret,
        Object::Secret,
        tx.clone(),
    );
    spawn(
        Api::<Namespace>::all(client.clone()),
        all(),
        Kind::Namespace,
        Object::Namespace,
        tx.clone(),
    );
    spawn_trimmed(
        Api::<Node>::all(client.clone()),
        all(),
        Kind::Node,
        Object::Node,
        Trim {
            cut: trim_node,
            dedupe: true,
        },
        tx.clone(),
    );
    spawn(
        Api::<Deployment>::all(client.clone()),
        all().labels(&owned),
        Kind::Deployment,
        Object::Deployment,
        tx.clone(),
    );
    spawn(
        Api::<ConfigMap>::all(client),
        all().labels(&owned),
        Kind::ConfigMap,
        Object::ConfigMap,
        tx,
    );
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{NodeAddress, NodeCondition};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, Time};
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    fn node(heartbeat: Timestamp, rv: &str, ip: &str) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some("node-1".into()),
                resource_version: Some(rv.into()),
                managed_fields: Some(vec![ManagedFieldsEntry::default()]),
                ..ObjectMeta::default()
            },
            status: Some(NodeStatus {
                addresses: Some(vec![NodeAddress {
                    type_: "ExternalIP".into(),
                    address: ip.into(),
                }]),
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    last_heartbeat_time: Some(Time(heartbeat)),
                    ..NodeCondition::default()
                }]),
                ..NodeStatus::default()
            }),
            ..Node::default()
        }
    }

    #[test]
    fn a_node_keeps_its_addresses_and_heartbeats_change_nothing() {
        let t0 = Timestamp::now();
        let (mut a, mut b) = (
            node(t0, "1", "10.0.0.1"),
            node(
                t0 + k8s_openapi::jiff::SignedDuration::from_secs(10),
                "2",
                "10.0.0.1",
            ),
        );
        trim_node(&mut a);
        trim_node(&mut b);
        assert_eq!(a.metadata.name.as_deref(), Some("node-1"));
        assert!(a.metadata.managed_fields.is_none() && a.metadata.resource_version.is_none());
        let st = a.status.as_ref().unwrap();
        assert!(st.conditions.is_none());
        assert_eq!(st.addresses.as_ref().unwrap()[0].address, "10.0.0.1");
        assert_eq!(
            fingerprint(&a),
            fingerprint(&b),
            "a heartbeat is not a change"
        );
        let mut c = node(t0, "3", "10.0.0.2");
        trim_node(&mut c);
        assert_ne!(fingerprint(&a), fingerprint(&c), "a new address is");
    }
}
