//! What `--json` prints: one typed object per command, so the fields scripts
//! read are declared in one place (and listed in the README's "Scripting").
//! Adding a field is compatible; renaming or removing one is not.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

/// `dare verify --json` on success.
#[derive(Debug, Serialize)]
pub struct Verified {
    /// Always `ok`.
    pub status: &'static str,
    pub container: PathBuf,
    pub origin: String,
    pub product: String,
    pub trust_fingerprint: String,
    /// `--trust` or `genesis`: which keys the seals were checked against.
    pub trusted_by: &'static str,
    pub frames: u64,
    pub leaves: u64,
    /// A replica that holds only some leaves, each proven by inclusion.
    pub partial: bool,
    pub seals: u64,
    pub entries: usize,
    pub payload_bytes: u64,
    /// The signed tree size of the last seal.
    pub size: u64,
    /// The signed root of the last seal, hex.
    pub root: String,
    /// The signed time of the last seal, Unix seconds.
    pub time: u64,
    pub signers: Vec<String>,
    pub sealed_len: u64,
    /// Unsealed bytes an interrupted publish left after the last seal.
    pub interrupted_publish: Option<u64>,
}

/// `dare ls --json`.
#[derive(Debug, Serialize)]
pub struct Listing {
    /// Always `ok`.
    pub status: &'static str,
    pub origin: String,
    pub product: String,
    pub releases: Vec<ListedRelease>,
    pub seal: ListedSeal,
}

/// One release of one target in `dare ls --json`.
#[derive(Debug, Serialize)]
pub struct ListedRelease {
    pub version: String,
    pub channel: String,
    pub target: String,
    /// The newest release of this target on this channel.
    pub latest: bool,
    pub size: u64,
    pub stored_new: u64,
    pub shared_files: usize,
    pub shared_size: u64,
    pub deltas: usize,
    pub delta_size: u64,
    pub index_leaf: u64,
    /// A private channel's release: its listing is encrypted, so `files`
    /// is empty and the sizes are unknown here; `file_count` is the index's.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub private: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_count: Option<u64>,
    pub files: Vec<ListedFile>,
}

/// One file of a release in `dare ls --json`.
#[derive(Debug, Serialize)]
pub struct ListedFile {
    pub path: String,
    /// Octal, e.g. `755`.
    pub mode: String,
    pub size: u64,
    pub sha256: String,
    pub leaf: u64,
    /// The versions this file has deltas from.
    pub deltas_from: Vec<String>,
}

/// The last seal in `dare ls --json`.
#[derive(Debug, Serialize)]
pub struct ListedSeal {
    pub time: u64,
    pub size: u64,
    pub root: String,
    pub signers: Vec<String>,
    pub sealed_len: u64,
}

/// `dare publish --json`.
#[derive(Debug, Serialize)]
pub struct Published {
    /// Always `published`.
    pub status: &'static str,
    pub version: String,
    pub channel: String,
    pub targets: BTreeMap<String, PublishedTarget>,
    pub tree_size: u64,
    pub root: String,
    pub time: u64,
    pub container_len: u64,
    pub appended: u64,
    /// A torn tail an interrupted publish left, cut off first.
    pub cut_tail: Option<CutTail>,
    /// How many witnesses cosigned the seal (only with `--witness`).
    #[serde(skip_serializing_if = "is_zero")]
    pub cosignatures: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// One target of `dare publish --json`.
#[derive(Debug, Serialize)]
pub struct PublishedTarget {
    pub files: usize,
    pub size: u64,
    pub stored_size: u64,
    pub shared_files: usize,
    pub shared_size: u64,
    pub deltas: usize,
    pub delta_size: u64,
}

/// Bytes cut off the end of a container before appending.
#[derive(Debug, Serialize)]
pub struct CutTail {
    pub offset: u64,
    pub len: u64,
}

/// `dare update --json` on success.
#[derive(Debug, Serialize)]
pub struct Updated {
    /// `updated`, `up-to-date` or `available`.
    pub status: &'static str,
    pub target: String,
    pub channel: String,
    pub version: String,
    pub previous: Option<String>,
    pub bytes_fetched: u64,
    pub requests: u64,
    pub payload_bytes: u64,
    pub bytes_full: u64,
    pub bytes_delta: u64,
    pub bytes_reused: u64,
    pub tree_size: u64,
    pub signed_time: u64,
    pub install_path: Option<PathBuf>,
    /// Key rotations followed since the last update (with `--check`: pending).
    pub rotations: u64,
    /// The fingerprint of the trust root in effect.
    pub trust_fingerprint: String,
}

/// Any command's `--json` on failure.
#[derive(Debug, Serialize)]
pub struct Failed {
    /// Always `error`.
    pub status: &'static str,
    /// The error and its causes, on one line.
    pub error: String,
    /// What kind of failure: an updater's refusal (`rollback`, `freeze`,
    /// `fork`, `bad-signature`, `bad-digest`, `wrong-origin`, ...), or
    /// `verification` or `error` for other commands.
    pub kind: &'static str,
    /// The process's exit code: 3 for a verification failure or a refused
    /// attack, 1 otherwise.
    pub exit_code: u8,
}
