//! The World: a plain in-memory index of every object the renderer reads, keyed by
//! namespace and name. Watchers insert and remove objects; the manifest loader fills it
//! from YAML files. Iteration order is by key, so rendering is deterministic.

use std::collections::BTreeMap;
use std::sync::Arc;

use gateway_api::apis::experimental::udproutes::UdpRoute;
use gateway_api::apis::standard::gatewayclasses::GatewayClass;
use gateway_api::apis::standard::gateways::Gateway;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Namespace, Node, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

use crate::Error;
use crate::crd::{self, Dataplane, GatewayConfig, StaticService, UDPRoute};

/// `(namespace, name)`; the namespace is empty for cluster-scoped kinds.
pub type Key = (String, String);

/// One object of a kind the renderer reads.
#[derive(Clone, Debug)]
#[allow(missing_docs, clippy::large_enum_variant)]
pub enum Object {
    GatewayClass(GatewayClass),
    Gateway(Gateway),
    UDPRoute(UDPRoute),
    UDPRouteV1A2(UdpRoute),
    GatewayConfig(GatewayConfig),
    Dataplane(Dataplane),
    StaticService(StaticService),
    Service(Service),
    EndpointSlice(EndpointSlice),
    Endpoints(Endpoints),
    Secret(Secret),
    Namespace(Namespace),
    Node(Node),
    Deployment(Deployment),
    ConfigMap(ConfigMap),
}

/// The kinds the renderer reads (one watcher each in the operator).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[allow(missing_docs)]
pub enum Kind {
    GatewayClass,
    Gateway,
    UDPRoute,
    UDPRouteV1A2,
    GatewayConfig,
    Dataplane,
    StaticService,
    Service,
    EndpointSlice,
    /// `v1.Endpoints`, watched instead of EndpointSlices when those are off or not served.
    Endpoints,
    Secret,
    Namespace,
    Node,
    Deployment,
    ConfigMap,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Self; 15] = [
        Self::GatewayClass,
        Self::Gateway,
        Self::UDPRoute,
        Self::UDPRouteV1A2,
        Self::GatewayConfig,
        Self::Dataplane,
        Self::StaticService,
        Self::Service,
        Self::EndpointSlice,
        Self::Endpoints,
        Self::Secret,
        Self::Namespace,
        Self::Node,
        Self::Deployment,
        Self::ConfigMap,
    ];
}

impl Object {
    /// The kind of this object.
    pub fn kind(&self) -> Kind {
        match self {
            Self::GatewayClass(_) => Kind::GatewayClass,
            Self::Gateway(_) => Kind::Gateway,
            Self::UDPRoute(_) => Kind::UDPRoute,
            Self::UDPRouteV1A2(_) => Kind::UDPRouteV1A2,
            Self::GatewayConfig(_) => Kind::GatewayConfig,
            Self::Dataplane(_) => Kind::Dataplane,
            Self::StaticService(_) => Kind::StaticService,
            Self::Service(_) => Kind::Service,
            Self::EndpointSlice(_) => Kind::EndpointSlice,
            Self::Endpoints(_) => Kind::Endpoints,
            Self::Secret(_) => Kind::Secret,
            Self::Namespace(_) => Kind::Namespace,
            Self::Node(_) => Kind::Node,
            Self::Deployment(_) => Kind::Deployment,
            Self::ConfigMap(_) => Kind::ConfigMap,
        }
    }
}

/// Every object the renderer reads. Values are shared (`Arc`), so a copy of part of the
/// World (the live objects the updater compares against) costs pointers, not objects.
#[derive(Clone, Debug, Default)]
#[allow(missing_docs)]
pub struct World {
    pub gateway_classes: BTreeMap<Key, Arc<GatewayClass>>,
    pub gateways: BTreeMap<Key, Arc<Gateway>>,
    pub udp_routes: BTreeMap<Key, Arc<UDPRoute>>,
    pub udp_routes_v1a2: BTreeMap<Key, Arc<UdpRoute>>,
    pub gateway_configs: BTreeMap<Key, Arc<GatewayConfig>>,
    pub dataplanes: BTreeMap<Key, Arc<Dataplane>>,
    pub static_services: BTreeMap<Key, Arc<StaticService>>,
    pub services: BTreeMap<Key, Arc<Service>>,
    pub endpoint_slices: BTreeMap<Key, Arc<EndpointSlice>>,
    pub endpoints: BTreeMap<Key, Arc<Endpoints>>,
    pub secrets: BTreeMap<Key, Arc<Secret>>,
    pub namespaces: BTreeMap<Key, Arc<Namespace>>,
    pub nodes: BTreeMap<Key, Arc<Node>>,
    pub deployments: BTreeMap<Key, Arc<Deployment>>,
    pub config_maps: BTreeMap<Key, Arc<ConfigMap>>,
}

/// Stores `o` under its key, shared.
fn put<T>(map: &mut BTreeMap<Key, Arc<T>>, k: Key, o: T) {
    map.insert(k, Arc::new(o));
}

/// The key of an object from its metadata.
pub(crate) fn key(meta: &ObjectMeta) -> Key {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

impl World {
    /// An empty World.
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts or replaces an object.
    pub fn insert(&mut self, obj: Object) {
        match obj {
            Object::GatewayClass(o) => put(&mut self.gateway_classes, key(&o.metadata), o),
            Object::Gateway(o) => put(&mut self.gateways, key(&o.metadata), o),
            Object::UDPRoute(o) => put(&mut self.udp_routes, key(&o.metadata), o),
            Object::UDPRouteV1A2(o) => put(&mut self.udp_routes_v1a2, key(&o.metadata), o),
            Object::GatewayConfig(o) => put(&mut self.gateway_configs, key(&o.metadata), o),
            Object::Dataplane(o) => put(&mut self.dataplanes, key(&o.metadata), o),
            Object::StaticService(o) => put(&mut self.static_services, key(&o.metadata), o),
            Object::Service(o) => put(&mut self.services, key(&o.metadata), o),
            Object::EndpointSlice(o) => put(&mut self.endpoint_slices, key(&o.metadata), o),
            Object::Endpoints(o) => put(&mut self.endpoints, key(&o.metadata), o),
            Object::Secret(o) => put(&mut self.secrets, key(&o.metadata), o),
            Object::Namespace(o) => put(&mut self.namespaces, key(&o.metadata), o),
            Object::Node(o) => put(&mut self.nodes, key(&o.metadata), o),
            Object::Deployment(o) => put(&mut self.deployments, key(&o.metadata), o),
            Object::ConfigMap(o) => put(&mut self.config_maps, key(&o.metadata), o),
        }
    }

    /// Removes the object of the same kind and key as `obj`.
    pub fn remove(&mut self, obj: &Object) {
        match obj {
            Object::GatewayClass(o) => _ = self.gateway_classes.remove(&key(&o.metadata)),
            Object::Gateway(o) => _ = self.gateways.remove(&key(&o.metadata)),
            Object::UDPRoute(o) => _ = self.udp_routes.remove(&key(&o.metadata)),
            Object::UDPRouteV1A2(o) => _ = self.udp_routes_v1a2.remove(&key(&o.metadata)),
            Object::GatewayConfig(o) => _ = self.gateway_configs.remove(&key(&o.metadata)),
            Object::Dataplane(o) => _ = self.dataplanes.remove(&key(&o.metadata)),
            Object::StaticService(o) => _ = self.static_services.remove(&key(&o.metadata)),
            Object::Service(o) => _ = self.services.remove(&key(&o.metadata)),
            Object::EndpointSlice(o) => _ = self.endpoint_slices.remove(&key(&o.metadata)),
            Object::Endpoints(o) => _ = self.endpoints.remove(&key(&o.metadata)),
            Object::Secret(o) => _ = self.secrets.remove(&key(&o.metadata)),
            Object::Namespace(o) => _ = self.namespaces.remove(&key(&o.metadata)),
            Object::Node(o) => _ = self.nodes.remove(&key(&o.metadata)),
            Object::Deployment(o) => _ = self.deployments.remove(&key(&o.metadata)),
            Object::ConfigMap(o) => _ = self.config_maps.remove(&key(&o.metadata)),
        }
    }

    /// Replaces every object of `kind` with `objects` (a watcher's full relist).
    pub fn replace(&mut self, kind: Kind, objects: Vec<Object>) {
        match kind {
            Kind::GatewayClass => self.gateway_classes.clear(),
            Kind::Gateway => self.gateways.clear(),
            Kind::UDPRoute => self.udp_routes.clear(),
            Kind::UDPRouteV1A2 => self.udp_routes_v1a2.clear(),
            Kind::GatewayConfig => self.gateway_configs.clear(),
            Kind::Dataplane => self.dataplanes.clear(),
            Kind::StaticService => self.static_services.clear(),
            Kind::Service => self.services.clear(),
            Kind::EndpointSlice => self.endpoint_slices.clear(),
            Kind::Endpoints => self.endpoints.clear(),
            Kind::Secret => self.secrets.clear(),
            Kind::Namespace => self.namespaces.clear(),
            Kind::Node => self.nodes.clear(),
            Kind::Deployment => self.deployments.clear(),
            Kind::ConfigMap => self.config_maps.clear(),
        }
        for o in objects.into_iter().filter(|o| o.kind() == kind) {
            self.insert(o);
        }
    }

    /// Loads every document of a YAML (or JSON) manifest text; `source_name` names it in
    /// errors. Namespaced objects without a namespace go to `default`, as `kubectl apply`
    /// does; documents of other kinds are skipped and counted in the return value.
    pub fn load_yaml(&mut self, source_name: &str, text: &str) -> Result<usize, Error> {
        let docs: Vec<Value> =
            serde_saphyr::from_str_multiple(text).map_err(|e| Error::Syntax {
                source_name: source_name.to_string(),
                doc: 0,
                message: e.to_string(),
            })?;
        let mut skipped = 0;
        for (i, doc) in docs.into_iter().enumerate() {
            if doc.is_null() {
                continue;
            }
            // A `kind: List` (kubectl get -o yaml) holds its objects in `items`.
            if doc.get("kind").and_then(Value::as_str) == Some("List") {
                let items = doc
                    .get("items")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                for item in items {
                    match Object::from_value(source_name, i + 1, item)? {
                        Some(o) => self.insert(o),
                        None => skipped += 1,
                    }
                }
                continue;
            }
            match Object::from_value(source_name, i + 1, doc)? {
                Some(o) => self.insert(o),
                None => skipped += 1,
            }
        }
        Ok(skipped)
    }
}

fn is_namespaced(kind: &str) -> bool {
    !matches!(kind, "GatewayClass" | "Dataplane" | "Namespace" | "Node")
}

impl Object {
    /// Decodes one manifest; `Ok(None)` for kinds the renderer does not read.
    pub fn from_value(source_name: &str, doc: usize, mut v: Value) -> Result<Option<Self>, Error> {
        let incomplete = |m: &str| Error::Incomplete {
            source_name: source_name.to_string(),
            doc,
            message: m.to_string(),
        };
        let api_version = v
            .get("apiVersion")
            .and_then(Value::as_str)
            .ok_or_else(|| incomplete("missing apiVersion"))?
            .to_string();
        let kind = v
            .get("kind")
            .and_then(Value::as_str)
            .ok_or_else(|| incomplete("missing kind"))?
            .to_string();
        let name = v
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .ok_or_else(|| incomplete("missing metadata.name"))?
            .to_string();
        if is_namespaced(&kind)
            && v.pointer("/metadata/namespace").is_none()
            && let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut)
        {
            meta.insert("namespace".into(), Value::String("default".into()));
        }
        let ns = v
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("");
        let obj_name = if ns.is_empty() {
            name.clone()
        } else {
            format!("{ns}/{name}")
        };
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        let version = api_version.rsplit('/').next().unwrap_or("");
        let decode_err = |e: serde_json::Error| Error::Decode {
            source_name: source_name.to_string(),
            kind: format!("{api_version}/{kind}"),
            name: obj_name.clone(),
            message: e.to_string(),
        };
        macro_rules! de {
            ($variant:ident) => {
                Object::$variant(serde_json::from_value(v).map_err(decode_err)?)
            };
        }
        let stunner = group == crd::GROUP;
        let gwapi = group == crate::names::GATEWAY_GROUP;
        let alpha = version == "v1alpha1";
        let obj = match kind.as_str() {
            "GatewayClass" if gwapi => de!(GatewayClass),
            "Gateway" if gwapi => de!(Gateway),
            "UDPRoute" if gwapi => de!(UDPRouteV1A2),
            "UDPRoute" if stunner => de!(UDPRoute),
            "GatewayConfig" if stunner && alpha => Self::GatewayConfig(
                serde_json::from_value::<crd::v1alpha1::GatewayConfig>(v)
                    .map_err(decode_err)?
                    .into_v1(),
            ),
            "GatewayConfig" if stunner => de!(GatewayConfig),
            "Dataplane" if stunner && alpha => Self::Dataplane(
                serde_json::from_value::<crd::v1alpha1::Dataplane>(v)
                    .map_err(decode_err)?
                    .into_v1(),
            ),
            "Dataplane" if stunner => de!(Dataplane),
            "StaticService" if stunner && alpha => Self::StaticService(
                serde_json::from_value::<crd::v1alpha1::StaticService>(v)
                    .map_err(decode_err)?
                    .into_v1(),
            ),
            "StaticService" if stunner => de!(StaticService),
            "Service" if group.is_empty() => de!(Service),
            "EndpointSlice" if group == "discovery.k8s.io" => de!(EndpointSlice),
            "Endpoints" if group.is_empty() => de!(Endpoints),
            "Secret" if group.is_empty() => de!(Secret),
            "Namespace" if group.is_empty() => de!(Namespace),
            "Node" if group.is_empty() => de!(Node),
            "Deployment" if group == "apps" => de!(Deployment),
            "ConfigMap" if group.is_empty() => de!(ConfigMap),
            _ => return Ok(None),
        };
        Ok(Some(obj))
    }
}
