//! Appending one release of many targets to a container.

use std::collections::BTreeMap;
use std::path::Path;

use dare_container::header::{Entry, validate_channel, validate_version};
use dare_container::keys::SigningKey;
use dare_container::{Appender, CutTail, SealSummary};

use crate::compress::{DEFAULT_LEVEL, stage};
use crate::error::PublishError;
use crate::release::{Artifact, gather};

/// What to publish.
#[derive(Clone, Debug)]
pub struct PublishOptions {
    /// The release's semver version.
    pub version: String,
    /// The channel (default `stable`).
    pub channel: String,
    /// Every `TRIPLE=PATH`.
    pub artifacts: Vec<Artifact>,
    /// The zstd level.
    pub level: i32,
    /// zstd worker threads (at least one; the output does not depend on it).
    pub workers: u32,
    /// The signed time, Unix seconds.
    pub time: u64,
}

impl PublishOptions {
    /// Options with the defaults: channel `stable`, zstd level 3, one worker per core.
    pub fn new(version: impl Into<String>, artifacts: Vec<Artifact>, time: u64) -> Self {
        PublishOptions {
            version: version.into(),
            channel: "stable".into(),
            artifacts,
            level: DEFAULT_LEVEL,
            workers: std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1),
            time,
        }
    }
}

/// Progress of a publish, for a progress bar.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum PublishEvent {
    /// The files are gathered: how many and how many bytes.
    Gathered {
        /// Files.
        files: usize,
        /// Bytes of content.
        bytes: u64,
    },
    /// A torn tail was cut off before appending.
    CutTail(CutTail),
    /// One file is compressed and appended.
    FileDone {
        /// Target.
        target: String,
        /// Path in the release.
        path: String,
        /// Content bytes.
        size: u64,
        /// Stored bytes.
        stored: u64,
    },
    /// The manifest, tiles and seal are being written.
    Sealing,
}

/// What one target got.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TargetReport {
    /// Files.
    pub files: usize,
    /// Content bytes.
    pub size: u64,
    /// Stored bytes.
    pub stored: u64,
}

/// What a publish did.
#[derive(Clone, Debug)]
pub struct PublishReport {
    /// The version published.
    pub version: String,
    /// The channel.
    pub channel: String,
    /// Per target triple.
    pub targets: BTreeMap<String, TargetReport>,
    /// The new seal.
    pub seal: SealSummary,
    /// A torn tail cut off first, if any.
    pub cut: Option<CutTail>,
}

/// Publishes one release: gathers every artifact's files, checks every rule
/// before writing anything, streams each file through zstd into the
/// container (each target's entries next to each other), then writes the
/// manifest, tiles and a seal signed by `keys`. On any error the container
/// is cut back to what it was.
pub fn publish(
    container: &Path,
    keys: &[&SigningKey],
    opts: &PublishOptions,
    progress: &mut dyn FnMut(PublishEvent),
) -> Result<PublishReport, PublishError> {
    validate_version(&opts.version).map_err(|e| PublishError::Invalid(e.to_string()))?;
    validate_channel(&opts.channel).map_err(|e| PublishError::Invalid(e.to_string()))?;
    if !(1..=22).contains(&opts.level) {
        return Err(PublishError::Invalid(format!("zstd level {} is not between 1 and 22", opts.level)));
    }
    let files = gather(&opts.artifacts)?;
    refuse_the_container_itself(container, &files)?;
    progress(PublishEvent::Gathered { files: files.len(), bytes: files.iter().map(|f| f.size).sum() });

    let (appender, cut) = open_appender(container)?;
    if let Some(cut) = &cut {
        progress(PublishEvent::CutTail(cut.clone()));
    }
    check_signers(&appender, keys, opts.time)?;
    // Every rule checked for every file before a byte is written.
    let entry_for = |f: &crate::release::SourceFile, staged: Option<&crate::compress::Staged>| Entry {
        target: f.target.clone(),
        version: opts.version.clone(),
        channel: opts.channel.clone(),
        path: f.path.clone(),
        mode: f.mode,
        size: staged.map_or(f.size, |s| s.size),
        sha256: staged.map(|s| s.sha256).unwrap_or_default(),
        stored_size: staged.map_or(f.size, |s| s.stored_size),
        stored_sha256: staged.map(|s| s.stored_sha256).unwrap_or_default(),
        compression: staged.map_or(dare_container::header::Compression::None, |s| s.compression),
        delta_base: None,
    };
    for f in &files {
        appender.check_entry(&entry_for(f, None))?;
    }

    let dir = parent_dir(container);
    let mut appender = appender;
    let mut targets: BTreeMap<String, TargetReport> = BTreeMap::new();
    let result = (|| -> Result<(), PublishError> {
        for f in &files {
            let mut staged = stage(f, &dir, opts.level, opts.workers)?;
            let entry = entry_for(f, Some(&staged));
            let mut payload = staged.payload(&f.source)?;
            appender.append_entry(entry, &mut payload)?;
            drop(payload);
            let t = targets.entry(f.target.clone()).or_default();
            t.files += 1;
            t.size += staged.size;
            t.stored += staged.stored_size;
            progress(PublishEvent::FileDone {
                target: f.target.clone(),
                path: f.path.clone(),
                size: staged.size,
                stored: staged.stored_size,
            });
        }
        Ok(())
    })();
    if let Err(e) = result {
        // Leave the container exactly as it was; report the first error.
        let _ = appender.abort();
        return Err(e);
    }
    progress(PublishEvent::Sealing);
    let keys = distinct_keys(keys);
    let seal = appender.seal(&keys, opts.time).inspect_err(|_| cut_back(container))?;
    Ok(PublishReport { version: opts.version.clone(), channel: opts.channel.clone(), targets, seal, cut })
}

/// Refuses early (before compressing anything) what the seal would refuse.
pub(crate) fn check_signers(appender: &Appender, keys: &[&SigningKey], time: u64) -> Result<(), PublishError> {
    if keys.is_empty() {
        return Err(PublishError::Invalid("no --key given".into()));
    }
    let trust = appender.trust();
    for k in keys {
        let v = k.verifier();
        if !trust.contains(&v) {
            return Err(PublishError::Invalid(format!(
                "key {v} is not in the container's trust root (fingerprint {})",
                trust.fingerprint()
            )));
        }
    }
    let mut distinct: Vec<String> = keys.iter().map(|k| k.verifier().to_string()).collect();
    distinct.sort();
    distinct.dedup();
    if distinct.len() < trust.threshold as usize {
        return Err(PublishError::Invalid(format!(
            "the trust root needs {} signing keys (--key repeated); {} given",
            trust.threshold,
            distinct.len()
        )));
    }
    if let Some(last) = appender.last_time()
        && time < last
    {
        return Err(PublishError::Invalid(format!(
            "the signed time {time} is before the last seal's {last}; pass a later --time"
        )));
    }
    Ok(())
}

/// An artifact directory that holds the container (`dare publish dist/app.dare
/// --artifact T=dist`) would put a copy of the container into each release,
/// doubling it every time, and its pending file vanishes while being read.
fn refuse_the_container_itself(container: &Path, files: &[crate::release::SourceFile]) -> Result<(), PublishError> {
    // A container that cannot be resolved is reported by Appender::open.
    let Ok(container) = std::fs::canonicalize(container) else { return Ok(()) };
    let pending = dare_container::pending_path(&container);
    for f in files {
        let Ok(source) = std::fs::canonicalize(&f.source) else { continue };
        if source == container || source == pending {
            return Err(PublishError::Invalid(format!(
                "{}: the container itself (or its pending file) is inside the artifact {}; publish from \
                 a directory that does not hold the container",
                f.source.display(),
                f.target
            )));
        }
    }
    Ok(())
}

/// Each key once: a note may carry only one signature per key, and
/// `--key K --key K` means K signs.
pub(crate) fn distinct_keys<'k>(keys: &[&'k SigningKey]) -> Vec<&'k SigningKey> {
    let mut out: Vec<&SigningKey> = Vec::with_capacity(keys.len());
    for k in keys {
        if !out.iter().any(|o| o.verifier() == k.verifier()) {
            out.push(k);
        }
    }
    out
}

/// After a failed `Appender::seal` (it consumes the appender, so it cannot be
/// aborted), opens the container again so the unsealed bytes it left are cut
/// back, and the container is what it was. Best effort: if that fails too,
/// the pending file still marks the bytes for the next command to cut.
pub(crate) fn cut_back(container: &Path) {
    if let Err(e) = Appender::open(container, false) {
        tracing::warn!("could not cut back {} after a failed seal: {e}", container.display());
    }
}

/// Opens `container` for appending, cutting a torn tail, and returns the cut.
///
/// After a cut the container is opened again: `Appender::open` builds its
/// state from a scan that also read the torn tail, and a complete manifest
/// frame there stands in for the sealed one (container/src/verify.rs), so a
/// seal or a new manifest would build on releases that were just cut off.
/// With the tail gone, the second open sees only sealed frames.
pub(crate) fn open_appender(container: &Path) -> Result<(Appender, Option<CutTail>), PublishError> {
    let appender = Appender::open(container, false)?;
    let Some(cut) = appender.cut_tail().cloned() else {
        return Ok((appender, None));
    };
    drop(appender);
    Ok((Appender::open(container, false)?, Some(cut)))
}

pub(crate) fn parent_dir(path: &Path) -> std::path::PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    }
}
