//! The connection to the TURN server: UDP, TCP or TLS, with frames (STUN messages and
//! ChannelData) in and out.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use stunner_config::{ListenerProtocol, TurnUri};
use stunner_turn::frame_len;

use crate::Error;

/// How long a read waits before the session loop looks at other work.
pub(crate) const TICK: Duration = Duration::from_millis(10);

/// A connected UDP socket as a datagram Read/Write for OpenSSL's DTLS.
#[derive(Debug)]
pub(crate) struct Dgram(UdpSocket);

impl Read for Dgram {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.recv(buf)
    }
}

impl Write for Dgram {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.send(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub(crate) enum Transport {
    Udp(UdpSocket),
    Dtls(Box<openssl::ssl::SslStream<Dgram>>),
    Tcp(TcpStream, Vec<u8>),
    Tls(
        Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>,
        Vec<u8>,
    ),
}

/// Accepts any server certificate (`--insecure`).
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// How the server's TLS/DTLS certificate is checked.
#[derive(Clone, Debug, Default)]
pub(crate) struct TlsOpts {
    /// Accept any certificate.
    pub(crate) insecure: bool,
    /// Server name to send and verify (default: the URI's host).
    pub(crate) sni: Option<String>,
    /// PEM file of the CA certificates to trust.
    pub(crate) ca: Option<std::path::PathBuf>,
}

impl TlsOpts {
    fn check(&self) -> Result<(), Error> {
        if !self.insecure && self.ca.is_none() {
            return Err(Error::Tls(
                "no CA to verify the server certificate: pass --ca <pem-file>, or --insecure (no check)".into(),
            ));
        }
        Ok(())
    }

    /// A rustls verifier: any certificate, or the CAs of `--ca`.
    fn rustls_config(
        &self,
        provider: Arc<rustls::crypto::CryptoProvider>,
    ) -> Result<rustls::ClientConfig, Error> {
        use rustls::pki_types::pem::PemObject;
        let b = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
            .map_err(|e| Error::Tls(e.to_string()))?;
        if self.insecure {
            return Ok(b
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
                .with_no_client_auth());
        }
        let path = self
            .ca
            .as_deref()
            .ok_or_else(|| Error::Tls("no CA".into()))?;
        let mut roots = rustls::RootCertStore::empty();
        let certs = rustls::pki_types::CertificateDer::pem_file_iter(path)
            .map_err(|e| Error::Tls(format!("{}: {e}", path.display())))?;
        for c in certs {
            let c = c.map_err(|e| Error::Tls(format!("{}: {e}", path.display())))?;
            roots
                .add(c)
                .map_err(|e| Error::Tls(format!("{}: {e}", path.display())))?;
        }
        if roots.is_empty() {
            return Err(Error::Tls(format!(
                "{}: no certificate found",
                path.display()
            )));
        }
        Ok(b.with_root_certificates(roots).with_no_client_auth())
    }
}

fn resolve(host: &str, port: u16) -> Result<SocketAddr, Error> {
    (host, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| Error::Resolve(host.to_string()))
}

impl Transport {
    /// Connects to the server of `uri`.
    pub(crate) fn connect(uri: &TurnUri, opts: &TlsOpts) -> Result<Self, Error> {
        let sni = opts.sni.as_deref();
        let addr = resolve(&uri.host, uri.port)?;
        let io = |e: std::io::Error| Error::Io(format!("{addr}: {e}"));
        match uri.protocol {
            ListenerProtocol::TurnUdp => {
                let local: SocketAddr = if addr.is_ipv4() {
                    ([0, 0, 0, 0], 0).into()
                } else {
                    "[::]:0"
                        .parse()
                        .map_err(|_| Error::Io("bad address".into()))?
                };
                let s = UdpSocket::bind(local).map_err(io)?;
                s.connect(addr).map_err(io)?;
                s.set_read_timeout(Some(TICK)).map_err(io)?;
                Ok(Self::Udp(s))
            }
            ListenerProtocol::TurnTcp => {
                let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(io)?;
                s.set_nodelay(true).map_err(io)?;
                s.set_read_timeout(Some(TICK)).map_err(io)?;
                Ok(Self::Tcp(s, Vec::new()))
            }
            ListenerProtocol::TurnTls => {
                opts.check()?;
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let cfg = opts.rustls_config(provider)?;
                let name = sni.unwrap_or(&uri.host).to_string();
                let server_name = rustls::pki_types::ServerName::try_from(name.clone())
                    .map_err(|_| Error::Tls(format!("invalid server name {name:?}")))?;
                let conn = rustls::ClientConnection::new(Arc::new(cfg), server_name)
                    .map_err(|e| Error::Tls(e.to_string()))?;
                let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(io)?;
                s.set_nodelay(true).map_err(io)?;
                s.set_read_timeout(Some(TICK)).map_err(io)?;
                Ok(Self::Tls(
                    Box::new(rustls::StreamOwned::new(conn, s)),
                    Vec::new(),
                ))
            }
            ListenerProtocol::TurnDtls => {
                opts.check()?;
                let local: SocketAddr = if addr.is_ipv4() {
                    ([0, 0, 0, 0], 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let s = UdpSocket::bind(local).map_err(io)?;
                s.connect(addr).map_err(io)?;
                // The handshake may take a few round trips; then reads tick.
                s.set_read_timeout(Some(Duration::from_secs(5)))
                    .map_err(io)?;
                let tls = |e: &dyn std::fmt::Display| Error::Tls(e.to_string());
                let mut b = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::dtls())
                    .map_err(|e| tls(&e))?;
                match (&opts.ca, opts.insecure) {
                    (Some(ca), false) => {
                        b.set_ca_file(ca)
                            .map_err(|e| Error::Tls(format!("{}: {e}", ca.display())))?;
                        b.set_verify(openssl::ssl::SslVerifyMode::PEER);
                    }
                    _ => b.set_verify(openssl::ssl::SslVerifyMode::NONE),
                }
                let mut cfg = b.build().configure().map_err(|e| tls(&e))?;
                // With a CA the name is checked too (an IP address against the IP SANs).
                cfg.set_verify_hostname(!opts.insecure);
                let name = sni.unwrap_or(&uri.host).to_string();
                let stream = cfg
                    .connect(&name, Dgram(s.try_clone().map_err(io)?))
                    .map_err(|e| tls(&e))?;
                s.set_read_timeout(Some(TICK)).map_err(io)?;
                Ok(Self::Dtls(Box::new(stream)))
            }
        }
    }

    pub(crate) fn kind(&self) -> stunner_turn::TransportKind {
        match self {
            Self::Udp(_) => stunner_turn::TransportKind::Datagram,
            Self::Dtls(_) => stunner_turn::TransportKind::PaddedDatagram,
            _ => stunner_turn::TransportKind::Stream,
        }
    }

    pub(crate) fn send(&mut self, frame: &[u8]) -> Result<(), Error> {
        let r = match self {
            Self::Udp(s) => s.send(frame).map(|_| ()),
            Self::Dtls(s) => s
                .ssl_write(frame)
                .map(|_| ())
                .map_err(|e| std::io::Error::other(e.to_string())),
            Self::Tcp(s, _) => s.write_all(frame),
            Self::Tls(s, _) => s.write_all(frame).and_then(|()| s.flush()),
        };
        r.map_err(|e| Error::Io(e.to_string()))
    }

    /// The next frame, or `None` if nothing came within a tick.
    pub(crate) fn recv(&mut self) -> Result<Option<Vec<u8>>, Error> {
        let mut buf = [0u8; 65536];
        match self {
            Self::Udp(s) => match s.recv(&mut buf) {
                Ok(n) => Ok(Some(buf[..n].to_vec())),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    Ok(None)
                }
                Err(e) => Err(Error::Io(e.to_string())),
            },
            Self::Dtls(s) => match s.ssl_read(&mut buf) {
                Ok(n) => Ok(Some(buf[..n].to_vec())),
                Err(e) if e.code() == openssl::ssl::ErrorCode::WANT_READ => Ok(None),
                Err(e) => match e.io_error() {
                    Some(io)
                        if matches!(io.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                    {
                        Ok(None)
                    }
                    _ => Err(Error::Io(e.to_string())),
                },
            },
            Self::Tcp(s, pending) => stream_frame(s, pending, &mut buf),
            Self::Tls(s, pending) => stream_frame(s.as_mut(), pending, &mut buf),
        }
    }

    /// After ConnectionBind (RFC 6062 §4.4) a TCP/TLS connection carries raw bytes: what
    /// came in behind the answer first, then whatever the next read gives within a tick.
    pub(crate) fn recv_raw(&mut self) -> Result<Option<Vec<u8>>, Error> {
        let mut buf = [0u8; 65536];
        let (s, pending): (&mut dyn Read, &mut Vec<u8>) = match self {
            Self::Tcp(s, pending) => (s, pending),
            Self::Tls(s, pending) => (s.as_mut(), pending),
            _ => {
                return Err(Error::Io(
                    "a datagram transport carries no byte stream".into(),
                ));
            }
        };
        if !pending.is_empty() {
            return Ok(Some(std::mem::take(pending)));
        }
        match s.read(&mut buf) {
            Ok(0) => Err(Error::Io("the peer connection closed".into())),
            Ok(n) => Ok(Some(buf[..n].to_vec())),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Ok(None),
            Err(e) => Err(Error::Io(e.to_string())),
        }
    }
}

fn stream_frame(
    s: &mut dyn Read,
    pending: &mut Vec<u8>,
    buf: &mut [u8],
) -> Result<Option<Vec<u8>>, Error> {
    loop {
        match frame_len(pending) {
            Ok(Some(n)) if n <= pending.len() => return Ok(Some(pending.drain(..n).collect())),
            Ok(_) => {}
            Err(_) => return Err(Error::Io("server sent neither STUN nor ChannelData".into())),
        }
        match s.read(buf) {
            Ok(0) => return Err(Error::Io("server closed the connection".into())),
            Ok(n) => pending.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Ok(None);
            }
            Err(e) => return Err(Error::Io(e.to_string())),
        }
    }
}
