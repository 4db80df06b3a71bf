//! The `security.ima` extended attribute: its types and bytes.
//!
//! What `evmctl ima_hash -a sha256` writes: `0x04` (IMA_XATTR_DIGEST_NG),
//! the hash algorithm (`0x04` = sha256), then the digest: 34 bytes. A
//! signature (`evmctl ima_sign`) is `0x03` (EVM_IMA_XATTR_DIGSIG), version
//! `0x02`, the algorithm, a 4-byte key id, a big-endian u16 length and the
//! signature.

use sha2::Digest as _;

/// The attribute's name.
pub const XATTR: &str = "security.ima";

const IMA_XATTR_DIGEST: u8 = 0x01;
const EVM_IMA_XATTR_DIGSIG: u8 = 0x03;
const IMA_XATTR_DIGEST_NG: u8 = 0x04;
const IMA_VERITY_DIGSIG: u8 = 0x06;

/// Hash algorithms by their kernel `HASH_ALGO_*` number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlgo {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
    Sha224,
}

impl HashAlgo {
    pub fn from_id(id: u8) -> Option<HashAlgo> {
        Some(match id {
            2 => HashAlgo::Sha1,
            4 => HashAlgo::Sha256,
            5 => HashAlgo::Sha384,
            6 => HashAlgo::Sha512,
            7 => HashAlgo::Sha224,
            _ => return None,
        })
    }

    pub fn id(self) -> u8 {
        match self {
            HashAlgo::Sha1 => 2,
            HashAlgo::Sha256 => 4,
            HashAlgo::Sha384 => 5,
            HashAlgo::Sha512 => 6,
            HashAlgo::Sha224 => 7,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            HashAlgo::Sha1 => "sha1",
            HashAlgo::Sha256 => "sha256",
            HashAlgo::Sha384 => "sha384",
            HashAlgo::Sha512 => "sha512",
            HashAlgo::Sha224 => "sha224",
        }
    }

    pub fn digest_len(self) -> usize {
        match self {
            HashAlgo::Sha1 => 20,
            HashAlgo::Sha224 => 28,
            HashAlgo::Sha256 => 32,
            HashAlgo::Sha384 => 48,
            HashAlgo::Sha512 => 64,
        }
    }

    pub fn hasher(self) -> Hasher {
        match self {
            HashAlgo::Sha1 => Hasher::Sha1(sha1::Sha1::new()),
            HashAlgo::Sha224 => Hasher::Sha224(sha2::Sha224::new()),
            HashAlgo::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            HashAlgo::Sha384 => Hasher::Sha384(sha2::Sha384::new()),
            HashAlgo::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }
}

/// A running digest of one of the algorithms above.
#[derive(Debug, Clone)]
pub enum Hasher {
    Sha1(sha1::Sha1),
    Sha224(sha2::Sha224),
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
}

impl Hasher {
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha1(h) => h.update(data),
            Hasher::Sha224(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha384(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    pub fn finish(self) -> Vec<u8> {
        match self {
            Hasher::Sha1(h) => h.finalize().to_vec(),
            Hasher::Sha224(h) => h.finalize().to_vec(),
            Hasher::Sha256(h) => h.finalize().to_vec(),
            Hasher::Sha384(h) => h.finalize().to_vec(),
            Hasher::Sha512(h) => h.finalize().to_vec(),
        }
    }
}

/// A parsed `security.ima`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Label {
    /// A file digest (`0x04 algo digest`, or the legacy `0x01` + SHA-1).
    Digest { algo: HashAlgo, digest: Vec<u8> },
    /// An imasig signature, version 2.
    Signature {
        algo: HashAlgo,
        keyid: [u8; 4],
        signature: Vec<u8>,
    },
    /// An fs-verity signature (version 3): Bulwark cannot check it.
    VeritySignature,
    /// Anything else; `reason` says what.
    Invalid { reason: String },
}

impl Label {
    pub fn parse(bytes: &[u8]) -> Label {
        let invalid = |reason: &str| Label::Invalid {
            reason: reason.to_owned(),
        };
        match bytes {
            [IMA_XATTR_DIGEST, rest @ ..] if rest.len() == 20 => Label::Digest {
                algo: HashAlgo::Sha1,
                digest: rest.to_vec(),
            },
            [IMA_XATTR_DIGEST_NG, id, rest @ ..] => match HashAlgo::from_id(*id) {
                Some(algo) if rest.len() == algo.digest_len() => Label::Digest {
                    algo,
                    digest: rest.to_vec(),
                },
                Some(_) => invalid("digest of the wrong length"),
                None => invalid("digest of an unknown hash algorithm"),
            },
            [EVM_IMA_XATTR_DIGSIG, 2, id, k0, k1, k2, k3, s0, s1, sig @ ..] => {
                let size = usize::from(u16::from_be_bytes([*s0, *s1]));
                match HashAlgo::from_id(*id) {
                    Some(algo) if size == sig.len() => Label::Signature {
                        algo,
                        keyid: [*k0, *k1, *k2, *k3],
                        signature: sig.to_vec(),
                    },
                    Some(_) => invalid("signature length field does not match"),
                    None => invalid("signature over an unknown hash algorithm"),
                }
            }
            [EVM_IMA_XATTR_DIGSIG, ..] => invalid("signature of an unknown version"),
            [IMA_VERITY_DIGSIG, ..] => Label::VeritySignature,
            _ => invalid("unknown label type"),
        }
    }

    /// The bytes `evmctl ima_hash` writes for a digest.
    pub fn digest_bytes(algo: HashAlgo, digest: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + digest.len());
        out.push(IMA_XATTR_DIGEST_NG);
        out.push(algo.id());
        out.extend_from_slice(digest);
        out
    }

    /// The bytes `evmctl ima_sign` writes for a signature.
    pub fn signature_bytes(algo: HashAlgo, keyid: [u8; 4], signature: &[u8]) -> Option<Vec<u8>> {
        let size = u16::try_from(signature.len()).ok()?;
        let mut out = vec![EVM_IMA_XATTR_DIGSIG, 2, algo.id()];
        out.extend_from_slice(&keyid);
        out.extend_from_slice(&size.to_be_bytes());
        out.extend_from_slice(signature);
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn digest_labels_round_trip_and_match_evmctls_bytes() {
        let mut h = HashAlgo::Sha256.hasher();
        h.update(b"hello bulwark\n");
        let bytes = Label::digest_bytes(HashAlgo::Sha256, &h.finish());
        // From FIELD-NOTES: `evmctl ima_hash -a sha256` of the same content.
        assert_eq!(
            hex::encode(&bytes),
            "0404e331a024a71c29a1af1ea76c60ae0a04c0555b159baaf004835ea24f59b27ccf"
        );
        assert!(matches!(
            Label::parse(&bytes),
            Label::Digest {
                algo: HashAlgo::Sha256,
                ..
            }
        ));
        assert!(matches!(Label::parse(&bytes[..20]), Label::Invalid { .. }));
        let sig = Label::signature_bytes(HashAlgo::Sha256, [1, 2, 3, 4], &[9; 256]).unwrap();
        assert_eq!(&sig[..9], &[3, 2, 4, 1, 2, 3, 4, 1, 0]);
        assert!(matches!(
            Label::parse(&sig),
            Label::Signature {
                keyid: [1, 2, 3, 4],
                ..
            }
        ));
    }
}
