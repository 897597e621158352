//! One allocation: connect, Allocate (with the 401 dance), bind a channel to the peer,
//! then relay; Refresh and ChannelBind are renewed before they expire.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use stunner_config::TurnUri;
use stunner_turn::{Client, Received, Request};

use crate::Error;
use crate::transport::TlsOpts;
use crate::transport::Transport;

const CHANNEL: u16 = 0x4000;
/// Allocation lifetime asked for; both it and the channel are renewed at half of it.
const LIFETIME: u32 = 600;
const RENEW: Duration = Duration::from_secs(240);

pub(crate) struct Session {
    transport: Transport,
    client: Client,
    peer: SocketAddr,
    renew_at: Instant,
    /// The relayed address, for logs.
    pub(crate) relayed: SocketAddr,
}

impl Session {
    pub(crate) fn open(uri: &TurnUri, peer: SocketAddr, opts: &TlsOpts) -> Result<Self, Error> {
        let transport = Transport::connect(uri, opts)?;
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        let client = Client::new(
            uri.username.as_deref().unwrap_or(""),
            uri.password.as_deref().unwrap_or(""),
            transport.kind(),
            seed,
        );
        let mut s = Self {
            transport,
            client,
            peer,
            renew_at: Instant::now() + RENEW,
            relayed: peer,
        };
        match s.request(Request::Allocate {
            lifetime: Some(LIFETIME),
        })? {
            Received::Allocated { relayed, .. } => s.relayed = relayed,
            other => return Err(Error::Turn(format!("allocation failed: {other:?}"))),
        }
        match s.request(Request::ChannelBind {
            channel: CHANNEL,
            peer,
        })? {
            Received::ChannelBound => {}
            other => {
                return Err(Error::Turn(format!(
                    "channel bind to {peer} failed: {other:?}"
                )));
            }
        }
        Ok(s)
    }

    /// Sends a request and waits for its answer (following the 401/438 dance).
    fn request(&mut self, req: Request) -> Result<Received, Error> {
        let mut bytes = self.client.request(req);
        self.transport.send(&bytes)?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let Some(frame) = self.transport.recv()? else {
                continue;
            };
            match self.client.receive(&frame) {
                Received::Retry(b) => {
                    bytes = b;
                    self.transport.send(&bytes)?;
                }
                Received::Ignored | Received::Data { .. } | Received::ChannelData { .. } => {}
                other => return Ok(other),
            }
        }
        Err(Error::Turn("no answer from the TURN server".into()))
    }

    /// Sends client data to the peer.
    pub(crate) fn send(&mut self, data: &[u8]) -> Result<(), Error> {
        let f = self.client.channel_data(CHANNEL, data);
        self.transport.send(&f)
    }

    /// Waits a tick for data from the peer; also keeps the allocation alive.
    pub(crate) fn poll(&mut self) -> Result<Option<Vec<u8>>, Error> {
        if Instant::now() >= self.renew_at {
            self.renew_at = Instant::now() + RENEW;
            let r = self.client.request(Request::Refresh { lifetime: LIFETIME });
            self.transport.send(&r)?;
            let b = self.client.request(Request::ChannelBind {
                channel: CHANNEL,
                peer: self.peer,
            });
            self.transport.send(&b)?;
        }
        let Some(frame) = self.transport.recv()? else {
            return Ok(None);
        };
        match self.client.receive(&frame) {
            Received::ChannelData { range, .. } => Ok(Some(frame[range].to_vec())),
            Received::Data { payload, .. } => Ok(Some(payload)),
            Received::Retry(b) => {
                self.transport.send(&b)?;
                Ok(None)
            }
            Received::Failed { code, reason, .. } => Err(Error::Turn(format!("{code} {reason}"))),
            _ => Ok(None),
        }
    }

    /// Releases the allocation.
    pub(crate) fn close(&mut self) {
        let r = self.client.request(Request::Refresh { lifetime: 0 });
        let _ = self.transport.send(&r);
    }
}
