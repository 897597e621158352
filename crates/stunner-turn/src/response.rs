//! Building responses: success and error, signed when the request authenticated, with
//! FINGERPRINT (RFC 8489 §14.7).

use stun_types::attribute::{AttributeWrite, ErrorCode, Nonce, Realm, UnknownAttributes};
use stun_types::message::{Message, MessageWrite, MessageWriteExt, MessageWriteVec};

use crate::Error;
use crate::auth::Authenticated;

/// A success response with `attrs`, signed with `auth` when given.
pub(crate) fn success(
    req: &Message<'_>,
    attrs: &[&dyn AttributeWrite],
    auth: Option<&Authenticated>,
) -> Vec<u8> {
    let mut w = Message::builder_success(req, MessageWriteVec::with_capacity(128));
    finish(&mut w, attrs, auth);
    w.finish()
}

/// An error response. 401 and 438 carry REALM and a fresh NONCE; 420 carries
/// UNKNOWN-ATTRIBUTES; errors after authentication are signed.
pub(crate) fn error(
    req: &Message<'_>,
    err: &Error,
    challenge: Option<(&str, &str)>,
    unknown: &[stun_types::attribute::AttributeType],
    auth: Option<&Authenticated>,
) -> Vec<u8> {
    let mut w = Message::builder_error(req, MessageWriteVec::with_capacity(128));
    let mut attrs: Vec<Box<dyn AttributeWrite>> = Vec::new();
    if let Ok(code) = ErrorCode::new(err.code(), err.reason()) {
        attrs.push(Box::new(code));
    }
    if let Some((realm, nonce)) = challenge {
        if let Ok(r) = Realm::new(realm) {
            attrs.push(Box::new(r));
        }
        if let Ok(n) = Nonce::new(nonce) {
            attrs.push(Box::new(n));
        }
    }
    if !unknown.is_empty() {
        attrs.push(Box::new(UnknownAttributes::new(unknown)));
    }
    let refs: Vec<&dyn AttributeWrite> = attrs.iter().map(|a| a.as_ref()).collect();
    // RFC 8489 §9.2.4: no integrity on 400, 401, 420 and 438.
    let sign = auth.filter(|_| !matches!(err.code(), 400 | 401 | 420 | 438));
    finish(&mut w, &refs, sign);
    w.finish()
}

fn finish(w: &mut MessageWriteVec, attrs: &[&dyn AttributeWrite], auth: Option<&Authenticated>) {
    for a in attrs {
        // Attributes are built by us and fit; a failure would only drop the attribute.
        let _ = w.add_attribute(*a);
    }
    if let Some(a) = auth {
        let _ = w.add_message_integrity(&a.key, a.algorithm);
    }
    let _ = w.add_fingerprint();
}
