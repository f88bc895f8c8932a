//! Verifying and writing one build's files into a directory.
//!
//! Every file is first written into a staging directory inside the output
//! directory and checked against its signed digests (stored bytes, then the
//! decompressed content). Every destination is checked before anything is
//! written, and only when every file of the build verifies are they moved
//! into place, one `rename` each. Paths come from signed headers that
//! forbid absolute paths and `..`; on top of that, no directory on the way is
//! followed if it is a symlink, so nothing is written outside the output
//! directory.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dare_container::content::{self, ContentError, PayloadError, PayloadSpec, entry_content, payload_content};
use dare_container::crypt::{ContentKey, CryptError};
use dare_container::frame::{ReadAt, read_frame_at};
use dare_container::header::{FileRecord, Header, MAX_EXCHANGE};
use dare_container::keys::VerifierKey;
use dare_container::scan_file;
use dare_container::verify::{Scan, ScanOptions, Stored};

use crate::error::PublishError;

/// Which build to extract, and where.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ExtractOptions {
    /// The target triple.
    pub target: String,
    /// A version; the newest on the channel when `None`.
    pub version: Option<String>,
    /// The channel.
    pub channel: String,
    /// The output directory (created if missing).
    pub out: PathBuf,
    /// Only seals signed by these keys count (default: the genesis trust root).
    pub pins: Option<Vec<VerifierKey>>,
    /// Opens a private channel's key exchange (FORMAT.md 13): without it, a
    /// private build cannot be extracted.
    pub opener: Option<ExchangeOpener>,
}

/// Unwraps the content key from an `exchange` leaf's payload (an age file):
/// with `dare-container`'s `encryption` feature,
/// `|x| dare_container::crypt::unwrap_content_key(x, &identities)`.
#[derive(Clone)]
pub struct ExchangeOpener(pub Arc<OpenExchange>);

/// What an [`ExchangeOpener`] calls: an exchange payload in, its content key out.
pub type OpenExchange = dyn Fn(&[u8]) -> Result<ContentKey, CryptError> + Send + Sync;

impl std::fmt::Debug for ExchangeOpener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExchangeOpener(..)")
    }
}

/// What was extracted.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExtractReport {
    /// The version written.
    pub version: String,
    /// The files written, relative to the output directory.
    pub files: Vec<String>,
    /// Content bytes written.
    pub bytes: u64,
}

impl ExtractOptions {
    /// The newest `stable` build of `target`, written under `out`, checked
    /// against the genesis trust root.
    pub fn new(target: impl Into<String>, out: impl Into<PathBuf>) -> Self {
        ExtractOptions {
            target: target.into(),
            version: None,
            channel: "stable".into(),
            out: out.into(),
            pins: None,
            opener: None,
        }
    }

    /// Opens private builds with `opener` (an identity's).
    pub fn opener(mut self, opener: Option<ExchangeOpener>) -> Self {
        self.opener = opener;
        self
    }

    /// This version instead of the newest (`None`: the newest).
    pub fn version(mut self, version: Option<String>) -> Self {
        self.version = version;
        self
    }

    /// This channel instead of `stable`.
    pub fn channel(mut self, channel: impl Into<String>) -> Self {
        self.channel = channel.into();
        self
    }

    /// Require seals signed by these keys instead of the genesis trust root
    /// (`None`: the genesis trust root).
    pub fn pins(mut self, pins: Option<Vec<VerifierKey>>) -> Self {
        self.pins = pins;
        self
    }
}

/// Verifies the container and writes the chosen build under `opts.out`.
pub fn extract(container: &Path, opts: &ExtractOptions) -> Result<ExtractReport, PublishError> {
    let scan = scan_file(container, &ScanOptions::default().with_pins(opts.pins.clone()))?;
    if let Some(v) = &opts.version {
        semver::Version::parse(v).map_err(|e| PublishError::Invalid(format!("--version {v}: {e}")))?;
    }
    // The newest sealed index when no version is asked for: versions only
    // grow per target and channel. (Not `scan.manifest`, which may be an
    // unsealed one from a torn tail.)
    let index =
        scan.index(&opts.channel, &opts.target, opts.version.as_deref()).ok_or_else(|| not_found(&scan, opts))?;
    let file = File::open(container).map_err(|e| PublishError::io("opening", container, e))?;
    let opened;
    let files: &[FileRecord] = match index.index.sealed {
        None => &index.files,
        Some(_) => {
            opened = open_private(&file, index, opts)?;
            &opened
        }
    };
    fs::create_dir_all(&opts.out).map_err(|e| PublishError::io("creating", &opts.out, e))?;
    // Refuse before writing anything, so a refusal leaves `out` as it was.
    let paths: BTreeSet<&str> = files.iter().map(|f| f.path.as_str()).collect();
    for f in files {
        check_destination(&opts.out, &f.path, &paths)?;
    }
    let staging = make_staging(&opts.out)?;
    let result = (|| {
        let mut staged = Vec::new();
        for (i, f) in files.iter().enumerate() {
            let tmp = staging.join(i.to_string());
            write_verified(&file, &scan, f, &tmp)?;
            staged.push((tmp, f.path.clone()));
        }
        let mut bytes = 0;
        for (tmp, rel) in &staged {
            let dest = safe_destination(&opts.out, rel)?;
            fs::rename(tmp, &dest).map_err(|e| PublishError::io("moving into place", &dest, e))?;
            bytes += fs::metadata(&dest).map(|m| m.len()).unwrap_or(0);
        }
        Ok(ExtractReport {
            version: index.index.version.clone(),
            files: staged.into_iter().map(|(_, rel)| rel).collect(),
            bytes,
        })
    })();
    let _ = fs::remove_dir_all(&staging);
    result
}

/// The listing of a private index (the full scan checked every frame's
/// stored bytes): its release's exchange unwrapped with `opts.opener`, then
/// the listing opened and checked against the index's keyed digest.
fn open_private(
    src: &File,
    index: &dare_container::verify::IndexRecord,
    opts: &ExtractOptions,
) -> Result<Vec<FileRecord>, PublishError> {
    let ix = &index.index;
    let what = format!("{} {} {}", ix.channel, ix.target, ix.version);
    let xref = ix.sealed.ok_or_else(|| PublishError::Integrity(format!("{what}: not a private index")))?;
    let Some(opener) = &opts.opener else {
        return Err(PublishError::Invalid(format!(
            "{what} is on a private channel: give an identity that is one of its recipients (--identity)"
        )));
    };
    let bad = |m: String| PublishError::Integrity(format!("{what}: its key exchange: {m}"));
    let frame = read_frame_at(src, xref.offset, xref.end()).map_err(|e| bad(e.to_string()))?;
    let header = dare_container::frame::read_header(src, &frame).map_err(|e| bad(e.to_string()))?;
    match Header::parse(&header) {
        Ok(Header::Exchange(x)) if x.channel == ix.channel && frame.payload_len <= MAX_EXCHANGE => {}
        _ => return Err(bad(format!("leaf {} is not an exchange of channel {}", xref.leaf, ix.channel))),
    }
    let mut payload = vec![0u8; frame.payload_len as usize];
    src.read_exact_at(&mut payload, frame.payload_offset)
        .map_err(|e| PublishError::io("reading", "the container", e))?;
    let key = match (opener.0)(&payload) {
        Ok(k) => k,
        Err(CryptError::NotARecipient) => {
            return Err(PublishError::Invalid(format!(
                "{what} is on a private channel and no identity given is one of its recipients"
            )));
        }
        Err(e) => return Err(bad(e.to_string())),
    };
    let listing = content::sealed_listing_bytes(src, &index.frame, ix, index.leaf, &key)
        .map_err(|e| PublishError::Integrity(format!("{what}: {e}")))?;
    content::parse(&listing, ix).map_err(|e| PublishError::Integrity(format!("{what}: {e}")))
}

fn not_found(scan: &Scan, opts: &ExtractOptions) -> PublishError {
    let mut have: Vec<String> = scan
        .indexes
        .iter()
        .filter(|i| i.index.channel == opts.channel && i.index.target == opts.target)
        .map(|i| i.index.version.clone())
        .collect();
    have.dedup();
    let what = match &opts.version {
        Some(v) => format!("no release {v} for {} on channel {}", opts.target, opts.channel),
        None => format!("no release for {} on channel {}", opts.target, opts.channel),
    };
    if have.is_empty() {
        let targets: BTreeSet<String> =
            scan.indexes.iter().map(|i| format!("{}/{}", i.index.channel, i.index.target)).collect();
        let targets: Vec<String> = targets.into_iter().collect();
        PublishError::NotFound(format!(
            "{what}; the container has: {}",
            if targets.is_empty() { "nothing yet".into() } else { targets.join(", ") }
        ))
    } else {
        PublishError::NotFound(format!("{what}; published versions: {}", have.join(", ")))
    }
}

fn make_staging(out: &Path) -> Result<PathBuf, PublishError> {
    for i in 0..100u32 {
        let p = out.join(format!(".dare-extract-{}-{i}", std::process::id()));
        match fs::create_dir(&p) {
            Ok(()) => return Ok(p),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(PublishError::io("creating a staging directory in", out, e)),
        }
    }
    Err(PublishError::io("creating a staging directory in", out, io::Error::other("no free name")))
}

/// Streams one file's entry into `dest`, checking the stored digest and,
/// after decompressing, the content digest. Nothing is read past the signed
/// sizes.
fn write_verified<R: ReadAt + Sync>(src: &R, scan: &Scan, f: &FileRecord, dest: &Path) -> Result<(), PublishError> {
    let Some(Stored::Entry(e)) = scan.entry(f.entry.leaf).map(|r| &r.stored) else {
        return Err(PublishError::Integrity(format!("{}: no entry at leaf {}", f.path, f.entry.leaf)));
    };
    let frame = scan.entry(f.entry.leaf).map(|r| r.frame).ok_or_else(|| PublishError::Integrity(f.path.clone()))?;
    let out = dare_container::fsys::create_new(dest, 0o600).map_err(|err| PublishError::io("creating", dest, err))?;
    let io_err = |err: io::Error| PublishError::io("writing", dest, err);
    let out = BufWriter::with_capacity(1 << 20, out);
    if e.sealed.is_some() != f.key.is_some() {
        return Err(PublishError::Integrity(format!(
            "{}: a private listing names private entries, with their keys, and a plain one plain entries",
            f.path
        )));
    }
    let written = match f.key {
        // A private entry: opened with the key its listing gives, its
        // plaintext hashing to the listing's digest.
        Some(key) => {
            let spec = PayloadSpec::entry(e).opened(key, f.sha256);
            payload_content(src, &frame, spec, &format!("entry of {}", f.path), out)
        }
        None => entry_content(src, &frame, e, out),
    };
    let out = written.map_err(|err| match err {
        ContentError::Payload { source: PayloadError::Write(err), .. } => io_err(err),
        err => PublishError::Integrity(format!("{}: {err}", f.path)),
    })?;
    let file = out.into_inner().map_err(|err| io_err(err.into_error()))?;
    file.sync_all().map_err(io_err)?;
    dare_container::fsys::set_mode(dest, f.mode).map_err(io_err)?;
    Ok(())
}

/// Checks `out/rel` as [`safe_destination`] would, without creating
/// anything, and that no other file of the build is one of its directories.
fn check_destination(out: &Path, rel: &str, paths: &BTreeSet<&str>) -> Result<(), PublishError> {
    if let Some((i, _)) = rel.match_indices('/').find(|(i, _)| paths.contains(&rel[..*i])) {
        return Err(PublishError::Integrity(format!(
            "{rel}: the build also has a file {}, so both cannot be written",
            &rel[..i]
        )));
    }
    walk_destination(out, rel, false).map(drop)
}

/// `out/rel`, creating the directories on the way, refusing any component
/// that is a symlink or not a directory.
fn safe_destination(out: &Path, rel: &str) -> Result<PathBuf, PublishError> {
    walk_destination(out, rel, true)
}

fn walk_destination(out: &Path, rel: &str, create: bool) -> Result<PathBuf, PublishError> {
    let mut at = out.to_path_buf();
    let parts: Vec<&str> = rel.split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        if part.is_empty() || *part == "." || *part == ".." {
            return Err(PublishError::Integrity(format!("{rel}: not a safe relative path")));
        }
        at.push(part);
        let last = i + 1 == parts.len();
        match fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(PublishError::Invalid(format!(
                    "{}: is a symlink; refusing to write through it",
                    at.display()
                )));
            }
            Ok(m) if !last && !m.is_dir() => {
                return Err(PublishError::Invalid(format!("{}: is not a directory", at.display())));
            }
            Ok(m) if last && m.is_dir() => {
                return Err(PublishError::Invalid(format!("{}: is a directory", at.display())));
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if !create {
                    // Nothing below a missing directory exists yet.
                    break;
                }
                if !last {
                    fs::create_dir(&at).map_err(|e| PublishError::io("creating", &at, e))?;
                }
            }
            Err(e) => return Err(PublishError::io("reading", &at, e)),
        }
    }
    Ok(at)
}
