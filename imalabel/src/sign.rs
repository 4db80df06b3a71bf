//! imasig signatures: RSA PKCS#1 v1.5 over the file digest, as the kernel
//! verifies them (`asymmetric_verify()`) and `evmctl ima_sign` makes them.
//!
//! The key id in a signature is the last four bytes of the signing
//! certificate's subject key identifier: the kernel finds the key in the
//! `_ima` keyring by it.

use std::path::{Path, PathBuf};

use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey};
use rsa::{Pkcs1v15Sign, RsaPrivateKey, RsaPublicKey};
use sha2::Digest as _;
use x509_cert::der::{Decode, Encode};

use crate::label::HashAlgo;

const SUBJECT_KEY_IDENTIFIER: &str = "2.5.29.14";

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a DER X.509 certificate: {reason}")]
    Cert { path: PathBuf, reason: String },
    #[error("{path} holds a {what} key; Bulwark signs and verifies RSA only")]
    NotRsa { path: PathBuf, what: String },
    #[error("{path} is not an unencrypted RSA private key in PEM (PKCS#1 or PKCS#8)")]
    Key { path: PathBuf },
    #[error("the private key {key} does not belong to the certificate {cert}")]
    Mismatch { key: PathBuf, cert: PathBuf },
    #[error("signing failed: {0}")]
    Sign(String),
}

/// A certificate's public key and key id.
#[derive(Debug, Clone)]
pub struct Verifier {
    key: RsaPublicKey,
    pub keyid: [u8; 4],
}

fn padding(algo: HashAlgo) -> Pkcs1v15Sign {
    match algo {
        HashAlgo::Sha1 => Pkcs1v15Sign::new::<sha1::Sha1>(),
        HashAlgo::Sha224 => Pkcs1v15Sign::new::<sha2::Sha224>(),
        HashAlgo::Sha256 => Pkcs1v15Sign::new::<sha2::Sha256>(),
        HashAlgo::Sha384 => Pkcs1v15Sign::new::<sha2::Sha384>(),
        HashAlgo::Sha512 => Pkcs1v15Sign::new::<sha2::Sha512>(),
    }
}

/// The last four bytes of SHA-1 over a public key's bit string: what
/// `evmctl` computes, and what a certificate's subject key identifier holds
/// when it was made the usual way (RFC 5280, method 1).
fn keyid_of(key: &RsaPublicKey) -> Option<[u8; 4]> {
    let spki = key.to_public_key_der().ok()?;
    let info = x509_cert::spki::SubjectPublicKeyInfoRef::from_der(spki.as_bytes()).ok()?;
    let sha = sha1::Sha1::digest(info.subject_public_key.raw_bytes());
    sha[16..20].try_into().ok()
}

impl Verifier {
    /// Load a DER certificate (as `signing_cert` names it).
    pub fn from_cert_file(path: &Path) -> Result<Verifier, SignError> {
        let der = std::fs::read(path).map_err(|source| SignError::Read {
            path: path.to_owned(),
            source,
        })?;
        Verifier::from_cert_der(&der).map_err(|e| match e {
            SignError::Cert { reason, .. } => SignError::Cert {
                path: path.to_owned(),
                reason,
            },
            SignError::NotRsa { what, .. } => SignError::NotRsa {
                path: path.to_owned(),
                what,
            },
            other => other,
        })
    }

    pub fn from_cert_der(der: &[u8]) -> Result<Verifier, SignError> {
        let cert_err = |reason: String| SignError::Cert {
            path: PathBuf::new(),
            reason,
        };
        let cert = x509_cert::Certificate::from_der(der).map_err(|e| cert_err(e.to_string()))?;
        let spki = &cert.tbs_certificate.subject_public_key_info;
        let spki_der = spki.to_der().map_err(|e| cert_err(e.to_string()))?;
        let key = RsaPublicKey::from_public_key_der(&spki_der).map_err(|_| SignError::NotRsa {
            path: PathBuf::new(),
            what: spki.algorithm.oid.to_string(),
        })?;
        let skid = cert
            .tbs_certificate
            .extensions
            .iter()
            .flatten()
            .find(|e| e.extn_id.to_string() == SUBJECT_KEY_IDENTIFIER)
            .and_then(|e| x509_cert::der::asn1::OctetString::from_der(e.extn_value.as_bytes()).ok())
            .and_then(|o| o.as_bytes().rchunks(4).next().and_then(|c| <[u8; 4]>::try_from(c).ok()));
        let keyid = match skid {
            Some(k) => k,
            None => keyid_of(&key).ok_or_else(|| cert_err("cannot compute the key id".to_owned()))?,
        };
        Ok(Verifier { key, keyid })
    }

    /// Whether `signature` over `digest` was made by this certificate's key.
    pub fn verify(&self, algo: HashAlgo, digest: &[u8], signature: &[u8]) -> bool {
        self.key.verify(padding(algo), digest, signature).is_ok()
    }
}

/// A private key that signs file digests.
#[derive(Debug)]
pub struct Signer {
    key: RsaPrivateKey,
    pub keyid: [u8; 4],
}

impl Signer {
    /// Load a PEM private key; the key id comes from `cert` when given
    /// (which must hold the matching public key), else from the key itself.
    pub fn load(key_path: &Path, cert: Option<&Path>) -> Result<Signer, SignError> {
        let pem = std::fs::read_to_string(key_path).map_err(|source| SignError::Read {
            path: key_path.to_owned(),
            source,
        })?;
        let key = RsaPrivateKey::from_pkcs8_pem(&pem)
            .or_else(|_| RsaPrivateKey::from_pkcs1_pem(&pem))
            .map_err(|_| SignError::Key {
                path: key_path.to_owned(),
            })?;
        let public = key.to_public_key();
        let keyid = match cert {
            Some(c) => {
                let v = Verifier::from_cert_file(c)?;
                if v.key != public {
                    return Err(SignError::Mismatch {
                        key: key_path.to_owned(),
                        cert: c.to_owned(),
                    });
                }
                v.keyid
            }
            None => keyid_of(&public).ok_or_else(|| SignError::Key {
                path: key_path.to_owned(),
            })?,
        };
        Ok(Signer { key, keyid })
    }

    pub fn sign(&self, algo: HashAlgo, digest: &[u8]) -> Result<Vec<u8>, SignError> {
        self.key
            .sign(padding(algo), digest)
            .map_err(|e| SignError::Sign(e.to_string()))
    }
}
