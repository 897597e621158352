//! What the operator leaves behind on shutdown with `--enable-finalizer`.

use gateway_api::apis::standard::gatewayclasses::GatewayClassStatus;
use gateway_api::apis::standard::gateways::GatewayStatus;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::status::{Conditions, no};
use super::{foreign, owned_by_us, per_gateway};
use crate::desired::{Desired, ObjectRef, StatusPatch};
use crate::options::RenderOptions;
use crate::world::World;

/// The state to leave behind when the operator stops with `--enable-finalizer`: our
/// GatewayClasses and Gateways say the operator is gone, and the per-Gateway Services,
/// Deployments and legacy ConfigMaps we created are deleted (upstream's finalizer).
pub fn finalize(world: &World, opts: &RenderOptions) -> Desired {
    const MSG: &str = "operator unavailable after graceful shutdown";
    let mut d = Desired::default();
    let mut push = |api: &str, kind: &str, meta: &ObjectMeta, status: serde_json::Value| {
        d.statuses.push(StatusPatch::new(api, kind, meta, status));
    };
    for class in world
        .gateway_classes
        .values()
        .filter(|c| c.spec.controller_name == opts.controller_name)
    {
        let class_name = class.metadata.name.clone().unwrap_or_default();
        let prev = class
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        let mut c = Conditions::new(&prev, class.metadata.generation, &opts.now);
        c.set("Accepted", no(), "Pending", MSG);
        let status = GatewayClassStatus {
            conditions: Some(c.finish()),
            ..Default::default()
        };
        push(
            "gateway.networking.k8s.io/v1",
            "GatewayClass",
            &class.metadata,
            serde_json::to_value(status).unwrap_or_default(),
        );
        for gw in world
            .gateways
            .values()
            .filter(|g| g.spec.gateway_class_name == class_name)
        {
            let prev = gw
                .status
                .as_ref()
                .and_then(|s| s.conditions.clone())
                .unwrap_or_default();
            let mut c = Conditions::new(&prev, gw.metadata.generation, &opts.now);
            c.set("Accepted", no(), "Pending", MSG);
            c.set("Programmed", no(), "Pending", MSG);
            let status = GatewayStatus {
                conditions: Some(c.finish()),
                ..Default::default()
            };
            push(
                "gateway.networking.k8s.io/v1",
                "Gateway",
                &gw.metadata,
                serde_json::to_value(status).unwrap_or_default(),
            );
        }
    }
    for (k, s) in &world.services {
        if owned_by_us(&s.metadata) && per_gateway(&s.metadata) && !foreign(world, opts, k) {
            d.deletes.push(ObjectRef::new("v1", "Service", k));
        }
    }
    for (k, s) in &world.deployments {
        if owned_by_us(&s.metadata) && !foreign(world, opts, k) {
            d.deletes.push(ObjectRef::new("apps/v1", "Deployment", k));
        }
    }
    for (k, s) in &world.config_maps {
        if owned_by_us(&s.metadata) && !foreign(world, opts, k) {
            d.deletes.push(ObjectRef::new("v1", "ConfigMap", k));
        }
    }
    d.statuses.sort_by(|a, b| a.target.cmp(&b.target));
    d.deletes.sort();
    d
}
