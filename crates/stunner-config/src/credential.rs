//! TURN REST API credentials (draft-uberti-behave-turn-rest-00), as upstream and coturn
//! use them: username `<unix-expiry>:<userid>`, password
//! `base64(HMAC-SHA1(secret, username))`.
//!
//! Time is an argument (unix seconds), never read from a clock here.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use crate::Error;

/// The username for a credential that expires at `expiry` (unix seconds). An empty
/// `user_id` still gets its colon (`<expiry>:`), as upstream's auth service writes it;
/// [`check_ephemeral_username`] takes that and a bare timestamp alike.
pub fn ephemeral_username(expiry: i64, user_id: &str) -> String {
    format!("{expiry}:{user_id}")
}

/// The password for an ephemeral `username` under the shared `secret`.
pub fn ephemeral_password(secret: &str, username: &str) -> String {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha1>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// A presented ephemeral username, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EphemeralUser {
    /// Expiry, unix seconds.
    pub expiry: i64,
    /// The user id: the part after the timestamp for `<ts>:<id>`, else the whole
    /// username (used for quotas and allocation ownership).
    pub user_id: String,
}

/// Checks a presented username at time `now` (unix seconds): the expiry is the first
/// `:`-separated part that is an integer; it must be positive and not in the past.
pub fn check_ephemeral_username(username: &str, now: i64) -> Result<EphemeralUser, Error> {
    let parts: Vec<&str> = username.split(':').collect();
    let found = parts
        .iter()
        .enumerate()
        .find_map(|(i, p)| parse_int(p).map(|ts| (i, ts)));
    let Some((pos, expiry)) = found else {
        return Err(Error::InvalidTimestamp(username.to_string()));
    };
    if expiry <= 0 {
        return Err(Error::InvalidTimestamp(username.to_string()));
    }
    if expiry < now {
        return Err(Error::ExpiredCredential {
            username: username.to_string(),
            expiry,
            now,
        });
    }
    let user_id = if parts.len() == 2 && pos == 0 {
        parts[1].to_string()
    } else {
        username.to_string()
    };
    Ok(EphemeralUser { expiry, user_id })
}

/// An optionally signed decimal integer, as Go's `strconv.Atoi` reads one.
fn parse_int(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_matches_known_vectors() {
        // RFC 2202 §3 test case 2 (key "Jefe"), base64 of
        // effcdf6ae5eb2fa2d27416d5f184df9c259a7c79.
        assert_eq!(
            ephemeral_password("Jefe", "what do ya want for nothing?"),
            "7/zfauXrL6LSdBbV8YTfnCWafHk="
        );
        // Computed independently: python3 -c 'import hmac,hashlib,base64;
        // print(base64.b64encode(hmac.new(b"my-secret", b"1735689600:alice",
        // hashlib.sha1).digest()).decode())'
        assert_eq!(
            ephemeral_password("my-secret", "1735689600:alice"),
            "VMUPcprpF8oH1r6tNMDlpIuP6ts="
        );
    }

    #[test]
    fn usernames() {
        assert_eq!(ephemeral_username(1735689600, "alice"), "1735689600:alice");
        assert_eq!(ephemeral_username(1735689600, ""), "1735689600:");
        assert!(check_ephemeral_username("1735689600:", 1735689000).is_ok());
    }

    #[test]
    fn check_accepts_and_rejects() {
        let now = 1_700_000_000;
        let u = check_ephemeral_username("1795773116:bob", now).unwrap();
        assert_eq!((u.expiry, u.user_id.as_str()), (1795773116, "bob"));
        let u = check_ephemeral_username("1795773111", now).unwrap();
        assert_eq!(u.user_id, "1795773111");
        let u = check_ephemeral_username("bob:1795773116", now).unwrap();
        assert_eq!(u.user_id, "bob:1795773116");
        let u = check_ephemeral_username("1795773116:a:b", now).unwrap();
        assert_eq!(u.user_id, "1795773116:a:b");
        assert!(matches!(
            check_ephemeral_username("1600000000:bob", now),
            Err(Error::ExpiredCredential { .. })
        ));
        for bad in [
            "",
            "bob",
            "0:bob",
            "-5:bob",
            ":",
            "bob:",
            "+:x",
            "99999999999999999999",
        ] {
            assert!(
                matches!(
                    check_ephemeral_username(bad, now),
                    Err(Error::InvalidTimestamp(_))
                ),
                "{bad:?}"
            );
        }
        // Expiry exactly now is still valid.
        assert!(check_ephemeral_username("1700000000", now).is_ok());
    }
}
