//! Routes: both UDPRoute kinds in one form, attachment to Gateway listeners
//! (`allowedRoutes`, `sectionName`), and the cluster each route renders to.

use std::collections::{BTreeMap, BTreeSet};

use gateway_api::apis::experimental::udproutes::{UdpRouteParentRefs, UdpRouteStatus};
use gateway_api::apis::standard::gateways::{
    Gateway, GatewayListeners, GatewayListenersAllowedRoutesNamespacesFrom as From,
};
use stunner_config::{ClusterConfig, ClusterProtocol, ClusterType};

use crate::crd::{BackendRef, UDPRouteRule};
use crate::names;
use crate::options::RenderOptions;
use crate::world::{Key, World};

/// A route of either kind, in STUNner's form.
pub(crate) struct Route {
    pub key: Key,
    /// A Gateway API `v1alpha2` route (else `stunner.l7mp.io/v1`).
    pub v1a2: bool,
    /// A Gateway API route hidden by a STUNner route of the same name.
    pub masked: bool,
    pub parent_refs: Vec<UdpRouteParentRefs>,
    pub rules: Vec<UDPRouteRule>,
    pub generation: Option<i64>,
    pub prev_status: Option<UdpRouteStatus>,
}

impl Route {
    /// `ns/name`, the cluster name.
    pub(crate) fn name(&self) -> String {
        format!("{}/{}", self.key.0, self.key.1)
    }
}

/// Every route, STUNner routes first, each kind in key order.
pub(crate) fn collect(world: &World) -> Vec<Route> {
    let mut out = Vec::new();
    for (k, r) in &world.udp_routes {
        out.push(Route {
            key: k.clone(),
            v1a2: false,
            masked: false,
            parent_refs: r.spec.parent_refs.clone().unwrap_or_default(),
            rules: r.spec.rules.clone(),
            generation: r.metadata.generation,
            prev_status: r.status.clone(),
        });
    }
    for (k, r) in &world.udp_routes_v1a2 {
        // The port of a Gateway API backend is dropped: STUNner routes allow all ports.
        let rules = r
            .spec
            .rules
            .iter()
            .map(|rule| UDPRouteRule {
                backend_refs: rule
                    .backend_refs
                    .iter()
                    .map(|b| BackendRef {
                        group: b.group.clone(),
                        kind: b.kind.clone(),
                        name: b.name.clone(),
                        namespace: b.namespace.clone(),
                        port: None,
                        end_port: None,
                    })
                    .collect(),
            })
            .collect();
        out.push(Route {
            key: k.clone(),
            v1a2: true,
            masked: world.udp_routes.contains_key(k),
            parent_refs: r.spec.parent_refs.clone().unwrap_or_default(),
            rules,
            generation: r.metadata.generation,
            prev_status: r.status.clone(),
        });
    }
    out
}

/// The Gateway a parentRef names, or `None` if it does not name a Gateway.
pub(crate) fn parent_key(route_ns: &str, pr: &UdpRouteParentRefs) -> Option<Key> {
    let group_ok = pr
        .group
        .as_deref()
        .is_none_or(|g| g == names::GATEWAY_GROUP);
    let kind_ok = pr.kind.as_deref().is_none_or(|k| k == "Gateway");
    (group_ok && kind_ok).then(|| {
        (
            pr.namespace.clone().unwrap_or_else(|| route_ns.to_string()),
            pr.name.clone(),
        )
    })
}

/// Whether `listener` of `gw` admits a route in `route_ns` through `pr` (`sectionName`,
/// `allowedRoutes.namespaces`, and `allowedRoutes.kinds`, which upstream ignores).
pub(crate) fn listener_admits(
    world: &World,
    gw: &Gateway,
    listener: &GatewayListeners,
    route_ns: &str,
    pr: &UdpRouteParentRefs,
) -> bool {
    if pr
        .section_name
        .as_deref()
        .is_some_and(|s| s != listener.name)
    {
        return false;
    }
    let gw_ns = gw.metadata.namespace.as_deref().unwrap_or_default();
    let allowed = listener.allowed_routes.as_ref();
    if let Some(kinds) = allowed.and_then(|a| a.kinds.as_ref()) {
        let udp = kinds.iter().any(|k| {
            k.kind == "UDPRoute"
                && k.group
                    .as_deref()
                    .is_none_or(|g| g == names::GATEWAY_GROUP || g == crate::crd::GROUP)
        });
        if !kinds.is_empty() && !udp {
            return false;
        }
    }
    let ns = allowed.and_then(|a| a.namespaces.as_ref());
    match ns.and_then(|n| n.from.as_ref()) {
        Some(From::All) => true,
        Some(From::Selector) => {
            let Some(sel) = ns.and_then(|n| n.selector.as_ref()) else {
                return false;
            };
            let labels = world
                .namespaces
                .get(&(String::new(), route_ns.to_string()))
                .and_then(|n| n.metadata.labels.clone())
                .unwrap_or_default();
            let exprs = sel.match_expressions.iter().flatten().map(|e| {
                (
                    e.key.as_str(),
                    e.operator.as_str(),
                    e.values.clone().unwrap_or_default(),
                )
            });
            selector_matches(sel.match_labels.as_ref(), exprs, &labels)
        }
        Some(From::Same) | None => route_ns == gw_ns,
    }
}

/// Evaluates a label selector; an empty selector matches everything, an unknown
/// operator nothing.
fn selector_matches<'a>(
    match_labels: Option<&BTreeMap<String, String>>,
    exprs: impl Iterator<Item = (&'a str, &'a str, Vec<String>)>,
    labels: &BTreeMap<String, String>,
) -> bool {
    let labels_ok = match_labels
        .into_iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let mut exprs_ok = true;
    for (key, op, values) in exprs {
        let v = labels.get(key);
        exprs_ok &= match op {
            "In" => v.is_some_and(|v| values.contains(v)),
            "NotIn" => v.is_none_or(|v| !values.contains(v)),
            "Exists" => v.is_some(),
            "DoesNotExist" => v.is_none(),
            _ => false,
        };
    }
    labels_ok && exprs_ok
}

/// A backend problem, reported in the route's `ResolvedRefs` condition.
pub(crate) struct BackendError {
    pub reason: &'static str,
    pub message: String,
}

/// Renders a route's cluster from the backends of **all** its rules (upstream honours
/// only the first rule). Problems with single backends are returned beside the cluster.
pub(crate) fn render_cluster(
    world: &World,
    opts: &RenderOptions,
    route: &Route,
) -> (ClusterConfig, Vec<BackendError>) {
    let mut errors = Vec::new();
    let mut cluster_type: Option<ClusterType> = None;
    // TCP only when every backend is a Service whose ports are all TCP (below).
    let mut all_tcp = !route.rules.iter().all(|r| r.backend_refs.is_empty());
    let mut endpoints = BTreeSet::new();
    let route_ns = &route.key.0;
    if route.rules.is_empty() {
        errors.push(BackendError {
            reason: "BackendNotFound",
            message: "no rules found in route".into(),
        });
    }
    for b in route.rules.iter().flat_map(|r| &r.backend_refs) {
        let ns = b.namespace.clone().unwrap_or_else(|| route_ns.clone());
        let group = b.group.as_deref().unwrap_or("");
        let kind = b.kind.as_deref().unwrap_or("Service");
        all_tcp &= group.is_empty() && kind == "Service" && service_is_tcp(world, &ns, &b.name);
        if !group.is_empty() && group != crate::crd::GROUP {
            errors.push(BackendError {
                reason: "InvalidKind",
                message: format!(
                    "invalid backend group {group:?} for backend {ns}/{}",
                    b.name
                ),
            });
            continue;
        }
        let (ty, eps) = match kind {
            "Service" => match service_endpoints(world, opts, &ns, &b.name) {
                Ok(x) => x,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            },
            "StaticService" => match world.static_services.get(&(ns.clone(), b.name.clone())) {
                Some(s) => (ClusterType::Static, s.spec.prefixes.clone()),
                None => {
                    errors.push(BackendError {
                        reason: "BackendNotFound",
                        message: format!("StaticService {ns}/{} not found", b.name),
                    });
                    continue;
                }
            },
            other => {
                errors.push(BackendError {
                    reason: "InvalidKind",
                    message: format!("invalid backend kind {other:?} for backend {ns}/{}", b.name),
                });
                continue;
            }
        };
        match cluster_type {
            Some(t) if t != ty => {
                errors.push(BackendError {
                    reason: "BackendNotFound",
                    message: format!(
                        "inconsistent cluster type: backend {ns}/{} is {ty} but the cluster is {t}",
                        b.name
                    ),
                });
                continue;
            }
            _ => cluster_type = Some(ty),
        }
        let range = port_range(b);
        if let Err(m) = &range {
            errors.push(BackendError {
                reason: "BackendNotFound",
                message: m.clone(),
            });
            continue;
        }
        for ep in eps {
            match (&range, ty) {
                (Ok(Some((lo, hi))), ClusterType::Static) => {
                    endpoints.insert(format!("{ep}:<{lo}-{hi}>"))
                }
                _ => endpoints.insert(ep),
            };
        }
    }
    let cluster = ClusterConfig {
        name: route.name(),
        cluster_type: cluster_type.unwrap_or(ClusterType::Static),
        protocol: if all_tcp {
            ClusterProtocol::Tcp
        } else {
            ClusterProtocol::Udp
        },
        endpoints: endpoints.into_iter().collect(),
    };
    (cluster, errors)
}

/// A Service whose ports are all TCP (Kubernetes' default protocol) is a TCP backend:
/// its cluster admits the peers of TCP allocations (RFC 6062) as well as UDP ones. A
/// Service with no ports, or with any UDP or SCTP port, stays a UDP backend, so a
/// media server exposing UDP beside TCP signalling is not opened to TCP relays.
fn service_is_tcp(world: &World, ns: &str, name: &str) -> bool {
    let ports = world
        .services
        .get(&(ns.to_string(), name.to_string()))
        .and_then(|s| s.spec.as_ref())
        .and_then(|s| s.ports.as_deref())
        .unwrap_or_default();
    !ports.is_empty()
        && ports
            .iter()
            .all(|p| p.protocol.as_deref().unwrap_or("TCP") == "TCP")
}

/// `[port, endPort]` when the backend narrows the range; `endPort` needs `port`.
fn port_range(b: &BackendRef) -> Result<Option<(i32, i32)>, String> {
    match (b.port, b.end_port) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(format!("backend {}: endPort without port", b.name)),
        (Some(p), e) => {
            let e = e.unwrap_or(p);
            if !(1..=65535).contains(&p) || !(1..=65535).contains(&e) || e < p {
                return Err(format!("backend {}: invalid port range {p}-{e}", b.name));
            }
            Ok((p, e) != (1, 65535)).map(|narrow| narrow.then_some((p, e)))
        }
    }
}

/// The endpoints of a Service: with endpoint discovery, every address of its
/// EndpointSlices (terminating ones too, so sessions survive a backend's graceful
/// shutdown) and of its `v1.Endpoints` (not-ready ones too; the operator watches these
/// only when EndpointSlices are off or not served), plus its ClusterIPs; without
/// discovery, its cluster DNS name (STRICT_DNS).
fn service_endpoints(
    world: &World,
    opts: &RenderOptions,
    ns: &str,
    name: &str,
) -> Result<(ClusterType, Vec<String>), BackendError> {
    if !opts.endpoint_discovery {
        return Ok((
            ClusterType::StrictDns,
            vec![format!("{name}.{ns}.svc.cluster.local")],
        ));
    }
    let svc = world
        .services
        .get(&(ns.to_string(), name.to_string()))
        .ok_or_else(|| BackendError {
            reason: "BackendNotFound",
            message: format!("Service {ns}/{name} not found"),
        })?;
    let mut eps = Vec::new();
    for ((slice_ns, _), slice) in world
        .endpoint_slices
        .range((ns.to_string(), String::new())..)
    {
        if slice_ns != ns {
            break;
        }
        let owner = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(crate::names::SERVICE_NAME_LABEL));
        if owner.map(String::as_str) != Some(name) {
            continue;
        }
        for ep in slice.endpoints.iter().flatten() {
            eps.extend(ep.addresses.iter().cloned());
        }
    }
    if let Some(e) = world.endpoints.get(&(ns.to_string(), name.to_string())) {
        for subset in e.subsets.iter().flatten() {
            let ready = subset.addresses.iter().flatten();
            let not_ready = subset.not_ready_addresses.iter().flatten();
            eps.extend(ready.chain(not_ready).map(|a| a.ip.clone()));
        }
    }
    let spec = svc.spec.as_ref();
    let mut ips: Vec<String> = spec.and_then(|s| s.cluster_ips.clone()).unwrap_or_default();
    if let Some(ip) = spec.and_then(|s| s.cluster_ip.clone())
        && !ips.contains(&ip)
    {
        ips.push(ip);
    }
    eps.extend(ips.into_iter().filter(|ip| !ip.is_empty() && ip != "None"));
    // Both sources may name the same address (a manifest set with both kinds).
    let mut seen = std::collections::BTreeSet::new();
    eps.retain(|ip| seen.insert(ip.clone()));
    Ok((ClusterType::Static, eps))
}
