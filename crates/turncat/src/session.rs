//! One allocation: connect, Allocate (with the 401 dance), bind a channel to the peer,
//! then relay; Refresh and ChannelBind are renewed before they expire. For a TCP peer
//! (RFC 6062) the allocation is a TCP one: Connect to the peer, then a second connection
//! to the server is bound to it (ConnectionBind) and carries the raw bytes.

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

/// Where the allocation relays to.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Peer {
    /// `udp://`: a UDP relay and a channel.
    Udp(SocketAddr),
    /// `tcp://`: a TCP relay, a peer connection and a data connection (RFC 6062).
    Tcp(SocketAddr),
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Udp(a) => write!(f, "udp://{a}"),
            Self::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

pub(crate) struct Session {
    transport: Transport,
    /// The data connection of a TCP peer, bound to the peer connection.
    data: Option<Transport>,
    client: Client,
    peer: SocketAddr,
    renew_at: Instant,
    /// The relayed address, for logs.
    pub(crate) relayed: SocketAddr,
}

impl Session {
    pub(crate) fn open(uri: &TurnUri, peer: Peer, opts: &TlsOpts) -> Result<Self, Error> {
        let transport = Transport::connect(uri, opts)?;
        let tcp = matches!(peer, Peer::Tcp(_));
        let peer = match peer {
            Peer::Udp(a) | Peer::Tcp(a) => a,
        };
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
            data: None,
            client,
            peer,
            renew_at: Instant::now() + RENEW,
            relayed: peer,
        };
        let lifetime = Some(LIFETIME);
        let allocate = if tcp {
            Request::AllocateTcp { lifetime }
        } else {
            Request::Allocate { lifetime }
        };
        match s.request(allocate)? {
            Received::Allocated { relayed, .. } => s.relayed = relayed,
            other => return Err(Error::Turn(format!("allocation failed: {other:?}"))),
        }
        if tcp {
            s.bind_peer_connection(uri, opts)?;
            return Ok(s);
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

    /// RFC 6062 §4.3–4.4: Connect the relay to the peer, then bind a new connection to
    /// the server (same transport and credentials) to that peer connection.
    fn bind_peer_connection(&mut self, uri: &TurnUri, opts: &TlsOpts) -> Result<(), Error> {
        let peer = self.peer;
        let id = match self.request(Request::Connect { peer })? {
            Received::Connected { id } => id,
            other => return Err(Error::Turn(format!("connect to {peer} failed: {other:?}"))),
        };
        let mut data = Transport::connect(uri, opts)?;
        match request_on(&mut self.client, &mut data, Request::ConnectionBind { id })? {
            Received::ConnectionBound => {}
            other => {
                return Err(Error::Turn(format!(
                    "connection bind to {peer} failed: {other:?}"
                )));
            }
        }
        self.data = Some(data);
        Ok(())
    }

    /// Sends a request and waits for its answer (following the 401/438 dance).
    fn request(&mut self, req: Request) -> Result<Received, Error> {
        request_on(&mut self.client, &mut self.transport, req)
    }

    /// Sends client data to the peer.
    pub(crate) fn send(&mut self, data: &[u8]) -> Result<(), Error> {
        if let Some(d) = &mut self.data {
            return d.send(data);
        }
        let f = self.client.channel_data(CHANNEL, data);
        self.transport.send(&f)
    }

    /// Waits a tick for data from the peer; also keeps the allocation alive.
    pub(crate) fn poll(&mut self) -> Result<Option<Vec<u8>>, Error> {
        if self.data.is_some() {
            if Instant::now() >= self.renew_at {
                self.renew_at = Instant::now() + RENEW;
                // The control connection carries nothing else: wait for the answer here.
                match self.request(Request::Refresh { lifetime: LIFETIME })? {
                    Received::Refreshed { .. } => {}
                    other => return Err(Error::Turn(format!("refresh failed: {other:?}"))),
                }
            }
            return self.data.as_mut().map_or(Ok(None), Transport::recv_raw);
        }
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

    /// Releases the allocation (and, with it, a TCP peer's connections).
    pub(crate) fn close(&mut self) {
        let r = self.client.request(Request::Refresh { lifetime: 0 });
        let _ = self.transport.send(&r);
    }
}

/// Sends a request on a connection and waits for its answer (following the 401/438
/// dance); indications and data that arrive meanwhile are skipped.
fn request_on(client: &mut Client, t: &mut Transport, req: Request) -> Result<Received, Error> {
    let mut bytes = client.request(req);
    t.send(&bytes)?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let Some(frame) = t.recv()? else {
            continue;
        };
        match client.receive(&frame) {
            Received::Retry(b) => {
                bytes = b;
                t.send(&bytes)?;
            }
            Received::Ignored
            | Received::Data { .. }
            | Received::ChannelData { .. }
            | Received::ConnectionAttempt { .. } => {}
            other => return Ok(other),
        }
    }
    Err(Error::Turn("no answer from the TURN server".into()))
}
