//! RFC 6062 over real sockets: a TURN client on a TCP stream (control or data
//! connection) and a TCP echo peer.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use stunner_turn::{Client, Received, Request, TransportKind, frame_len};

/// Our sans-IO client on a TCP connection to a TURN-TCP listener on 127.0.0.1.
pub struct StreamTurnClient {
    pub stream: TcpStream,
    pub client: Client,
    buf: Vec<u8>,
}

impl StreamTurnClient {
    pub fn connect(server_port: u16, user: &str, pass: &str) -> Self {
        let stream = TcpStream::connect(("127.0.0.1", server_port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Self {
            stream,
            client: Client::new(user, pass, TransportKind::Stream, 13),
            buf: Vec::new(),
        }
    }

    /// The next frame (STUN message or ChannelData), `None` on timeout or EOF.
    pub fn frame(&mut self) -> Option<Vec<u8>> {
        let mut chunk = [0u8; 4096];
        loop {
            if let Ok(Some(n)) = frame_len(&self.buf)
                && n <= self.buf.len()
            {
                return Some(self.buf.drain(..n).collect());
            }
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Sends a request (with the 401 dance) and returns the answer; `Ignored` on
    /// timeout. Indications that arrive meanwhile are returned in `also`.
    pub fn request_with(&mut self, req: Request, also: &mut Vec<Received>) -> Received {
        let mut bytes = self.client.request(req);
        for _ in 0..4 {
            self.stream.write_all(&bytes).unwrap();
            loop {
                let Some(f) = self.frame() else {
                    return Received::Ignored;
                };
                match self.client.receive(&f) {
                    Received::Retry(b) => {
                        bytes = b;
                        break;
                    }
                    r @ Received::ConnectionAttempt { .. } => also.push(r),
                    Received::Ignored => {}
                    other => return other,
                }
            }
        }
        Received::Ignored
    }

    pub fn request(&mut self, req: Request) -> Received {
        self.request_with(req, &mut Vec::new())
    }

    /// After ConnectionBind: the raw stream (with anything already read past the
    /// answer).
    pub fn into_raw(self) -> (TcpStream, Vec<u8>) {
        (self.stream, self.buf)
    }
}

/// A TCP echo server on 127.0.0.1: every connection gets its bytes back.
pub struct TcpEchoPeer {
    pub addr: SocketAddr,
}

impl TcpEchoPeer {
    pub fn start() -> Self {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { return };
                std::thread::spawn(move || {
                    let mut r = s.try_clone().unwrap();
                    let _ = std::io::copy(&mut r, &mut s);
                });
            }
        });
        Self { addr }
    }
}
