//! The `admin` and `auth` sections of a rendered config.

use std::collections::BTreeMap;

use stunner_config::{AdminConfig, AuthConfig, AuthType, OffloadEngine};

use crate::crd::{Dataplane, GatewayConfig};
use crate::names;
use crate::world::World;

/// `admin`: log level from the GatewayConfig, endpoints and offload from the Dataplane.
pub(crate) fn admin(name: String, gwconf: &GatewayConfig, dp: Option<&Dataplane>) -> AdminConfig {
    let dp = dp.map(|d| &d.spec);
    AdminConfig {
        name,
        log_level: gwconf
            .spec
            .log_level
            .clone()
            .unwrap_or_else(|| "all:INFO".into()),
        metrics_endpoint: if dp.and_then(|d| d.enable_metrics_endpoint) == Some(true) {
            "http://:8080/metrics".into()
        } else {
            String::new()
        },
        healthcheck_endpoint: Some(if dp.and_then(|d| d.disable_health_check) == Some(true) {
            String::new()
        } else {
            "http://:8086".into()
        }),
        offload_engine: dp
            .and_then(|d| d.offload_engine.as_deref())
            .and_then(OffloadEngine::parse)
            .unwrap_or_default(),
        offload_interfaces: dp
            .and_then(|d| d.offload_interfaces.clone())
            .unwrap_or_default(),
        ..AdminConfig::default()
    }
}

/// `auth`: inline credentials, or the `authRef` Secret (which overrides them all).
/// A missing credential is an error that invalidates the Gateway.
pub(crate) fn auth(world: &World, gwconf: &GatewayConfig) -> Result<AuthConfig, String> {
    let spec = &gwconf.spec;
    let gwconf_ns = gwconf.metadata.namespace.clone().unwrap_or_default();
    let realm = spec
        .realm
        .clone()
        .unwrap_or_else(|| names::DEFAULT_REALM.into());
    let mut type_name = spec.auth_type.clone().unwrap_or_else(|| "static".into());
    let (mut username, mut password, mut secret) = (
        spec.user_name.clone(),
        spec.password.clone(),
        spec.shared_secret.clone(),
    );
    if let Some(r) = &spec.auth_ref {
        if r.group
            .as_deref()
            .is_some_and(|g| !g.is_empty() && g != "v1")
            || r.kind.as_deref().is_some_and(|k| k != "Secret")
        {
            let group = r.group.as_deref().unwrap_or("");
            let kind = r.kind.as_deref().unwrap_or("Secret");
            return Err(format!(
                "authRef: only core Secrets are supported, got {group}/{kind}"
            ));
        }
        let ns = r.namespace.clone().unwrap_or(gwconf_ns);
        let data = secret_data(world, &ns, &r.name)
            .ok_or_else(|| format!("authRef: Secret {ns}/{} not found", r.name))?;
        if let Some(t) = data.get("type") {
            type_name = t.clone();
        }
        username = data.get("username").cloned();
        password = data.get("password").cloned();
        secret = data
            .get("secret")
            .or_else(|| data.get("sharedSecret"))
            .cloned();
    }
    let auth_type = AuthType::parse(&type_name)
        .filter(|t| *t != AuthType::None)
        .ok_or_else(|| format!("invalid authentication type {type_name:?}"))?;
    let mut credentials = BTreeMap::new();
    match auth_type {
        AuthType::Ephemeral => {
            let s = secret
                .filter(|s| !s.is_empty())
                .ok_or("missing shared secret for ephemeral authentication")?;
            credentials.insert("secret".to_string(), s);
        }
        _ => {
            let u = username
                .filter(|s| !s.is_empty())
                .ok_or("missing username for static authentication")?;
            let p = password
                .filter(|s| !s.is_empty())
                .ok_or("missing password for static authentication")?;
            credentials.insert("username".to_string(), u);
            credentials.insert("password".to_string(), p);
        }
    }
    Ok(AuthConfig {
        auth_type,
        realm,
        credentials,
    })
}

/// A Secret's `data` (decoded) merged with its `stringData`, as UTF-8 strings.
pub(crate) fn secret_data(world: &World, ns: &str, name: &str) -> Option<BTreeMap<String, String>> {
    let s = world.secrets.get(&(ns.to_string(), name.to_string()))?;
    let mut out: BTreeMap<String, String> = s
        .data
        .iter()
        .flatten()
        .filter_map(|(k, v)| String::from_utf8(v.0.clone()).ok().map(|v| (k.clone(), v)))
        .collect();
    out.extend(s.string_data.clone().unwrap_or_default());
    Some(out)
}
