//! Decoding a JSON value tree into the typed config, the way upstream's Go decoder
//! reads it: object keys match case-insensitively (`logLevel` = `loglevel`), unknown
//! keys are ignored, `null` is the same as absent. Every type error is collected with
//! the path of its field.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::Error;
use crate::admin::{AdminConfig, LicenseConfig};
use crate::auth::AuthConfig;
use crate::cluster::ClusterConfig;
use crate::kind::{AuthType, ClusterProtocol, ClusterType, ListenerProtocol, OffloadEngine};
use crate::listener::ListenerConfig;
use crate::stunner::StunnerConfig;

/// An object whose keys are folded to lower case; the last of equal keys wins.
struct Obj<'a> {
    path: String,
    fields: BTreeMap<String, &'a Value>,
}

impl<'a> Obj<'a> {
    fn new(v: &'a Value, path: &str, errs: &mut Vec<Error>) -> Option<Self> {
        match v {
            Value::Null => None,
            Value::Object(m) => Some(Self {
                path: path.to_string(),
                fields: m
                    .iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, v)| (k.to_ascii_lowercase(), v))
                    .collect(),
            }),
            other => {
                errs.push(type_err(path, "an object", other));
                None
            }
        }
    }

    fn field(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.fields.get(key).copied()
    }

    fn string(&self, key: &str, errs: &mut Vec<Error>) -> String {
        match self.get(key) {
            None => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => {
                errs.push(type_err(&self.field(key), "a string", other));
                String::new()
            }
        }
    }

    fn opt_string(&self, key: &str, errs: &mut Vec<Error>) -> Option<String> {
        self.get(key)?;
        Some(self.string(key, errs))
    }

    /// An integer in `min..=max`. Numeric strings are accepted too (a quoted
    /// `"$STUNNER_PORT"` expands to one).
    fn int(&self, key: &str, min: i64, max: i64, errs: &mut Vec<Error>) -> Option<i64> {
        let v = self.get(key)?;
        let n = match v {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse::<i64>().ok(),
            _ => None,
        };
        match n {
            None => {
                errs.push(type_err(&self.field(key), "an integer", v));
                None
            }
            Some(n) if n < min || n > max => {
                errs.push(Error::OutOfRange {
                    field: self.field(key),
                    value: n,
                    min,
                    max,
                });
                None
            }
            Some(n) => Some(n),
        }
    }

    fn strings(&self, key: &str, errs: &mut Vec<Error>) -> Vec<String> {
        match self.get(key) {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .filter_map(|(i, it)| match it {
                    Value::String(s) => Some(s.clone()),
                    other => {
                        errs.push(type_err(
                            &format!("{}[{i}]", self.field(key)),
                            "a string",
                            other,
                        ));
                        None
                    }
                })
                .collect(),
            Some(other) => {
                errs.push(type_err(&self.field(key), "a list of strings", other));
                Vec::new()
            }
        }
    }

    fn enumeration<T>(
        &self,
        key: &str,
        parse: fn(&str) -> Option<T>,
        allowed: &'static str,
        default: T,
        errs: &mut Vec<Error>,
    ) -> T {
        let s = self.string(key, errs);
        if s.is_empty() {
            return default;
        }
        parse(&s).unwrap_or_else(|| {
            errs.push(Error::UnknownValue {
                field: self.field(key),
                value: s,
                allowed,
            });
            default
        })
    }
}

fn type_err(field: &str, expected: &'static str, found: &Value) -> Error {
    let found = match found {
        Value::Null => "null".to_string(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "a list".to_string(),
        Value::Object(_) => "an object".to_string(),
    };
    Error::Type {
        field: field.to_string(),
        expected,
        found,
    }
}

/// Reads the `version` field (case-insensitive key); empty if absent or not a string.
pub(crate) fn version(v: &Value) -> String {
    let mut scratch = Vec::new();
    Obj::new(v, "", &mut scratch)
        .map(|o| o.string("version", &mut scratch))
        .unwrap_or_default()
}

/// Reads `auth.credentials` as a raw map, for restoring credentials after env expansion.
pub(crate) fn credentials(v: &Value) -> Option<BTreeMap<String, String>> {
    let mut scratch = Vec::new();
    let root = Obj::new(v, "", &mut scratch)?;
    let auth = Obj::new(root.get("auth")?, "auth", &mut scratch)?;
    let creds = auth.get("credentials")?;
    Some(string_map(creds, "auth.credentials", &mut scratch))
}

fn string_map(v: &Value, path: &str, errs: &mut Vec<Error>) -> BTreeMap<String, String> {
    match v {
        Value::Object(m) => m
            .iter()
            .filter_map(|(k, v)| match v {
                Value::String(s) => Some((k.clone(), s.clone())),
                Value::Null => None,
                other => {
                    errs.push(type_err(&format!("{path}.{k}"), "a string", other));
                    None
                }
            })
            .collect(),
        Value::Null => BTreeMap::new(),
        other => {
            errs.push(type_err(path, "a map of strings", other));
            BTreeMap::new()
        }
    }
}

/// Decodes a whole config. The version is taken as it stands; callers check it.
pub(crate) fn config(v: &Value, errs: &mut Vec<Error>) -> StunnerConfig {
    let Some(root) = Obj::new(v, "", errs) else {
        return StunnerConfig {
            version: String::new(),
            ..Default::default()
        };
    };
    StunnerConfig {
        version: root.string("version", errs),
        admin: root
            .get("admin")
            .and_then(|a| Obj::new(a, "admin", errs))
            .map(|o| admin(&o, errs))
            .unwrap_or_default(),
        auth: root
            .get("auth")
            .and_then(|a| Obj::new(a, "auth", errs))
            .map(|o| auth(&o, errs))
            .unwrap_or_default(),
        listeners: list(&root, "listeners", errs, listener),
        clusters: list(&root, "clusters", errs, cluster),
    }
}

fn list<T>(
    root: &Obj<'_>,
    key: &str,
    errs: &mut Vec<Error>,
    item: fn(&Obj<'_>, &mut Vec<Error>) -> T,
) -> Vec<T> {
    match root.get(key) {
        None => Vec::new(),
        Some(Value::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, it) in items.iter().enumerate() {
                if let Some(o) = Obj::new(it, &format!("{key}[{i}]"), errs) {
                    out.push(item(&o, errs));
                }
            }
            out
        }
        Some(other) => {
            errs.push(type_err(key, "a list", other));
            Vec::new()
        }
    }
}

fn admin(o: &Obj<'_>, errs: &mut Vec<Error>) -> AdminConfig {
    AdminConfig {
        name: o.string("name", errs),
        log_level: o.string("loglevel", errs),
        metrics_endpoint: o.string("metrics_endpoint", errs),
        healthcheck_endpoint: o.opt_string("healthcheck_endpoint", errs),
        // Upstream reads a negative quota as 0.
        user_quota: o
            .int("user_quota", i64::MIN, i64::from(u32::MAX), errs)
            .map_or(0, |q| u32::try_from(q.max(0)).unwrap_or(0)),
        offload_engine: o.enumeration(
            "offload_engine",
            OffloadEngine::parse,
            OffloadEngine::ALLOWED,
            OffloadEngine::None,
            errs,
        ),
        offload_interfaces: o.strings("offload_interfaces", errs),
        license_config: o
            .get("license_config")
            .and_then(|l| Obj::new(l, &o.field("license_config"), errs))
            .map(|l| LicenseConfig {
                key: l.string("key", errs),
                hmac: l.string("hmac", errs),
            }),
    }
}

fn auth(o: &Obj<'_>, errs: &mut Vec<Error>) -> AuthConfig {
    AuthConfig {
        auth_type: o.enumeration(
            "type",
            AuthType::parse,
            AuthType::ALLOWED,
            AuthType::Static,
            errs,
        ),
        realm: o.string("realm", errs),
        credentials: o
            .get("credentials")
            .map(|c| string_map(c, &o.field("credentials"), errs))
            .unwrap_or_default(),
    }
}

fn port(o: &Obj<'_>, key: &str, min: i64, errs: &mut Vec<Error>) -> u16 {
    o.int(key, min, 65535, errs)
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(0)
}

fn listener(o: &Obj<'_>, errs: &mut Vec<Error>) -> ListenerConfig {
    ListenerConfig {
        name: o.string("name", errs),
        protocol: o.enumeration(
            "protocol",
            ListenerProtocol::parse,
            ListenerProtocol::ALLOWED,
            ListenerProtocol::TurnUdp,
            errs,
        ),
        public_address: o.string("public_address", errs),
        public_port: port(o, "public_port", 0, errs),
        address: o.string("address", errs),
        // 0 means "default"; anything else must be a real port.
        port: match o.get("port") {
            Some(Value::Number(n)) if n.as_i64() == Some(0) => 0,
            _ => port(o, "port", 1, errs),
        },
        cert: o.string("cert", errs),
        key: o.string("key", errs),
        routes: o.strings("routes", errs),
    }
}

fn cluster(o: &Obj<'_>, errs: &mut Vec<Error>) -> ClusterConfig {
    ClusterConfig {
        name: o.string("name", errs),
        cluster_type: o.enumeration(
            "type",
            ClusterType::parse,
            ClusterType::ALLOWED,
            ClusterType::Static,
            errs,
        ),
        protocol: o.enumeration(
            "protocol",
            ClusterProtocol::parse,
            ClusterProtocol::ALLOWED,
            ClusterProtocol::Udp,
            errs,
        ),
        endpoints: o.strings("endpoints", errs),
    }
}
