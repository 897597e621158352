//! Container environments as the kubelet builds them: `envFrom`, then `env` in order (a
//! later entry wins), `$(VAR)` expansion against what is already defined, `fieldRef`,
//! `resourceFieldRef`, ConfigMap and Secret keys, and the `KUBERNETES_SERVICE_*`
//! variables of the API server's Service.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, EnvVar, Pod};

use crate::cluster::Lookup;

/// What a container's environment is built from besides the pod spec.
pub struct EnvContext<'a> {
    /// The pod (its status carries the pod and host IPs).
    pub pod: &'a Pod,
    /// The pod IP the agent gave it.
    pub pod_ip: String,
    /// The node's InternalIP.
    pub host_ip: String,
    /// ConfigMap and Secret reads.
    pub lookup: &'a Lookup,
    /// ClusterIP and port of the `kubernetes` Service.
    pub api_service: (String, u16),
}

/// The container's environment, or why it cannot be built (the kubelet's
/// `CreateContainerConfigError`).
pub async fn build(ctx: &EnvContext<'_>, c: &Container) -> Result<Vec<(String, String)>, String> {
    let ns = ctx.pod.metadata.namespace.clone().unwrap_or_default();
    let mut env: Vec<(String, String)> = Vec::new();
    let (api_host, api_port) = &ctx.api_service;
    for (k, v) in [
        ("KUBERNETES_SERVICE_HOST", api_host.clone()),
        ("KUBERNETES_SERVICE_PORT", api_port.to_string()),
        ("KUBERNETES_SERVICE_PORT_HTTPS", api_port.to_string()),
        ("KUBERNETES_PORT", format!("tcp://{api_host}:{api_port}")),
        (
            "HOSTNAME",
            ctx.pod.metadata.name.clone().unwrap_or_default(),
        ),
        (
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        ),
        ("HOME", "/root".into()),
    ] {
        set(&mut env, k, v);
    }
    for src in c.env_from.iter().flatten() {
        let prefix = src.prefix.clone().unwrap_or_default();
        if let Some(r) = &src.config_map_ref {
            match ctx.lookup.config_map(&ns, &r.name).await {
                Some(data) => data
                    .into_iter()
                    .for_each(|(k, v)| set(&mut env, &format!("{prefix}{k}"), v)),
                None if r.optional == Some(true) => {}
                None => return Err(format!("configmap {:?} not found", r.name)),
            }
        }
        if let Some(r) = &src.secret_ref {
            match ctx.lookup.secret(&ns, &r.name).await {
                Some(data) => data
                    .into_iter()
                    .for_each(|(k, v)| set(&mut env, &format!("{prefix}{k}"), v)),
                None if r.optional == Some(true) => {}
                None => return Err(format!("secret {:?} not found", r.name)),
            }
        }
    }
    for var in c.env.iter().flatten() {
        if let Some(v) = value(ctx, c, &ns, var, &env).await? {
            set(&mut env, &var.name, v);
        }
    }
    Ok(env)
}

async fn value(
    ctx: &EnvContext<'_>,
    c: &Container,
    ns: &str,
    var: &EnvVar,
    env: &[(String, String)],
) -> Result<Option<String>, String> {
    let Some(from) = &var.value_from else {
        return Ok(Some(expand(var.value.as_deref().unwrap_or(""), env)));
    };
    if let Some(f) = &from.field_ref {
        return field(ctx, &f.field_path).map(Some);
    }
    if let Some(r) = &from.resource_field_ref {
        return Ok(Some(resource(
            c,
            &r.resource,
            r.divisor.as_ref().map(|d| d.0.as_str()),
        )));
    }
    if let Some(r) = &from.config_map_key_ref {
        let v = ctx
            .lookup
            .config_map(ns, &r.name)
            .await
            .and_then(|d| d.get(&r.key).cloned());
        return match v {
            Some(v) => Ok(Some(v)),
            None if r.optional == Some(true) => Ok(None),
            None => Err(format!("configmap key {}/{} not found", r.name, r.key)),
        };
    }
    if let Some(r) = &from.secret_key_ref {
        let v = ctx
            .lookup
            .secret(ns, &r.name)
            .await
            .and_then(|d| d.get(&r.key).cloned());
        return match v {
            Some(v) => Ok(Some(v)),
            None if r.optional == Some(true) => Ok(None),
            None => Err(format!("secret key {}/{} not found", r.name, r.key)),
        };
    }
    Ok(None)
}

/// A downward-API field of the pod.
pub fn field(ctx: &EnvContext<'_>, path: &str) -> Result<String, String> {
    let m = &ctx.pod.metadata;
    let spec = ctx.pod.spec.as_ref();
    let bracket = |p: &str, prefix: &str| -> Option<String> {
        p.strip_prefix(prefix)?
            .strip_suffix("']")
            .map(str::to_string)
    };
    Ok(match path {
        "metadata.name" => m.name.clone().unwrap_or_default(),
        "metadata.namespace" => m.namespace.clone().unwrap_or_default(),
        "metadata.uid" => m.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.podIP" | "status.podIPs" => ctx.pod_ip.clone(),
        "status.hostIP" | "status.hostIPs" => ctx.host_ip.clone(),
        p if p.starts_with("metadata.labels['") => {
            let k = bracket(p, "metadata.labels['").unwrap_or_default();
            m.labels
                .as_ref()
                .and_then(|l| l.get(&k).cloned())
                .unwrap_or_default()
        }
        p if p.starts_with("metadata.annotations['") => {
            let k = bracket(p, "metadata.annotations['").unwrap_or_default();
            m.annotations
                .as_ref()
                .and_then(|l| l.get(&k).cloned())
                .unwrap_or_default()
        }
        "metadata.labels" => kv_lines(m.labels.as_ref()),
        "metadata.annotations" => kv_lines(m.annotations.as_ref()),
        other => return Err(format!("unsupported fieldRef {other:?}")),
    })
}

fn kv_lines(m: Option<&BTreeMap<String, String>>) -> String {
    m.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v:?}\n"))
        .collect()
}

/// `limits.cpu` and friends, rounded up as the kubelet does (cpu in cores, memory in bytes,
/// over `divisor`).
fn resource(c: &Container, name: &str, divisor: Option<&str>) -> String {
    let (section, res) = name.split_once('.').unwrap_or(("limits", name));
    let r = c.resources.as_ref();
    let q = match section {
        "requests" => r.and_then(|r| r.requests.as_ref()),
        _ => r.and_then(|r| r.limits.as_ref()),
    }
    .and_then(|m| m.get(res))
    .map(|q| q.0.clone());
    let value = q.as_deref().and_then(quantity).unwrap_or(if res == "cpu" {
        2.0
    } else {
        24.0 * 1024.0 * 1024.0 * 1024.0
    });
    let div = divisor
        .and_then(quantity)
        .filter(|d| *d > 0.0)
        .unwrap_or(1.0);
    format!("{}", (value / div).ceil() as u64)
}

/// A Kubernetes quantity as a number (`500m` → 0.5, `128Mi` → 134217728).
pub fn quantity(q: &str) -> Option<f64> {
    let suffixes: &[(&str, f64)] = &[
        ("Ki", 1024.0),
        ("Mi", 1024.0 * 1024.0),
        ("Gi", 1024.0 * 1024.0 * 1024.0),
        ("Ti", 1024f64.powi(4)),
        ("m", 0.001),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
    ];
    for (s, mult) in suffixes {
        if let Some(n) = q.strip_suffix(s) {
            return n.parse::<f64>().ok().map(|n| n * mult);
        }
    }
    q.parse().ok()
}

fn set(env: &mut Vec<(String, String)>, k: &str, v: String) {
    match env.iter_mut().find(|(n, _)| n == k) {
        Some(slot) => slot.1 = v,
        None => env.push((k.to_string(), v)),
    }
}

/// `$(VAR)` expansion: defined names are replaced, `$$` is a literal `$`, anything else
/// stays as written.
pub fn expand(s: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('(') {
            match body.find(')') {
                Some(end) => {
                    let name = &body[..end];
                    match env.iter().rev().find(|(k, _)| k == name) {
                        Some((_, v)) => out.push_str(v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &body[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = body;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_follows_the_kubelet() {
        let env = vec![
            ("A".to_string(), "1".to_string()),
            ("B".into(), "x y".into()),
        ];
        assert_eq!(expand("$(A)-$(B)", &env), "1-x y");
        assert_eq!(expand("$$(A)", &env), "$(A)");
        assert_eq!(expand("$(C) $A $(", &env), "$(C) $A $(");
    }

    #[test]
    fn quantities() {
        assert_eq!(quantity("500m"), Some(0.5));
        assert_eq!(quantity("128Mi"), Some(134_217_728.0));
        assert_eq!(quantity("2"), Some(2.0));
        assert_eq!(quantity("x"), None);
    }
}
