//! Keeping a local copy of an upstream container in sync, verified.
//!
//! Every round reads the upstream through the updater's [`Transport`] (HTTP
//! or HTTPS with rustls, or a local file), as an updater does, and reads no
//! byte more than the signed data says it needs:
//!
//! 1. a suffix holding the upstream's last seal (at most [`MAX_SEAL`] bytes),
//!    whose checkpoint must be signed by the keys the local copy trusts (on a
//!    first sync: the upstream genesis' trust root, read from its first
//!    frame, restricted to the `--trust` keys when given). A tail that is
//!    not a seal is a publish in progress: nothing is synced this round;
//! 2. the bytes from the local copy's last seal up to the end of that signed
//!    seal, exactly: the transport stops at the last requested byte whatever
//!    the server sends. They must begin with the local copy's last seal (so a
//!    fork is caught even when it has the same length) and form frames as
//!    they arrive (junk stops the transfer at once). They are streamed into
//!    a hidden staging file;
//! 3. the local copy plus the staged bytes, verified as one container: every
//!    new frame's structure and header, every new payload's digests, the
//!    tiles, every new seal's signatures and its consistency with the seals
//!    before. Only then are the bytes appended to the served file and served.
//!
//! A tampered, forked, truncated or rolled-back upstream is refused and
//! logged; the local copy stays as it was. [`SyncError::is_permanent`] tells
//! an upstream that will not work without a change of configuration (wrong
//! keys, not a container, not found) from one worth retrying with backoff.
//! [`Syncer::run`] stops within moments of its shutdown signal, in the middle
//! of a transfer too: a round cut short leaves only its staging file, which
//! the next round replaces.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use dare_container::client::{
    Fetched, SealRead, SignedSeal, TailError, TailRead, read_seal, read_tail, read_tail_manifest, tail_top_ranges,
};
use dare_container::frame::{FrameEvent, FrameStream, ReadAt, Window, read_frame_at, read_header};
use dare_container::header::LeafRef;
use dare_container::header::{Genesis, Header};
use dare_container::keys::{TrustRoot, VerifierKey};
use dare_container::seal::{RotationWalk, SealRules};
use dare_container::verify::{Scan, ScanOptions, Tail, scan_from};
use dare_updater::transport::{ByteRange, RangeSink, SinkError, Transport, TransportError};

use crate::files::ServedLengths;
use crate::tlog::TlogOverlay;

/// The most bytes read to find an upstream's last seal: the largest seal
/// frame, the updater's bound too.
pub const MAX_SEAL: u64 = dare_container::header::MAX_SEAL_FRAME;
/// The first suffix asked for: most seals fit.
const FIRST_SUFFIX: u64 = 16 * 1024;
/// The most bytes read to find a genesis frame.
const MAX_GENESIS: u64 = 64 * 1024;

/// Why one sync round did not append anything.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The upstream could not be read: see [`TransportError::is_retryable`].
    #[error("upstream {0}")]
    Transport(#[source] TransportError),
    /// The upstream ends with no complete seal: a publish in progress, or a
    /// damaged copy. Retried.
    #[error("upstream {url}: {reason}")]
    Unsealed {
        /// The upstream.
        url: String,
        /// What its tail holds instead.
        reason: String,
    },
    /// The upstream's container is not signed by the keys trusted for it.
    #[error("refused {url}: {reason}")]
    Untrusted {
        /// The upstream.
        url: String,
        /// Which keys signed and which were trusted.
        reason: String,
    },
    /// The upstream does not serve a dare container.
    #[error("refused {url}: not a dare container: {reason}")]
    NotAContainer {
        /// The upstream.
        url: String,
        /// What its first bytes are.
        reason: String,
    },
    /// The upstream's bytes do not verify as an extension of the local copy.
    #[error("refused {url}: {reason}")]
    Refused {
        /// The upstream URL.
        url: String,
        /// What failed verification.
        reason: String,
    },
    /// The upstream is shorter than the verified local copy: a rollback.
    #[error("refused {url}: it has {upstream} bytes, fewer than the {local} already verified (rollback?)")]
    Rollback {
        /// The upstream URL.
        url: String,
        /// Its length.
        upstream: u64,
        /// The local verified length.
        local: u64,
    },
    /// The new bytes exceed [`SyncConfig::max_fetch`].
    #[error("refused {url}: its new release is {bytes} bytes, more than the {max} allowed in one sync")]
    TooLarge {
        /// The upstream.
        url: String,
        /// Bytes the signed seal needs.
        bytes: u64,
        /// The limit.
        max: u64,
    },
    /// Local files.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

impl SyncError {
    /// Whether retrying without a change of configuration cannot help: the
    /// upstream is not found (or refuses with a 4xx status), is not a dare
    /// container, is signed by other keys, or its release is larger than
    /// allowed.
    pub fn is_permanent(&self) -> bool {
        match self {
            // Not found, a refusal such as 403, a URL that cannot be used.
            SyncError::Transport(e) => match e {
                TransportError::NotFound { .. } | TransportError::Invalid { .. } => true,
                TransportError::Status { .. } => !e.is_retryable(),
                _ => false,
            },
            SyncError::Untrusted { .. } | SyncError::NotAContainer { .. } | SyncError::TooLarge { .. } => true,
            SyncError::Unsealed { .. }
            | SyncError::Refused { .. }
            | SyncError::Rollback { .. }
            | SyncError::Io { .. } => false,
        }
    }
}

/// What one sync round did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyncReport {
    /// The verified length before.
    pub before: u64,
    /// The verified length after.
    pub after: u64,
    /// The tree size after.
    pub size: u64,
}

/// Settings of one synced container.
#[derive(Clone)]
#[non_exhaustive]
pub struct SyncConfig {
    /// The upstreams of the container, tried in order: for example
    /// [`dare_updater::transport::transport_for`] of each URL.
    pub upstreams: Vec<Arc<dyn Transport>>,
    /// The local copy.
    pub local: PathBuf,
    /// The URL path it is served at (`/NAME`).
    pub url_path: String,
    /// Keys that must sign the first sync's seals (otherwise the upstream
    /// genesis is trusted on first use).
    pub pins: Option<Vec<VerifierKey>>,
    /// The most bytes one round fetches.
    pub max_fetch: u64,
}

impl SyncConfig {
    /// Syncs `local`, served at `url_path`, from `upstreams`: no pins (the
    /// upstream genesis is trusted on first use), no limit per round.
    pub fn new(upstreams: Vec<Arc<dyn Transport>>, local: impl Into<PathBuf>, url_path: impl Into<String>) -> Self {
        SyncConfig { upstreams, local: local.into(), url_path: url_path.into(), pins: None, max_fetch: u64::MAX }
    }

    /// With [`upstreams`](Self::upstreams) replaced.
    pub fn with_upstreams(mut self, upstreams: Vec<Arc<dyn Transport>>) -> Self {
        self.upstreams = upstreams;
        self
    }

    /// With [`pins`](Self::pins) set.
    pub fn with_pins(mut self, pins: Option<Vec<VerifierKey>>) -> Self {
        self.pins = pins;
        self
    }

    /// With [`max_fetch`](Self::max_fetch) set.
    pub fn with_max_fetch(mut self, bytes: u64) -> Self {
        self.max_fetch = bytes;
        self
    }
}

impl std::fmt::Debug for SyncConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.upstreams.iter().map(|t| t.name()).collect();
        f.debug_struct("SyncConfig").field("upstreams", &names).field("local", &self.local).finish()
    }
}

/// Syncs one container from its upstreams.
pub struct Syncer {
    cfg: SyncConfig,
    lengths: ServedLengths,
    tlog: TlogOverlay,
    verified: u64,
    /// The tree size of the verified copy.
    size: u64,
    /// The trust root in effect after the verified copy's last seal.
    trust: Option<TrustRoot>,
    /// The `keys` leaf that root came from (none: the genesis root).
    keys_leaf: Option<LeafRef>,
    /// Where the verified copy's last seal starts. Each round asks from
    /// there and compares the seal with the upstream's bytes, so an upstream
    /// that forked, even to the same length, is caught.
    anchor: u64,
    preferred: usize,
}

impl std::fmt::Debug for Syncer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Syncer").field("local", &self.cfg.local).field("verified", &self.verified).finish()
    }
}

impl Syncer {
    /// Opens the local copy (verifying it whole, cutting any unverified
    /// tail) and publishes its verified length and log.
    pub fn open(cfg: SyncConfig, lengths: ServedLengths, tlog: TlogOverlay) -> Result<Syncer, SyncError> {
        let mut s =
            Syncer { cfg, lengths, tlog, verified: 0, size: 0, trust: None, keys_leaf: None, anchor: 0, preferred: 0 };
        // A round cut short (a shutdown) may have left its staging file.
        let _ = fs::remove_file(staging_path(&s.cfg.local));
        if s.cfg.local.exists() {
            let file = File::open(&s.cfg.local).map_err(|e| io_err("opening", &s.cfg.local, e))?;
            let len = file.metadata().map_err(|e| io_err("reading", &s.cfg.local, e))?.len();
            let opts = ScanOptions::full().with_pins(s.cfg.pins.clone());
            let scan = scan_from(&file, len, &opts, 0).map_err(|e| SyncError::Refused {
                url: s.cfg.local.display().to_string(),
                reason: format!("the local copy does not verify: {e}"),
            })?;
            if let Tail::Torn { offset, .. } = scan.tail {
                drop(file);
                let f = OpenOptions::new()
                    .write(true)
                    .open(&s.cfg.local)
                    .map_err(|e| io_err("opening", &s.cfg.local, e))?;
                f.set_len(offset).map_err(|e| io_err("cutting back", &s.cfg.local, e))?;
                f.sync_all().map_err(|e| io_err("syncing", &s.cfg.local, e))?;
                tracing::warn!(local = %s.cfg.local.display(), offset, "cut an unverified tail off the local copy");
            }
            s.publish(&scan);
        }
        Ok(s)
    }

    /// The verified length of the local copy.
    pub fn verified_len(&self) -> u64 {
        self.verified
    }

    fn publish(&mut self, scan: &Scan) {
        self.verified = scan.sealed_len;
        self.size = scan.size();
        self.anchor = scan.last_seal.frame.offset;
        self.trust = Some(scan.trust.clone());
        self.keys_leaf = scan.manifest.keys;
        self.lengths.set(&self.cfg.url_path, scan.sealed_len);
        self.tlog.set(
            &self.cfg.url_path,
            scan.last_seal.seal.checkpoint.clone(),
            Arc::new(scan.tree.clone()),
            scan.size(),
        );
    }

    /// One round: tries each upstream (the last good one first) until one
    /// yields a verified extension or says there is nothing new. The error
    /// is permanent only when every upstream's was (then it is the first
    /// one's); otherwise it is the last passing one.
    pub async fn sync_once(&mut self) -> Result<SyncReport, SyncError> {
        let n = self.cfg.upstreams.len();
        let mut errors = Vec::new();
        for i in 0..n {
            let idx = (self.preferred + i) % n;
            let upstream = Arc::clone(&self.cfg.upstreams[idx]);
            match self.sync_from(&*upstream).await {
                Ok(r) => {
                    self.preferred = idx;
                    return Ok(r);
                }
                Err(e) => {
                    tracing::warn!(upstream = upstream.name(), error = %e, "sync failed");
                    errors.push(e);
                }
            }
        }
        // A permanent error only if every upstream's is: report the first
        // permanent one, else the last.
        let all_permanent = errors.iter().all(SyncError::is_permanent);
        let pick =
            if all_permanent { errors.into_iter().next() } else { errors.into_iter().rfind(|e| !e.is_permanent()) };
        Err(pick.unwrap_or_else(|| {
            SyncError::Transport(TransportError::Invalid {
                url: self.cfg.url_path.clone(),
                reason: "no upstream configured".into(),
            })
        }))
    }

    async fn sync_from(&mut self, upstream: &dyn Transport) -> Result<SyncReport, SyncError> {
        let staging = staging_path(&self.cfg.local);
        let result = self.sync_through(upstream, &staging).await;
        // Unverified bytes never stay behind, whether they were refused or
        // the round failed midway.
        let _ = fs::remove_file(&staging);
        result
    }

    async fn sync_through(&mut self, upstream: &dyn Transport, staging: &Path) -> Result<SyncReport, SyncError> {
        let url = upstream.name().to_string();
        let before = self.verified;
        let first = before == 0;
        let (keys, threshold) = self.keys(upstream).await?;
        let rotation = self.trust.as_ref().map(|t| (t, self.keys_leaf));
        let (seal, window_start, window) = read_upstream_seal(upstream, &keys, threshold, before, rotation).await?;
        let len = seal.len;
        let overlap = self.last_seal_bytes()?;
        if len == before {
            // The same length: the same last seal, or a fork.
            let same = seal.frame.offset == self.anchor
                && Window::new(window_start, &window).slice(self.anchor, before - self.anchor) == Some(&overlap[..]);
            if !same {
                return Err(SyncError::Refused {
                    url,
                    reason: "its last seal differs from the verified copy's, at the same length: a fork, or another container".into(),
                });
            }
            return Ok(SyncReport { before, after: before, size: self.size });
        }
        let new = len - before;
        if new > self.cfg.max_fetch {
            return Err(SyncError::TooLarge { url, bytes: new, max: self.cfg.max_fetch });
        }
        let fetched = self.fetch(upstream, &overlap, len, staging).await?;
        if fetched != new {
            return Err(SyncError::Refused {
                url,
                reason: format!("it sent {fetched} new bytes where its seal needs {new}"),
            });
        }
        let local = &self.cfg.local;
        let staged =
            OpenOptions::new().read(true).write(true).open(staging).map_err(|e| io_err("opening", staging, e))?;
        let base = if first { None } else { Some(File::open(local).map_err(|e| io_err("opening", local, e))?) };
        let pins = if first { self.cfg.pins.clone() } else { None };
        // Verifying hashes every new payload: blocking work, off the runtime.
        let (scan, staged) = tokio::task::spawn_blocking(move || {
            let joined = Joined { first: base.as_ref(), first_len: before, second: &staged };
            let r = scan_from(&joined, len, &ScanOptions::full().with_pins(pins), before);
            (r, staged)
        })
        .await
        .map_err(|e| io_err("verifying", staging, io::Error::other(e)))?;
        let scan = scan.map_err(|e| SyncError::Refused { url: url.clone(), reason: e.to_string() })?;
        if first && self.cfg.pins.is_none() {
            tracing::warn!(
                upstream = %url,
                fingerprint = %scan.genesis_fingerprint(),
                "first sync: trusting the upstream's genesis trust root on first use (pass --trust to pin it)"
            );
        }
        if scan.sealed_len != len {
            return Err(SyncError::Refused {
                url,
                reason: format!(
                    "its last seal ends at byte {len}, but its frames are sealed only up to {}",
                    scan.sealed_len
                ),
            });
        }
        // Append exactly the verified bytes.
        let add = scan.sealed_len - before;
        if first {
            staged.sync_all().map_err(|e| io_err("syncing", staging, e))?;
            fs::rename(staging, local).map_err(|e| io_err("moving into place", local, e))?;
        } else {
            let mut out = OpenOptions::new().write(true).open(local).map_err(|e| io_err("opening", local, e))?;
            // Whatever lies past the verified length (a failed append's
            // bytes) is not part of the copy: write the new bytes over it.
            out.set_len(before).map_err(|e| io_err("cutting back", local, e))?;
            out.seek(SeekFrom::Start(before)).map_err(|e| io_err("seeking in", local, e))?;
            let mut src = io::Read::take(&staged, add);
            io::copy(&mut src, &mut out).map_err(|e| io_err("appending to", local, e))?;
            out.sync_all().map_err(|e| io_err("syncing", local, e))?;
        }
        if let Some(dir) = local.parent() {
            let _ = File::open(dir).and_then(|d| d.sync_all());
        }
        self.publish(&scan);
        tracing::info!(upstream = %url, before, after = scan.sealed_len, size = scan.size(), "synced");
        Ok(SyncReport { before, after: scan.sealed_len, size: scan.size() })
    }

    /// The keys the upstream's last seal must be signed by, and how many:
    /// the local copy's trust root; on a first sync the upstream genesis'
    /// trust root, restricted to the pinned keys when there are some.
    async fn keys(&self, upstream: &dyn Transport) -> Result<(Vec<VerifierKey>, u32), SyncError> {
        if let Some(trust) = &self.trust {
            return Ok((trust.keys.clone(), trust.threshold));
        }
        let url = upstream.name();
        let genesis = read_upstream_genesis(upstream).await?;
        let trust = genesis.trust;
        match &self.cfg.pins {
            None => Ok((trust.keys.clone(), trust.threshold)),
            Some(pins) => {
                let allowed: Vec<VerifierKey> = pins.iter().filter(|k| trust.contains(k)).cloned().collect();
                if allowed.is_empty() {
                    return Err(SyncError::Untrusted {
                        url: url.to_string(),
                        reason: format!(
                            "its genesis trusts {}, none of the --trust keys ({}): pass its publisher's key, or another upstream",
                            key_list(&trust.keys),
                            key_list(pins)
                        ),
                    });
                }
                Ok((allowed, trust.threshold))
            }
        }
    }

    /// The verified copy's bytes from its last seal to its end.
    fn last_seal_bytes(&self) -> Result<Vec<u8>, SyncError> {
        if self.verified == 0 {
            return Ok(Vec::new());
        }
        let local = &self.cfg.local;
        let file = File::open(local).map_err(|e| io_err("opening", local, e))?;
        let mut buf = vec![0u8; (self.verified - self.anchor) as usize];
        file.read_exact_at(&mut buf, self.anchor).map_err(|e| io_err("reading", local, e))?;
        Ok(buf)
    }

    /// Fetches the upstream's bytes from the start of `overlap` (the
    /// verified copy's last seal) to `end` (the end of its signed last seal),
    /// checks that they begin with `overlap` and form frames, and streams the
    /// rest into the staging file; returns how many.
    async fn fetch(
        &self,
        upstream: &dyn Transport,
        overlap: &[u8],
        end: u64,
        staging: &Path,
    ) -> Result<u64, SyncError> {
        let from = self.anchor;
        let out = File::create(staging).map_err(|e| io_err("creating", staging, e))?;
        let url = upstream.name().to_string();
        let mut sink = StagingSink {
            url: url.clone(),
            overlap,
            matched: 0,
            from,
            frames: FrameStream::new(self.verified),
            out: io::BufWriter::with_capacity(256 * 1024, out),
            written: 0,
            error: None,
        };
        let range = [ByteRange::Span { start: from, end }];
        let fetched = upstream.fetch(&range, &mut sink).await;
        if let Some(e) = sink.error.take() {
            return Err(e);
        }
        fetched.map_err(SyncError::Transport)?;
        if !sink.frames.at_boundary() {
            return Err(SyncError::Refused { url, reason: format!("its bytes end inside a frame at byte {end}") });
        }
        let written = sink.written;
        let out = sink.out.into_inner().map_err(|e| io_err("writing", staging, e.into_error()))?;
        out.sync_all().map_err(|e| io_err("syncing", staging, e))?;
        Ok(written)
    }

    /// Syncs every `interval` until `shutdown`, backing off after failures.
    /// A round in progress is abandoned at once on `shutdown` (the local
    /// copy stays as it was). Returns an error when the very first sync of a
    /// container fails permanently on every upstream (nothing can ever be
    /// served with this configuration); later permanent failures are logged
    /// as errors and retried at the interval, since the verified copy is
    /// still served.
    pub async fn run(
        mut self,
        interval: Duration,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), SyncError> {
        tokio::pin!(shutdown);
        let mut wait = Duration::ZERO;
        loop {
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                () = tokio::time::sleep(wait) => {}
            }
            let round = tokio::select! {
                () = &mut shutdown => {
                    tracing::info!(local = %self.cfg.local.display(), "shutdown: abandoning the sync in progress");
                    let _ = fs::remove_file(staging_path(&self.cfg.local));
                    return Ok(());
                }
                round = self.sync_once() => round,
            };
            wait = match round {
                Ok(_) => interval,
                Err(e) if e.is_permanent() && self.verified == 0 => return Err(e),
                Err(e) if e.is_permanent() => {
                    tracing::error!(local = %self.cfg.local.display(), error = %e, "sync failed; serving the verified copy, retrying every interval");
                    interval
                }
                Err(e) => {
                    tracing::warn!(local = %self.cfg.local.display(), error = %e, "sync round failed; the local copy is unchanged");
                    // Back off, but never wait longer than the interval.
                    (wait * 2).clamp(Duration::from_secs(1), interval.max(Duration::from_secs(1)))
                }
            };
        }
    }
}

/// Receives the fetched bytes: checks the overlap with the verified copy,
/// decodes frames as they come, and writes the new bytes to staging.
struct StagingSink<'a> {
    url: String,
    overlap: &'a [u8],
    matched: usize,
    from: u64,
    frames: FrameStream,
    out: io::BufWriter<File>,
    written: u64,
    /// A refusal, kept whole (the transport only carries a message).
    error: Option<SyncError>,
}

impl StagingSink<'_> {
    fn refuse(&mut self, e: SyncError) -> SinkError {
        let msg = e.to_string();
        self.error = Some(e);
        SinkError(msg)
    }
}

impl RangeSink for StagingSink<'_> {
    fn begin(&mut self, _index: usize, _start: u64, _total: Option<u64>) -> Result<(), SinkError> {
        Ok(())
    }

    fn data(&mut self, mut bytes: &[u8]) -> Result<(), SinkError> {
        if self.matched < self.overlap.len() {
            let n = bytes.len().min(self.overlap.len() - self.matched);
            if let Some(i) = bytes[..n].iter().zip(&self.overlap[self.matched..]).position(|(a, b)| a != b) {
                let at = self.from + (self.matched + i) as u64;
                return Err(self.refuse(SyncError::Refused {
                    url: self.url.clone(),
                    reason: format!(
                        "its byte {at} differs from the verified copy's last seal: a fork, or another container"
                    ),
                }));
            }
            self.matched += n;
            bytes = &bytes[n..];
        }
        if bytes.is_empty() {
            return Ok(());
        }
        let mut check = |event: FrameEvent<'_>| -> Result<(), String> {
            if let FrameEvent::Header { offset, header, payload_len } = event {
                let h = Header::parse(header).map_err(|e| format!("the frame at byte {offset}: {e}"))?;
                let stored = match &h {
                    Header::Entry(e) => Some(e.stored_size),
                    Header::Delta(d) => Some(d.stored_size),
                    _ => None,
                };
                if stored.is_some_and(|s| s != payload_len) {
                    return Err(format!(
                        "the frame at byte {offset}: its payload is not the stored_size its header says"
                    ));
                }
            }
            Ok(())
        };
        if let Err(e) = self.frames.feed(bytes, &mut check) {
            return Err(self.refuse(SyncError::Refused { url: self.url.clone(), reason: e.to_string() }));
        }
        self.written += bytes.len() as u64;
        if let Err(e) = self.out.write_all(bytes) {
            return Err(self.refuse(SyncError::Io {
                op: "writing",
                path: PathBuf::from("the staging file"),
                source: e,
            }));
        }
        Ok(())
    }
}

fn key_list(keys: &[VerifierKey]) -> String {
    let names: Vec<String> = keys.iter().map(|k| format!("{}+{:08x}", k.name(), k.key_id())).collect();
    names.join(", ")
}

/// Collects the bytes of one fetched range, at most `cap`.
struct BufferSink {
    start: u64,
    total: Option<u64>,
    bytes: Vec<u8>,
    cap: u64,
}

impl BufferSink {
    fn new(cap: u64) -> BufferSink {
        BufferSink { start: 0, total: None, bytes: Vec::new(), cap }
    }
}

impl RangeSink for BufferSink {
    fn begin(&mut self, _index: usize, start: u64, total: Option<u64>) -> Result<(), SinkError> {
        self.start = start;
        self.total = total;
        Ok(())
    }

    fn data(&mut self, bytes: &[u8]) -> Result<(), SinkError> {
        if self.bytes.len() as u64 + bytes.len() as u64 > self.cap {
            return Err(SinkError(format!("more than the {} bytes asked for", self.cap)));
        }
        self.bytes.extend_from_slice(bytes);
        Ok(())
    }
}

/// The upstream's genesis, from its first bytes.
async fn read_upstream_genesis(upstream: &dyn Transport) -> Result<Genesis, SyncError> {
    let url = upstream.name().to_string();
    let not_container = |reason: String| SyncError::NotAContainer { url: url.clone(), reason };
    let mut want = 4096;
    loop {
        let mut sink = BufferSink::new(want);
        match upstream.fetch(&[ByteRange::Span { start: 0, end: want }], &mut sink).await {
            Ok(()) => {}
            // Shorter than asked: take what there is.
            Err(TransportError::RangeNotSatisfiable { len: Some(len), .. }) if len > 0 && len < want => {
                want = len;
                continue;
            }
            Err(e) => return Err(SyncError::Transport(e)),
        }
        let window = Window::new(0, &sink.bytes);
        let frame = match read_frame_at(&window, 0, sink.bytes.len() as u64) {
            Ok(f) => f,
            Err(dare_container::frame::FrameError::Truncated { needed, .. })
                if needed > want && needed <= MAX_GENESIS && sink.total.is_none_or(|t| needed <= t) =>
            {
                want = needed;
                continue;
            }
            Err(e) => return Err(not_container(format!("its first frame: {e}"))),
        };
        let header = read_header(&window, &frame).map_err(|e| not_container(format!("its first frame: {e}")))?;
        return match Header::parse(&header) {
            Ok(Header::Genesis(g)) => Ok(g),
            Ok(other) => Err(not_container(format!("its first frame is a {} frame, not a genesis", other.kind()))),
            Err(e) => Err(not_container(format!("its first frame: {e}"))),
        };
    }
}

/// The upstream's last seal, verified against `keys`, and the suffix it was
/// read from (its start and bytes).
async fn read_upstream_seal(
    upstream: &dyn Transport,
    keys: &[VerifierKey],
    threshold: u32,
    verified: u64,
    rotation: Option<(&TrustRoot, Option<LeafRef>)>,
) -> Result<(SignedSeal, u64, Vec<u8>), SyncError> {
    let url = upstream.name().to_string();
    let mut sink = BufferSink::new(FIRST_SUFFIX);
    upstream.fetch(&[ByteRange::Suffix(FIRST_SUFFIX)], &mut sink).await.map_err(SyncError::Transport)?;
    let (mut start, mut bytes) = (sink.start, sink.bytes);
    let len = start + bytes.len() as u64;
    if sink.total.is_some_and(|t| t != len) {
        return Err(SyncError::Transport(TransportError::Protocol {
            url,
            reason: "the suffix does not end at the end of the container".into(),
        }));
    }
    // Shorter than the verified copy, sealed or not.
    if len < verified {
        return Err(SyncError::Rollback { url, upstream: len, local: verified });
    }
    loop {
        let window = Window::new(start, &bytes);
        match read_seal(&window, len, keys, threshold) {
            Ok(SealRead::Complete(seal)) => return Ok((*seal, start, bytes)),
            Ok(SealRead::NeedMore { start: want }) => {
                if want >= start || len - want > MAX_SEAL {
                    return Err(SyncError::Refused {
                        url,
                        reason: format!("its last seal needs {} bytes, more than the {MAX_SEAL} allowed", len - want),
                    });
                }
                let mut more = BufferSink::new(start - want);
                upstream
                    .fetch(&[ByteRange::Span { start: want, end: start }], &mut more)
                    .await
                    .map_err(SyncError::Transport)?;
                let mut head = more.bytes;
                head.extend_from_slice(&bytes);
                bytes = head;
                start = want;
            }
            Err(TailError::Unsealed(reason)) if len == 0 => {
                return Err(SyncError::NotAContainer { url, reason: format!("it is empty ({reason})") });
            }
            Err(TailError::Unsealed(reason)) => {
                return Err(SyncError::Unsealed {
                    url,
                    reason: format!("it does not end with a seal ({reason}): a publish in progress, or a damaged copy"),
                });
            }
            // A static upstream caught while a frame is being written ends
            // inside it, as a cut copy does: both are retried later.
            Err(TailError::Damaged(reason)) => {
                return Err(SyncError::Unsealed {
                    url,
                    reason: format!("it does not end with a seal: {reason}; a publish in progress, or a damaged copy"),
                });
            }
            Err(TailError::Signature(e)) => {
                // Not signed by the root the local copy trusts: a rotation
                // the upstream has and the copy has not, or a forgery.
                if let Some((root, from)) = rotation {
                    let seal = follow_rotations(upstream, &Window::new(start, &bytes), len, root, from).await?;
                    return Ok((seal, start, bytes));
                }
                let whose = if verified == 0 {
                    "the trusted keys (--trust, or its genesis)"
                } else {
                    "the keys the local copy trusts"
                };
                return Err(SyncError::Untrusted {
                    url,
                    reason: format!("its last seal is not signed by {whose} ({}): {e}", key_list(keys)),
                });
            }
            Err(e) => return Err(SyncError::Refused { url, reason: e.to_string() }),
        }
    }
}

/// The upstream's last seal when it is signed by a root the local copy does
/// not hold yet: follows the key rotations its manifest names from the
/// copy's root ([`RotationWalk`], one bounded read per `keys` leaf) and
/// checks the seal with the root they end on. The full verification of the
/// new bytes then checks every rotation and leaf again.
async fn follow_rotations(
    upstream: &dyn Transport,
    window: &Window<'_>,
    len: u64,
    root: &TrustRoot,
    from: Option<LeafRef>,
) -> Result<SignedSeal, SyncError> {
    let url = upstream.name().to_string();
    let refused = |reason: String| SyncError::Untrusted { url: url.clone(), reason };
    let tail = match read_tail(window, len) {
        Ok(TailRead::Complete(t)) => *t,
        Ok(TailRead::NeedMore { .. }) => return Err(refused("its last seal is not whole".into())),
        Err(e) => return Err(refused(e.to_string())),
    };
    let mut fetched = Fetched::new();
    let read = |ranges: Vec<(u64, u64)>| async move {
        let mut parts = Vec::new();
        for (start, end) in ranges {
            let mut sink = BufferSink::new(end - start);
            upstream.fetch(&[ByteRange::Span { start, end }], &mut sink).await.map_err(SyncError::Transport)?;
            parts.push((start, sink.bytes));
        }
        Ok::<_, SyncError>(parts)
    };
    for (start, bytes) in read(tail_top_ranges(&tail).map_err(|e| refused(e.to_string()))?).await? {
        fetched.insert(start, bytes);
    }
    let manifest = read_tail_manifest(&tail, &fetched).map_err(|e| refused(e.to_string()))?;
    if manifest.keys == from {
        return Err(refused(format!(
            "its last seal is not signed by the keys the local copy trusts ({}), and it names no key rotation since",
            key_list(&root.keys)
        )));
    }
    let mut walk = RotationWalk::new(root.clone(), from, manifest.keys, tail.size(), tail.frame.offset);
    while let Some(at) = walk.next_read().map_err(|e| refused(e.to_string()))? {
        for (start, bytes) in read(vec![(at.offset, at.end())]).await? {
            fetched.insert(start, bytes);
        }
        walk.feed(&fetched).map_err(|e| refused(e.to_string()))?;
    }
    let (root, _) = walk.finish(&tail.checkpoint.origin).map_err(|e| refused(e.to_string()))?;
    tail.verify(&SealRules::new(&root)).map_err(|e| refused(format!("its last seal, after its key rotations: {e}")))
}

fn staging_path(local: &Path) -> PathBuf {
    let name = local.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    local.with_file_name(format!(".{name}.sync"))
}

fn io_err(op: &'static str, path: &Path, source: io::Error) -> SyncError {
    SyncError::Io { op, path: path.to_path_buf(), source }
}

/// The verified local copy followed by the staged bytes, read as one file.
struct Joined<'a> {
    first: Option<&'a File>,
    first_len: u64,
    second: &'a File,
}

impl ReadAt for Joined<'_> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let mut done = 0usize;
        while done < buf.len() {
            let at = offset + done as u64;
            let rest = &mut buf[done..];
            if at < self.first_len {
                let first = self.first.ok_or(io::ErrorKind::UnexpectedEof)?;
                let n = rest.len().min((self.first_len - at) as usize);
                first.read_exact_at(&mut rest[..n], at)?;
                done += n;
            } else {
                self.second.read_exact_at(rest, at - self.first_len)?;
                done = buf.len();
            }
        }
        Ok(())
    }
}
