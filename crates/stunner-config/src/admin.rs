//! `admin`: instance name, log level, metrics and health-check endpoints, quota.

use std::fmt;

use serde::Serialize;

use crate::kind::OffloadEngine;
use crate::{Error, defaults};

/// The `admin` section of a [`StunnerConfig`](crate::StunnerConfig).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AdminConfig {
    /// Instance name, `<namespace>/<gateway>` when rendered by the operator. Defaults to
    /// `default-stunnerd`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Log level spec `<scope>:<LEVEL>[,…]`. Defaults to `all:INFO`.
    #[serde(rename = "loglevel", skip_serializing_if = "String::is_empty")]
    pub log_level: String,
    /// Prometheus endpoint `http://[host][:port][/path]`; empty disables metrics.
    /// An empty host means all addresses, port defaults to 8080, path to `/`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub metrics_endpoint: String,
    /// Health-check endpoint (`/live`, `/ready`, `/status`). `None` defaults to
    /// `http://:8086`; `Some("")` disables it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck_endpoint: Option<String>,
    /// Maximum allocations per user; 0 means no limit. Negative input is read as 0.
    #[serde(skip_serializing_if = "is_zero")]
    pub user_quota: u32,
    /// Kernel offload engine (not implemented here; only `None` has an effect).
    pub offload_engine: OffloadEngine,
    /// Interfaces for offload; empty means all. Sorted by validation.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub offload_interfaces: Vec<String>,
    /// License (upstream premium builds); kept so that configs round-trip.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub license_config: Option<LicenseConfig>,
}

fn is_zero(q: &u32) -> bool {
    *q == 0
}

/// License key and HMAC of upstream premium builds. The HMAC is never displayed.
#[derive(Clone, Default, PartialEq, Eq, Serialize)]
pub struct LicenseConfig {
    /// License key.
    pub key: String,
    /// License HMAC (secret).
    pub hmac: String,
}

impl fmt::Debug for LicenseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LicenseConfig")
            .field("key", &self.key)
            .field("hmac", &crate::mask(&self.hmac))
            .finish()
    }
}

/// A parsed admin HTTP endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpEndpoint {
    /// Host to bind; empty means all addresses.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// URL path (at least `/`).
    pub path: String,
}

impl HttpEndpoint {
    /// Parses `[http://][host][:port][/path]`; missing parts take the defaults given
    /// (`default_port`) or `/` for the path.
    pub fn parse(s: &str, default_port: u16) -> Result<Self, String> {
        let rest = match s.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, _)) => return Err(format!("scheme {scheme:?} is not http")),
            None => s,
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = split_host_port(authority)?;
        let port = match port {
            None | Some("") => default_port,
            Some(p) => match p.parse::<u16>() {
                Ok(0) | Err(_) => return Err(format!("port {p:?} is not in 1..65535")),
                Ok(p) => p,
            },
        };
        Ok(Self {
            host: host.to_string(),
            port,
            path: path.to_string(),
        })
    }
}

/// Splits `host[:port]` where host may be a bracketed IPv6 literal.
fn split_host_port(a: &str) -> Result<(&str, Option<&str>), String> {
    if let Some(inner) = a.strip_prefix('[') {
        let end = inner
            .find(']')
            .ok_or_else(|| format!("unclosed '[' in {a:?}"))?;
        let host = &inner[..end];
        let after = &inner[end + 1..];
        return match after.strip_prefix(':') {
            Some(p) => Ok((host, Some(p))),
            None if after.is_empty() => Ok((host, None)),
            None => Err(format!("unexpected {after:?} after IPv6 address")),
        };
    }
    match a.rsplit_once(':') {
        Some((h, _)) if h.contains(':') => Err(format!("IPv6 address {a:?} must be in brackets")),
        Some((h, p)) => Ok((h, Some(p))),
        None => Ok((a, None)),
    }
}

impl AdminConfig {
    /// The metrics endpoint, `None` when metrics are disabled.
    pub fn metrics(&self) -> Option<HttpEndpoint> {
        if self.metrics_endpoint.is_empty() {
            return None;
        }
        HttpEndpoint::parse(&self.metrics_endpoint, defaults::METRICS_PORT).ok()
    }

    /// The health-check endpoint, `None` when disabled.
    pub fn healthcheck(&self) -> Option<HttpEndpoint> {
        let e = match &self.healthcheck_endpoint {
            None => defaults::HEALTHCHECK_ENDPOINT,
            Some(e) if e.is_empty() => return None,
            Some(e) => e.as_str(),
        };
        HttpEndpoint::parse(e, defaults::HEALTHCHECK_PORT).ok()
    }

    pub(crate) fn validate_into(&mut self, errs: &mut Vec<Error>) {
        if self.name.is_empty() {
            self.name = defaults::STUNNERD_NAME.to_string();
        }
        if self.log_level.is_empty() {
            self.log_level = defaults::LOG_LEVEL.to_string();
        }
        if !self.metrics_endpoint.is_empty()
            && let Err(reason) = HttpEndpoint::parse(&self.metrics_endpoint, defaults::METRICS_PORT)
        {
            errs.push(Error::InvalidUrl {
                field: "admin.metrics_endpoint".into(),
                value: self.metrics_endpoint.clone(),
                reason,
            });
        }
        match &self.healthcheck_endpoint {
            None => self.healthcheck_endpoint = Some(defaults::HEALTHCHECK_ENDPOINT.to_string()),
            Some(e) if e.is_empty() => {}
            Some(e) => {
                if let Err(reason) = HttpEndpoint::parse(e, defaults::HEALTHCHECK_PORT) {
                    errs.push(Error::InvalidUrl {
                        field: "admin.healthcheck_endpoint".into(),
                        value: e.clone(),
                        reason,
                    });
                }
            }
        }
        self.offload_interfaces.sort();
        self.offload_interfaces.dedup();
    }
}

impl fmt::Display for AdminConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "admin:{{name={:?},logLevel={:?}",
            self.name, self.log_level
        )?;
        if !self.metrics_endpoint.is_empty() {
            write!(f, ",metrics={:?}", self.metrics_endpoint)?;
        }
        if let Some(h) = &self.healthcheck_endpoint {
            write!(f, ",health-check={h:?}")?;
        }
        if self.user_quota > 0 {
            write!(f, ",quota={}", self.user_quota)?;
        }
        write!(f, ",offload={}", self.offload_engine)?;
        if let Some(l) = &self.license_config {
            write!(
                f,
                ",license={{key={:?},hmac={}}}",
                l.key,
                crate::mask(&l.hmac)
            )?;
        }
        f.write_str("}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_endpoint_defaults() {
        let e = HttpEndpoint::parse("http://:8086", 1).unwrap();
        assert_eq!((e.host.as_str(), e.port, e.path.as_str()), ("", 8086, "/"));
        let e = HttpEndpoint::parse("http://0.0.0.0/metrics", 8080).unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.path.as_str()),
            ("0.0.0.0", 8080, "/metrics")
        );
        let e = HttpEndpoint::parse("http://[::1]:9000/x", 8080).unwrap();
        assert_eq!((e.host.as_str(), e.port), ("::1", 9000));
        let e = HttpEndpoint::parse("http://", 8080).unwrap();
        assert_eq!((e.host.as_str(), e.port), ("", 8080));
    }

    #[test]
    fn http_endpoint_rejects_garbage() {
        assert!(HttpEndpoint::parse("ftp://x:1", 1).is_err());
        assert!(HttpEndpoint::parse("http://:99999", 1).is_err());
        assert!(HttpEndpoint::parse("http://:abc", 1).is_err());
        assert!(HttpEndpoint::parse("http://[::1", 1).is_err());
        assert!(HttpEndpoint::parse("http://::1:80", 1).is_err());
    }
}
