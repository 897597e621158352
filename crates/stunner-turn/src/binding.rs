//! STUN Binding (RFC 8489 §3): reflect the client's address. Needs no credentials, so
//! it also serves auth type `none` (STUN-only mode).

use stun_types::attribute::XorMappedAddress;
use stun_types::message::Message;

use crate::response;
use crate::server::Server;
use crate::transport::FiveTuple;

impl Server {
    pub(crate) fn handle_binding(&mut self, ft: FiveTuple, msg: &Message<'_>) {
        let xma = XorMappedAddress::new(ft.client, msg.transaction_id());
        let bytes = response::success(msg, &[&xma], None);
        self.respond(ft, bytes);
    }
}
