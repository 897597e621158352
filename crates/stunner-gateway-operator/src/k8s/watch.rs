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
    ConfigMap, EndpointAddress, EndpointSubset, Endpoints, Namespace, Node, NodeStatus, Secret,
    Service, ServicePort, ServiceSpec,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
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

/// Metadata cut to the object's namespace and name, all a trimmed object is keyed by.
fn named(m: ObjectMeta) -> ObjectMeta {
    ObjectMeta {
        name: m.name,
        namespace: m.namespace,
        ..ObjectMeta::default()
    }
}

/// An EndpointSlice is read for the addresses of its endpoints and the Service it
/// belongs to (its `kubernetes.io/service-name` label) only: every endpoint is a backend,
/// ready or not (route.rs), so conditions, ports, topology and target references are
/// dropped on arrival, and so is an update that changes none of what is kept (a
/// readiness flap).
pub fn trim_endpoint_slice(s: &mut EndpointSlice) {
    let mut m = std::mem::take(&mut s.metadata);
    let service = m
        .labels
        .take()
        .and_then(|mut l| l.remove_entry(names::SERVICE_NAME_LABEL))
        .map(|e| std::collections::BTreeMap::from([e]));
    s.metadata = ObjectMeta {
        labels: service,
        ..named(m)
    };
    s.ports = None;
    s.endpoints = s.endpoints.take().map(|eps| {
        eps.into_iter()
            .map(|e| Endpoint {
                addresses: e.addresses,
                ..Endpoint::default()
            })
            .collect()
    });
}

/// A Service of ours, or one tied to a Gateway (its LoadBalancer, which the Gateway's
/// status and the updater read in full), loses only its managedFields. Any other Service
/// is a possible backend, read for its cluster IPs and its ports' protocols only
/// (route.rs): the rest is dropped on arrival, and an update that changes none of that
/// is not passed on.
pub fn trim_service(s: &mut Service) {
    let m = &s.metadata;
    let ours = m
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key(names::OWNED_BY_LABEL))
        || m.annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(names::RELATED_GATEWAY_NAME))
        || m.owner_references
            .iter()
            .flatten()
            .any(|o| o.kind == "Gateway");
    if ours {
        trim(s);
        return;
    }
    s.metadata = named(std::mem::take(&mut s.metadata));
    s.status = None;
    s.spec = s.spec.take().map(|spec| ServiceSpec {
        cluster_ip: spec.cluster_ip,
        cluster_ips: spec.cluster_ips,
        type_: spec.type_,
        ports: spec.ports.map(|ports| {
            ports
                .into_iter()
                .map(|p| ServicePort {
                    name: p.name,
                    port: p.port,
                    protocol: p.protocol,
                    ..ServicePort::default()
                })
                .collect()
        }),
        ..ServiceSpec::default()
    });
}

/// `v1.Endpoints`, like EndpointSlices: the addresses' IPs only (ready and not ready).
pub fn trim_endpoints(e: &mut Endpoints) {
    e.metadata = named(std::mem::take(&mut e.metadata));
    let ips = |a: Option<Vec<EndpointAddress>>| {
        a.map(|a| {
            a.into_iter()
                .map(|a| EndpointAddress {
                    ip: a.ip,
                    ..EndpointAddress::default()
                })
                .collect()
        })
    };
    e.subsets = e.subsets.take().map(|subsets| {
        subsets
            .into_iter()
            .map(|s| EndpointSubset {
                addresses: ips(s.addresses),
                not_ready_addresses: ips(s.not_ready_addresses),
                ports: None,
            })
            .collect()
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
        // By a hash of the object's namespace and name, not the names themselves (at
        // scale, ~1 MB less). Two objects whose ids collide only make a change pass that
        // could have been dropped: their fingerprints differ, as they hold the names.
        let mut seen: HashMap<u64, u64> = HashMap::new();
        let id = |o: &K| fingerprint(&(&o.meta().namespace, &o.meta().name));
        while let Some(ev) = stream.next().await {
            let change = match ev {
                Ok(watcher::Event::Apply(mut o)) => {
                    (trim.cut)(&mut o);
                    if trim.dedupe {
                        let f = fingerprint(&o);
                        if seen.insert(id(&o), f) == Some(f) {
                            continue;
                        }
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
    spawn_trimmed(
        Api::<Service>::all(client.clone()),
        all(),
        Kind::Service,
        Object::Service,
        Trim {
            cut: trim_service,
            // Only sound for the Services cut down to the fields above: ours keep their
            // resourceVersion, so each of their updates differs and passes.
            dedupe: true,
        },
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
        spawn_trimmed(
            slices,
            all(),
            Kind::EndpointSlice,
            Object::EndpointSlice,
            Trim {
                cut: trim_endpoint_slice,
                dedupe: true,
            },
            tx.clone(),
        );
        let _ = tx.send(Change::Replace(Kind::Endpoints, Vec::new())).await;
    } else {
        spawn_trimmed(
            Api::<Endpoints>::all(client.clone()),
            all(),
            Kind::Endpoints,
            Object::Endpoints,
            Trim {
                cut: trim_endpoints,
                dedupe: true,
            },
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

    fn slice(ready: bool, ip: &str) -> EndpointSlice {
        use k8s_openapi::api::discovery::v1::{EndpointConditions, EndpointPort};
        EndpointSlice {
            metadata: ObjectMeta {
                namespace: Some("media".into()),
                name: Some("backend-x1".into()),
                resource_version: Some(if ready { "7" } else { "8" }.into()),
                labels: Some(
                    [
                        (names::SERVICE_NAME_LABEL.to_string(), "backend".to_string()),
                        (
                            "endpointslice.kubernetes.io/managed-by".into(),
                            "endpointslice-controller.k8s.io".into(),
                        ),
                    ]
                    .into(),
                ),
                ..ObjectMeta::default()
            },
            address_type: "IPv4".into(),
            endpoints: Some(vec![Endpoint {
                addresses: vec![ip.into()],
                conditions: Some(EndpointConditions {
                    ready: Some(ready),
                    ..EndpointConditions::default()
                }),
                node_name: Some("node-1".into()),
                ..Endpoint::default()
            }]),
            ports: Some(vec![EndpointPort {
                port: Some(9001),
                ..EndpointPort::default()
            }]),
        }
    }

    /// What the renderer reads of a slice survives the trim; a readiness flap is not a
    /// change (not-ready endpoints are backends too), a new address is.
    #[test]
    fn a_slice_keeps_its_service_and_addresses_and_a_readiness_flap_changes_nothing() {
        let (mut a, mut b) = (slice(true, "10.1.0.5"), slice(false, "10.1.0.5"));
        trim_endpoint_slice(&mut a);
        trim_endpoint_slice(&mut b);
        assert_eq!(a.metadata.namespace.as_deref(), Some("media"));
        assert_eq!(a.metadata.name.as_deref(), Some("backend-x1"));
        let labels = a.metadata.labels.as_ref().unwrap();
        assert_eq!(labels.len(), 1);
        assert_eq!(labels[names::SERVICE_NAME_LABEL], "backend");
        let ep = &a.endpoints.as_ref().unwrap()[0];
        assert_eq!(ep.addresses, vec!["10.1.0.5".to_string()]);
        assert!(ep.node_name.is_none() && ep.conditions.is_none() && a.ports.is_none());
        assert_eq!(
            fingerprint(&a),
            fingerprint(&b),
            "readiness is not a change"
        );
        let mut c = slice(true, "10.1.0.6");
        trim_endpoint_slice(&mut c);
        assert_ne!(fingerprint(&a), fingerprint(&c), "a new address is");
    }

    #[test]
    fn endpoints_keep_ready_and_not_ready_ips() {
        let addr = |ip: &str| EndpointAddress {
            ip: ip.into(),
            node_name: Some("node-1".into()),
            ..EndpointAddress::default()
        };
        let mut e = Endpoints {
            metadata: ObjectMeta {
                namespace: Some("media".into()),
                name: Some("backend".into()),
                resource_version: Some("3".into()),
                ..ObjectMeta::default()
            },
            subsets: Some(vec![EndpointSubset {
                addresses: Some(vec![addr("10.1.0.5")]),
                not_ready_addresses: Some(vec![addr("10.1.0.6")]),
                ports: None,
            }]),
        };
        trim_endpoints(&mut e);
        assert!(e.metadata.resource_version.is_none());
        let s = &e.subsets.as_ref().unwrap()[0];
        assert_eq!(
            s.addresses.as_ref().unwrap()[0],
            EndpointAddress {
                ip: "10.1.0.5".into(),
                ..EndpointAddress::default()
            }
        );
        assert_eq!(s.not_ready_addresses.as_ref().unwrap()[0].ip, "10.1.0.6");
    }

    /// A backend Service keeps what route.rs reads; ours (and a Gateway's own) keep all
    /// but their managedFields, so the updater compares them in full.
    #[test]
    fn a_backend_service_keeps_its_ips_and_ports_and_ours_keeps_everything() {
        use k8s_openapi::api::core::v1::ServiceStatus;
        let svc = |labels: &[(&str, &str)]| Service {
            metadata: ObjectMeta {
                namespace: Some("media".into()),
                name: Some("backend".into()),
                resource_version: Some("5".into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                managed_fields: Some(vec![ManagedFieldsEntry::default()]),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: Some("10.96.0.7".into()),
                cluster_ips: Some(vec!["10.96.0.7".into()]),
                selector: Some([("app".to_string(), "media".to_string())].into()),
                ports: Some(vec![ServicePort {
                    port: 9001,
                    protocol: Some("UDP".into()),
                    node_port: Some(31000),
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            status: Some(ServiceStatus::default()),
        };
        let mut b = svc(&[("app", "media")]);
        trim_service(&mut b);
        assert!(b.metadata.labels.is_none() && b.metadata.resource_version.is_none());
        let spec = b.spec.as_ref().unwrap();
        assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.7"));
        assert!(spec.selector.is_none() && b.status.is_none());
        let p = &spec.ports.as_ref().unwrap()[0];
        assert_eq!(
            (p.port, p.protocol.as_deref(), p.node_port),
            (9001, Some("UDP"), None)
        );

        let mut ours = svc(&[(names::OWNED_BY_LABEL, names::OWNED_BY_VALUE)]);
        trim_service(&mut ours);
        assert!(ours.metadata.managed_fields.is_none());
        assert_eq!(ours.metadata.resource_version.as_deref(), Some("5"));
        assert!(ours.spec.as_ref().unwrap().selector.is_some() && ours.status.is_some());
    }
}
