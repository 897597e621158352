//! The whole config: [`StunnerConfig`], its validation, the zero config.

use std::collections::HashMap;
use std::fmt;

use serde::Serialize;

use crate::admin::AdminConfig;
use crate::auth::AuthConfig;
use crate::cluster::ClusterConfig;
use crate::kind::AuthType;
use crate::listener::ListenerConfig;
use crate::{Error, Errors, defaults};

/// A stunnerd config, API `v1`: what the operator renders, the CDS serves, stunnerd
/// runs and stunnerctl shows.
///
/// Build one with [`StunnerConfig::from_str`](crate::StunnerConfig::from_str) (text:
/// YAML or JSON, env expanded, validated), from a TURN URI
/// ([`from_turn_uri`](Self::from_turn_uri)), or in code followed by
/// [`validate`](Self::validate). `Debug` and `Display` never print secrets; `Serialize`
/// does (it is the wire format).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StunnerConfig {
    /// API version, `v1`.
    pub version: String,
    /// Instance-level settings.
    pub admin: AdminConfig,
    /// Authentication.
    pub auth: AuthConfig,
    /// TURN listeners.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<ListenerConfig>,
    /// Peer clusters.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub clusters: Vec<ClusterConfig>,
}

impl Default for StunnerConfig {
    fn default() -> Self {
        Self {
            version: defaults::API_VERSION.to_string(),
            admin: AdminConfig::default(),
            auth: AuthConfig::default(),
            listeners: Vec::new(),
            clusters: Vec::new(),
        }
    }
}

impl StunnerConfig {
    /// Injects defaults, normalises (sorted routes and endpoints), and checks every
    /// field. On error the config may be partly normalised; every problem found is
    /// returned, in document order.
    pub fn validate(&mut self) -> Result<(), Errors> {
        let mut errs = Vec::new();
        if self.version != defaults::API_VERSION {
            errs.push(Error::UnsupportedVersion(self.version.clone()));
        }
        self.admin.validate_into(&mut errs);
        self.auth.validate_into(&mut errs);

        let mut names: HashMap<&str, ()> = HashMap::new();
        // Sockets of one kind (datagram or stream) cannot share a port: every listener
        // binds the wildcard address.
        let mut ports: HashMap<(bool, u16), String> = HashMap::new();
        for (i, l) in self.listeners.iter_mut().enumerate() {
            let path = format!("listeners[{i}]");
            l.validate_into(&path, &mut errs);
            let key = (l.protocol.is_datagram(), l.port);
            match ports.get(&key) {
                Some(other) => errs.push(Error::PortConflict {
                    field: format!("{path}.port"),
                    port: l.port,
                    other: other.clone(),
                }),
                None => {
                    ports.insert(key, l.name.clone());
                }
            }
        }
        for (i, l) in self.listeners.iter().enumerate() {
            if !l.name.is_empty() && names.insert(&l.name, ()).is_some() {
                errs.push(Error::Duplicate {
                    field: format!("listeners[{i}].name"),
                    value: l.name.clone(),
                });
            }
        }
        names.clear();
        for (i, c) in self.clusters.iter_mut().enumerate() {
            c.validate_into(&format!("clusters[{i}]"), &mut errs);
        }
        for (i, c) in self.clusters.iter().enumerate() {
            if !c.name.is_empty() && names.insert(&c.name, ()).is_some() {
                errs.push(Error::Duplicate {
                    field: format!("clusters[{i}].name"),
                    value: c.name.clone(),
                });
            }
        }
        match Errors::from_vec(errs) {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }

    /// The config a watching stunnerd starts from, and the CDS pushes when a config is
    /// deleted: no listeners, no clusters, dummy static credentials.
    pub fn zero(id: &str) -> Self {
        let mut c = Self {
            admin: AdminConfig {
                name: id.to_string(),
                ..Default::default()
            },
            auth: AuthConfig {
                auth_type: AuthType::Static,
                realm: defaults::REALM.to_string(),
                credentials: [
                    ("username".to_string(), defaults::ZERO_USERNAME.to_string()),
                    ("password".to_string(), defaults::ZERO_PASSWORD.to_string()),
                ]
                .into(),
            },
            ..Default::default()
        };
        // The zero config is valid by construction; validation only injects defaults.
        let _ = c.validate();
        c
    }

    /// Whether this is the zero config of its `admin.name` (after validation, ignoring
    /// the log level), i.e. a "deleted" marker on the CDS wire.
    pub fn is_zero(&self) -> bool {
        let mut me = self.clone();
        if me.validate().is_err() {
            return false;
        }
        let mut z = Self::zero(&me.admin.name);
        z.admin.log_level = me.admin.log_level.clone();
        me == z
    }

    /// The listener of that name.
    pub fn listener(&self, name: &str) -> Option<&ListenerConfig> {
        self.listeners.iter().find(|l| l.name == name)
    }

    /// The cluster of that name.
    pub fn cluster(&self, name: &str) -> Option<&ClusterConfig> {
        self.clusters.iter().find(|c| c.name == name)
    }

    /// The config as compact JSON (the CDS wire format). Contains secrets.
    pub fn to_json(&self) -> String {
        // Serializing these plain types cannot fail (string keys only).
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl fmt::Display for StunnerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{{version={:?},{},{},listeners=[",
            self.version, self.admin, self.auth
        )?;
        for (i, l) in self.listeners.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{l}")?;
        }
        f.write_str("],clusters=[")?;
        for (i, c) in self.clusters.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{c}")?;
        }
        f.write_str("]}")
    }
}
