//! `auth`: auth type, realm and credentials.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::kind::AuthType;
use crate::{Error, defaults};

/// The `auth` section of a [`StunnerConfig`](crate::StunnerConfig).
///
/// `Debug` and `Display` mask every credential value as `<SECRET>`.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct AuthConfig {
    /// The auth type. Defaults to `static`.
    #[serde(rename = "type")]
    pub auth_type: AuthType,
    /// The STUN/TURN realm (RFC 8489 §9.2). Defaults to `stunner.l7mp.io`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub realm: String,
    /// `username` and `password` for `static`; `secret` for `ephemeral`.
    pub credentials: BTreeMap<String, String>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            auth_type: AuthType::Static,
            realm: String::new(),
            credentials: BTreeMap::new(),
        }
    }
}

impl AuthConfig {
    /// The static username, if set.
    pub fn username(&self) -> Option<&str> {
        self.credentials.get("username").map(String::as_str)
    }

    /// The static password, if set.
    pub fn password(&self) -> Option<&str> {
        self.credentials.get("password").map(String::as_str)
    }

    /// The ephemeral shared secret, if set.
    pub fn secret(&self) -> Option<&str> {
        self.credentials.get("secret").map(String::as_str)
    }

    pub(crate) fn validate_into(&mut self, errs: &mut Vec<Error>) {
        if self.realm.is_empty() {
            self.realm = defaults::REALM.to_string();
        }
        // RFC 8489 §14.9: REALM holds at most 763 bytes. A longer realm would make every
        // challenge unencodable, so no client could ever authenticate; refuse it here.
        if self.realm.len() > REALM_MAX {
            errs.push(Error::TooLong {
                field: "auth.realm".into(),
                len: self.realm.len(),
                max: REALM_MAX,
            });
        }
        // Upstream accepts empty values; an empty password or secret lets anybody in, so
        // we refuse it.
        let required: &[&'static str] = match self.auth_type {
            AuthType::Static => &["username", "password"],
            AuthType::Ephemeral => &["secret"],
            AuthType::None => &[],
        };
        for key in required {
            if self.credentials.get(*key).is_none_or(|v| v.is_empty()) {
                errs.push(Error::MissingCredential {
                    field: "auth.credentials".into(),
                    auth_type: self.auth_type.as_str(),
                    key,
                });
            }
        }
    }
}

/// The longest REALM value (RFC 8489 §14.9).
const REALM_MAX: usize = 763;

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let creds: BTreeMap<&str, &str> = self
            .credentials
            .iter()
            .map(|(k, v)| (k.as_str(), crate::mask(v)))
            .collect();
        f.debug_struct("AuthConfig")
            .field("auth_type", &self.auth_type)
            .field("realm", &self.realm)
            .field("credentials", &creds)
            .finish()
    }
}

impl fmt::Display for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-auth:{{realm={:?}", self.auth_type, self.realm)?;
        let keys: &[&str] = match self.auth_type {
            AuthType::Static => &["username", "password"],
            AuthType::Ephemeral => &["secret"],
            AuthType::None => &[],
        };
        for k in keys {
            let v = self.credentials.get(*k).map_or("-", |v| crate::mask(v));
            write!(f, ",{k}={v}")?;
        }
        f.write_str("}")
    }
}
