//! [`MemoryTransport`]: an in-memory container with fault knobs, for tests (feature `test-util`).

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::{
    BoxFuture, ByteRange, CHUNK, Counters, Ended, Exchange, RangeSink, TransferStats, Transport, TransportError,
    exchange_all,
};
use crate::multipart::{AsmError, Assembler, Flow, Mode};

/// Faults a [`MemoryTransport`] injects; change them with [`MemoryTransport::update_faults`].
#[derive(Clone, Debug, Default)]
pub struct MemoryFaults {
    /// Answer like a server that ignores Range: the whole container from byte 0.
    pub ignore_ranges: bool,
    /// Answer a multi-range request with one part from the first requested byte to the last.
    pub coalesce: bool,
    /// Send the parts of a multi-range answer in reverse order.
    pub reorder: bool,
    /// Drop the "connection" after this many bytes of each of the next `drop_requests` requests.
    pub drop_after: u64,
    /// How many more requests get dropped after `drop_after` bytes.
    pub drop_requests: u32,
    /// Flip the bits of the byte at this offset whenever it is sent.
    pub corrupt_at: Option<u64>,
    /// Fail this many more requests with a retryable error (HTTP 503).
    pub fail_requests: u32,
    /// Wait this long before answering each request.
    pub delay: Duration,
}

/// An in-memory container for tests, answering like an HTTP range server with the [`MemoryFaults`]
/// set with the builder methods or [`MemoryTransport::update_faults`]. Thread-safe.
pub struct MemoryTransport {
    name: String,
    state: Mutex<MemoryState>,
    counters: Counters,
}

struct MemoryState {
    content: Arc<[u8]>,
    faults: MemoryFaults,
}

impl fmt::Debug for MemoryTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("MemoryTransport")
            .field("name", &self.name)
            .field("len", &state.content.len())
            .field("faults", &state.faults)
            .finish()
    }
}

impl MemoryTransport {
    /// A transport named `name` (for messages) serving `content`.
    pub fn new(name: impl Into<String>, content: impl Into<Vec<u8>>) -> Self {
        MemoryTransport {
            name: name.into(),
            state: Mutex::new(MemoryState { content: content.into().into(), faults: MemoryFaults::default() }),
            counters: Counters::default(),
        }
    }

    /// Answer every request with the whole container (a server that ignores Range).
    pub fn ignore_ranges(self) -> Self {
        self.with(|f| f.ignore_ranges = true)
    }

    /// Answer multi-range requests with one coalesced part.
    pub fn coalesce(self) -> Self {
        self.with(|f| f.coalesce = true)
    }

    /// Send multipart parts in reverse order.
    pub fn reorder(self) -> Self {
        self.with(|f| f.reorder = true)
    }

    /// Drop the connection after `bytes` bytes of each of the next `requests` requests.
    pub fn drop_after(self, bytes: u64, requests: u32) -> Self {
        self.with(|f| (f.drop_after, f.drop_requests) = (bytes, requests))
    }

    /// Corrupt the byte at `offset` in everything sent.
    pub fn corrupt(self, offset: u64) -> Self {
        self.with(|f| f.corrupt_at = Some(offset))
    }

    /// Fail the first `requests` requests with a retryable error.
    pub fn fail_first(self, requests: u32) -> Self {
        self.with(|f| f.fail_requests = requests)
    }

    /// Wait `delay` before answering each request.
    pub fn delay(self, delay: Duration) -> Self {
        self.with(|f| f.delay = delay)
    }

    /// Replace the content (a mirror being updated).
    pub fn set_content(&self, content: impl Into<Vec<u8>>) {
        self.lock().content = content.into().into();
    }

    /// Change the faults of later requests.
    pub fn update_faults(&self, f: impl FnOnce(&mut MemoryFaults)) {
        f(&mut self.lock().faults);
    }

    /// The faults in force.
    pub fn faults(&self) -> MemoryFaults {
        self.lock().faults.clone()
    }

    fn with(self, f: impl FnOnce(&mut MemoryFaults)) -> Self {
        self.update_faults(f);
        self
    }

    fn lock(&self) -> MutexGuard<'_, MemoryState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn answer(&self, ranges: &[ByteRange], sink: &mut dyn RangeSink) -> Result<Ended, TransportError> {
        let (content, faults, fail, drop_after) = {
            let mut state = self.lock();
            let faults = state.faults.clone();
            let fail = state.faults.fail_requests > 0;
            if fail {
                state.faults.fail_requests -= 1;
            }
            let drop_after = (!fail && state.faults.drop_requests > 0).then(|| {
                state.faults.drop_requests -= 1;
                faults.drop_after
            });
            (Arc::clone(&state.content), faults, fail, drop_after)
        };
        self.counters.request();
        if !faults.delay.is_zero() {
            tokio::time::sleep(faults.delay).await;
        }
        if fail {
            return Err(TransportError::Status { url: self.name.clone(), status: 503 });
        }
        let total = content.len() as u64;
        let unsatisfiable = || TransportError::RangeNotSatisfiable { url: self.name.clone(), len: Some(total) };
        let mut spans = Vec::with_capacity(ranges.len());
        for range in ranges {
            spans.push(range.resolve(total).ok_or_else(unsatisfiable)?);
        }
        let (mode, parts) = if faults.ignore_ranges {
            (Mode::Whole, vec![(0, total)])
        } else if faults.coalesce && spans.len() > 1 {
            let start = spans.iter().map(|s| s.0).min().unwrap_or(0);
            let end = spans.iter().map(|s| s.1).max().unwrap_or(0);
            (Mode::Parts, vec![(start, end)])
        } else if faults.reorder {
            (Mode::Parts, spans.iter().rev().copied().collect())
        } else {
            (Mode::Parts, spans)
        };
        let mut asm = Assembler::new(ranges, sink, mode);
        let mut sent = 0u64;
        let result: Result<(), AsmError> = async {
            asm.set_total(Some(total))?;
            for (start, end) in parts {
                asm.begin_part(start, Some(end))?;
                let mut pos = start;
                while pos < end {
                    let mut n = (end - pos).min(CHUNK as u64);
                    if let Some(limit) = drop_after {
                        n = n.min(limit - sent);
                    }
                    let mut chunk = content[pos as usize..(pos + n) as usize].to_vec();
                    if let Some(at) = faults.corrupt_at.filter(|at| (pos..pos + n).contains(at)) {
                        chunk[(at - pos) as usize] ^= 0xff;
                    }
                    self.counters.bytes(chunk.len());
                    sent += n;
                    pos += n;
                    if asm.data(&chunk)? == Flow::Done {
                        return Ok(());
                    }
                    if drop_after == Some(sent) {
                        return Err(AsmError::Interrupted(format!("connection dropped after {sent} bytes")));
                    }
                }
                asm.end_part()?;
            }
            Ok(())
        }
        .await;
        match result {
            Ok(()) => Ok(Ended::Clean),
            Err(e) => e.into_ended(&self.name),
        }
    }
}

impl Exchange for MemoryTransport {
    fn url(&self) -> &str {
        &self.name
    }

    fn exchange<'a>(
        &'a self,
        ranges: &'a [ByteRange],
        sink: &'a mut dyn RangeSink,
    ) -> BoxFuture<'a, Result<Ended, TransportError>> {
        Box::pin(self.answer(ranges, sink))
    }
}

impl Transport for MemoryTransport {
    fn name(&self) -> &str {
        &self.name
    }

    fn fetch<'a>(
        &'a self,
        ranges: &'a [ByteRange],
        sink: &'a mut dyn RangeSink,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(exchange_all(self, ranges, sink))
    }

    fn stats(&self) -> TransferStats {
        self.counters.snapshot()
    }
}
