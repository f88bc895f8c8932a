//! The `Transport` seam: how the updater reads byte ranges of a container.
//!
//! A transport makes one attempt at delivering a list of [`ByteRange`]s to a [`RangeSink`], in request
//! order, whatever the server does with the request (ignore the ranges, coalesce them, reorder the parts).
//! Retries, resumption and failover live one level up, in [`crate::fetch::Mirrors`].
//!
//! Three transports: [`HttpTransport`] (HTTP(S) range requests), [`FileTransport`] (a local file) and,
//! with the `test-util` feature, `MemoryTransport` (an in-memory container with fault knobs, for tests). [`transport_for`] picks one
//! for a location given on the command line.

use std::fmt;
use std::fs::File;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use crate::http::{HttpTransport, Timeouts, TlsRoots};
#[cfg(any(test, feature = "test-util"))]
pub use memory::{MemoryFaults, MemoryTransport};

#[cfg(any(test, feature = "test-util"))]
mod memory;

/// A boxed, sendable future, as returned by [`Transport::fetch`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A byte range of the container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ByteRange {
    /// The bytes `start..end` (`end` exclusive, `end > start`).
    Span {
        /// The first byte.
        start: u64,
        /// One past the last byte.
        end: u64,
    },
    /// The last `n` bytes (`n > 0`), or the whole container when it is shorter.
    Suffix(u64),
}

impl ByteRange {
    /// The bytes `start..end` of a container of `total` bytes, or `None` when they are not all there
    /// (or the container is empty, for a suffix).
    pub(crate) fn resolve(self, total: u64) -> Option<(u64, u64)> {
        match self {
            ByteRange::Span { start, end } => (end <= total).then_some((start, end)),
            ByteRange::Suffix(n) => (total > 0).then(|| (total - n.min(total), total)),
        }
    }

    fn is_valid(self) -> bool {
        match self {
            ByteRange::Span { start, end } => start < end && end <= MAX_OFFSET,
            ByteRange::Suffix(n) => n > 0 && n <= MAX_OFFSET,
        }
    }
}

impl fmt::Display for ByteRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ByteRange::Span { start, end } => write!(f, "bytes {start}..{end}"),
            ByteRange::Suffix(n) => write!(f, "the last {n} bytes"),
        }
    }
}

/// Offsets stay below 2^63, like frame lengths, so sums of offsets never overflow.
const MAX_OFFSET: u64 = 1 << 63;

/// Receives the bytes of the requested ranges.
///
/// For each requested range, in request order: exactly one `begin`, then its bytes through `data`
/// (possibly many calls): exactly `end - start` bytes for a [`ByteRange::Span`]; for a
/// [`ByteRange::Suffix`] `n`, `min(n, total)` bytes starting at `total - min(n, total)`.
pub trait RangeSink: Send {
    /// Range `index` (into the requested list) starts at byte `start` of a container of `total` bytes
    /// (when the server said).
    fn begin(&mut self, index: usize, start: u64, total: Option<u64>) -> Result<(), SinkError>;
    /// The next bytes of the current range.
    fn data(&mut self, bytes: &[u8]) -> Result<(), SinkError>;
}

/// Why a sink refused bytes (e.g. they failed verification). Never retried.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SinkError(pub String);

/// A source of container bytes.
pub trait Transport: Send + Sync {
    /// The URL or path, for messages.
    fn name(&self) -> &str;
    /// One attempt at delivering all `ranges` to `sink`, in request order (see [`RangeSink`]).
    ///
    /// Over HTTP this is one request for all the ranges; a server that ignores them (200), coalesces them
    /// or reorders the parts still yields exactly the requested bytes, and never more is read than the
    /// requested ranges plus bounded framing (for a 200 response: up to the end of the last range).
    fn fetch<'a>(
        &'a self,
        ranges: &'a [ByteRange],
        sink: &'a mut dyn RangeSink,
    ) -> BoxFuture<'a, Result<(), TransportError>>;
    /// Requests made and bytes received (response bodies, multipart framing included) so far.
    fn stats(&self) -> TransferStats;
}

/// Requests made and bytes received.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransferStats {
    /// Requests sent (for a file: reads of the requested ranges).
    pub requests: u64,
    /// Bytes received: response bodies, multipart framing included.
    pub bytes: u64,
}

impl TransferStats {
    /// `requests` made and `bytes` received (for a [`Transport`] of one's own).
    pub fn new(requests: u64, bytes: u64) -> Self {
        TransferStats { requests, bytes }
    }
}

/// Why a transport could not deliver the requested ranges. Each variant names the URL or path;
/// [`TransportError::is_retryable`] tells a passing failure from one that will not go away.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The connection could not be made (DNS, refused, TLS handshake).
    #[error("cannot connect to {url}: {reason}")]
    Connect {
        /// The URL.
        url: String,
        /// The cause in a few words: "connection refused", "DNS lookup failed: ...", "TLS handshake
        /// failed: ...".
        reason: String,
        /// What went wrong, in full.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Connecting took too long, or the server made no progress for too long.
    #[error("{url}: timed out after {} waiting for {what}", Secs(*.after))]
    Timeout {
        /// The URL.
        url: String,
        /// What we were waiting for: "connect", "response headers", "data".
        what: &'static str,
        /// How long we waited (the timeout that expired).
        after: Duration,
    },
    /// The server sent fewer bytes in a window than the minimum rate asks ([`Timeouts::min_rate`]).
    #[error("{url}: too slow: {bytes} bytes in {}, below the minimum of {min_rate} bytes/s", Secs(*.window))]
    TooSlow {
        /// The URL.
        url: String,
        /// Bytes received in the window.
        bytes: u64,
        /// The window.
        window: Duration,
        /// The minimum rate, in bytes per second.
        min_rate: u64,
    },
    /// The mirror used up its time for this run ([`Timeouts::mirror_deadline`]); it is not asked
    /// again in this run.
    #[error("{url}: gave up on this mirror after {} (its deadline for this run)", Secs(*.after))]
    Deadline {
        /// The URL.
        url: String,
        /// The time the mirror was given.
        after: Duration,
    },
    /// The server answered with an unexpected HTTP status.
    #[error("{url}: HTTP status {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The container is not there (HTTP 404 or 410, or no such file).
    #[error("{url}: not found")]
    NotFound {
        /// The URL or path.
        url: String,
    },
    /// A requested range lies past the end of the container (HTTP 416, or a short file): the mirror may
    /// be behind.
    #[error("{url}: requested range not satisfiable (container length {})", DisplayLen(*.len))]
    RangeNotSatisfiable {
        /// The URL or path.
        url: String,
        /// The container's length, when known.
        len: Option<u64>,
    },
    /// The server broke the protocol: a bad Content-Range, too much data, malformed multipart, ...
    #[error("{url}: protocol error: {reason}")]
    Protocol {
        /// The URL.
        url: String,
        /// What was wrong.
        reason: String,
    },
    /// The connection dropped mid-response.
    #[error("{url}: transfer interrupted: {reason}")]
    Interrupted {
        /// The URL.
        url: String,
        /// What happened.
        reason: String,
    },
    /// Reading a local file failed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The sink refused the bytes.
    #[error("data refused: {0}")]
    Sink(#[from] SinkError),
    /// The location or the request cannot be used: a malformed URL, an unsupported scheme, no TLS root
    /// certificates, an empty or reversed byte range.
    #[error("{url}: {reason}")]
    Invalid {
        /// The URL or path.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// A duration in seconds, as people read it: `30 s`, `1.5 s`.
pub(crate) struct Secs(pub(crate) Duration);

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms.is_multiple_of(1000) { write!(f, "{} s", ms / 1000) } else { write!(f, "{:.1} s", self.0.as_secs_f64()) }
    }
}

struct DisplayLen(Option<u64>);

impl fmt::Display for DisplayLen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(len) => write!(f, "{len}"),
            None => f.write_str("unknown"),
        }
    }
}

impl TransportError {
    /// Whether trying the same source again may succeed: connection failures, timeouts, dropped
    /// connections, server errors (5xx, 408, 429) and passing I/O errors.
    pub fn is_retryable(&self) -> bool {
        use std::io::ErrorKind;
        match self {
            TransportError::Connect { .. }
            | TransportError::Timeout { .. }
            | TransportError::TooSlow { .. }
            | TransportError::Interrupted { .. } => true,
            TransportError::Status { status, .. } => *status >= 500 || *status == 408 || *status == 429,
            TransportError::Io { source, .. } => {
                matches!(source.kind(), ErrorKind::Interrupted | ErrorKind::TimedOut | ErrorKind::WouldBlock)
            }
            TransportError::NotFound { .. }
            | TransportError::RangeNotSatisfiable { .. }
            | TransportError::Protocol { .. }
            | TransportError::Sink(_)
            | TransportError::Deadline { .. }
            | TransportError::Invalid { .. } => false,
        }
    }
}

/// A transport for `location`: `http://` and `https://` URLs go over HTTP, `file://` URLs and anything
/// without a scheme are local paths.
pub fn transport_for(location: &str, timeouts: Timeouts) -> Result<Arc<dyn Transport>, TransportError> {
    transport_for_roots(location, timeouts, &TlsRoots::default())
}

/// [`transport_for`], checking HTTPS servers against `roots`.
pub fn transport_for_roots(
    location: &str,
    timeouts: Timeouts,
    roots: &TlsRoots,
) -> Result<Arc<dyn Transport>, TransportError> {
    let scheme = location.split_once("://").map(|(scheme, _)| scheme.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("http" | "https") => Ok(Arc::new(HttpTransport::with_roots(location, timeouts, roots)?)),
        Some("file") => Ok(Arc::new(FileTransport::new(file_url_path(location)?))),
        Some(scheme)
            if !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
        {
            Err(invalid(location, format!("unsupported URL scheme {scheme:?}")))
        }
        _ => Ok(Arc::new(FileTransport::new(PathBuf::from(location)))),
    }
}

/// The path of a `file://` URL: `file:///abs/path` or `file://localhost/abs/path`, percent-decoded.
fn file_url_path(url: &str) -> Result<PathBuf, TransportError> {
    let rest = &url["file://".len()..];
    let path = match rest.find('/') {
        Some(0) => rest,
        Some(i) if rest[..i].eq_ignore_ascii_case("localhost") => &rest[i..],
        _ => return Err(invalid(url, "a file URL must name a local absolute path (file:///path)".into())),
    };
    let path = path.split(['?', '#']).next().unwrap_or(path);
    let bytes: Vec<u8> = percent_encoding::percent_decode_str(path).collect();
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStringExt;
        Ok(PathBuf::from(std::ffi::OsString::from_vec(bytes)))
    }
    #[cfg(not(unix))]
    {
        let text = String::from_utf8(bytes).map_err(|_| invalid(url, "the path is not UTF-8".into()))?;
        // file:///C:/dir/file -> C:\dir\file
        let text = match text.strip_prefix('/') {
            Some(rest) if rest.as_bytes().get(1) == Some(&b':') => rest.to_owned(),
            _ => text,
        };
        Ok(PathBuf::from(if cfg!(windows) { text.replace('/', "\\") } else { text }))
    }
}

pub(crate) fn invalid(url: &str, reason: String) -> TransportError {
    TransportError::Invalid { url: url.to_owned(), reason }
}

pub(crate) fn protocol(url: &str, reason: impl Into<String>) -> TransportError {
    TransportError::Protocol { url: url.to_owned(), reason: reason.into() }
}

/// Rejects empty, reversed and absurd ranges before anything is sent.
pub(crate) fn check_ranges(url: &str, ranges: &[ByteRange]) -> Result<(), TransportError> {
    match ranges.iter().find(|r| !r.is_valid()) {
        Some(bad) => Err(invalid(url, format!("invalid byte range {bad:?}"))),
        None => Ok(()),
    }
}

/// Request and byte counters shared by the transports.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    requests: AtomicU64,
    bytes: AtomicU64,
}

impl Counters {
    pub(crate) fn request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn bytes(&self, n: usize) {
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> TransferStats {
        TransferStats { requests: self.requests.load(Ordering::Relaxed), bytes: self.bytes.load(Ordering::Relaxed) }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Progress and resumption

/// How far each requested range got; what is left to ask for.
#[derive(Debug)]
pub(crate) struct Progress {
    slots: Vec<Slot>,
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    range: ByteRange,
    /// Where the range starts and how long it is, once `begin` fixed it.
    fixed: Option<(u64, u64)>,
    delivered: u64,
}

impl Progress {
    pub(crate) fn new(ranges: &[ByteRange]) -> Self {
        Progress { slots: ranges.iter().map(|&range| Slot { range, fixed: None, delivered: 0 }).collect() }
    }

    /// What is left: (index into the original list, the range to ask for). A range cut off mid-way is
    /// asked for from its next byte; a suffix whose start is known becomes a span.
    pub(crate) fn pending(&self) -> Vec<(usize, ByteRange)> {
        let mut left = Vec::new();
        for (i, slot) in self.slots.iter().enumerate() {
            match slot.fixed {
                None => left.push((i, slot.range)),
                Some((start, len)) if slot.delivered < len => {
                    left.push((i, ByteRange::Span { start: start + slot.delivered, end: start + len }))
                }
                Some(_) => {}
            }
        }
        left
    }

    /// Bytes delivered so far, over all ranges.
    pub(crate) fn delivered(&self) -> u64 {
        self.slots.iter().map(|s| s.delivered).sum()
    }

    pub(crate) fn is_complete(&self) -> bool {
        self.slots.iter().all(|s| matches!(s.fixed, Some((_, len)) if s.delivered == len))
    }

    /// A sink for a request of the ranges `map` names (in that order), forwarding to `sink` with the
    /// original indices and a single `begin` per original range.
    pub(crate) fn sink<'a>(&'a mut self, map: Vec<usize>, sink: &'a mut dyn RangeSink) -> ResumeSink<'a> {
        ResumeSink { progress: self, map, sink, next: 0, current: None }
    }
}

/// Maps a (re)request of the pending ranges onto the original request, and checks that the transport
/// keeps the [`RangeSink`] contract.
pub(crate) struct ResumeSink<'a> {
    progress: &'a mut Progress,
    map: Vec<usize>,
    sink: &'a mut dyn RangeSink,
    /// The request index the next `begin` must carry.
    next: usize,
    current: Option<usize>,
}

fn contract(what: &str) -> SinkError {
    SinkError(format!("transport broke the range contract: {what}"))
}

impl RangeSink for ResumeSink<'_> {
    fn begin(&mut self, index: usize, start: u64, total: Option<u64>) -> Result<(), SinkError> {
        if index != self.next {
            return Err(contract("ranges out of order"));
        }
        if let Some(cur) = self.current {
            let slot = &self.progress.slots[cur];
            if !matches!(slot.fixed, Some((_, len)) if slot.delivered == len) {
                return Err(contract("a range ended early"));
            }
        }
        let orig = *self.map.get(index).ok_or_else(|| contract("a range that was not requested"))?;
        let slot = &mut self.progress.slots[orig];
        match slot.fixed {
            None => {
                let len = match slot.range {
                    ByteRange::Span { start: s, end } if s == start => end - s,
                    ByteRange::Span { .. } => return Err(contract("a span that starts at the wrong byte")),
                    ByteRange::Suffix(n) => {
                        let total = total.ok_or_else(|| contract("a suffix without the container length"))?;
                        let len = n.min(total);
                        if total.checked_sub(start) != Some(len) || len == 0 {
                            return Err(contract("a suffix that does not end at the end"));
                        }
                        len
                    }
                };
                slot.fixed = Some((start, len));
                self.sink.begin(orig, start, total)?;
            }
            Some((s, _)) if s + slot.delivered == start => {}
            Some(_) => return Err(contract("a range resumed at the wrong byte")),
        }
        self.next += 1;
        self.current = Some(orig);
        Ok(())
    }

    fn data(&mut self, bytes: &[u8]) -> Result<(), SinkError> {
        let cur = self.current.ok_or_else(|| contract("data before begin"))?;
        let slot = &mut self.progress.slots[cur];
        let (_, len) = slot.fixed.ok_or_else(|| contract("data before begin"))?;
        if bytes.len() as u64 > len - slot.delivered {
            return Err(contract("more bytes than the range holds"));
        }
        self.sink.data(bytes)?;
        slot.delivered += bytes.len() as u64;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------------------
// One transport attempt: requests until every range is in, for servers that answer part of a request

/// How a response ended when it did not fail.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ended {
    /// The response was read (or all the requested bytes were in); some ranges may still be missing.
    Clean,
    /// The parts were too scattered or reordered to assemble within the caps: ask range by range.
    Scattered,
}

/// One request/response with a server, delivering through an [`Assembler`].
pub(crate) trait Exchange: Send + Sync {
    fn url(&self) -> &str;
    fn exchange<'a>(
        &'a self,
        ranges: &'a [ByteRange],
        sink: &'a mut dyn RangeSink,
    ) -> BoxFuture<'a, Result<Ended, TransportError>>;
}

/// At most this many ranges in one request (Apache answers more than 200 with the whole file).
const MAX_RANGES_PER_REQUEST: usize = 64;

/// Delivers all `ranges` through as few exchanges as the server allows: one normally; more when it
/// answers with only some of the ranges, or so scattered that they must be asked for one by one.
pub(crate) async fn exchange_all(
    ex: &dyn Exchange,
    ranges: &[ByteRange],
    sink: &mut dyn RangeSink,
) -> Result<(), TransportError> {
    check_ranges(ex.url(), ranges)?;
    let mut progress = Progress::new(ranges);
    let mut one_by_one = false;
    let limit = 2 * ranges.len() + 8;
    for _ in 0..limit {
        let pending = progress.pending();
        if pending.is_empty() {
            return Ok(());
        }
        let n = if one_by_one { 1 } else { pending.len().min(MAX_RANGES_PER_REQUEST) };
        let batch: Vec<ByteRange> = pending[..n].iter().map(|p| p.1).collect();
        let map = pending[..n].iter().map(|p| p.0).collect();
        let before = progress.delivered();
        let ended = {
            let mut resume = progress.sink(map, &mut *sink);
            ex.exchange(&batch, &mut resume).await?
        };
        let progressed = progress.delivered() > before;
        match ended {
            // Too scattered, or only bytes for later ranges: ask range by range.
            Ended::Scattered if n > 1 => one_by_one = true,
            Ended::Clean if n > 1 && !progressed => one_by_one = true,
            Ended::Scattered if !progressed => {
                return Err(protocol(ex.url(), "the response was too scattered to assemble the requested range"));
            }
            Ended::Clean if !progressed => {
                return Err(protocol(ex.url(), "the response held none of the requested bytes"));
            }
            Ended::Scattered | Ended::Clean => {}
        }
        if one_by_one && n > 1 {
            tracing::debug!(
                url = ex.url(),
                "the server's answer could not be assembled in order; asking range by range"
            );
        }
    }
    if progress.is_complete() {
        Ok(())
    } else {
        Err(protocol(ex.url(), format!("ranges still incomplete after {limit} requests")))
    }
}

// ---------------------------------------------------------------------------------------------------------
// Local files

/// Reads per chunk, for files and the in-memory transport.
const CHUNK: usize = 128 * 1024;

/// A container in a local file. Each fetch takes the file's length at that moment (it may grow).
#[derive(Debug)]
pub struct FileTransport {
    path: PathBuf,
    name: String,
    counters: Counters,
}

impl FileTransport {
    /// A transport reading `path`.
    pub fn new(path: PathBuf) -> Self {
        let name = path.display().to_string();
        FileTransport { path, name, counters: Counters::default() }
    }

    async fn read(&self, ranges: &[ByteRange], sink: &mut dyn RangeSink) -> Result<(), TransportError> {
        check_ranges(&self.name, ranges)?;
        if ranges.is_empty() {
            return Ok(());
        }
        self.counters.request();
        let path = self.path.clone();
        let (file, total) = blocking(&self.name, move || {
            let file = File::open(&path)?;
            let len = file.metadata()?.len();
            Ok((Arc::new(file), len))
        })
        .await
        .map_err(|e| match e {
            TransportError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                TransportError::NotFound { url: self.name.clone() }
            }
            e => e,
        })?;
        let mut spans = Vec::with_capacity(ranges.len());
        for range in ranges {
            let span = range.resolve(total);
            spans.push(span.ok_or(TransportError::RangeNotSatisfiable { url: self.name.clone(), len: Some(total) })?);
        }
        for (index, (start, end)) in spans.into_iter().enumerate() {
            sink.begin(index, start, Some(total))?;
            let mut pos = start;
            while pos < end {
                let n = (end - pos).min(CHUNK as u64) as usize;
                let file = Arc::clone(&file);
                let buf = blocking(&self.name, move || {
                    let mut buf = vec![0; n];
                    dare_container::fsys::read_exact_at(&file, &mut buf, pos)?;
                    Ok(buf)
                })
                .await?;
                self.counters.bytes(n);
                sink.data(&buf)?;
                pos += n as u64;
            }
        }
        Ok(())
    }
}

/// Runs blocking file I/O off the async threads.
async fn blocking<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, TransportError> {
    let io = |source| TransportError::Io { path: name.to_owned(), source };
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(io),
        Err(join) => Err(io(std::io::Error::other(join))),
    }
}

impl Transport for FileTransport {
    fn name(&self) -> &str {
        &self.name
    }

    fn fetch<'a>(
        &'a self,
        ranges: &'a [ByteRange],
        sink: &'a mut dyn RangeSink,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(self.read(ranges, sink))
    }

    fn stats(&self) -> TransferStats {
        self.counters.snapshot()
    }
}

impl FileTransport {
    /// The file this transport reads.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
