//! The `stunner.l7mp.io` custom resources: GatewayConfig, Dataplane (cluster-scoped),
//! StaticService and STUNner's own UDPRoute, in the storage version v1, plus the older
//! v1alpha1 versions still served (no conversion webhook, as upstream: `strategy: None`).
//!
//! The CRD manifests under `deploy/crds/` are generated from these types
//! (`stunner-gateway-operator crds`); a test checks the checked-in YAML matches.

mod dataplane;
mod gateway_config;
mod static_service;
mod udp_route;
pub mod v1alpha1;

pub use dataplane::{Dataplane, DataplaneSpec};
pub use gateway_config::{GatewayConfig, GatewayConfigSpec};
pub use static_service::{StaticService, StaticServiceSpec};
pub use udp_route::{BackendRef, UDPRoute, UDPRouteRule, UDPRouteSpec};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// The API group of the STUNner CRDs.
pub const GROUP: &str = "stunner.l7mp.io";

/// Every STUNner CRD, each with all served versions (v1 stored), in a stable order.
pub fn all_crds() -> Result<Vec<CustomResourceDefinition>, crate::Error> {
    let merge = |crds: Vec<CustomResourceDefinition>| {
        kube::core::crd::merge_crds(crds, "v1").map_err(|e| crate::Error::Crd(e.to_string()))
    };
    Ok(vec![
        merge(vec![Dataplane::crd(), v1alpha1::Dataplane::crd()])?,
        merge(vec![GatewayConfig::crd(), v1alpha1::GatewayConfig::crd()])?,
        merge(vec![StaticService::crd(), v1alpha1::StaticService::crd()])?,
        UDPRoute::crd(),
    ])
}

/// The Gateway API version the `gateway-api` crate's types follow.
pub const GATEWAY_API_VERSION: &str = "v1.5.1";

/// The Gateway API CRDs the operator needs (GatewayClass and Gateway `v1`, UDPRoute
/// `v1alpha2` from the experimental channel), generated from the `gateway-api` crate's
/// types. For clusters without Gateway API; the official release manifests carry more
/// validation and are preferable where available.
pub fn gateway_api_crds() -> Vec<CustomResourceDefinition> {
    use gateway_api::apis::experimental::udproutes::UdpRoute;
    use gateway_api::apis::standard::gatewayclasses::GatewayClass;
    use gateway_api::apis::standard::gateways::Gateway;
    let mut out = vec![GatewayClass::crd(), Gateway::crd(), UdpRoute::crd()];
    for (crd, channel) in out.iter_mut().zip(["standard", "standard", "experimental"]) {
        let a = crd
            .metadata
            .annotations
            .get_or_insert_with(Default::default);
        a.insert(
            "gateway.networking.k8s.io/bundle-version".into(),
            GATEWAY_API_VERSION.into(),
        );
        a.insert("gateway.networking.k8s.io/channel".into(), channel.into());
        // The API server refuses CRDs in a *.k8s.io group without this annotation
        // (KEP 1111); the official Gateway API bundle points it at its approval.
        a.insert(
            "api-approved.kubernetes.io".into(),
            "https://github.com/kubernetes-sigs/gateway-api/pull/2466".into(),
        );
    }
    out
}

/// [`gateway_api_crds`] as multi-document YAML.
pub fn gateway_api_crds_yaml() -> Result<String, crate::Error> {
    let mut out = String::new();
    for crd in gateway_api_crds() {
        out.push_str("---\n");
        out.push_str(&crate::yaml::to_string(&crd)?);
    }
    Ok(out)
}

/// The CRDs as one multi-document YAML text, as checked in under `deploy/crds/`.
pub fn crds_yaml() -> Result<String, crate::Error> {
    let mut out = String::new();
    for crd in all_crds()? {
        out.push_str("---\n");
        out.push_str(&crate::yaml::to_string(&crd)?);
    }
    Ok(out)
}
