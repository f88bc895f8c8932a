//! The response body: in-memory pieces and file ranges, read one chunk at a
//! time so a response holds at most one chunk in memory however large it is.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::task::JoinHandle;

use crate::files::read_exact_at;
use crate::sendfile::{MAX_SLICE, SendQueue};

/// Bytes read from a file per step of a response.
pub(crate) const CHUNK: u64 = 64 * 1024;

/// One piece of a response body.
#[derive(Debug)]
pub(crate) enum Piece {
    Bytes(Bytes),
    /// `len` bytes of the response's file from `offset`.
    File {
        offset: u64,
        len: u64,
    },
}

impl Piece {
    pub(crate) fn len(&self) -> u64 {
        match self {
            Piece::Bytes(b) => b.len() as u64,
            Piece::File { len, .. } => *len,
        }
    }
}

/// The body of every response the server sends.
pub(crate) struct ResponseBody {
    pieces: VecDeque<Piece>,
    file: Option<Arc<File>>,
    reading: Option<JoinHandle<io::Result<Bytes>>>,
    /// Set on HTTP/1: file pieces go out with `sendfile(2)`.
    send_queue: Option<Arc<SendQueue>>,
    remaining: u64,
    log: Option<AccessLog>,
    /// Dropped with the body: tells the connection its request ended.
    guard: Option<Box<dyn Send + Sync>>,
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody").field("remaining", &self.remaining).finish_non_exhaustive()
    }
}

impl ResponseBody {
    pub(crate) fn empty() -> ResponseBody {
        ResponseBody::new(VecDeque::new(), None)
    }

    pub(crate) fn bytes(bytes: Bytes) -> ResponseBody {
        ResponseBody::new(VecDeque::from([Piece::Bytes(bytes)]), None)
    }

    /// `pieces` may refer to `file` only if it is given.
    pub(crate) fn new(pieces: VecDeque<Piece>, file: Option<Arc<File>>) -> ResponseBody {
        let remaining = pieces.iter().map(Piece::len).sum();
        ResponseBody { pieces, file, reading: None, send_queue: None, remaining, log: None, guard: None }
    }

    /// Sends file pieces through the connection's queue instead of reading
    /// them.
    pub(crate) fn with_send_queue(mut self, queue: Option<Arc<SendQueue>>) -> ResponseBody {
        self.send_queue = queue;
        self
    }

    /// Logs the request when the body is dropped, with the bytes it yielded.
    pub(crate) fn with_log(mut self, log: Option<AccessLog>) -> ResponseBody {
        self.log = log;
        self
    }

    /// Keeps `guard` until the body is sent or dropped.
    pub(crate) fn with_guard(mut self, guard: Box<dyn Send + Sync>) -> ResponseBody {
        self.guard = Some(guard);
        self
    }

    fn yielded(&mut self, bytes: Bytes) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        self.remaining -= bytes.len() as u64;
        if let Some(log) = &mut self.log {
            log.bytes += bytes.len() as u64;
        }
        Poll::Ready(Some(Ok(Frame::data(bytes))))
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if let Some(reading) = &mut this.reading {
            let result = ready!(Pin::new(reading).poll(cx));
            this.reading = None;
            return match result {
                Ok(Ok(bytes)) => this.yielded(bytes),
                Ok(Err(e)) => Poll::Ready(Some(Err(e))),
                Err(join) => Poll::Ready(Some(Err(io::Error::other(join)))),
            };
        }
        match this.pieces.front_mut() {
            None => Poll::Ready(None),
            Some(Piece::Bytes(_)) => match this.pieces.pop_front() {
                Some(Piece::Bytes(bytes)) => this.yielded(bytes),
                _ => unreachable!("the front piece was just seen to be bytes"),
            },
            Some(Piece::File { offset, len }) => {
                let Some(file) = this.file.clone() else {
                    return Poll::Ready(Some(Err(io::Error::other("file piece without a file"))));
                };
                let step = if this.send_queue.is_some() { MAX_SLICE as u64 } else { CHUNK };
                let (at, n) = (*offset, (*len).min(step));
                *offset += n;
                *len -= n;
                if *len == 0 {
                    this.pieces.pop_front();
                }
                if let Some(queue) = &this.send_queue {
                    let placeholder = queue.push(file, at, n as usize);
                    return this.yielded(placeholder);
                }
                this.reading = Some(tokio::task::spawn_blocking(move || read_exact_at(&file, at, n as usize)));
                // Poll the read once so its waker is registered.
                Pin::new(this).poll_frame(cx)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// One access-log line, written when the response body is dropped: after the
/// last byte was handed to the connection, or when the client went away.
#[derive(Debug)]
pub(crate) struct AccessLog {
    pub method: hyper::Method,
    pub path: String,
    pub status: u16,
    pub range: Option<String>,
    pub start: Instant,
    pub bytes: u64,
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        if let Some(log) = self.log.take() {
            tracing::info!(
                target: "dare_mirror::access",
                method = %log.method,
                path = %log.path,
                status = log.status,
                bytes = log.bytes,
                range = log.range.as_deref().unwrap_or("-"),
                duration_us = log.start.elapsed().as_micros() as u64,
                complete = self.remaining == 0,
                "request"
            );
        }
    }
}
