//! Long-term credentials (RFC 8489 §9.2) with STUNner's static and ephemeral (TURN REST
//! API) users. Credentials are read from the live config on every request, so a
//! rotation applies to the next request without touching allocations.

use std::fmt;

use stun_types::attribute::{
    AttributeStaticType, MessageIntegrity, MessageIntegritySha256, Nonce, Realm, Username,
};
use stun_types::message::{
    IntegrityAlgorithm, LongTermKeyCredentials, Message, MessageIntegrityCredentials,
};
use stunner_config::credential::{check_ephemeral_username, ephemeral_password};
use stunner_config::{AuthConfig, AuthType};

use crate::Error;
use crate::nonce::NonceKey;

/// Who may use the TURN server.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// STUN only: Binding works, TURN requests are refused.
    None,
    /// One static user.
    Static {
        /// Username.
        username: String,
        /// Password.
        password: String,
    },
    /// TURN REST API users derived from a shared secret.
    Ephemeral {
        /// The shared secret.
        secret: String,
    },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::Static { username, .. } => {
                write!(f, "Static {{ username: {username:?}, password: <SECRET> }}")
            }
            Self::Ephemeral { .. } => f.write_str("Ephemeral { secret: <SECRET> }"),
        }
    }
}

impl Credentials {
    /// The credentials of a (validated) config's `auth` section.
    pub fn from_config(auth: &AuthConfig) -> Self {
        let get = |k: &str| auth.credentials.get(k).cloned().unwrap_or_default();
        match auth.auth_type {
            AuthType::None => Self::None,
            AuthType::Static => Self::Static {
                username: get("username"),
                password: get("password"),
            },
            AuthType::Ephemeral => Self::Ephemeral {
                secret: get("secret"),
            },
        }
    }
}

/// A request that passed authentication.
#[derive(Debug, Clone)]
pub(crate) struct Authenticated {
    pub(crate) username: String,
    /// The user id (quota and ownership): the static username, or the TURN REST id.
    pub(crate) user: String,
    pub(crate) key: MessageIntegrityCredentials,
    pub(crate) algorithm: IntegrityAlgorithm,
}

/// Why authentication failed, and whether the answer carries a fresh nonce.
pub(crate) struct AuthFailure {
    pub(crate) error: Error,
    pub(crate) username: Option<String>,
}

/// Authenticates a request (RFC 8489 §9.2.4). `now_unix` checks ephemeral expiry;
/// `now_epoch` checks the nonce.
pub(crate) fn authenticate(
    msg: &Message<'_>,
    creds: &Credentials,
    realm: &str,
    nonces: &NonceKey,
    now_unix: i64,
    now_epoch: u64,
) -> Result<Authenticated, AuthFailure> {
    let fail = |error, username: Option<&str>| AuthFailure {
        error,
        username: username.map(str::to_string),
    };
    if matches!(creds, Credentials::None) {
        return Err(fail(Error::StunOnly, None));
    }
    if !msg.has_attribute(MessageIntegrity::TYPE)
        && !msg.has_attribute(MessageIntegritySha256::TYPE)
    {
        return Err(fail(Error::Unauthorized("no message integrity"), None));
    }
    let username = msg.attribute::<Username>().ok();
    let (Some(username), Ok(_), Ok(nonce)) = (
        username.as_ref().map(|u| u.username().to_string()),
        msg.attribute::<Realm>(),
        msg.attribute::<Nonce>(),
    ) else {
        return Err(fail(
            Error::BadRequest("missing USERNAME, REALM or NONCE"),
            None,
        ));
    };
    if !nonces.check(nonce.nonce(), now_epoch) {
        return Err(fail(Error::StaleNonce, Some(&username)));
    }
    // The key uses the configured realm; the client's REALM only has to be present
    // (it may carry an old realm after a change: the nonce dance fixes it).
    let (password, user) = match creds {
        Credentials::None => return Err(fail(Error::StunOnly, None)),
        Credentials::Static {
            username: u,
            password,
        } => {
            if *u != username {
                return Err(fail(Error::Unauthorized("unknown user"), Some(&username)));
            }
            (password.clone(), username.clone())
        }
        Credentials::Ephemeral { secret } => match check_ephemeral_username(&username, now_unix) {
            Ok(u) => (ephemeral_password(secret, &username), u.user_id),
            Err(_) => {
                return Err(fail(
                    Error::Unauthorized("invalid or expired ephemeral username"),
                    Some(&username),
                ));
            }
        },
    };
    let key: MessageIntegrityCredentials =
        LongTermKeyCredentials::new(username.clone(), password, realm.to_string()).into();
    match msg.validate_integrity(&key) {
        Ok(algorithm) => Ok(Authenticated {
            username,
            user,
            key,
            algorithm,
        }),
        Err(_) => Err(fail(
            Error::Unauthorized("integrity check failed"),
            Some(&username),
        )),
    }
}
