//! `clusters[]`: the peers a listener may relay to.

use std::fmt;

use serde::Serialize;

use crate::Error;
use crate::endpoint::Endpoint;
use crate::kind::{ClusterProtocol, ClusterType};

/// One cluster of a [`StunnerConfig`](crate::StunnerConfig).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterConfig {
    /// Cluster name, `<namespace>/<route>` when rendered by the operator. Required.
    pub name: String,
    /// How endpoints are named. Defaults to `STATIC`.
    #[serde(rename = "type")]
    pub cluster_type: ClusterType,
    /// Peer transport. Defaults to `UDP`.
    pub protocol: ClusterProtocol,
    /// `STATIC`: `IP[/prefix][:<lo-hi>]` each; `STRICT_DNS`: DNS names. Sorted by
    /// validation.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<String>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            cluster_type: ClusterType::Static,
            protocol: ClusterProtocol::Udp,
            endpoints: Vec::new(),
        }
    }
}

impl ClusterConfig {
    pub(crate) fn validate_into(&mut self, path: &str, errs: &mut Vec<Error>) {
        if self.name.is_empty() {
            errs.push(Error::Missing {
                field: format!("{path}.name"),
            });
        }
        for (i, e) in self.endpoints.iter().enumerate() {
            let field = format!("{path}.endpoints[{i}]");
            match self.cluster_type {
                ClusterType::Static => {
                    if let Err(reason) = e.parse::<Endpoint>() {
                        errs.push(Error::InvalidEndpoint {
                            field,
                            value: e.clone(),
                            reason: reason.0,
                        });
                    }
                }
                ClusterType::StrictDns => {
                    if e.is_empty() || e.contains(char::is_whitespace) || e.contains('/') {
                        errs.push(Error::InvalidEndpoint {
                            field,
                            value: e.clone(),
                            reason: "not a DNS name".into(),
                        });
                    }
                }
            }
        }
        self.endpoints.sort();
        self.endpoints.dedup();
    }

    /// The parsed endpoints of a `STATIC` cluster (unparsable ones are skipped; a
    /// validated config has none). Empty for `STRICT_DNS`.
    pub fn static_endpoints(&self) -> Vec<Endpoint> {
        if self.cluster_type != ClusterType::Static {
            return Vec::new();
        }
        self.endpoints
            .iter()
            .filter_map(|e| e.parse().ok())
            .collect()
    }
}

impl fmt::Display for ClusterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?}:{{type={:?},protocol={:?},endpoints=[{}]}}",
            if self.name.is_empty() {
                "-"
            } else {
                &self.name
            },
            self.cluster_type.as_str(),
            self.protocol.as_str(),
            self.endpoints.join(",")
        )
    }
}
