//! Zero-copy file bodies for HTTP/1 connections.
//!
//! hyper writes response bodies from `Bytes` it is given. Reading a file
//! range into memory first costs two copies (page cache to user memory, user
//! memory to socket) that nginx avoids with `sendfile(2)`. On HTTP/1, hyper
//! hands the body's `Bytes` through unchanged to `poll_write_vectored` of the
//! connection's I/O (its queued write strategy, chosen because our stream is
//! vectored). So a file piece is yielded as a *placeholder*: a slice of the
//! static [`PLACEHOLDER`] region, with the file range it stands for pushed on
//! the connection's [`SendQueue`]. The connection's stream recognises the
//! placeholder by its address and sends the file range with `sendfile(2)`
//! instead. hyper sees exactly the byte counts it expects.
//!
//! That hyper passes body bytes through is an implementation detail of
//! hyper 1.x, not a promise; every HTTP/1 test in `tests/http` compares the
//! body bytes it receives, so a hyper that copied them would fail there.
//!
//! Linux only: elsewhere connections get no queue and bodies are read.
//!
//! The queue is first-in first-out because HTTP/1 writes one response body at
//! a time and in order. A placeholder only ever reaches a stream that owns a
//! queue: bodies use placeholders only when the request came over HTTP/1,
//! whose connections are always wrapped. If anything ever disagrees (a
//! placeholder with an empty queue, a length mismatch), the write fails and
//! the connection is closed, rather than sending placeholder bytes.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Largest file slice one placeholder stands for.
pub(crate) const MAX_SLICE: usize = 256 * 1024;

/// Never sent: its address marks a placeholder.
static PLACEHOLDER: [u8; MAX_SLICE] = [0; MAX_SLICE];

/// A placeholder for `len` (at most [`MAX_SLICE`]) bytes of a file.
fn placeholder(len: usize) -> Bytes {
    Bytes::from_static(&PLACEHOLDER[..len])
}

/// How far into the placeholder region `buf` starts, if it is a placeholder.
fn placeholder_offset(buf: &[u8]) -> Option<usize> {
    let start = PLACEHOLDER.as_ptr() as usize;
    let at = buf.as_ptr() as usize;
    (!buf.is_empty() && at >= start && at < start + MAX_SLICE).then(|| at - start)
}

#[derive(Debug)]
struct FileSlice {
    file: Arc<File>,
    offset: u64,
    len: usize,
}

/// File slices yielded as placeholders and not yet sent, in order.
#[derive(Debug, Default)]
pub(crate) struct SendQueue(Mutex<VecDeque<FileSlice>>);

impl SendQueue {
    /// Queues `len` (at most [`MAX_SLICE`]) bytes of `file` at `offset`
    /// and returns the placeholder to hand to hyper.
    pub fn push(&self, file: Arc<File>, offset: u64, len: usize) -> Bytes {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).push_back(FileSlice { file, offset, len });
        placeholder(len)
    }

    /// How many leading `bufs` are ordinary bytes; `None` if the first one is
    /// a placeholder.
    pub fn plain_prefix(bufs: &[io::IoSlice<'_>]) -> Option<usize> {
        match bufs.iter().position(|b| placeholder_offset(b).is_some()) {
            Some(0) => None,
            Some(n) => Some(n),
            None => Some(bufs.len()),
        }
    }

    /// Sends (part of) the file slice that placeholder `buf` stands for.
    pub fn poll_send(&self, stream: &TcpStream, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let mut queue = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let (Some(front), Some(done)) = (queue.front(), placeholder_offset(buf)) else {
            return Poll::Ready(Err(io::Error::other("placeholder without a queued file slice")));
        };
        // hyper advances a partly written placeholder: its address says how
        // much of the slice is already out.
        if done + buf.len() != front.len {
            return Poll::Ready(Err(io::Error::other(format!(
                "placeholder of {} bytes at {done} does not match a queued slice of {}",
                buf.len(),
                front.len
            ))));
        }
        loop {
            ready!(stream.poll_write_ready(cx))?;
            let mut offset = front.offset + done as u64;
            let sent = stream.try_io(Interest::WRITABLE, || sendfile(stream, &front.file, &mut offset, buf.len()));
            match sent {
                Ok(0) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "file shrank while being served: {} bytes missing at offset {}",
                            buf.len(),
                            front.offset + done as u64
                        ),
                    )));
                }
                Ok(n) => {
                    if done + n == front.len {
                        queue.pop_front();
                    }
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

#[cfg(target_os = "linux")]
fn sendfile(stream: &TcpStream, file: &File, offset: &mut u64, len: usize) -> io::Result<usize> {
    rustix::fs::sendfile(stream, file, Some(offset), len).map_err(io::Error::from)
}

/// Never reached: placeholders are only made where sendfile exists.
#[cfg(not(target_os = "linux"))]
fn sendfile(_: &TcpStream, _: &File, _: &mut u64, _: usize) -> io::Result<usize> {
    Err(io::ErrorKind::Unsupported.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_recognised_by_address() {
        let p = placeholder(100);
        assert_eq!(placeholder_offset(&p), Some(0));
        assert_eq!(placeholder_offset(&p[10..]), Some(10));
        assert_eq!(placeholder_offset(&[0u8; 100]), None);
        assert_eq!(placeholder_offset(&[]), None);
        let plain = [1u8; 4];
        let bufs = [io::IoSlice::new(&plain), io::IoSlice::new(&p)];
        assert_eq!(SendQueue::plain_prefix(&bufs), Some(1));
        assert_eq!(SendQueue::plain_prefix(&bufs[1..]), None);
        assert_eq!(SendQueue::plain_prefix(&bufs[..1]), Some(1));
    }
}
