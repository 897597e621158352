//! TLS for TURN-TLS listeners (rustls with the ring provider, TLS 1.2 and 1.3), and the
//! self-signed certificate of a one-line `turns:` server.

use std::sync::Arc;

use base64::Engine as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use stunner_config::ListenerConfig;

use crate::Error;

/// The rustls server config of a TLS listener from its base64 PEM cert and key.
pub(crate) fn server_config(l: &ListenerConfig) -> Result<Arc<rustls::ServerConfig>, Error> {
    let bad = |what: &str, e: &dyn std::fmt::Display| {
        Error::Unsupported(format!("listener {:?}: invalid TLS {what}: {e}", l.name))
    };
    let cert_pem = l.cert_pem()?;
    let key_pem = l.key_pem()?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| bad("certificate", &e))?;
    if certs.is_empty() {
        return Err(bad("certificate", &"no PEM certificate found"));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| bad("key", &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
        .map_err(|e| bad("setup", &e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| bad("certificate or key", &e))?;
    Ok(Arc::new(cfg))
}

/// A self-signed certificate for `host` (and localhost), as base64 PEM (cert, key).
pub fn self_signed(host: &str) -> Result<(String, String), Error> {
    let mut names = vec!["localhost".to_string()];
    if host != "localhost" {
        names.push(host.to_string());
    }
    let ck = rcgen::generate_simple_self_signed(names).map_err(|e| {
        Error::Unsupported(format!("cannot generate a self-signed certificate: {e}"))
    })?;
    let b64 = |s: String| base64::engine::general_purpose::STANDARD.encode(s);
    Ok((b64(ck.cert.pem()), b64(ck.signing_key.serialize_pem())))
}
