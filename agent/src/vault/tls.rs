//! TLS between bulwarkd and its Vault.
//!
//! With `tls = "self-signed"` Bulwark makes a certificate for the listen
//! address (ECDSA P-256, rcgen): the private key goes to the secret store
//! like every other key, the certificate (not a secret) beside it. With
//! `{ cert, key }` the operator's certificate is used. Either way Bulwark's
//! client trusts exactly that certificate, byte for byte, and nothing else:
//! no system roots, no other certificate of the same name.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

use super::client::Secret;
use super::VaultError;

/// Make ring the process's rustls provider (reqwest is built without one
/// of its own, to avoid a second crypto library). Idempotent.
pub fn install_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err only when another provider is installed already: that one serves.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A certificate and its key, as PEM.
pub struct Pair {
    pub cert_pem: String,
    pub key_pem: Secret,
}

/// A new self-signed certificate for `ip` (and loopback, and `localhost`).
pub fn generate(ip: IpAddr) -> Result<Pair, VaultError> {
    let fail = |e: rcgen::Error| VaultError::Tls(format!("cannot make a certificate: {e}"));
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).map_err(fail)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("Bulwark Vault {ip}"));
    params.subject_alt_names.push(rcgen::SanType::IpAddress(ip));
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    if ip != loopback {
        params.subject_alt_names.push(rcgen::SanType::IpAddress(loopback));
    }
    let key = rcgen::KeyPair::generate().map_err(fail)?;
    let cert = params.self_signed(&key).map_err(fail)?;
    Ok(Pair {
        cert_pem: cert.pem(),
        key_pem: Secret(key.serialize_pem()),
    })
}

/// The file naming the address a self-signed certificate was made for.
fn marker(cert: &Path) -> std::path::PathBuf {
    cert.with_extension("for")
}

/// Whether the certificate at `cert` exists and was made for `ip`.
pub fn covers(cert: &Path, ip: IpAddr) -> bool {
    cert.is_file() && std::fs::read_to_string(marker(cert)).is_ok_and(|s| s.trim() == ip.to_string())
}

/// Note which address the certificate at `cert` was made for.
pub fn mark(cert: &Path, ip: IpAddr) -> Result<(), VaultError> {
    crate::state::write_atomic_mode(&marker(cert), ip.to_string().as_bytes(), 0o644).map_err(VaultError::State)
}

/// The first certificate of a PEM file, DER-encoded.
pub fn first_cert(pem: &[u8], from: &Path) -> Result<Vec<u8>, VaultError> {
    CertificateDer::pem_slice_iter(pem)
        .next()
        .and_then(Result::ok)
        .map(|c| c.as_ref().to_vec())
        .ok_or_else(|| VaultError::Tls(format!("{} holds no PEM certificate", from.display())))
}

/// A rustls client configuration that accepts exactly the certificate `der`.
pub fn pinned(der: Vec<u8>) -> Result<rustls::ClientConfig, VaultError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(Pinned {
        der,
        provider: provider.clone(),
    });
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| VaultError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// Accepts one certificate: the pinned one. The handshake signature is
/// still verified, so only the holder of its key can present it.
#[derive(Debug)]
struct Pinned {
    der: Vec<u8>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.der.as_slice() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
