//! Stateless nonces (RFC 8489 §9.2): the expiry time and a MAC over it under a
//! per-server key, so a nonce needs no table and cannot be forged.

use hmac::{Hmac, Mac};
use sha1::Sha1;

/// The nonce key and lifetime of one server.
#[derive(Clone)]
pub(crate) struct NonceKey {
    key: [u8; 32],
}

const MAC_LEN: usize = 8;

impl NonceKey {
    pub(crate) fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    fn mac(&self, expiry: u64) -> [u8; MAC_LEN] {
        let mut out = [0; MAC_LEN];
        if let Ok(mut m) = Hmac::<Sha1>::new_from_slice(&self.key) {
            m.update(&expiry.to_be_bytes());
            out.copy_from_slice(&m.finalize().into_bytes()[..MAC_LEN]);
        }
        out
    }

    /// A nonce that expires at `expiry` (seconds since the server's epoch).
    pub(crate) fn make(&self, expiry: u64) -> String {
        let mut s = String::with_capacity(32);
        for b in expiry.to_be_bytes().iter().chain(self.mac(expiry).iter()) {
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 15)]));
        }
        s
    }

    /// Whether `nonce` is ours and not expired at `now` (seconds since the epoch).
    pub(crate) fn check(&self, nonce: &str, now: u64) -> bool {
        let b = nonce.as_bytes();
        if b.len() != 2 * (8 + MAC_LEN) {
            return false;
        }
        let mut raw = [0u8; 8 + MAC_LEN];
        for (i, out) in raw.iter_mut().enumerate() {
            match (unhex(b[2 * i]), unhex(b[2 * i + 1])) {
                (Some(h), Some(l)) => *out = (h << 4) | l,
                _ => return false,
            }
        }
        let mut e = [0u8; 8];
        e.copy_from_slice(&raw[..8]);
        let expiry = u64::from_be_bytes(e);
        // Constant-time enough: the MAC is compared in full either way.
        let ok = self
            .mac(expiry)
            .iter()
            .zip(&raw[8..])
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
        ok && now <= expiry
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn unhex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_expire_and_cannot_be_forged() {
        let k = NonceKey::new([7; 32]);
        let n = k.make(100);
        assert!(k.check(&n, 50));
        assert!(k.check(&n, 100));
        assert!(!k.check(&n, 101));
        assert!(!NonceKey::new([8; 32]).check(&n, 50));
        let forged = format!("{}{}", &k.make(1000)[..16], &n[16..]);
        assert!(!k.check(&forged, 50));
        assert!(!k.check("", 0));
        assert!(!k.check("zz", 0));
        assert!(!k.check(&"g".repeat(32), 0));
    }
}
