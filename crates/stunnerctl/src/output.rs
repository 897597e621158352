//! Output formats: a summary, JSON, YAML, or a JSONPath-like template; secrets masked
//! unless asked for.

use serde_json::Value;
use stunner_config::StunnerConfig;

/// How to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Format {
    Summary,
    Json,
    Yaml,
    /// `jsonpath={.listeners[0].name}`: the fields named, space separated.
    JsonPath(String),
}

impl Format {
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        match s {
            "summary" => Ok(Self::Summary),
            "json" => Ok(Self::Json),
            "yaml" => Ok(Self::Yaml),
            _ => s
                .strip_prefix("jsonpath=")
                .map(|t| Self::JsonPath(t.to_string()))
                .ok_or_else(|| {
                    format!(
                        "unknown output format {s:?}: summary, json, yaml or jsonpath=<template>"
                    )
                }),
        }
    }
}

/// Replaces credentials, certificates and keys with `<SECRET>`.
pub(crate) fn mask(v: &mut Value) {
    if let Some(creds) = v
        .pointer_mut("/auth/credentials")
        .and_then(Value::as_object_mut)
    {
        for x in creds.values_mut() {
            *x = Value::String(stunner_config::SECRET.into());
        }
    }
    if let Some(ls) = v.pointer_mut("/listeners").and_then(Value::as_array_mut) {
        for l in ls {
            for k in ["cert", "key"] {
                if let Some(x) = l.get_mut(k) {
                    *x = Value::String(stunner_config::SECRET.into());
                }
            }
        }
    }
    if let Some(servers) = v.pointer_mut("/iceServers").and_then(Value::as_array_mut) {
        for s in servers {
            if let Some(x) = s.get_mut("credential") {
                *x = Value::String(stunner_config::SECRET.into());
            }
        }
    }
    if let Some(x) = v.get_mut("password") {
        *x = Value::String(stunner_config::SECRET.into());
    }
}

/// Evaluates a template such as `{.listeners[0].name}` (several `{…}` allowed, text
/// between kept) against a value.
pub(crate) fn jsonpath(template: &str, v: &Value) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find('}')
            .ok_or_else(|| format!("unclosed {{ in {template:?}"))?
            + start;
        let path = rest[start + 1..end].trim();
        let mut cur = v;
        for part in path
            .trim_start_matches('.')
            .split('.')
            .filter(|p| !p.is_empty())
        {
            let (name, index) = match part.split_once('[') {
                Some((n, i)) => (n, Some(i.trim_end_matches(']'))),
                None => (part, None),
            };
            if !name.is_empty() {
                cur = cur.get(name).unwrap_or(&Value::Null);
            }
            if let Some(i) = index {
                let i: usize = i.parse().map_err(|_| format!("bad index in {path:?}"))?;
                cur = cur.get(i).unwrap_or(&Value::Null);
            }
        }
        match cur {
            Value::String(s) => out.push_str(s),
            Value::Null => {}
            other => out.push_str(&other.to_string()),
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A config the way upstream's summary shows it (without secrets unless `show`).
pub(crate) fn config_summary(c: &StunnerConfig, show: bool) -> String {
    let mut s = format!(
        "Gateway: {} (loglevel: \"{}\")\n",
        c.admin.name, c.admin.log_level
    );
    let creds = match c.auth.auth_type {
        stunner_config::AuthType::Static => {
            let (u, p) = if show {
                (
                    c.auth.username().unwrap_or("-"),
                    c.auth.password().unwrap_or("-"),
                )
            } else {
                (stunner_config::SECRET, stunner_config::SECRET)
            };
            format!(", username/password: {u}/{p}")
        }
        stunner_config::AuthType::Ephemeral => {
            format!(
                ", shared-secret: {}",
                if show {
                    c.auth.secret().unwrap_or("-")
                } else {
                    stunner_config::SECRET
                }
            )
        }
        stunner_config::AuthType::None => String::new(),
    };
    s.push_str(&format!(
        "Authentication type: {}{creds}\n",
        c.auth.auth_type
    ));
    for l in &c.listeners {
        let relay = match l.address.as_str() {
            "$STUNNER_ADDR" => "<private-pod-ip-addr>".to_string(),
            stunner_config::defaults::NODE_ADDRESS_PLACEHOLDER => "<node-ip-addr>".to_string(),
            a => a.to_string(),
        };
        let public = if l.public_address.is_empty() {
            "-".to_string()
        } else {
            format!("{}:{}", l.public_address, l.public_port())
        };
        s.push_str(&format!(
            "Listener: {}\n  Protocol: {}\n  Relay address: {relay}:{}\n  Public address: {public}\n  ICE URI: {}\n  Routes: [{}]\n",
            l.name,
            l.protocol,
            l.port,
            l.ice_uri(),
            l.routes.join(", ")
        ));
        let endpoints: Vec<String> = l
            .routes
            .iter()
            .filter_map(|r| c.cluster(r))
            .flat_map(|c| c.endpoints.clone())
            .collect();
        s.push_str(&format!("  Endpoints: [{}]\n", endpoints.join(", ")));
    }
    s
}

/// Renders a JSON value in a format.
pub(crate) fn render(v: &Value, f: &Format) -> Result<String, String> {
    match f {
        Format::Json => serde_json::to_string_pretty(v).map_err(|e| e.to_string()),
        Format::Yaml => serde_saphyr::to_string(v).map_err(|e| e.to_string()),
        Format::JsonPath(t) => jsonpath(t, v),
        Format::Summary => Ok(v.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonpath_templates() {
        let v: Value = serde_json::json!({"a": {"b": [{"c": "x"}, {"c": 2}]}, "d": "y"});
        assert_eq!(jsonpath("{.a.b[0].c}", &v).unwrap(), "x");
        assert_eq!(jsonpath("{.a.b[1].c} and {.d}", &v).unwrap(), "2 and y");
        assert_eq!(jsonpath("{.zz}", &v).unwrap(), "");
        assert!(jsonpath("{.a", &v).is_err());
        assert!(Format::parse("xml").is_err());
        assert_eq!(
            Format::parse("jsonpath={.d}").unwrap(),
            Format::JsonPath("{.d}".into())
        );
    }

    #[test]
    fn masking() {
        let mut v = serde_json::json!({"auth": {"credentials": {"password": "p"}},
            "listeners": [{"cert": "c", "key": "k"}], "iceServers": [{"credential": "x"}], "password": "q"});
        mask(&mut v);
        assert!(
            !v.to_string().contains("\"p\"")
                && !v.to_string().contains("\"x\"")
                && !v.to_string().contains("\"q\"")
        );
    }
}
