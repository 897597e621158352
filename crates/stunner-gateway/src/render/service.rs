//! The LoadBalancer Service of a Gateway and public address discovery (§2.4, §3.2, §3.3
//! of the control-plane inventory).

use std::collections::BTreeMap;

use gateway_api::apis::standard::gateways::Gateway;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::listener::{ListenerPlan, port_map};
use crate::names;
use crate::options::DataplaneMode;
use crate::world::World;

/// Whether a boolean-style annotation is set (case-insensitive `true`).
pub(crate) fn flag(annotations: &BTreeMap<String, String>, key: &str) -> bool {
    annotations
        .get(key)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// The owner reference to a Gateway (not a controller reference, as upstream); none
/// when the Gateway has no uid yet (offline rendering), since the API rejects an empty one.
pub(crate) fn gateway_owner(gw: &Gateway) -> Option<Vec<OwnerReference>> {
    let uid = gw.metadata.uid.clone().filter(|u| !u.is_empty())?;
    Some(vec![OwnerReference {
        api_version: format!("{}/v1", names::GATEWAY_GROUP),
        kind: "Gateway".into(),
        name: gw.metadata.name.clone().unwrap_or_default(),
        uid,
        ..OwnerReference::default()
    }])
}

/// The mandatory labels of objects we create for a Gateway.
pub(crate) fn owned_labels(gw: &Gateway) -> BTreeMap<String, String> {
    BTreeMap::from([
        (names::OWNED_BY_LABEL.into(), names::OWNED_BY_VALUE.into()),
        (
            names::RELATED_GATEWAY_NAME.into(),
            gw.metadata.name.clone().unwrap_or_default(),
        ),
        (
            names::RELATED_GATEWAY_NAMESPACE.into(),
            gw.metadata.namespace.clone().unwrap_or_default(),
        ),
    ])
}

/// `ns/name` of a Gateway.
pub(crate) fn gateway_id(gw: &Gateway) -> String {
    format!(
        "{}/{}",
        gw.metadata.namespace.as_deref().unwrap_or_default(),
        gw.metadata.name.as_deref().unwrap_or_default()
    )
}

/// The Service type named by the annotation; anything unknown is LoadBalancer.
fn service_type(annotations: &BTreeMap<String, String>) -> &'static str {
    match annotations.get(names::SERVICE_TYPE).map(String::as_str) {
        Some("ClusterIP") => "ClusterIP",
        Some("NodePort") => "NodePort",
        Some("ExternalName") => "ExternalName",
        _ => "LoadBalancer",
    }
}

/// The health-check port to expose, from provider annotations such as
/// `service.beta.kubernetes.io/do-loadbalancer-healthcheck-port` + `…-protocol`.
fn health_check_port(annotations: &BTreeMap<String, String>) -> Option<i32> {
    let is = |k: &str, suffix: &str| {
        k.strip_prefix("service.beta.kubernetes.io/")
            .is_some_and(|rest| rest.contains("health") && rest.ends_with(suffix))
    };
    let port = annotations
        .iter()
        .find(|(k, _)| is(k, "port"))?
        .1
        .parse::<i32>()
        .ok()?;
    let proto = annotations
        .iter()
        .find(|(k, _)| is(k, "protocol"))?
        .1
        .to_ascii_lowercase();
    (matches!(proto.as_str(), "tcp" | "http") && (1..=65535).contains(&port)).then_some(port)
}

/// The LB annotations of a Gateway: the GatewayConfig's, then the Gateway's own.
pub(crate) fn merged_annotations(
    gw: &Gateway,
    lb: Option<&BTreeMap<String, String>>,
) -> BTreeMap<String, String> {
    let mut a = lb.cloned().unwrap_or_default();
    a.extend(gw.metadata.annotations.clone().unwrap_or_default());
    a
}

/// The Service exposing a Gateway's valid listeners; `None` when it has none.
pub(crate) fn render(
    gw: &Gateway,
    plans: &[ListenerPlan<'_>],
    annotations: &BTreeMap<String, String>,
    mode: DataplaneMode,
) -> Option<Service> {
    let valid: Vec<&ListenerPlan<'_>> = plans.iter().filter(|p| p.valid()).collect();
    let first = valid.first()?;
    let mixed = flag(annotations, names::MIXED_PROTOCOL);
    let node_ports = port_map(annotations, names::NODEPORT);
    let target_ports = port_map(annotations, names::TARGETPORT);
    let mut ports: Vec<ServicePort> = valid
        .iter()
        .filter(|p| mixed || p.transport() == first.transport())
        .map(|p| ServicePort {
            name: Some(p.listener.name.clone()),
            protocol: Some(p.transport().into()),
            port: p.listener.port,
            target_port: target_ports
                .get(&p.listener.name)
                .map(|t| IntOrString::Int(*t)),
            node_port: node_ports.get(&p.listener.name).copied(),
            ..ServicePort::default()
        })
        .collect();
    let svc_type = service_type(annotations);
    if svc_type == "LoadBalancer"
        && !flag(annotations, names::DISABLE_HEALTH_CHECK_EXPOSE)
        && let Some(port) = health_check_port(annotations)
    {
        ports.push(ServicePort {
            name: Some("gateway-health-check".into()),
            protocol: Some("TCP".into()),
            port,
            ..ServicePort::default()
        });
    }
    let mut selector =
        BTreeMap::from([(names::APP_LABEL.to_string(), names::APP_VALUE.to_string())]);
    if mode == DataplaneMode::Managed {
        let labels = owned_labels(gw);
        for k in [
            names::RELATED_GATEWAY_NAME,
            names::RELATED_GATEWAY_NAMESPACE,
        ] {
            selector.insert(k.to_string(), labels[k].clone());
        }
    }
    let mut svc_annotations = annotations.clone();
    svc_annotations.insert(names::RELATED_GATEWAY_NAME.into(), gateway_id(gw));
    let local = annotations
        .get(names::EXTERNAL_TRAFFIC_POLICY)
        .is_some_and(|v| v.eq_ignore_ascii_case("local"))
        && matches!(svc_type, "LoadBalancer" | "NodePort");
    let lb_ip = gw
        .spec
        .addresses
        .iter()
        .flatten()
        .next()
        .filter(|a| a.r#type.as_deref().is_none_or(|t| t == "IPAddress"))
        .and_then(|a| a.value.clone());
    Some(Service {
        metadata: ObjectMeta {
            name: gw.metadata.name.clone(),
            namespace: gw.metadata.namespace.clone(),
            labels: Some(owned_labels(gw)),
            annotations: Some(svc_annotations),
            owner_references: gateway_owner(gw),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            type_: Some(svc_type.into()),
            selector: Some(selector),
            ports: Some(ports),
            session_affinity: Some(if flag(annotations, names::DISABLE_SESSION_AFFINITY) {
                "None".into()
            } else {
                "ClientIP".into()
            }),
            external_traffic_policy: local.then(|| "Local".into()),
            load_balancer_ip: if svc_type == "LoadBalancer" {
                lb_ip
            } else {
                None
            },
            ..ServiceSpec::default()
        }),
        status: None,
    })
}

/// The live Service that publishes a Gateway: ours (annotation + owner reference),
/// preferring LoadBalancer > ExternalName > NodePort > ClusterIP.
fn live_service<'w>(world: &'w World, gw: &Gateway) -> Option<&'w Service> {
    let ns = gw.metadata.namespace.clone().unwrap_or_default();
    let id = gateway_id(gw);
    let name = gw.metadata.name.as_deref().unwrap_or_default();
    let rank = |s: &Service| match s.spec.as_ref().and_then(|s| s.type_.as_deref()) {
        Some("LoadBalancer") => 0,
        Some("ExternalName") => 1,
        Some("NodePort") => 2,
        _ => 3,
    };
    world
        .services
        .range((ns.clone(), String::new())..)
        .take_while(|((n, _), _)| *n == ns)
        .map(|(_, s)| &**s)
        .filter(|s| {
            s.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(names::RELATED_GATEWAY_NAME))
                == Some(&id)
                && s.metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|o| o.kind == "Gateway" && o.name == name)
        })
        .min_by_key(|s| rank(s))
}

/// The first Node address usable from outside: ExternalIP, else ExternalDNS.
fn node_address(world: &World) -> Option<String> {
    world.nodes.values().find_map(|n| {
        let addrs = n.status.as_ref()?.addresses.as_ref()?;
        addrs
            .iter()
            .find(|a| a.type_ == "ExternalIP")
            .or_else(|| addrs.iter().find(|a| a.type_ == "ExternalDNS"))
            .map(|a| a.address.clone())
    })
}

/// The public address and port of a listener: `spec.addresses[0]`, then the live LB
/// Service's ingress (per-port status first), then a Node's external address with the
/// NodePort. Unlike upstream, `spec.addresses` works without a Service (standalone).
pub(crate) fn public_address(
    world: &World,
    gw: &Gateway,
    p: &ListenerPlan<'_>,
) -> Option<(String, u16)> {
    let svc = live_service(world, gw);
    let transport = p.transport();
    let sp = svc.and_then(|s| {
        s.spec.as_ref()?.ports.as_ref()?.iter().find(|sp| {
            sp.port == p.listener.port && sp.protocol.as_deref().unwrap_or("TCP") == transport
        })
    });
    let port = |n: i32| u16::try_from(n).ok();
    if let Some(addr) = gw
        .spec
        .addresses
        .iter()
        .flatten()
        .next()
        .and_then(|a| a.value.clone())
    {
        return Some((addr, port(sp.map_or(p.listener.port, |sp| sp.port))?));
    }
    let sp = sp?;
    let ingress = svc
        .and_then(|s| s.status.as_ref())
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref());
    for ing in ingress.iter().copied().flatten() {
        let hit = ing
            .ports
            .iter()
            .flatten()
            .any(|ps| ps.port == sp.port && ps.protocol == transport);
        if hit && let Some(a) = ing.ip.clone().or_else(|| ing.hostname.clone()) {
            return Some((a, port(sp.port)?));
        }
    }
    if let Some(ing) = ingress.and_then(|i| i.first())
        && let Some(a) = ing.ip.clone().or_else(|| ing.hostname.clone())
    {
        return Some((a, port(sp.port)?));
    }
    let node_port = sp.node_port?;
    Some((node_address(world)?, port(node_port)?))
}
