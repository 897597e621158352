//! Building responses: success and error, signed when the request authenticated, with
//! FINGERPRINT (RFC 8489 §14.7). A response that cannot be completed (an attribute,
//! MESSAGE-INTEGRITY or FINGERPRINT that does not fit) is `None`: the caller sends nothing
//! rather than an unsigned or partial answer, and counts it
//! ([`DropReason::Unencodable`](crate::DropReason::Unencodable)).

use stun_types::attribute::{AttributeWrite, ErrorCode, Nonce, Realm, UnknownAttributes};
use stun_types::message::{Message, MessageWrite, MessageWriteExt, MessageWriteVec};

use crate::Error;
use crate::auth::Authenticated;

/// A success response with `attrs`, signed with `auth` when given.
pub(crate) fn success(
    req: &Message<'_>,
    attrs: &[&dyn AttributeWrite],
    auth: Option<&Authenticated>,
) -> Option<Vec<u8>> {
    let mut w = Message::builder_success(req, MessageWriteVec::with_capacity(128));
    finish(&mut w, attrs, auth)?;
    Some(w.finish())
}

/// An error response. 401 and 438 carry REALM and a fresh NONCE; 420 carries
/// UNKNOWN-ATTRIBUTES; errors after authentication are signed.
pub(crate) fn error(
    req: &Message<'_>,
    err: &Error,
    challenge: Option<(&str, &str)>,
    unknown: &[stun_types::attribute::AttributeType],
    auth: Option<&Authenticated>,
) -> Option<Vec<u8>> {
    let mut w = Message::builder_error(req, MessageWriteVec::with_capacity(128));
    let mut attrs: Vec<Box<dyn AttributeWrite>> = Vec::new();
    // An error response without its code, or a challenge without REALM and NONCE, would
    // tell the client nothing it can act on (RFC 8489 §9.2.4): none is sent instead.
    attrs.push(Box::new(ErrorCode::new(err.code(), err.reason()).ok()?));
    if let Some((realm, nonce)) = challenge {
        attrs.push(Box::new(Realm::new(realm).ok()?));
        attrs.push(Box::new(Nonce::new(nonce).ok()?));
    }
    if !unknown.is_empty() {
        attrs.push(Box::new(UnknownAttributes::new(unknown)));
    }
    let refs: Vec<&dyn AttributeWrite> = attrs.iter().map(|a| a.as_ref()).collect();
    // RFC 8489 §9.2.4: no integrity on 400, 401, 420 and 438.
    let sign = auth.filter(|_| !matches!(err.code(), 400 | 401 | 420 | 438));
    finish(&mut w, &refs, sign)?;
    Some(w.finish())
}

fn finish(
    w: &mut MessageWriteVec,
    attrs: &[&dyn AttributeWrite],
    auth: Option<&Authenticated>,
) -> Option<()> {
    for a in attrs {
        w.add_attribute(*a).ok()?;
    }
    if let Some(a) = auth {
        w.add_message_integrity(&a.key, a.algorithm).ok()?;
    }
    w.add_fingerprint().ok()
}
