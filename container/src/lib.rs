//! dare-container: the dare release container format.
//!
//! A container is an append-only log of frames (DESIGN.md section 3, and
//! `docs/FORMAT.md`): a genesis frame, entries (one file of one build for one
//! target triple), a manifest after every release, tlog tiles, and a signed
//! seal. The genesis, entry, manifest and keys frames are the leaves of an
//! RFC 6962 Merkle tree whose signed tree head, a C2SP checkpoint, sits in
//! each seal.
//!
//! The main types:
//! - [`frame`]: the JBCD frame codec, [`FrameInfo`](frame::FrameInfo), forward and backward walkers;
//! - [`header::Header`]: the typed JSON header of every frame kind;
//! - [`merkle`] and [`tiles`]: the tree, proofs and the C2SP tile arithmetic;
//! - [`keys`] and [`note`]: Ed25519 note keys, signed notes and checkpoints;
//! - [`cosign`]: witness cosignatures (`cosignature/v1`) and the tlog-witness bodies;
//! - [`verify::scan`]: reads and verifies a whole container;
//! - [`Appender`]: creates containers and appends releases crash-safely.
//!
//! This crate does no network I/O and has no async runtime.
//!
//! ```
//! use dare_container::{Appender, keys::{SigningKey, TrustRoot}};
//! use dare_container::header::{Genesis, FORMAT_VERSION};
//! use dare_container::verify::ScanOptions;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("app.dare");
//! let key = SigningKey::generate("example.com/app").unwrap();
//! let trust = TrustRoot::new(vec![key.verifier()], 1).unwrap();
//! let genesis = Genesis { format: FORMAT_VERSION, origin: "example.com/app".into(),
//!                         product: "app".into(), trust };
//! Appender::create(&path, genesis, &[&key], 1_700_000_000).unwrap();
//!
//! let scan = dare_container::scan_file(&path, &ScanOptions::default()).unwrap();
//! assert_eq!(scan.size(), 2); // the genesis and an empty manifest
//! ```

#![warn(missing_docs)]

pub mod appender;
pub mod client;
pub mod consistency;
pub mod content;
pub mod cosign;
pub mod crypt;
pub mod error;
pub mod frame;
pub mod fsys;
#[doc(hidden)]
pub mod fuzzing;
pub mod hashio;
pub mod header;
pub mod keys;
pub mod map;
pub mod merkle;
pub mod note;
mod partial;
pub mod replica;
pub mod seal;
pub mod tiles;
pub mod verify;
pub mod zstdio;

use std::path::Path;

pub use appender::{Appender, CosignRequest, Cosigner, CutTail, SealSummary, pending_path, pending_publish};
pub use error::Error;

/// Refuses a file that is not a dare container at all (an archive, a
/// binary, a text file given by mistake), naming what it starts with, so it
/// is not reported as a damaged frame. A container starts with a frame tag
/// (`0xF4..=0xF7`); a damaged one is still reported
/// by [`verify::scan`] with the frame that breaks.
pub fn check_is_container<R: frame::ReadAt + ?Sized>(src: &R, len: u64, path: &Path) -> Result<(), Error> {
    let mut head = [0u8; 24];
    let n = usize::try_from(len).unwrap_or(usize::MAX).min(head.len());
    src.read_exact_at(&mut head[..n], 0).map_err(|e| Error::io("reading", path, e))?;
    let head = &head[..n];
    let starts = match head.first() {
        None => "it is empty".to_string(),
        Some(0xF4..=0xF7) => return Ok(()),
        Some(_) => format!("it starts with `{}`, not a frame tag (0xf4..0xf7)", head.escape_ascii()),
    };
    Err(Error::NotAContainer { path: path.to_path_buf(), starts })
}

/// Opens `path` and [`verify::scan`]s it.
pub fn scan_file(path: &Path, opts: &verify::ScanOptions) -> Result<verify::Scan, Error> {
    let file = std::fs::File::open(path).map_err(|e| Error::io("opening", path, e))?;
    let len = file.metadata().map_err(|e| Error::io("reading", path, e))?.len();
    check_is_container(&file, len, path)?;
    Ok(verify::scan(&file, len, opts)?)
}

/// Opens `path`, [`verify::scan`]s it, and walks its sealed part backward too.
pub fn verify_file(path: &Path, opts: &verify::ScanOptions) -> Result<verify::Scan, Error> {
    let file = std::fs::File::open(path).map_err(|e| Error::io("opening", path, e))?;
    let len = file.metadata().map_err(|e| Error::io("reading", path, e))?.len();
    check_is_container(&file, len, path)?;
    let mut scan = verify::scan(&file, len, opts)?;
    verify::walk_backward(&file, &scan)?;
    scan.walked_backward = true;
    Ok(scan)
}
