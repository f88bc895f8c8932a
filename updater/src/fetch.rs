//! Retries, resumption and failover over several mirrors of one container.
//!
//! [`Mirrors::fetch`] keeps, for each requested range, how many bytes already reached the sink; a retry
//! or the next mirror is asked only for the rest, so the sink sees one continuous stream per range
//! whatever happened on the way.
//!
//! ```
//! use std::sync::Arc;
//! use dare_updater::fetch::{FetchError, Mirrors, RetryPolicy};
//! use dare_updater::transport::{ByteRange, MemoryTransport, RangeSink, SinkError, Transport};
//!
//! /// Collects the bytes; a real sink hashes and verifies them as they arrive.
//! struct Collect(Vec<u8>);
//!
//! impl RangeSink for Collect {
//!     fn begin(&mut self, _index: usize, _start: u64, _total: Option<u64>) -> Result<(), SinkError> {
//!         Ok(())
//!     }
//!     fn data(&mut self, bytes: &[u8]) -> Result<(), SinkError> {
//!         self.0.extend_from_slice(bytes);
//!         Ok(())
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! // A mirror whose connection drops after 3 bytes, once: the fetch resumes at byte 3.
//! let flaky = MemoryTransport::new("flaky", b"hello, world".to_vec()).drop_after(3, 1);
//! let mirrors = Mirrors::new(vec![Arc::new(flaky) as Arc<dyn Transport>], RetryPolicy::default());
//! let mut sink = Collect(Vec::new());
//! mirrors.fetch(&[ByteRange::Span { start: 0, end: 5 }, ByteRange::Suffix(5)], &mut sink).await?;
//! assert_eq!(sink.0, b"helloworld");
//! assert_eq!(mirrors.stats().requests, 2);
//! # Ok::<(), FetchError>(())
//! # }).unwrap();
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use crate::transport::{
    BoxFuture, ByteRange, Progress, RangeSink, SinkError, Timeouts, TransferStats, Transport, TransportError,
};

/// How often and how patiently to retry one mirror.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts per mirror that end in a retryable error before moving on (3 by default; 0 counts as 1).
    pub attempts: u32,
    /// The wait before the first retry; it doubles with each retry (200 ms by default).
    pub backoff: Duration,
    /// The longest wait between retries (5 s by default).
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { attempts: 3, backoff: Duration::from_millis(200), max_backoff: Duration::from_secs(5) }
    }
}

/// The bytes a range asks for (a suffix: at most its length).
impl RetryPolicy {
    /// With [`attempts`](Self::attempts) set to `n`.
    pub fn with_attempts(mut self, n: u32) -> Self {
        self.attempts = n;
        self
    }

    /// With [`backoff`](Self::backoff) set to `d`.
    pub fn with_backoff(mut self, d: Duration) -> Self {
        self.backoff = d;
        self
    }

    /// With [`max_backoff`](Self::max_backoff) set to `d`.
    pub fn with_max_backoff(mut self, d: Duration) -> Self {
        self.max_backoff = d;
        self
    }
}

fn wanted_bytes(range: ByteRange) -> u64 {
    match range {
        ByteRange::Span { start, end } => end - start,
        ByteRange::Suffix(n) => n,
    }
}

/// Attempts per mirror and fetch that were cut off after delivering new bytes and so do not count
/// against [`RetryPolicy::attempts`]: a flaky link still finishes a large download, a server that
/// drips a byte per connection does not keep us forever.
const FREE_RESUMES: u32 = 16;

/// Why a fetch failed.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The sink refused the data (it failed verification). Not retried.
    #[error("the fetched data was refused: {0}")]
    Refused(SinkError),
    /// No mirror could deliver the ranges; every failed attempt, in order.
    #[error("no mirror could deliver the data: {}", summary(.attempts))]
    AllMirrorsFailed {
        /// (mirror name, error) for each failed attempt.
        attempts: Vec<(String, TransportError)>,
    },
}

fn summary(attempts: &[(String, TransportError)]) -> String {
    if attempts.is_empty() {
        return "no mirrors".into();
    }
    // The last error of each mirror, in the order they were tried; when that is the deadline, also
    // the error before it (what the mirror was doing wrong).
    let mut names: Vec<&str> = Vec::new();
    let mut last: Vec<(&TransportError, Option<&TransportError>)> = Vec::new();
    for (name, error) in attempts {
        match names.iter().position(|n| n == name) {
            Some(i) => {
                let before = match last[i].0 {
                    TransportError::Deadline { .. } => last[i].1,
                    previous => Some(previous),
                };
                last[i] = (error, before);
            }
            None => {
                names.push(name);
                last.push((error, None));
            }
        }
    }
    last.iter()
        .map(|(error, before)| match (error, before) {
            (TransportError::Deadline { url, .. }, Some(before)) => {
                let before = before.to_string();
                let before = before.strip_prefix(url.as_str()).and_then(|b| b.strip_prefix(": ")).unwrap_or(&before);
                format!("{error}; before that: {before}")
            }
            _ => error.to_string(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Several transports serving the same container, tried in turn.
pub struct Mirrors {
    transports: Vec<Arc<dyn Transport>>,
    policy: RetryPolicy,
    /// The mirror that last succeeded; tried first.
    preferred: AtomicUsize,
    /// The time each mirror may take, if bounded.
    deadline: Option<DeadlinePolicy>,
    clocks: Arc<MirrorClocks>,
}

/// How long one mirror may take in one run: `base`, plus one second per `min_rate` bytes asked of it.
#[derive(Clone, Copy, Debug)]
struct DeadlinePolicy {
    base: Duration,
    min_rate: u64,
}

/// When each mirror was first asked in this run and the time it has been given so far, keyed by
/// the transport's address (the same transport in several [`Mirrors`] shares its clock).
#[derive(Debug, Default)]
pub(crate) struct MirrorClocks {
    clocks: Mutex<HashMap<usize, Clock>>,
}

impl MirrorClocks {
    /// Starts the clock of `transport` with `base` if it is not running and gives it `more` time;
    /// returns its deadline and the whole time it has been given. A mirror that has once run out of
    /// time gets no more in this run.
    fn charge(&self, transport: &Arc<dyn Transport>, base: Duration, more: Duration) -> (Instant, Duration) {
        let mut clocks = self.clocks.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let clock = clocks.entry(key(transport)).or_insert(Clock { started: Instant::now(), given: base, out: false });
        if !clock.out {
            clock.given = clock.given.saturating_add(more);
        }
        (clock.started.checked_add(clock.given).unwrap_or_else(far_future), clock.given)
    }

    /// `transport` ran out of time.
    fn expire(&self, transport: &Arc<dyn Transport>) {
        let mut clocks = self.clocks.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(clock) = clocks.get_mut(&key(transport)) {
            clock.out = true;
        }
    }
}

#[derive(Debug)]
struct Clock {
    started: Instant,
    given: Duration,
    out: bool,
}

fn key(transport: &Arc<dyn Transport>) -> usize {
    Arc::as_ptr(transport) as *const () as usize
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600)
}

impl std::fmt::Debug for Mirrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mirrors").field("names", &self.names()).field("policy", &self.policy).finish()
    }
}

impl Mirrors {
    /// Mirrors tried in the given order (the one that last succeeded first), with no deadline (see
    /// [`Mirrors::with_deadline`]).
    pub fn new(transports: Vec<Arc<dyn Transport>>, policy: RetryPolicy) -> Self {
        Mirrors { transports, policy, preferred: AtomicUsize::new(0), deadline: None, clocks: Arc::default() }
    }

    /// Bounds the time each mirror may take over all the fetches of this `Mirrors`, retries and
    /// resumptions included: [`Timeouts::mirror_deadline`] from the first request to it, plus one
    /// second per [`Timeouts::min_rate`] bytes each fetch asks of it. A mirror past its deadline is
    /// dropped (its fetch cancelled, [`TransportError::Deadline`]) and the next one tried.
    pub fn with_deadline(mut self, timeouts: &Timeouts) -> Self {
        self.deadline = (!timeouts.mirror_deadline.is_zero())
            .then_some(DeadlinePolicy { base: timeouts.mirror_deadline, min_rate: timeouts.min_rate });
        self
    }

    /// Shares the mirrors' clocks with other `Mirrors` of the same run.
    pub(crate) fn with_clocks(mut self, clocks: Arc<MirrorClocks>) -> Self {
        self.clocks = clocks;
        self
    }

    /// The deadline of `transport` after giving it time for `bytes` more, and the whole time given.
    fn deadline_for(&self, transport: &Arc<dyn Transport>, bytes: u64) -> Option<(Instant, Duration)> {
        let policy = self.deadline?;
        let more = match policy.min_rate {
            0 => Duration::ZERO,
            rate => Duration::from_secs_f64(bytes as f64 / rate as f64),
        };
        Some(self.clocks.charge(transport, policy.base, more))
    }

    /// Delivers `ranges` to `sink` (see [`RangeSink`]), retrying retryable errors with exponential
    /// backoff, resuming interrupted ranges from the last byte delivered, and failing over to the next
    /// mirror when one is exhausted or answers with a non-retryable error (404, 416, a protocol error).
    /// A sink error ends the fetch at once.
    pub async fn fetch(&self, ranges: &[ByteRange], sink: &mut dyn RangeSink) -> Result<(), FetchError> {
        let mut progress = Progress::new(ranges);
        if progress.is_complete() {
            return Ok(());
        }
        let mut failures: Vec<(String, TransportError)> = Vec::new();
        let count = self.transports.len();
        let first = self.preferred.load(Ordering::Relaxed);
        for k in 0..count {
            let index = (first + k) % count;
            let transport = &self.transports[index];
            let name = transport.name();
            let (mut failed, mut resumes) = (0u32, 0u32);
            let wanted: u64 = progress.pending().iter().map(|p| wanted_bytes(p.1)).sum();
            let deadline = self.deadline_for(transport, wanted);
            loop {
                let pending = progress.pending();
                let batch: Vec<ByteRange> = pending.iter().map(|p| p.1).collect();
                let map = pending.iter().map(|p| p.0).collect();
                let before = progress.delivered();
                let result = {
                    let mut resume = progress.sink(map, &mut *sink);
                    match deadline {
                        None => transport.fetch(&batch, &mut resume).await,
                        Some((until, after)) if Instant::now() < until => {
                            match tokio::time::timeout_at(until.into(), transport.fetch(&batch, &mut resume)).await {
                                Ok(result) => result,
                                Err(_) => Err(TransportError::Deadline { url: name.to_owned(), after }),
                            }
                        }
                        Some((_, after)) => Err(TransportError::Deadline { url: name.to_owned(), after }),
                    }
                };
                let progressed = progress.delivered() > before;
                if let Err(TransportError::Deadline { .. }) = result {
                    self.clocks.expire(transport);
                }
                let error = match result {
                    Ok(()) if progress.is_complete() => {
                        self.preferred.store(index, Ordering::Relaxed);
                        return Ok(());
                    }
                    Ok(()) => TransportError::Protocol {
                        url: name.to_owned(),
                        reason: "the transport stopped before delivering every range".into(),
                    },
                    Err(TransportError::Sink(e)) => {
                        tracing::warn!(mirror = name, error = %e, "fetched data refused");
                        return Err(FetchError::Refused(e));
                    }
                    Err(e) => e,
                };
                let retry = error.is_retryable();
                tracing::info!(mirror = name, %error, retry, "fetch attempt failed");
                failures.push((name.to_owned(), error));
                if !retry {
                    break;
                }
                if progressed && resumes < FREE_RESUMES {
                    resumes += 1;
                } else {
                    failed += 1;
                }
                if failed >= self.policy.attempts.max(1) {
                    break;
                }
                let wait = if progressed { self.policy.backoff } else { self.backoff(failed) };
                tokio::time::sleep(wait.min(self.policy.max_backoff)).await;
            }
        }
        Err(FetchError::AllMirrorsFailed { attempts: failures })
    }

    /// Runs several independent fetches at once (e.g. entries and proof hashes), each with its own sink.
    /// The first failure ends them all.
    pub async fn fetch_all(&self, jobs: Vec<(Vec<ByteRange>, &mut dyn RangeSink)>) -> Result<(), FetchError> {
        let mut running: Vec<Option<BoxFuture<'_, Result<(), FetchError>>>> = jobs
            .into_iter()
            .map(|(ranges, sink)| {
                let job: BoxFuture<'_, _> = Box::pin(async move { self.fetch(&ranges, sink).await });
                Some(job)
            })
            .collect();
        std::future::poll_fn(|cx| {
            let mut pending = false;
            for slot in running.iter_mut() {
                let Some(job) = slot else { continue };
                match Pin::new(job).as_mut().poll(cx) {
                    Poll::Ready(Ok(())) => *slot = None,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => pending = true,
                }
            }
            if pending { Poll::Pending } else { Poll::Ready(Ok(())) }
        })
        .await
    }

    /// Requests and bytes over all mirrors.
    pub fn stats(&self) -> TransferStats {
        self.transports.iter().map(|t| t.stats()).fold(TransferStats::default(), |sum, s| TransferStats {
            requests: sum.requests + s.requests,
            bytes: sum.bytes + s.bytes,
        })
    }

    /// The mirrors' names, in the order given.
    pub fn names(&self) -> Vec<String> {
        self.transports.iter().map(|t| t.name().to_owned()).collect()
    }

    /// The wait before retry number `failed` (1-based).
    fn backoff(&self, failed: u32) -> Duration {
        let factor = 1u32.checked_shl(failed.saturating_sub(1)).unwrap_or(u32::MAX);
        self.policy.backoff.saturating_mul(factor).min(self.policy.max_backoff)
    }
}
