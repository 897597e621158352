//! Request dispatch: unknown attributes (420), authentication and its challenges (401,
//! 438), then the method handlers.

use std::time::Instant;

use stun_types::attribute::{Attribute, AttributeType};
use stun_types::message::{BINDING, Message};
use turn_types::message::{
    ALLOCATE, CHANNEL_BIND, CONNECT, CONNECTION_BIND, CREATE_PERMISSION, REFRESH, SEND,
};

use crate::Error;
use crate::auth::{Authenticated, authenticate};
use crate::event::{DropReason, Event};
use crate::response;
use crate::server::Server;
use crate::transport::{FiveTuple, Source};

/// Comprehension-required attributes (< 0x8000) this server understands
/// (RFC 8489 §14, RFC 8656 §14, RFC 8445 §16.1 for ICE's Binding attributes).
const KNOWN_REQUIRED: &[u16] = &[
    0x0001, // MAPPED-ADDRESS
    0x0006, // USERNAME
    0x0008, // MESSAGE-INTEGRITY
    0x0009, // ERROR-CODE
    0x000A, // UNKNOWN-ATTRIBUTES
    0x000C, // CHANNEL-NUMBER
    0x000D, // LIFETIME
    0x0012, // XOR-PEER-ADDRESS
    0x0013, // DATA
    0x0014, // REALM
    0x0015, // NONCE
    0x0016, // XOR-RELAYED-ADDRESS
    0x0017, // REQUESTED-ADDRESS-FAMILY
    0x0018, // EVEN-PORT
    0x0019, // REQUESTED-TRANSPORT
    0x001A, // DONT-FRAGMENT
    0x001C, // MESSAGE-INTEGRITY-SHA256
    0x001D, // PASSWORD-ALGORITHM
    0x0020, // XOR-MAPPED-ADDRESS
    0x0022, // RESERVATION-TOKEN
    0x0024, // PRIORITY
    0x0025, // USE-CANDIDATE
    0x002A, // CONNECTION-ID (RFC 6062)
];

fn unknown_required(msg: &Message<'_>) -> Vec<AttributeType> {
    let mut out = Vec::new();
    for (_, a) in msg.iter_attributes() {
        let t = a.get_type();
        if t.comprehension_required()
            && !KNOWN_REQUIRED.contains(&u16::from(t))
            && !out.contains(&t)
        {
            out.push(t);
        }
    }
    out
}

impl Server {
    /// Sends a response built by [`response`](crate::response), or counts one that could
    /// not be built.
    pub(crate) fn respond(&mut self, ft: FiveTuple, bytes: Option<Vec<u8>>) {
        match bytes {
            Some(b) => self.transmit(Source::Listener(ft.server), ft.client, b),
            None => self.drop_packet(DropReason::Unencodable),
        }
    }

    pub(crate) fn respond_error(
        &mut self,
        now: Instant,
        ft: FiveTuple,
        msg: &Message<'_>,
        err: &Error,
        auth: Option<&Authenticated>,
    ) {
        let nonce;
        let challenge = if matches!(err, Error::Unauthorized(_) | Error::StaleNonce) {
            nonce = self.nonce(now);
            Some((self.config.realm.as_str(), nonce.as_str()))
        } else {
            None
        };
        let bytes = response::error(msg, err, challenge, &[], auth);
        self.respond(ft, bytes);
        if *err != Error::Unauthorized("no message integrity") {
            self.event(Event::RequestFailed {
                client: ft.client,
                method: msg.method().value(),
                error: err.clone(),
            });
        }
    }

    pub(crate) fn handle_request(&mut self, now: Instant, ft: FiveTuple, msg: &Message<'_>) {
        let unknown = unknown_required(msg);
        if !unknown.is_empty() {
            let bytes = response::error(msg, &Error::UnknownAttributes, None, &unknown, None);
            self.respond(ft, bytes);
            return;
        }
        let method = msg.method();
        if method == BINDING {
            self.handle_binding(ft, msg);
            return;
        }
        let known = [
            ALLOCATE,
            REFRESH,
            CREATE_PERMISSION,
            CHANNEL_BIND,
            CONNECT,
            CONNECTION_BIND,
        ];
        if !known.contains(&method) {
            self.respond_error(now, ft, msg, &Error::BadRequest("unknown method"), None);
            return;
        }
        // RFC 8656 §7.2: a retransmitted Allocate gets the original answer, whatever
        // happened to the nonce since.
        if method == ALLOCATE
            && let Some(a) = self.allocations.get(&ft)
            && a.response.transaction == u128::from(msg.transaction_id())
        {
            let bytes = a.response.bytes.clone();
            self.respond(ft, Some(bytes));
            return;
        }
        let Some(auth) = self.authenticate(now, ft, msg) else {
            return;
        };
        let result = if method == ALLOCATE {
            self.handle_allocate(ft, msg, &auth)
        } else if method == REFRESH {
            self.handle_refresh(now, ft, msg, &auth)
        } else if method == CREATE_PERMISSION {
            self.handle_create_permission(now, ft, msg, &auth)
        } else if method == CONNECT {
            self.handle_connect(now, ft, msg, &auth)
        } else if method == CONNECTION_BIND {
            self.handle_connection_bind(ft, msg, &auth)
        } else {
            self.handle_channel_bind(now, ft, msg, &auth)
        };
        if let Err(e) = result {
            self.respond_error(now, ft, msg, &e, Some(&auth));
        }
    }

    fn authenticate(
        &mut self,
        now: Instant,
        ft: FiveTuple,
        msg: &Message<'_>,
    ) -> Option<Authenticated> {
        let res = authenticate(
            msg,
            &self.config.credentials,
            &self.config.realm,
            &self.nonces,
            self.unix(now),
            self.epoch_secs(now),
        );
        match res {
            Ok(a) => {
                self.event(Event::AuthAccepted {
                    client: ft.client,
                    username: a.username.clone(),
                });
                Some(a)
            }
            Err(f) => {
                // A first request without credentials is the normal start of the
                // dance (RFC 8489 §9.2.3), not a rejection worth reporting.
                if f.error != Error::Unauthorized("no message integrity") {
                    self.event(Event::AuthRejected {
                        client: ft.client,
                        username: f.username,
                        reason: f.error.kind(),
                    });
                }
                self.respond_error(now, ft, msg, &f.error, None);
                None
            }
        }
    }

    pub(crate) fn handle_indication(&mut self, now: Instant, ft: FiveTuple, msg: &Message<'_>) {
        if msg.method() == SEND {
            self.handle_send(now, ft, msg);
        } else if msg.method() != BINDING {
            // Binding indications are keepalives (RFC 8489 §6.3.2); others are unknown.
            self.drop_packet(DropReason::Unexpected);
        }
    }
}
