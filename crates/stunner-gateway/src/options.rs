//! What the renderer needs besides the World.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::names;

/// Where dataplane configs go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataplaneMode {
    /// One stunnerd config per Gateway, served over CDS, with a Deployment per Gateway.
    #[default]
    Managed,
    /// One config per GatewayClass in the ConfigMap `stunnerd-config`.
    Legacy,
}

impl std::str::FromStr for DataplaneMode {
    type Err = crate::Error;
    /// Unlike upstream, an unknown mode is an error, not legacy.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "managed" => Ok(Self::Managed),
            "legacy" => Ok(Self::Legacy),
            other => Err(crate::Error::UnknownMode(other.to_string())),
        }
    }
}

/// Renderer settings (the operator's flags) and the current time.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RenderOptions {
    /// Dataplane mode.
    pub mode: DataplaneMode,
    /// GatewayClass `controllerName` we manage.
    pub controller_name: String,
    /// Endpoint discovery: STATIC clusters from EndpointSlices (true) or STRICT_DNS.
    pub endpoint_discovery: bool,
    /// The CDS address handed to stunnerd pods (`STUNNER_CONFIG_ORIGIN`): the CDS
    /// Service, so a leader change does not roll every dataplane.
    pub cds_address: String,
    /// When the CDS serves TLS: the PEM CA bundle that verifies it. Dataplanes then get
    /// an `https://` origin and the bundle in `STUNNER_CDS_CA` (a CA certificate is
    /// public; a Secret in another namespace could not be mounted).
    pub cds_ca: Option<String>,
    /// Gateway labels not copied to Deployments.
    pub label_filter: Vec<String>,
    /// Time stamped on status conditions that change.
    pub now: Time,
}

impl Default for RenderOptions {
    fn default() -> Self {
        Self {
            mode: DataplaneMode::Managed,
            controller_name: names::DEFAULT_CONTROLLER_NAME.to_string(),
            endpoint_discovery: true,
            cds_address: format!(
                "stunner-config-discovery.stunner-system.svc:{}",
                names::CDS_PORT
            ),
            cds_ca: None,
            label_filter: names::DEFAULT_LABEL_FILTER
                .iter()
                .map(|s| s.to_string())
                .collect(),
            now: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
        }
    }
}

impl RenderOptions {
    /// The `STUNNER_CONFIG_ORIGIN` URL: `http://host:port` (`https://` with a CDS CA),
    /// IPv6 bracketed, default port.
    pub fn cds_origin(&self) -> String {
        let a = self.cds_address.trim();
        let a = ["http://", "https://"]
            .iter()
            .find_map(|p| a.strip_prefix(p))
            .unwrap_or(a);
        let (host, port) = split_host_port(a);
        let host = if host.is_empty() { "127.0.0.1" } else { host };
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        let scheme = if self.cds_ca.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{host}:{}", port.unwrap_or(names::CDS_PORT))
    }
}

/// Splits `host:port`, `[v6]:port`, `:port` or a bare host.
fn split_host_port(a: &str) -> (&str, Option<u16>) {
    if let Some(rest) = a.strip_prefix('[')
        && let Some((h, tail)) = rest.split_once(']')
    {
        return (h, tail.strip_prefix(':').and_then(|p| p.parse().ok()));
    }
    match a.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, p.parse().ok()),
        _ => (a, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cds_origin_forms() {
        let o = |a: &str| {
            RenderOptions {
                cds_address: a.into(),
                ..Default::default()
            }
            .cds_origin()
        };
        assert_eq!(o("svc.ns.svc:13478"), "http://svc.ns.svc:13478");
        assert_eq!(o("svc.ns.svc"), "http://svc.ns.svc:13478");
        assert_eq!(o(":1234"), "http://127.0.0.1:1234");
        assert_eq!(o("[::1]:9"), "http://[::1]:9");
        assert_eq!(o("fd00::1"), "http://[fd00::1]:13478");
        assert_eq!(o("https://svc:1"), "http://svc:1");
        let tls = RenderOptions {
            cds_address: "svc.ns.svc:13478".into(),
            cds_ca: Some("PEM".into()),
            ..Default::default()
        };
        assert_eq!(tls.cds_origin(), "https://svc.ns.svc:13478");
    }

    #[test]
    fn unknown_mode_is_an_error() {
        assert!("legacy".parse::<DataplaneMode>().is_ok());
        assert!("Managed".parse::<DataplaneMode>().is_err());
    }
}
