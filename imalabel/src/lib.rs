//! IMA file labels, shared by bulwarkd (the pre-flight scan behind health
//! and the enforce guard) and bulwarkctl (`ima scan`, `ima label`, `ima
//! sign`, the dpkg hook).
//!
//! One crate so that the daemon and the CLI judge a file identically, and
//! so that bulwarkctl never depends on the daemon: writing `security.ima`
//! needs CAP_SYS_ADMIN, which bulwarkd's unit does not grant, so labels
//! are written by bulwarkctl running as root; bulwarkd only reads them.
//!
//! - [`label`]: the bytes of `security.ima`, as `evmctl` writes them.
//! - [`walk`]: the trees a policy appraises, never entering a filesystem
//!   the policy excludes (by `statfs(2)` magic).
//! - [`file`]: judge one file (ok, missing, stale, signed, unreadable) and
//!   label it, on one open descriptor so the hash and the label are of the
//!   same file.
//! - [`sign`]: imasig signatures (RSA), verified against a certificate.

pub mod file;
pub mod label;
pub mod scan;
pub mod sign;
pub mod walk;

pub use file::{judge, label_file, Judged, LabelOutcome};
pub use label::{HashAlgo, Label};
pub use scan::{scan, Progress};
pub use sign::{Signer, Verifier};
pub use walk::{walk, Candidate, WalkStats};
