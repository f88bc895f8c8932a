//! Appending one release of many targets to a container.
//!
//! Each file is hashed first. Content the container already holds (named by
//! the live index of any target on any channel, or by one of the last `K`
//! releases of this target) is not stored again: the new index points at the
//! existing entry. New content is compressed and appended once, however many
//! targets and paths hold it. A changed file that was in one of the last `K`
//! releases of its target and channel (at the same path, or at the path with
//! that release's version in place of this one, or under the same unique
//! file name) also gets a zstd patch-from delta against each of those
//! versions, when the delta is clearly smaller than the whole entry. Each target's new entries and deltas are appended next to
//! each other, then its index; then the manifest, tiles and a seal.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use dare_container::crypt::{ContentKey, CryptError, Identities, PayloadKey, Recipients, wrap_content_key};
use dare_container::frame::frame_len;
use dare_container::header::{
    Delta, DeltaRef, Entry, FileRecord, Header, Index, LeafRef, Sha256Hex, validate_channel, validate_version,
};
use dare_container::keys::SigningKey;
use dare_container::{Appender, Cosigner, CutTail, SealSummary};

use crate::compress::{DEFAULT_DELTA_LEVEL, DEFAULT_LEVEL, DELTA_MAX, hash_file, seal_staged, stage, stage_delta};
use crate::error::PublishError;
use crate::release::{Artifact, SourceFile, gather};

/// What to publish.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PublishOptions {
    /// The release's semver version.
    pub version: String,
    /// The channel (default `stable`).
    pub channel: String,
    /// Every `TRIPLE=PATH`.
    pub artifacts: Vec<Artifact>,
    /// The zstd level of whole entries.
    pub level: i32,
    /// zstd worker threads (at least one; the output does not depend on it).
    pub workers: u32,
    /// The signed time, Unix seconds.
    pub time: u64,
    /// Deltas against this many previous releases of each target (0: none).
    pub deltas: u32,
    /// The zstd level of deltas.
    pub delta_level: i32,
    /// How far ahead of the clock `time` may be, seconds (default
    /// [`MAX_CLOCK_SKEW`](dare_container::client::MAX_CLOCK_SKEW); at most
    /// [`MAX_SKEW_LIMIT`](dare_container::client::MAX_SKEW_LIMIT)).
    pub max_skew: u64,
    /// A private channel: this release's entries, deltas and listings are
    /// sealed, and its content key wrapped to these recipients.
    pub encrypt_to: Option<Recipients>,
    /// The publisher's own identities: earlier private releases it is a
    /// recipient of are read, so their contents are reused and deltas made
    /// against them. Without them a private release stores every content.
    pub identities: Option<Identities>,
}

impl PublishOptions {
    /// Options with the defaults: channel `stable`, zstd level 3, one worker
    /// per core, deltas against the previous release at level 19.
    pub fn new(version: impl Into<String>, artifacts: Vec<Artifact>, time: u64) -> Self {
        PublishOptions {
            version: version.into(),
            channel: "stable".into(),
            artifacts,
            level: DEFAULT_LEVEL,
            workers: std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1),
            time,
            deltas: 1,
            delta_level: DEFAULT_DELTA_LEVEL,
            max_skew: dare_container::client::MAX_CLOCK_SKEW,
            encrypt_to: None,
            identities: None,
        }
    }

    /// Makes the release private, sealed to `recipients`.
    pub fn encrypt_to(mut self, recipients: Recipients) -> Self {
        self.encrypt_to = Some(recipients);
        self
    }

    /// The publisher's identities, to reuse what earlier private releases hold.
    pub fn identities(mut self, ids: Identities) -> Self {
        self.identities = Some(ids);
        self
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
    /// One file is done.
    FileDone {
        /// Target.
        target: String,
        /// Path in the release.
        path: String,
        /// Content bytes.
        size: u64,
        /// Bytes of a new entry (0 when the content was already stored).
        stored: u64,
        /// Bytes of new deltas.
        delta: u64,
    },
    /// The manifest, tiles and seal are being written.
    Sealing,
}

/// What one target got.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TargetReport {
    /// Files in the build.
    pub files: usize,
    /// Content bytes of the build.
    pub size: u64,
    /// Bytes of new entries stored for it.
    pub stored: u64,
    /// Files whose content was already stored (in an earlier release, or for
    /// another target or path of this one).
    pub shared: usize,
    /// Their content bytes.
    pub shared_bytes: u64,
    /// New deltas stored for it.
    pub deltas: usize,
    /// Their bytes.
    pub delta_bytes: u64,
}

/// What a publish did.
#[derive(Clone, Debug)]
#[non_exhaustive]
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

/// What the container holds, as far as this publish knows: every content and
/// delta that the live indexes and the last releases name, and what this
/// publish appended. Private and plain contents are kept apart: a private
/// listing names only private entries, a plain one only plain ones.
#[derive(Default)]
struct Book {
    /// (private, content SHA-256) to its entry, and a private entry's key.
    content: HashMap<(bool, Sha256Hex), (LeafRef, Option<PayloadKey>)>,
    /// (private, base, result) to the delta.
    deltas: HashMap<(bool, Sha256Hex, Sha256Hex), DeltaRef>,
    indexes: HashMap<u64, (Index, Vec<FileRecord>)>,
    /// The publisher's identities and the content keys they opened, by exchange leaf.
    ids: Option<Identities>,
    keys: std::cell::RefCell<HashMap<u64, Option<ContentKey>>>,
}

impl Book {
    fn new(ids: Option<Identities>) -> Self {
        Book { ids, ..Book::default() }
    }

    /// The content key of the exchange at `x`, if the publisher is one of its recipients.
    fn key(&self, appender: &Appender, x: LeafRef) -> Option<ContentKey> {
        let ids = self.ids.as_ref()?;
        if let Some(k) = self.keys.borrow().get(&x.leaf) {
            return *k;
        }
        let k = match appender.exchange_payload(x).map(|p| dare_container::crypt::unwrap_content_key(&p, ids)) {
            Ok(Ok(k)) => Some(k),
            Ok(Err(e)) => {
                tracing::warn!("the key exchange at leaf {}: {e}; its contents are stored again", x.leaf);
                None
            }
            Err(e) => {
                tracing::warn!("{e}; its contents are stored again");
                None
            }
        };
        self.keys.borrow_mut().insert(x.leaf, k);
        k
    }

    fn read(&mut self, appender: &Appender, at: LeafRef) -> Result<&(Index, Vec<FileRecord>), PublishError> {
        if !self.indexes.contains_key(&at.leaf) {
            let (ix, files) = appender.read_index_with(at, &|x| self.key(appender, x))?;
            let private = ix.sealed.is_some();
            for f in &files {
                self.content.entry((private, f.sha256)).or_insert((f.entry, f.key));
                for d in &f.deltas {
                    self.deltas.entry((private, d.base, f.sha256)).or_insert(*d);
                }
            }
            self.indexes.insert(at.leaf, (ix, files));
        }
        Ok(&self.indexes[&at.leaf])
    }
}

/// This release's content key and its exchange leaf, in a private release.
type Private = (ContentKey, LeafRef);

/// Publishes one release: gathers every artifact's files, checks every rule
/// before writing anything, stores each new content once (each target's next
/// to each other) with deltas against the previous releases, then writes the
/// indexes, manifest, tiles and a seal signed by `keys`. On any error the
/// container is cut back to what it was.
pub fn publish(
    container: &Path,
    keys: &[&SigningKey],
    opts: &PublishOptions,
    progress: &mut dyn FnMut(PublishEvent),
) -> Result<PublishReport, PublishError> {
    publish_cosigned(container, keys, opts, progress, &mut |_| Ok(Vec::new()))
}

/// [`publish`], with witness cosignatures: once the checkpoint is signed,
/// and before the seal is written, `cosigner` returns the cosignature lines
/// to embed ([`Appender::seal_cosigned`]). If it fails, nothing is
/// published and the container is cut back to what it was.
pub fn publish_cosigned(
    container: &Path,
    keys: &[&SigningKey],
    opts: &PublishOptions,
    progress: &mut dyn FnMut(PublishEvent),
    cosigner: &mut Cosigner<'_>,
) -> Result<PublishReport, PublishError> {
    validate_version(&opts.version).map_err(|e| PublishError::Invalid(e.to_string()))?;
    validate_channel(&opts.channel).map_err(|e| PublishError::Invalid(e.to_string()))?;
    for (what, level) in [("zstd level", opts.level), ("delta level", opts.delta_level)] {
        if !(1..=22).contains(&level) {
            return Err(PublishError::Invalid(format!("{what} {level} is not between 1 and 22")));
        }
    }
    let files = gather(&opts.artifacts)?;
    refuse_the_container_itself(container, &files)?;
    progress(PublishEvent::Gathered { files: files.len(), bytes: files.iter().map(|f| f.size).sum() });

    let (mut appender, cut) = open_appender(container)?;
    if let Some(cut) = &cut {
        progress(PublishEvent::CutTail(cut.clone()));
    }
    appender.set_max_skew(opts.max_skew)?;
    check_signers(&appender, keys, opts.time)?;
    let mut targets: Vec<&str> = Vec::new();
    for f in &files {
        if !targets.contains(&f.target.as_str()) {
            targets.push(&f.target);
        }
    }
    // Every rule checked for every target before a byte is written.
    for t in &targets {
        appender.check_release(&opts.channel, t, &opts.version)?;
    }
    let result = (|| -> Result<BTreeMap<String, TargetReport>, PublishError> {
        let mut book = Book::new(opts.identities.clone());
        let private: Option<Private> = match &opts.encrypt_to {
            Some(to) => {
                let key = ContentKey::generate().map_err(crypt_error)?;
                let exchange = wrap_content_key(&key, to).map_err(crypt_error)?;
                Some((key, appender.append_exchange(&opts.channel, &exchange)?))
            }
            None => None,
        };
        let private = private.as_ref();
        let live: Vec<LeafRef> = appender.manifest().releases.iter().map(|r| r.index).collect();
        for at in live {
            book.read(&appender, at)?;
        }
        let dir = parent_dir(container);
        let mut reports = BTreeMap::new();
        for t in &targets {
            let bases = previous_builds(&appender, &mut book, &opts.channel, t, opts.deltas, private.is_some())?;
            let tfiles: Vec<&SourceFile> = files.iter().filter(|f| f.target == *t).collect();
            // Each file's content, stored unless the container has it.
            let mut records = Vec::with_capacity(tfiles.len());
            let mut stored = Vec::with_capacity(tfiles.len());
            for f in &tfiles {
                let (record, s, new) = add_content(&mut appender, &mut book, f, &dir, opts, private)?;
                records.push(record);
                stored.push((s, new));
            }
            // Then the deltas this release needs, made in parallel, appended in order.
            let deltas = add_deltas(&mut appender, &mut book, &bases, &tfiles, &mut records, &dir, opts, private)?;
            let mut report = TargetReport::default();
            for (i, record) in records.iter().enumerate() {
                report.files += 1;
                report.size += record.size;
                let (bytes, new) = stored[i];
                report.stored += bytes;
                if !new {
                    report.shared += 1;
                    report.shared_bytes += record.size;
                }
                report.deltas += deltas[i].0;
                report.delta_bytes += deltas[i].1;
                progress(PublishEvent::FileDone {
                    target: t.to_string(),
                    path: record.path.clone(),
                    size: record.size,
                    stored: bytes,
                    delta: deltas[i].1,
                });
            }
            match private {
                Some((key, x)) => appender.append_sealed_index(&opts.channel, t, &opts.version, &records, key, *x)?,
                None => appender.append_index(&opts.channel, t, &opts.version, &records)?,
            };
            reports.insert(t.to_string(), report);
        }
        Ok(reports)
    })();
    let reports = match result {
        Ok(r) => r,
        Err(e) => {
            // Leave the container exactly as it was; report the first error.
            let _ = appender.abort();
            return Err(e);
        }
    };
    progress(PublishEvent::Sealing);
    let keys = distinct_keys(keys);
    let seal = appender.seal_cosigned(&keys, opts.time, cosigner).inspect_err(|_| cut_back(container))?;
    Ok(PublishReport { version: opts.version.clone(), channel: opts.channel.clone(), targets: reports, seal, cut })
}

/// One earlier build of a target: its version and files by path and by file name.
struct Build {
    version: String,
    by_path: HashMap<String, FileRecord>,
    /// File name to its one path (`None` when several files share the name).
    by_name: HashMap<String, Option<String>>,
}

impl Build {
    /// The file a new file at `path` of `version` is the next version of:
    /// the same path; else the path with this build's version in place of
    /// the new one (`app-1.2.0.data/app` after `app-1.1.0.data/app`, as in
    /// Python wheels); else the only file of this build with that file name.
    fn base_for(&self, path: &str, version: &str) -> Option<&FileRecord> {
        if let Some(f) = self.by_path.get(path) {
            return Some(f);
        }
        if path.contains(version)
            && let Some(f) = self.by_path.get(&path.replace(version, &self.version))
        {
            return Some(f);
        }
        let name = path.rsplit('/').next()?;
        let old = self.by_name.get(name)?.as_ref()?;
        self.by_path.get(old)
    }
}

/// The last `k` releases of `target` on `channel`, newest first.
fn previous_builds(
    appender: &Appender,
    book: &mut Book,
    channel: &str,
    target: &str,
    k: u32,
    private: bool,
) -> Result<Vec<Build>, PublishError> {
    let mut out = Vec::new();
    let mut at = appender.manifest().release(channel, target).map(|r| r.index);
    while let Some(a) = at {
        if out.len() as u32 >= k {
            break;
        }
        let (ix, files) = book.read(appender, a)?;
        // Deltas stay on their side: private against private contents only.
        let files: Vec<&FileRecord> = files.iter().filter(|f| f.key.is_some() == private).collect();
        let mut by_name: HashMap<String, Option<String>> = HashMap::new();
        for f in &files {
            let name = f.path.rsplit('/').next().unwrap_or(&f.path).to_string();
            by_name.entry(name).and_modify(|p| *p = None).or_insert_with(|| Some(f.path.clone()));
        }
        let by_path = files.iter().map(|f| (f.path.clone(), (*f).clone())).collect();
        out.push(Build { version: ix.version.clone(), by_path, by_name });
        at = ix.previous;
    }
    Ok(out)
}

/// Stores one file's content unless the container already holds it;
/// returns its record (without deltas), the bytes of a new entry, and
/// whether it is new.
fn add_content(
    appender: &mut Appender,
    book: &mut Book,
    f: &SourceFile,
    dir: &Path,
    opts: &PublishOptions,
    private: Option<&Private>,
) -> Result<(FileRecord, u64, bool), PublishError> {
    let (sha, size) = hash_file(&f.source)?;
    if size != f.size {
        return Err(changed(f, size));
    }
    let mut stored = 0;
    let side = (private.is_some(), sha);
    let shared = book.content.contains_key(&side);
    let (entry, key) = match book.content.get(&side) {
        Some(at) => *at,
        None => {
            // A private payload's key is that of the leaf it is about to become.
            let key = private.map(|(k, _)| k.payload_key(appender.next_leaf()));
            let mut staged = stage(f, dir, opts.level, opts.workers, key.as_ref())?;
            if staged.sha256 != sha {
                return Err(changed(f, staged.size));
            }
            let e = Entry {
                sealed: private.map(|(_, x)| *x),
                size,
                sha256: private.map_or(sha, |(k, _)| k.keyed_digest(&sha)),
                stored_size: staged.stored_size,
                stored_sha256: staged.stored_sha256,
                compression: staged.compression,
            };
            stored = staged.stored_size;
            let mut payload = staged.payload(&f.source)?;
            let at = appender.append_entry(e, &mut payload)?;
            book.content.insert(side, (at, key));
            (at, key)
        }
    };
    let record = FileRecord { key, path: f.path.clone(), mode: f.mode, size, sha256: sha, entry, deltas: Vec::new() };
    Ok((record, stored, !shared))
}

fn crypt_error(e: CryptError) -> PublishError {
    PublishError::Invalid(format!("private channel: {e}"))
}

fn changed(f: &SourceFile, size: u64) -> PublishError {
    PublishError::Invalid(format!(
        "{}: the file changed while being read ({} bytes, then {size})",
        f.source.display(),
        f.size
    ))
}

/// A delta to make: from `base` to the content of file `file`.
struct DeltaJob {
    file: usize,
    base: FileRecord,
}

/// Gives each changed file its deltas against its versions in `bases`:
/// those the container holds already, and new ones (made in parallel, kept
/// when clearly smaller than the whole entry, appended in file order).
/// Returns the number and bytes of new deltas per file.
#[allow(clippy::too_many_arguments)]
fn add_deltas(
    appender: &mut Appender,
    book: &mut Book,
    bases: &[Build],
    files: &[&SourceFile],
    records: &mut [FileRecord],
    dir: &Path,
    opts: &PublishOptions,
    private: Option<&Private>,
) -> Result<Vec<(usize, u64)>, PublishError> {
    let side = private.is_some();
    // Each file's candidate bases, newest release first, each base once.
    let mut wanted: Vec<Vec<FileRecord>> = Vec::with_capacity(records.len());
    let mut jobs: Vec<DeltaJob> = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let mut mine: Vec<FileRecord> = Vec::new();
        for build in bases {
            let Some(base) = build.base_for(&r.path, &opts.version) else { continue };
            if base.sha256 == r.sha256 || mine.iter().any(|b| b.sha256 == base.sha256) {
                continue;
            }
            let key = (side, base.sha256, r.sha256);
            let queued = jobs.iter().any(|j| (side, j.base.sha256, records[j.file].sha256) == key);
            if !book.deltas.contains_key(&key) && !queued && base.size <= DELTA_MAX && r.size <= DELTA_MAX {
                jobs.push(DeltaJob { file: i, base: base.clone() });
            }
            mine.push(base.clone());
        }
        wanted.push(mine);
    }
    let made = make_deltas(appender, &jobs, files, dir, opts.delta_level)?;
    let mut made_for = vec![(0usize, 0u64); records.len()];
    for (job, staged) in jobs.iter().zip(made) {
        let mut staged = staged?;
        let sha = records[job.file].sha256;
        if staged.sha256 != sha {
            return Err(changed(files[job.file], staged.size));
        }
        let key = private.map(|(k, _)| k.payload_key(appender.next_leaf()));
        if let Some(key) = &key {
            staged = seal_staged(staged, &files[job.file].source, dir, key)?;
        }
        let keyed = |d: Sha256Hex| private.map_or(d, |(k, _)| k.keyed_digest(&d));
        let d = Delta {
            sealed: private.map(|(_, x)| *x),
            base: keyed(job.base.sha256),
            base_size: job.base.size,
            size: records[job.file].size,
            sha256: keyed(sha),
            stored_size: staged.stored_size,
            stored_sha256: staged.stored_sha256,
        };
        // Only a delta clearly smaller than the whole entry is worth storing:
        // frames compared, headers included, so a tiny file gets none.
        let frame = Header::Delta(d.clone()).to_bytes().ok().and_then(|h| frame_len(h.len() as u64, d.stored_size));
        let whole = book.content.get(&(side, sha)).map_or(0, |(at, _)| at.length);
        if frame.is_none_or(|f| f * 5 > whole * 4) {
            continue;
        }
        made_for[job.file].0 += 1;
        made_for[job.file].1 += staged.stored_size;
        let mut payload = staged.payload(&files[job.file].source)?;
        let at = appender.append_delta(d, &mut payload)?;
        book.deltas.insert(
            (side, job.base.sha256, sha),
            DeltaRef { key, base: job.base.sha256, leaf: at.leaf, offset: at.offset, length: at.length },
        );
    }
    for (r, bases) in records.iter_mut().zip(wanted) {
        r.deltas = bases.iter().filter_map(|b| book.deltas.get(&(side, b.sha256, r.sha256)).copied()).collect();
        r.deltas.sort_by_key(|d| d.base);
    }
    Ok(made_for)
}

/// Makes the deltas of `jobs` on every core; results in job order.
fn make_deltas(
    appender: &Appender,
    jobs: &[DeltaJob],
    files: &[&SourceFile],
    dir: &Path,
    level: i32,
) -> Result<Vec<Result<crate::compress::Staged, PublishError>>, PublishError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(jobs.len()).max(1);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<Result<crate::compress::Staged, PublishError>>>> =
        jobs.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else { break };
                    let base = match job.base.key {
                        Some(key) => appender.sealed_entry_bytes(job.base.entry, key, job.base.sha256, DELTA_MAX),
                        None => appender.entry_bytes(job.base.entry, job.base.sha256, DELTA_MAX),
                    };
                    let r = base
                        .map_err(PublishError::from)
                        .and_then(|base| stage_delta(&base, files[job.file], dir, level));
                    *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
                }
            });
        }
    });
    results
        .into_iter()
        .map(|m| {
            m.into_inner()
                .unwrap_or_else(|e| e.into_inner())
                .ok_or_else(|| PublishError::Invalid("a delta was not made".into()))
        })
        .collect()
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
    appender.check_time(time)?;
    Ok(())
}

/// An artifact directory that holds the container (`dare publish dist/app.dare
/// --artifact T=dist`) would put a copy of the container into each release,
/// doubling it every time, and its pending file vanishes while being read.
fn refuse_the_container_itself(container: &Path, files: &[SourceFile]) -> Result<(), PublishError> {
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
    if let Err(e) = Appender::open(container) {
        tracing::warn!("could not cut back {} after a failed seal: {e}", container.display());
    }
}

/// Opens `container` for appending, cutting a torn tail, and returns the cut.
pub(crate) fn open_appender(container: &Path) -> Result<(Appender, Option<CutTail>), PublishError> {
    let appender = Appender::open(container)?;
    let cut = appender.cut_tail().cloned();
    Ok((appender, cut))
}

pub(crate) fn parent_dir(path: &Path) -> std::path::PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    }
}
