//! The stunnerd Deployment of a Gateway (managed mode), from its Dataplane.

use std::collections::BTreeMap;

use gateway_api::apis::standard::gateways::Gateway;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction,
    ObjectFieldSelector, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SecurityContext,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::service::{gateway_id, gateway_owner, owned_labels};
use crate::crd::Dataplane;
use crate::names;
use crate::options::RenderOptions;

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

fn env_field(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                api_version: None,
            }),
            ..EnvVarSource::default()
        }),
    }
}

fn probe(path: &str) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::Int(8086),
            scheme: Some("HTTP".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(15),
        failure_threshold: Some(3),
        success_threshold: Some(1),
        timeout_seconds: Some(1),
        ..Probe::default()
    }
}

/// The Deployment for `gw` from Dataplane `dp`.
pub(crate) fn render(gw: &Gateway, dp: &Dataplane, opts: &RenderOptions) -> Deployment {
    let spec = &dp.spec;
    let gw_name = gw.metadata.name.clone().unwrap_or_default();
    let gw_ns = gw.metadata.namespace.clone().unwrap_or_default();
    let (labels, annotations) = object_metadata(gw, opts);
    let selector = selector(&gw_name, &gw_ns);
    Deployment {
        metadata: ObjectMeta {
            name: Some(gw_name),
            namespace: Some(gw_ns),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: gateway_owner(gw),
            ..ObjectMeta::default()
        },
        spec: Some(DeploymentSpec {
            // Left unset (not owned) unless the Dataplane asks for a count other than 1,
            // so a HorizontalPodAutoscaler keeps control.
            replicas: spec.replicas.filter(|r| *r != 1),
            selector,
            template: PodTemplateSpec {
                metadata: Some(pod_metadata(gw, dp)),
                spec: Some(PodSpec {
                    containers: vec![container(gw, dp, opts)],
                    termination_grace_period_seconds: Some(
                        spec.termination_grace_period_seconds.unwrap_or(3600),
                    ),
                    host_network: spec.host_network.filter(|h| *h),
                    affinity: spec.affinity.clone(),
                    tolerations: spec.tolerations.clone(),
                    security_context: spec.security_context.clone(),
                    image_pull_secrets: spec.image_pull_secrets.clone(),
                    topology_spread_constraints: spec.topology_spread_constraints.clone(),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

/// The Deployment's labels and annotations: the Gateway's (labels minus those pruning
/// tools select on), then the mandatory ones.
fn object_metadata(
    gw: &Gateway,
    opts: &RenderOptions,
) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let mandatory = owned_labels(gw);
    let mut labels: BTreeMap<String, String> = gw
        .metadata
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| !opts.label_filter.contains(k))
        .collect();
    labels.extend(mandatory.clone());
    let mut annotations = gw.metadata.annotations.clone().unwrap_or_default();
    annotations.insert(names::RELATED_GATEWAY_NAME.into(), gateway_id(gw));

    (labels, annotations)
}

/// The pod template's labels (the Dataplane's and the selector's) and annotations.
fn pod_metadata(gw: &Gateway, dp: &Dataplane) -> ObjectMeta {
    let spec = &dp.spec;
    let gw_name = gw.metadata.name.clone().unwrap_or_default();
    let gw_ns = gw.metadata.namespace.clone().unwrap_or_default();
    let mut pod_labels = spec.labels.clone().unwrap_or_default();
    pod_labels.insert(names::APP_LABEL.into(), names::APP_VALUE.into());
    pod_labels.insert(names::RELATED_GATEWAY_NAME.into(), gw_name.clone());
    pod_labels.insert(names::RELATED_GATEWAY_NAMESPACE.into(), gw_ns.clone());
    let mut pod_annotations = spec.annotations.clone().unwrap_or_default();
    pod_annotations.insert(names::RELATED_GATEWAY_NAME.into(), gateway_id(gw));

    ObjectMeta {
        labels: Some(pod_labels),
        annotations: Some(pod_annotations),
        ..ObjectMeta::default()
    }
}

/// The stunnerd container: the Dataplane's image, command, args, env and resources, the
/// CDS origin, and probes unless the health check is off.
fn container(gw: &Gateway, dp: &Dataplane, opts: &RenderOptions) -> Container {
    let spec = &dp.spec;
    let gw_name = gw.metadata.name.clone().unwrap_or_default();
    let gw_ns = gw.metadata.namespace.clone().unwrap_or_default();
    let mut envs = vec![
        env_field("STUNNER_ADDR", "status.podIP"),
        // Both addresses of a dual-stack pod: relays of the other family (ours; upstream
        // renders only STUNNER_ADDR and relays in one family).
        env_field("STUNNER_POD_IPS", "status.podIPs"),
        env("STUNNER_NAME", &gw_name),
        env("STUNNER_NAMESPACE", &gw_ns),
        env_field("STUNNER_NODENAME", "spec.nodeName"),
        env("STUNNER_CONFIG_ORIGIN", &opts.cds_origin()),
    ];
    if let Some(ca) = &opts.cds_ca {
        envs.push(env("STUNNER_CDS_CA", ca));
    }
    envs.extend(spec.env.clone().unwrap_or_default());

    let health = spec.disable_health_check != Some(true);
    let resources = spec
        .resources
        .clone()
        .unwrap_or_else(|| ResourceRequirements {
            limits: Some(BTreeMap::from([("memory".into(), Quantity("20M".into()))])),
            requests: Some(BTreeMap::from([("cpu".into(), Quantity("250m".into()))])),
            ..ResourceRequirements::default()
        });
    Container {
        name: names::CONTAINER_NAME.into(),
        image: Some(
            spec.image
                .clone()
                .unwrap_or_else(|| names::DEFAULT_IMAGE.into()),
        ),
        image_pull_policy: Some(
            spec.image_pull_policy
                .clone()
                .unwrap_or_else(|| "Always".into()),
        ),
        command: Some(
            spec.command
                .clone()
                .unwrap_or_else(|| vec!["stunnerd".into()]),
        ),
        args: Some(
            spec.args
                .clone()
                .unwrap_or_else(|| vec!["-w".into(), "--udp-thread-num=16".into()]),
        ),
        env: Some(envs),
        env_from: spec.env_from.clone(),
        ports: Some(vec![ContainerPort {
            name: Some("metrics-port".into()),
            container_port: 8080,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        liveness_probe: health.then(|| probe("/live")),
        readiness_probe: health.then(|| probe("/ready")),
        resources: Some(resources),
        security_context: offload_security_context(spec),
        ..Container::default()
    }
}

/// The Dataplane's container security context, with what kernel offload needs when an
/// `offloadEngine` other than `None` is set: CAP_BPF to load the eBPF program,
/// CAP_PERFMON for the verifier to admit its packet pointer arithmetic (without it the
/// kernel refuses "pointer arithmetic … prohibited for !root"), and CAP_NET_ADMIN to
/// attach it to the pod's interfaces (docs/OFFLOAD.md). Nothing else is added;
/// capabilities the Dataplane already adds are kept.
fn offload_security_context(spec: &crate::crd::DataplaneSpec) -> Option<SecurityContext> {
    let wants = spec
        .offload_engine
        .as_deref()
        .is_some_and(|e| !e.eq_ignore_ascii_case("none"));
    let mut sc = spec.container_security_context.clone();
    if !wants {
        return sc;
    }
    let ctx = sc.get_or_insert_with(SecurityContext::default);
    let caps = ctx.capabilities.get_or_insert_with(Capabilities::default);
    let add = caps.add.get_or_insert_with(Vec::new);
    for c in ["BPF", "PERFMON", "NET_ADMIN"] {
        if !add.iter().any(|a| a.eq_ignore_ascii_case(c)) {
            add.push(c.into());
        }
    }
    sc
}

/// The selector of a Gateway's pods (upstream's `matchExpressions` form).
fn selector(gw_name: &str, gw_ns: &str) -> LabelSelector {
    LabelSelector {
        match_expressions: Some(
            [
                (names::APP_LABEL, names::APP_VALUE.to_string()),
                (names::RELATED_GATEWAY_NAME, gw_name.to_string()),
                (names::RELATED_GATEWAY_NAMESPACE, gw_ns.to_string()),
            ]
            .into_iter()
            .map(|(k, v)| LabelSelectorRequirement {
                key: k.into(),
                operator: "In".into(),
                values: Some(vec![v]),
            })
            .collect(),
        ),
        match_labels: None,
    }
}
