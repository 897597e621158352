//! `render(&World) -> Desired`: the whole desired state, recomputed from scratch.
//!
//! Per GatewayClass we control: resolve its GatewayConfig (and Dataplane in managed
//! mode), then render one stunnerd config per Gateway (managed) or one for all the
//! class's Gateways (legacy), with the Gateways' Services, Deployments and statuses.
//! Route statuses come last, from what attached where.

mod auth;
mod deployment;
mod finalize;
mod listener;
mod route;
mod service;
mod status;

use std::collections::{BTreeMap, BTreeSet};

use gateway_api::apis::experimental::udproutes::{
    UdpRouteParentRefs, UdpRouteStatus, UdpRouteStatusParents, UdpRouteStatusParentsParentRef,
};
use gateway_api::apis::standard::gatewayclasses::{GatewayClass, GatewayClassStatus};
use gateway_api::apis::standard::gateways::{
    Gateway, GatewayStatus, GatewayStatusAddresses, GatewayStatusListeners,
    GatewayStatusListenersSupportedKinds,
};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, OwnerReference};
use stunner_config::{ClusterConfig, StunnerConfig};

use self::listener::ListenerPlan;
use self::route::{BackendError, Route};
use self::service::{flag, gateway_id};
use self::status::{Conditions, no, yes};
use crate::crd::{Dataplane, GatewayConfig};
use crate::desired::{Desired, ObjectRef, StatusPatch};
use crate::names;
use crate::options::{DataplaneMode, RenderOptions};
use crate::world::{Key, World, key};

pub use self::finalize::finalize;

/// Computes the desired state of everything we own from `world`.
pub fn render(world: &World, opts: &RenderOptions) -> Desired {
    let mut r = Renderer {
        world,
        opts,
        desired: Desired::default(),
        routes: route::collect(world),
        clusters: BTreeMap::new(),
        attached: BTreeSet::new(),
        gateway_errors: BTreeMap::new(),
        ours: BTreeSet::new(),
    };
    for route in &r.routes {
        let (c, errs) = route::render_cluster(world, opts, route);
        r.clusters
            .insert((route.key.clone(), route.v1a2), (c, errs));
    }
    for class in world.gateway_classes.values() {
        if class.spec.controller_name == opts.controller_name {
            r.render_class(class);
        }
    }
    r.route_statuses();
    r.deletes();
    r.desired.statuses.sort_by(|a, b| a.target.cmp(&b.target));
    r.desired
}

struct Renderer<'w> {
    world: &'w World,
    opts: &'w RenderOptions,
    desired: Desired,
    routes: Vec<Route>,
    /// Each route's cluster and backend problems, by (key, is-v1alpha2).
    clusters: BTreeMap<(Key, bool), (ClusterConfig, Vec<BackendError>)>,
    /// (route key, is-v1alpha2, gateway key) for every accepted attachment.
    attached: BTreeSet<(Key, bool, Key)>,
    /// Gateways of our classes that could not be rendered, with the reason.
    gateway_errors: BTreeMap<Key, String>,
    /// Gateways of our classes.
    ours: BTreeSet<Key>,
}

/// Carries our owned-by label.
fn owned_by_us(m: &ObjectMeta) -> bool {
    m.labels
        .as_ref()
        .and_then(|l| l.get(names::OWNED_BY_LABEL))
        .map(String::as_str)
        == Some(names::OWNED_BY_VALUE)
}

/// The object at `k` belongs to a Gateway of another controller's class (a second STUNner
/// operator with its own `--controller-name`, whose objects carry the same labels): it is
/// never ours to delete, even though we do not render that Gateway.
fn foreign(world: &World, opts: &RenderOptions, k: &Key) -> bool {
    world.gateways.get(k).is_some_and(|g| {
        // GatewayClasses are cluster-scoped: keyed by an empty namespace.
        world
            .gateway_classes
            .get(&(String::new(), g.spec.gateway_class_name.clone()))
            .is_some_and(|c| c.spec.controller_name != opts.controller_name)
    })
}

/// Named like the Gateway its related-gateway label names: a per-Gateway object of ours.
fn per_gateway(m: &ObjectMeta) -> bool {
    let related = m
        .labels
        .as_ref()
        .and_then(|l| l.get(names::RELATED_GATEWAY_NAME));
    related.is_some() && related.map(String::as_str) == m.name.as_deref()
}

impl<'w> Renderer<'w> {
    fn status_patch(
        &mut self,
        api_version: &str,
        kind: &str,
        meta: &ObjectMeta,
        status: serde_json::Value,
    ) {
        self.desired
            .statuses
            .push(StatusPatch::new(api_version, kind, meta, status));
    }

    fn render_class(&mut self, class: &'w GatewayClass) {
        let class_name = class.metadata.name.clone().unwrap_or_default();
        let gws: Vec<&'w Gateway> = self
            .world
            .gateways
            .values()
            .map(|g| &**g)
            .filter(|g| g.spec.gateway_class_name == class_name)
            .collect();
        for gw in &gws {
            self.ours.insert(key(&gw.metadata));
        }
        let prev = class
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        let mut conds = Conditions::new(&prev, class.metadata.generation, &self.opts.now);
        match self.class_params(class) {
            Err(msg) => {
                conds.set(
                    "Accepted",
                    no(),
                    "InvalidParameters",
                    format!(
                        "controller {:?} failed to process GatewayClass: {msg}",
                        self.opts.controller_name
                    ),
                );
                for gw in &gws {
                    self.invalidate(gw, &format!("invalid GatewayClass {class_name}: {msg}"));
                }
            }
            Ok((gwconf, dp)) => {
                conds.set(
                    "Accepted",
                    yes(),
                    "Accepted",
                    format!(
                        "GatewayClass is now managed by controller {:?}",
                        self.opts.controller_name
                    ),
                );
                match self.opts.mode {
                    DataplaneMode::Managed => {
                        for gw in &gws {
                            self.render_context(&[gw], gwconf, dp, &class_name);
                        }
                    }
                    DataplaneMode::Legacy => self.render_context(&gws, gwconf, None, &class_name),
                }
            }
        }
        let status = GatewayClassStatus {
            conditions: Some(conds.finish()),
            ..Default::default()
        };
        let v = serde_json::to_value(status).unwrap_or_default();
        self.status_patch(
            "gateway.networking.k8s.io/v1",
            "GatewayClass",
            &class.metadata,
            v,
        );
    }

    /// The GatewayConfig (and, in managed mode, the Dataplane) of a class.
    fn class_params(
        &self,
        class: &GatewayClass,
    ) -> Result<(&'w GatewayConfig, Option<&'w Dataplane>), String> {
        let r = class
            .spec
            .parameters_ref
            .as_ref()
            .ok_or("missing parametersRef")?;
        if r.group != crate::crd::GROUP || r.kind != "GatewayConfig" {
            return Err(format!(
                "parametersRef must name a {}/GatewayConfig, got {}/{}",
                crate::crd::GROUP,
                r.group,
                r.kind
            ));
        }
        if r.name.is_empty() {
            return Err("parametersRef: empty name".into());
        }
        let ns = r
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .ok_or("parametersRef: namespace must be set")?;
        let gwconf = self
            .world
            .gateway_configs
            .get(&(ns.clone(), r.name.clone()))
            .ok_or_else(|| format!("GatewayConfig {ns}/{} not found", r.name))?;
        if self.opts.mode == DataplaneMode::Legacy {
            return Ok((gwconf, None));
        }
        let dp_name = gwconf
            .spec
            .dataplane
            .clone()
            .unwrap_or_else(|| names::DEFAULT_DATAPLANE.into());
        let dp = self
            .world
            .dataplanes
            .get(&(String::new(), dp_name.clone()))
            .ok_or_else(|| {
                format!(
                    "missing Dataplane {dp_name:?} for GatewayConfig {ns}/{}",
                    r.name
                )
            })?;
        Ok((gwconf, Some(dp)))
    }

    /// Marks a Gateway as not renderable: statuses say why, its objects are deleted.
    fn invalidate(&mut self, gw: &Gateway, msg: &str) {
        let key = key(&gw.metadata);
        self.gateway_errors.insert(key, msg.to_string());
        let prev = gw
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        let mut conds = Conditions::new(&prev, gw.metadata.generation, &self.opts.now);
        conds.set("Accepted", no(), "Invalid", msg);
        conds.set("Programmed", no(), "Invalid", msg);
        let status = GatewayStatus {
            conditions: Some(conds.finish()),
            ..Default::default()
        };
        let v = serde_json::to_value(status).unwrap_or_default();
        self.status_patch("gateway.networking.k8s.io/v1", "Gateway", &gw.metadata, v);
    }

    /// Renders one stunnerd config from `gws` (one in managed mode, all of the class in
    /// legacy mode).
    fn render_context(
        &mut self,
        gws: &[&'w Gateway],
        gwconf: &'w GatewayConfig,
        dp: Option<&'w Dataplane>,
        class_name: &str,
    ) {
        let managed = self.opts.mode == DataplaneMode::Managed;
        let name = match (managed, gws.first()) {
            (true, Some(gw)) => gateway_id(gw),
            _ => names::LEGACY_CONFIG_NAME.to_string(),
        };
        let admin = auth::admin(name, gwconf, dp);
        let auth = match auth::auth(self.world, gwconf) {
            Ok(a) => a,
            Err(msg) => {
                for gw in gws {
                    self.invalidate(gw, &msg);
                }
                if !managed {
                    self.legacy_config_map(gwconf, class_name, String::new());
                }
                return;
            }
        };
        let plans = listener::plan(self.world, gws);
        let mut listeners = Vec::new();
        let mut routes_used: BTreeSet<(Key, bool)> = BTreeSet::new();
        let mut rendered = Vec::new();
        for (gw, plans) in gws.iter().zip(&plans) {
            let lb = gwconf.spec.load_balancer_service_annotations.as_ref();
            let annotations = service::merged_annotations(gw, lb);
            let mut statuses = Vec::new();
            let mut addresses = Vec::new();
            for p in plans {
                let attached = self.attach(gw, p);
                let public = p
                    .valid()
                    .then(|| service::public_address(self.world, gw, p))
                    .flatten();
                if p.valid() {
                    addresses.push(public.clone());
                    let route_names = attached
                        .iter()
                        .map(|(k, _)| format!("{}/{}", k.0, k.1))
                        .collect();
                    listeners.extend(listener::render(gw, p, public.as_ref(), route_names));
                }
                statuses.push(self.listener_status(gw, p, attached.len()));
                routes_used.extend(attached);
            }
            rendered.push((gw, annotations, statuses, addresses));
        }
        let clusters: Vec<ClusterConfig> = routes_used
            .iter()
            .filter_map(|k| self.clusters.get(k).map(|(c, _)| c.clone()))
            .collect();
        let mut config = StunnerConfig {
            admin,
            auth,
            listeners,
            clusters,
            ..StunnerConfig::default()
        };
        if let Err(e) = config.validate() {
            let msg = format!("rendered config is invalid: {e}");
            for gw in gws {
                self.invalidate(gw, &msg);
            }
            return;
        }
        for ((gw, annotations, listener_statuses, addresses), plans) in
            rendered.into_iter().zip(&plans)
        {
            self.gateway_status(gw, listener_statuses, &addresses);
            if let Some(svc) = service::render(gw, plans, &annotations, self.opts.mode) {
                self.desired.services.push(svc);
            }
            if let (true, Some(dp)) = (managed, dp)
                && !flag(&annotations, names::DISABLE_MANAGED_DATAPLANE)
            {
                self.desired
                    .deployments
                    .push(deployment::render(gw, dp, self.opts));
            }
        }
        if managed {
            self.desired.configs.push(config);
        } else {
            self.legacy_config_map(gwconf, class_name, config.to_json());
        }
    }

    /// The routes attached to listener `p` of `gw`, recording each attachment.
    fn attach(&mut self, gw: &Gateway, p: &ListenerPlan<'_>) -> BTreeSet<(Key, bool)> {
        let mut out = BTreeSet::new();
        if !p.valid() {
            return out;
        }
        let gw_key = key(&gw.metadata);
        for route in self.routes.iter().filter(|r| !r.masked) {
            let admitted = route.parent_refs.iter().any(|pr| {
                route::parent_key(&route.key.0, pr).as_ref() == Some(&gw_key)
                    && route::listener_admits(self.world, gw, p.listener, &route.key.0, pr)
            });
            if admitted {
                out.insert((route.key.clone(), route.v1a2));
                self.attached
                    .insert((route.key.clone(), route.v1a2, gw_key.clone()));
            }
        }
        out
    }

    fn listener_status(
        &self,
        gw: &Gateway,
        p: &ListenerPlan<'_>,
        attached: usize,
    ) -> GatewayStatusListeners {
        let prev: Vec<_> = gw
            .status
            .as_ref()
            .and_then(|s| s.listeners.as_ref())
            .and_then(|ls| ls.iter().find(|l| l.name == p.listener.name))
            .map(|l| l.conditions.clone())
            .unwrap_or_default();
        let mut c = Conditions::new(&prev, gw.metadata.generation, &self.opts.now);
        match (p.protocol, p.conflicted) {
            (None, _) => c.set(
                "Accepted",
                no(),
                "UnsupportedProtocol",
                format!("unsupported protocol {:?}", p.listener.protocol),
            ),
            (Some(_), true) => c.set(
                "Accepted",
                no(),
                "PortUnavailable",
                format!("port {} is already in use", p.port),
            ),
            (Some(_), false) => c.set("Accepted", yes(), "Accepted", "listener accepted"),
        }
        if p.conflicted {
            c.set(
                "Conflicted",
                yes(),
                "ProtocolConflict",
                "conflict: port/protocol already in use",
            );
        } else {
            c.set(
                "Conflicted",
                no(),
                "NoConflicts",
                "listener has no conflicts",
            );
        }
        match &p.cert {
            Ok(_) => c.set(
                "ResolvedRefs",
                yes(),
                "ResolvedRefs",
                "listener object references resolved",
            ),
            Err(e) => c.set("ResolvedRefs", no(), "InvalidCertificateRef", e.clone()),
        }
        if p.valid() {
            c.set("Programmed", yes(), "Programmed", "listener is programmed");
        } else {
            c.set("Programmed", no(), "Invalid", "listener is not rendered");
        }
        GatewayStatusListeners {
            name: p.listener.name.clone(),
            attached_routes: i32::try_from(attached).unwrap_or(i32::MAX),
            conditions: c.finish(),
            supported_kinds: Some(vec![
                GatewayStatusListenersSupportedKinds {
                    group: Some(names::GATEWAY_GROUP.into()),
                    kind: "UDPRoute".into(),
                },
                GatewayStatusListenersSupportedKinds {
                    group: Some(crate::crd::GROUP.into()),
                    kind: "UDPRoute".into(),
                },
            ]),
        }
    }

    fn gateway_status(
        &mut self,
        gw: &Gateway,
        listeners: Vec<GatewayStatusListeners>,
        addresses: &[Option<(String, u16)>],
    ) {
        let prev = gw
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        let mut c = Conditions::new(&prev, gw.metadata.generation, &self.opts.now);
        c.set(
            "Accepted",
            yes(),
            "Accepted",
            format!(
                "gateway accepted by controller {}",
                self.opts.controller_name
            ),
        );
        if addresses.is_empty() {
            c.set("Programmed", no(), "Invalid", "no valid listeners");
        } else if addresses.iter().any(Option::is_none) {
            c.set(
                "Programmed",
                no(),
                "AddressNotAssigned",
                "no public address found for at least one listener",
            );
        } else {
            c.set(
                "Programmed",
                yes(),
                "Programmed",
                "dataplane configuration successfully rendered",
            );
        }
        let addr = addresses
            .iter()
            .rev()
            .flatten()
            .next()
            .map(|(a, _)| GatewayStatusAddresses {
                r#type: Some(
                    if a.parse::<std::net::IpAddr>().is_ok() {
                        "IPAddress"
                    } else {
                        "Hostname"
                    }
                    .into(),
                ),
                value: a.clone(),
            });
        let status = GatewayStatus {
            addresses: addr.map(|a| vec![a]),
            conditions: Some(c.finish()),
            listeners: Some(listeners),
            ..Default::default()
        };
        let v = serde_json::to_value(status).unwrap_or_default();
        self.status_patch("gateway.networking.k8s.io/v1", "Gateway", &gw.metadata, v);
    }

    fn legacy_config_map(&mut self, gwconf: &GatewayConfig, class_name: &str, data: String) {
        let ns = gwconf.metadata.namespace.clone();
        let owner = gwconf
            .metadata
            .uid
            .clone()
            .filter(|u| !u.is_empty())
            .map(|uid| {
                vec![OwnerReference {
                    api_version: format!("{}/v1", crate::crd::GROUP),
                    kind: "GatewayConfig".into(),
                    name: gwconf.metadata.name.clone().unwrap_or_default(),
                    uid,
                    ..OwnerReference::default()
                }]
            });
        self.desired.config_maps.push(ConfigMap {
            metadata: ObjectMeta {
                name: Some(names::CONFIG_MAP_NAME.into()),
                namespace: ns,
                labels: Some(BTreeMap::from([(
                    names::OWNED_BY_LABEL.into(),
                    names::OWNED_BY_VALUE.into(),
                )])),
                annotations: Some(BTreeMap::from([(
                    names::RELATED_GATEWAY_NAME.into(),
                    class_name.to_string(),
                )])),
                owner_references: owner,
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(names::CONFIG_MAP_KEY.into(), data)])),
            ..ConfigMap::default()
        });
    }

    /// A route is ours when a parentRef names a Gateway of a class we control.
    fn route_statuses(&mut self) {
        let routes = std::mem::take(&mut self.routes);
        for route in &routes {
            let keys: Vec<Option<Key>> = route
                .parent_refs
                .iter()
                .map(|pr| route::parent_key(&route.key.0, pr))
                .collect();
            if !keys.iter().flatten().any(|k| self.ours.contains(k)) {
                continue;
            }
            let prev = route.prev_status.clone().unwrap_or_default();
            let mut parents: Vec<UdpRouteStatusParents> = prev
                .parents
                .iter()
                .filter(|p| p.controller_name != self.opts.controller_name)
                .cloned()
                .collect();
            let (_, errors) = &self.clusters[&(route.key.clone(), route.v1a2)];
            for (pr, key) in route.parent_refs.iter().zip(&keys) {
                // Parents of other controllers' Gateways are theirs to report.
                if let Some(k) = key
                    && self.world.gateways.contains_key(k)
                    && !self.ours.contains(k)
                {
                    continue;
                }
                let prev_conds = own_parent_conditions(&prev, pr, &self.opts.controller_name);
                let mut c = Conditions::new(&prev_conds, route.generation, &self.opts.now);
                self.accepted(&mut c, route, key.as_ref());
                resolved_refs(&mut c, errors);
                parents.push(UdpRouteStatusParents {
                    conditions: c.finish(),
                    controller_name: self.opts.controller_name.clone(),
                    parent_ref: UdpRouteStatusParentsParentRef {
                        group: pr.group.clone(),
                        kind: pr.kind.clone(),
                        name: pr.name.clone(),
                        namespace: pr.namespace.clone(),
                        port: pr.port,
                        section_name: pr.section_name.clone(),
                    },
                });
            }
            let status = serde_json::to_value(UdpRouteStatus { parents }).unwrap_or_default();
            let (api, meta) = if route.v1a2 {
                let r = &self.world.udp_routes_v1a2[&route.key];
                ("gateway.networking.k8s.io/v1alpha2", &r.metadata)
            } else {
                let r = &self.world.udp_routes[&route.key];
                ("stunner.l7mp.io/v1", &r.metadata)
            };
            self.status_patch(api, "UDPRoute", meta, status);
        }
        self.routes = routes;
    }

    /// A route's `Accepted` condition for one parent (`key`: the Gateway it names, if any).
    fn accepted(&self, c: &mut Conditions, route: &Route, key: Option<&Key>) {
        match key {
            None => c.set(
                "Accepted",
                no(),
                "NoMatchingParent",
                "parentRef does not name a Gateway",
            ),
            Some(_) if route.masked => c.set(
                "Accepted",
                no(),
                "Pending",
                "masked by a stunner.l7mp.io/v1 UDPRoute of the same name",
            ),
            Some(k) if !self.ours.contains(k) => c.set(
                "Accepted",
                no(),
                "NoMatchingParent",
                format!("parent {}/{} does not exist", k.0, k.1),
            ),
            Some(k) if self.gateway_errors.contains_key(k) => c.set(
                "Accepted",
                no(),
                "Pending",
                format!(
                    "parent {}/{} is invalid: {}",
                    k.0, k.1, self.gateway_errors[k]
                ),
            ),
            Some(k)
                if self
                    .attached
                    .contains(&(route.key.clone(), route.v1a2, k.clone())) =>
            {
                c.set(
                    "Accepted",
                    yes(),
                    "Accepted",
                    format!("parent {}/{} accepted the route", k.0, k.1),
                )
            }
            Some(k) => c.set(
                "Accepted",
                no(),
                "NotAllowedByListeners",
                format!("no listener of parent {}/{} admits the route", k.0, k.1),
            ),
        }
    }

    /// Existing objects we own that are no longer desired: the Services and Deployments
    /// of Gateways we do not render (deleted, invalid, moved to another class, or
    /// `disable-managed-dataplane`), and upstream's old per-Gateway ConfigMaps.
    fn deletes(&mut self) {
        // Only the per-Gateway objects we create: owned-by label, named like the Gateway
        // their label names. Anything else carrying our label is left alone.
        let (world, opts) = (self.world, self.opts);
        let owned =
            |m: &ObjectMeta, k: &Key| owned_by_us(m) && per_gateway(m) && !foreign(world, opts, k);
        let svcs: BTreeSet<Key> = self
            .desired
            .services
            .iter()
            .map(|s| key(&s.metadata))
            .collect();
        let deps: BTreeSet<Key> = self
            .desired
            .deployments
            .iter()
            .map(|s| key(&s.metadata))
            .collect();
        let mut out = Vec::new();
        for (k, s) in &self.world.services {
            if owned(&s.metadata, k) && !svcs.contains(k) {
                out.push(ObjectRef::new("v1", "Service", k));
            }
        }
        for (k, d) in &self.world.deployments {
            if owned(&d.metadata, k) && !deps.contains(k) {
                out.push(ObjectRef::new("apps/v1", "Deployment", k));
            }
        }
        for (k, c) in &self.world.config_maps {
            let per_gateway = self.world.gateways.contains_key(k) && k.1 != names::CONFIG_MAP_NAME;
            let ours = owned_by_us(&c.metadata);
            if per_gateway && ours {
                out.push(ObjectRef::new("v1", "ConfigMap", k));
            }
        }
        out.sort();
        self.desired.deletes = out;
    }
}

/// The conditions we reported last for parent `pr` (none if we never did).
fn own_parent_conditions(
    prev: &UdpRouteStatus,
    pr: &UdpRouteParentRefs,
    controller: &str,
) -> Vec<Condition> {
    prev.parents
        .iter()
        .find(|p| {
            let r = &p.parent_ref;
            p.controller_name == controller
                && (
                    &r.group,
                    &r.kind,
                    &r.name,
                    &r.namespace,
                    &r.section_name,
                    &r.port,
                ) == (
                    &pr.group,
                    &pr.kind,
                    &pr.name,
                    &pr.namespace,
                    &pr.section_name,
                    &pr.port,
                )
        })
        .map(|p| p.conditions.clone())
        .unwrap_or_default()
}

/// A route's `ResolvedRefs` condition: true, or false with every backend error.
fn resolved_refs(c: &mut Conditions, errors: &[BackendError]) {
    match errors.first() {
        None => c.set(
            "ResolvedRefs",
            yes(),
            "ResolvedRefs",
            "all backend references resolved",
        ),
        Some(e) => {
            let all: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
            c.set("ResolvedRefs", no(), e.reason, all.join("; "));
        }
    }
}
