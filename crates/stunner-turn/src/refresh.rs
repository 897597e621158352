//! Refresh (RFC 8656 §7.3–7.5): extend an allocation, or delete it with LIFETIME 0.

use std::time::Instant;

use stun_types::AddressFamily;
use stun_types::message::Message;
use turn_types::attribute::{Lifetime, RequestedAddressFamily};

use crate::Error;
use crate::allocate::clamp_lifetime;
use crate::auth::Authenticated;
use crate::response;
use crate::server::Server;
use crate::transport::FiveTuple;

impl Server {
    /// The allocation of `ft` if `auth` may act on it (437 / 441 otherwise).
    pub(crate) fn owned_allocation(
        &mut self,
        ft: FiveTuple,
        auth: &Authenticated,
    ) -> Result<&mut crate::allocation::Allocation, Error> {
        let a = self
            .allocations
            .get_mut(&ft)
            .ok_or(Error::AllocationMismatch)?;
        if a.username != auth.username {
            return Err(Error::WrongCredentials);
        }
        Ok(a)
    }

    pub(crate) fn handle_refresh(
        &mut self,
        now: Instant,
        ft: FiveTuple,
        msg: &Message<'_>,
        auth: &Authenticated,
    ) -> Result<(), Error> {
        let a = self.owned_allocation(ft, auth)?;
        // RFC 8656 §7.3: the family named must be one the allocation relays in.
        if let Ok(f) = msg.attribute::<RequestedAddressFamily>()
            && !a
                .relays()
                .any(|r| r.is_ipv6() == (f.family() == AddressFamily::IPV6))
        {
            return Err(Error::PeerAddressFamilyMismatch);
        }
        let requested = msg.attribute::<Lifetime>().ok().map(|l| l.seconds());
        let granted = if requested == Some(0) {
            self.delete_allocation(now, ft, false);
            0
        } else {
            let lifetime = clamp_lifetime(requested);
            a.expiry = now + lifetime;
            u32::try_from(lifetime.as_secs()).unwrap_or(u32::MAX)
        };
        let bytes = response::success(msg, &[&Lifetime::new(granted)], Some(auth));
        self.respond(ft, bytes);
        Ok(())
    }
}
