//! The JBCD frame and record codec (DESIGN.md 3.1).
//!
//! A frame is `tag, length (big-endian), body, length (reversed), tag`, where the
//! tag `0xF4..=0xF7` says the length is 1, 2, 4 or 8 bytes wide. The body holds
//! exactly two records, `tag (0xF0..=0xF3), length (big-endian), bytes`: the
//! header, then the payload. Because both ends of a frame carry its length, a
//! reader can walk a container forward from offset 0 or backward from its end,
//! and can skip a payload without reading it.
//!
//! Writers always use the smallest width that fits, and this reader rejects any
//! other encoding, so a container has exactly one byte encoding. Every length is
//! checked against the bytes actually available before anything is read or
//! allocated: a hostile length can make a read fail, never make it allocate.

use std::io::{self, Read, Write};

/// The largest body, record or payload length the format allows: 2^63 - 1.
pub const MAX_LEN: u64 = i64::MAX as u64;

/// The largest header record a reader accepts (1 MiB). Headers are small JSON
/// objects; the biggest is a manifest, about 100 bytes per target and channel.
pub const MAX_HEADER_LEN: u64 = 1 << 20;

/// The first frame tag: `0xF4` (1-byte length) up to `0xF7` (8-byte length).
const FRAME_TAG_BASE: u8 = 0xF4;
/// The first record tag: `0xF0` (1-byte length) up to `0xF3` (8-byte length).
const RECORD_TAG_BASE: u8 = 0xF0;

/// Why bytes do not form a valid frame. Every variant names the frame's offset.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The frame needs more bytes than the container (or window) holds.
    #[error("frame at byte {offset} is truncated: it needs {needed} bytes but only {available} remain")]
    Truncated {
        /// Offset of the frame's first byte (or, backward, of its last byte).
        offset: u64,
        /// Bytes the frame says it needs.
        needed: u64,
        /// Bytes there are.
        available: u64,
    },
    /// A byte where a frame or record tag belongs is not one.
    #[error("byte {at} of the frame at byte {offset} is {found:#04x}, not a {what} tag")]
    BadTag {
        /// Offset of the frame.
        offset: u64,
        /// Offset of the bad byte.
        at: u64,
        /// The byte found.
        found: u8,
        /// "frame" or "record".
        what: &'static str,
    },
    /// The trailing tag and length do not repeat the leading ones.
    #[error("frame at byte {offset}: the trailing tag and length do not match the leading ones")]
    EndMismatch {
        /// Offset of the frame.
        offset: u64,
    },
    /// A length is not written in the smallest width that fits it.
    #[error("frame at byte {offset}: a length of {len} is not written in the smallest width")]
    NonMinimal {
        /// Offset of the frame.
        offset: u64,
        /// The length.
        len: u64,
    },
    /// A length of 2^63 or more.
    #[error("frame at byte {offset}: length {len} is over the 2^63-1 limit")]
    TooLong {
        /// Offset of the frame.
        offset: u64,
        /// The length.
        len: u64,
    },
    /// The two records do not exactly fill the body.
    #[error("frame at byte {offset}: its records do not exactly fill its {body_len}-byte body")]
    RecordsDoNotFill {
        /// Offset of the frame.
        offset: u64,
        /// The body length.
        body_len: u64,
    },
    /// A header record over [`MAX_HEADER_LEN`].
    #[error("frame at byte {offset}: its {len}-byte header is over the {MAX_HEADER_LEN}-byte limit")]
    HeaderTooLarge {
        /// Offset of the frame.
        offset: u64,
        /// The header length.
        len: u64,
    },
    /// Reading the underlying file failed.
    #[error("reading the frame at byte {offset}: {source}")]
    Io {
        /// Offset of the frame.
        offset: u64,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

/// Where a frame and its two records sit in a container.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FrameInfo {
    /// Offset of the leading tag.
    pub offset: u64,
    /// Length of the body (both records with their tags and lengths).
    pub body_len: u64,
    /// Offset of the header record's bytes.
    pub header_offset: u64,
    /// Length of the header record's bytes.
    pub header_len: u64,
    /// Offset of the payload record's bytes.
    pub payload_offset: u64,
    /// Length of the payload record's bytes.
    pub payload_len: u64,
}

impl FrameInfo {
    /// Total length of the frame, tags and lengths included.
    pub fn len(&self) -> u64 {
        self.body_len + 2 * (1 + width_of(self.body_len) as u64)
    }

    /// Always false: a frame holds at least its two record tags.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Offset just past the frame's trailing tag.
    pub fn end(&self) -> u64 {
        self.offset + self.len()
    }
}

/// Positioned reads from a container: a file, or a window of bytes fetched
/// from somewhere in one.
pub trait ReadAt {
    /// Fills `buf` from `offset`, or fails with `UnexpectedEof`.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
}

impl ReadAt for std::fs::File {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        crate::fsys::read_exact_at(self, buf, offset)
    }
}

impl ReadAt for [u8] {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        Window::new(0, self).read_exact_at(buf, offset)
    }
}

impl<T: ReadAt + ?Sized> ReadAt for &T {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        (**self).read_exact_at(buf, offset)
    }
}

/// Bytes known to sit at `[base, base + bytes.len())` of a container, such as
/// a range fetched over HTTP. Reads outside the window fail with `UnexpectedEof`.
#[derive(Clone, Copy, Debug)]
pub struct Window<'a> {
    base: u64,
    bytes: &'a [u8],
}

impl<'a> Window<'a> {
    /// A window of `bytes` starting at container offset `base`.
    pub fn new(base: u64, bytes: &'a [u8]) -> Self {
        Window { base, bytes }
    }

    /// The container offset of the window's first byte.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// The container offset just past the window.
    pub fn end(&self) -> u64 {
        self.base + self.bytes.len() as u64
    }

    /// The bytes at container offsets `[start, start + len)`, if all inside the window.
    pub fn slice(&self, start: u64, len: u64) -> Option<&'a [u8]> {
        let from = usize::try_from(start.checked_sub(self.base)?).ok()?;
        let to = from.checked_add(usize::try_from(len).ok()?)?;
        self.bytes.get(from..to)
    }
}

impl ReadAt for Window<'_> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        match self.slice(offset, buf.len() as u64) {
            Some(s) => {
                buf.copy_from_slice(s);
                Ok(())
            }
            None => Err(io::ErrorKind::UnexpectedEof.into()),
        }
    }
}

/// The number of bytes (1, 2, 4 or 8) the smallest length encoding of `len` takes.
pub fn width_of(len: u64) -> usize {
    match len {
        0..=0xFF => 1,
        0x100..=0xFFFF => 2,
        0x1_0000..=0xFFFF_FFFF => 4,
        _ => 8,
    }
}

fn tag_index(width: usize) -> u8 {
    match width {
        1 => 0,
        2 => 1,
        4 => 2,
        _ => 3,
    }
}

fn width_from_tag(tag: u8, base: u8) -> Option<usize> {
    match tag.checked_sub(base)? {
        0 => Some(1),
        1 => Some(2),
        2 => Some(4),
        3 => Some(8),
        _ => None,
    }
}

/// The length of a record's tag and length for a record of `len` bytes.
pub fn record_prefix_len(len: u64) -> u64 {
    1 + width_of(len) as u64
}

/// The body length of a frame with a header of `header_len` bytes and a payload
/// of `payload_len` bytes, or `None` past the format's limits (a header over
/// [`MAX_HEADER_LEN`], a frame over [`MAX_LEN`]): writers refuse exactly what
/// readers would.
pub fn body_len(header_len: u64, payload_len: u64) -> Option<u64> {
    if header_len > MAX_HEADER_LEN {
        return None;
    }
    let body = record_prefix_len(header_len)
        .checked_add(header_len)?
        .checked_add(record_prefix_len(payload_len))?
        .checked_add(payload_len)?;
    // Readers also require the whole frame to stay within the limit.
    let total = body.checked_add(2 * (1 + width_of(body) as u64))?;
    (total <= MAX_LEN).then_some(body)
}

/// The total length of a frame with the given header and payload lengths.
pub fn frame_len(header_len: u64, payload_len: u64) -> Option<u64> {
    let body = body_len(header_len, payload_len)?;
    body.checked_add(2 * (1 + width_of(body) as u64))
}

/// The offset of the payload within a frame, counted from the frame's first byte.
pub fn payload_start(header_len: u64, payload_len: u64) -> Option<u64> {
    let body = body_len(header_len, payload_len)?;
    Some(1 + width_of(body) as u64 + record_prefix_len(header_len) + header_len + record_prefix_len(payload_len))
}

fn push_len(out: &mut Vec<u8>, len: u64, width: usize) {
    out.extend_from_slice(&len.to_be_bytes()[8 - width..]);
}

/// The bytes of a frame up to its payload: frame tag and length, the header
/// record, the payload record's tag and length. Write these, then exactly
/// `payload_len` payload bytes, then [`frame_tail`].
pub fn frame_head(header: &[u8], payload_len: u64) -> Option<Vec<u8>> {
    let header_len = header.len() as u64;
    let body = body_len(header_len, payload_len)?;
    let mut out = Vec::with_capacity(header.len() + 24);
    let w = width_of(body);
    out.push(FRAME_TAG_BASE + tag_index(w));
    push_len(&mut out, body, w);
    let hw = width_of(header_len);
    out.push(RECORD_TAG_BASE + tag_index(hw));
    push_len(&mut out, header_len, hw);
    out.extend_from_slice(header);
    let pw = width_of(payload_len);
    out.push(RECORD_TAG_BASE + tag_index(pw));
    push_len(&mut out, payload_len, pw);
    Some(out)
}

/// The bytes after the payload: the body length reversed, then the frame tag.
pub fn frame_tail(header_len: u64, payload_len: u64) -> Option<Vec<u8>> {
    let body = body_len(header_len, payload_len)?;
    let w = width_of(body);
    let mut out: Vec<u8> = body.to_le_bytes()[..w].to_vec();
    out.push(FRAME_TAG_BASE + tag_index(w));
    Some(out)
}

/// A whole frame in memory, for small payloads (headers, tiles, seals).
pub fn encode_frame(header: &[u8], payload: &[u8]) -> Option<Vec<u8>> {
    let mut out = frame_head(header, payload.len() as u64)?;
    out.extend_from_slice(payload);
    out.extend_from_slice(&frame_tail(header.len() as u64, payload.len() as u64)?);
    Some(out)
}

/// Writes one frame whose payload is streamed from `payload`, which must yield
/// exactly `payload_len` bytes. Returns the frame's length.
pub fn write_frame<W: Write, R: Read>(
    out: &mut W,
    header: &[u8],
    payload_len: u64,
    payload: &mut R,
) -> io::Result<u64> {
    let too_long = || io::Error::new(io::ErrorKind::InvalidInput, "frame over the 2^63-1 byte limit");
    let head = frame_head(header, payload_len).ok_or_else(too_long)?;
    out.write_all(&head)?;
    let copied = io::copy(&mut payload.take(payload_len), out)?;
    if copied != payload_len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("payload ended after {copied} of {payload_len} bytes"),
        ));
    }
    let mut probe = [0u8; 1];
    if payload.read(&mut probe)? != 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "payload is longer than announced"));
    }
    out.write_all(&frame_tail(header.len() as u64, payload_len).ok_or_else(too_long)?)?;
    frame_len(header.len() as u64, payload_len).ok_or_else(too_long)
}

struct Cursor<'r, R: ?Sized> {
    src: &'r R,
    frame: u64,
}

impl<R: ReadAt + ?Sized> Cursor<'_, R> {
    fn bytes<const N: usize>(&self, at: u64) -> Result<[u8; N], FrameError> {
        let mut buf = [0u8; N];
        self.src.read_exact_at(&mut buf, at).map_err(|e| self.io(e, at, N as u64))?;
        Ok(buf)
    }

    fn io(&self, e: io::Error, at: u64, n: u64) -> FrameError {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            FrameError::Truncated { offset: self.frame, needed: at.saturating_sub(self.frame) + n, available: 0 }
        } else {
            FrameError::Io { offset: self.frame, source: e }
        }
    }
}

fn check_len(offset: u64, len: u64, width: usize) -> Result<(), FrameError> {
    if len > MAX_LEN {
        return Err(FrameError::TooLong { offset, len });
    }
    if width_of(len) != width {
        return Err(FrameError::NonMinimal { offset, len });
    }
    Ok(())
}

/// Reads the frame that starts at `offset`, checking that it ends at or before
/// `end` (the container length, or how far it is trusted), that both copies of
/// its length agree, and that its two records exactly fill its body.
/// Reads only tags and lengths: no header and no payload bytes.
pub fn read_frame_at<R: ReadAt + ?Sized>(src: &R, offset: u64, end: u64) -> Result<FrameInfo, FrameError> {
    let c = Cursor { src, frame: offset };
    let available = end.saturating_sub(offset);
    let truncated = |needed: u64| FrameError::Truncated { offset, needed, available };
    if available < 2 {
        return Err(truncated(2));
    }
    let (tag, w) = frame_tag(&c, offset, available)?;
    let body = read_be(&c, offset + 1, w)?;
    check_len(offset, body, w)?;
    let total = body
        .checked_add(2 * (1 + w as u64))
        .filter(|t| *t <= MAX_LEN)
        .ok_or(FrameError::TooLong { offset, len: body })?;
    if total > available {
        return Err(truncated(total));
    }
    let body_start = offset + 1 + w as u64;
    let body_end = body_start + body;
    // Trailing copy: length reversed, then the tag.
    let mut trail = [0u8; 9];
    src.read_exact_at(&mut trail[..w + 1], body_end).map_err(|e| c.io(e, body_end, w as u64 + 1))?;
    let mut le = [0u8; 8];
    le[..w].copy_from_slice(&trail[..w]);
    if trail[w] != tag || u64::from_le_bytes(le) != body {
        return Err(FrameError::EndMismatch { offset });
    }
    read_records(&c, offset, body_start, body)
}

/// Reads the start of the frame at `offset` whose total length is said to be
/// `length`, for a reader that fetched only a prefix of it (through its
/// header and the first payload bytes): its tags, lengths and where its
/// records are. Its end (the trailing copy of the length) is not read.
pub fn read_frame_head<R: ReadAt + ?Sized>(src: &R, offset: u64, length: u64) -> Result<FrameInfo, FrameError> {
    let c = Cursor { src, frame: offset };
    let (_, w) = frame_tag(&c, offset, length)?;
    let body = read_be(&c, offset + 1, w)?;
    check_len(offset, body, w)?;
    if body.checked_add(2 * (1 + w as u64)) != Some(length) {
        return Err(FrameError::EndMismatch { offset });
    }
    read_records(&c, offset, offset + 1 + w as u64, body)
}

/// The frame tag at `at` (a frame's first or last byte) and the width of the
/// length it announces, checking `available` bytes hold the tag and length.
fn frame_tag<R: ReadAt + ?Sized>(c: &Cursor<'_, R>, at: u64, available: u64) -> Result<(u8, usize), FrameError> {
    let [tag] = c.bytes::<1>(at)?;
    let w =
        width_from_tag(tag, FRAME_TAG_BASE).ok_or(FrameError::BadTag { offset: at, at, found: tag, what: "frame" })?;
    if available < 1 + w as u64 {
        return Err(FrameError::Truncated { offset: at, needed: 1 + w as u64, available });
    }
    Ok((tag, w))
}

fn read_be<R: ReadAt + ?Sized>(c: &Cursor<'_, R>, at: u64, width: usize) -> Result<u64, FrameError> {
    let mut buf = [0u8; 8];
    c.src.read_exact_at(&mut buf[8 - width..], at).map_err(|e| c.io(e, at, width as u64))?;
    Ok(u64::from_be_bytes(buf))
}

fn read_records<R: ReadAt + ?Sized>(
    c: &Cursor<'_, R>,
    offset: u64,
    body_start: u64,
    body: u64,
) -> Result<FrameInfo, FrameError> {
    let not_fill = FrameError::RecordsDoNotFill { offset, body_len: body };
    let body_end = body_start + body;
    let mut at = body_start;
    let record = |at: &mut u64| -> Result<(u64, u64), FrameError> {
        if *at >= body_end {
            return Err(FrameError::RecordsDoNotFill { offset, body_len: body });
        }
        let [tag] = c.bytes::<1>(*at)?;
        let w = width_from_tag(tag, RECORD_TAG_BASE).ok_or(FrameError::BadTag {
            offset,
            at: *at,
            found: tag,
            what: "record",
        })?;
        if body_end - *at < 1 + w as u64 {
            return Err(FrameError::RecordsDoNotFill { offset, body_len: body });
        }
        let len = read_be(c, *at + 1, w)?;
        check_len(offset, len, w)?;
        let start = *at + 1 + w as u64;
        if len > body_end - start {
            return Err(FrameError::RecordsDoNotFill { offset, body_len: body });
        }
        *at = start + len;
        Ok((start, len))
    };
    let (header_offset, header_len) = record(&mut at)?;
    if header_len > MAX_HEADER_LEN {
        return Err(FrameError::HeaderTooLarge { offset, len: header_len });
    }
    let (payload_offset, payload_len) = record(&mut at)?;
    if at != body_end {
        return Err(not_fill);
    }
    Ok(FrameInfo { offset, body_len: body, header_offset, header_len, payload_offset, payload_len })
}

/// Reads the frame that ends just before `end`, walking backward: the trailing
/// tag and reversed length give the frame's start, which must be at or after
/// `start`; then the frame is read and checked as by [`read_frame_at`].
pub fn read_frame_before<R: ReadAt + ?Sized>(src: &R, start: u64, end: u64) -> Result<FrameInfo, FrameError> {
    let last = end.saturating_sub(1);
    let c = Cursor { src, frame: last };
    let available = end.saturating_sub(start);
    let truncated = |needed: u64| FrameError::Truncated { offset: last, needed, available };
    if available < 2 {
        return Err(truncated(2));
    }
    let (_, w) = frame_tag(&c, last, available)?;
    let mut le = [0u8; 8];
    src.read_exact_at(&mut le[..w], last - w as u64).map_err(|e| c.io(e, last - w as u64, w as u64))?;
    let body = u64::from_le_bytes(le);
    check_len(last, body, w)?;
    let total = body
        .checked_add(2 * (1 + w as u64))
        .filter(|t| *t <= MAX_LEN)
        .ok_or(FrameError::TooLong { offset: last, len: body })?;
    if total > available {
        return Err(truncated(total));
    }
    read_frame_at(src, end - total, end)
}

/// Reads a frame's header bytes (at most [`MAX_HEADER_LEN`], as checked when
/// the frame was read).
pub fn read_header<R: ReadAt + ?Sized>(src: &R, frame: &FrameInfo) -> Result<Vec<u8>, FrameError> {
    if frame.header_len > MAX_HEADER_LEN {
        return Err(FrameError::HeaderTooLarge { offset: frame.offset, len: frame.header_len });
    }
    let mut buf = vec![0u8; frame.header_len as usize];
    src.read_exact_at(&mut buf, frame.header_offset).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => {
            FrameError::Truncated { offset: frame.offset, needed: frame.len(), available: 0 }
        }
        _ => FrameError::Io { offset: frame.offset, source: e },
    })?;
    Ok(buf)
}

/// Walks frames forward over `[start, end)`, yielding each frame or the first error.
pub struct Frames<'r, R: ?Sized> {
    src: &'r R,
    at: u64,
    end: u64,
    failed: bool,
}

impl<'r, R: ReadAt + ?Sized> Frames<'r, R> {
    /// Frames of `src` from `start` up to `end`.
    pub fn new(src: &'r R, start: u64, end: u64) -> Self {
        Frames { src, at: start, end, failed: false }
    }

    /// The offset the next frame would start at.
    pub fn position(&self) -> u64 {
        self.at
    }
}

impl<R: ReadAt + ?Sized> Iterator for Frames<'_, R> {
    type Item = Result<FrameInfo, FrameError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.at >= self.end {
            return None;
        }
        match read_frame_at(self.src, self.at, self.end) {
            Ok(f) => {
                self.at = f.end();
                Some(Ok(f))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Walks frames backward from `end` down to `start`, yielding each frame or the first error.
pub struct FramesBack<'r, R: ?Sized> {
    src: &'r R,
    start: u64,
    at: u64,
    failed: bool,
}

impl<'r, R: ReadAt + ?Sized> FramesBack<'r, R> {
    /// Frames of `src` ending at `end`, back to `start`.
    pub fn new(src: &'r R, start: u64, end: u64) -> Self {
        FramesBack { src, start, at: end, failed: false }
    }
}

impl<R: ReadAt + ?Sized> Iterator for FramesBack<'_, R> {
    type Item = Result<FrameInfo, FrameError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.at <= self.start {
            return None;
        }
        match read_frame_before(self.src, self.start, self.at) {
            Ok(f) => {
                self.at = f.offset;
                Some(Ok(f))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// What a [`FrameStream`] found in the bytes fed to it.
#[derive(Debug)]
pub enum FrameEvent<'a> {
    /// A frame's header record, complete. Its payload follows.
    Header {
        /// Offset of the frame.
        offset: u64,
        /// The header bytes (at most [`MAX_HEADER_LEN`]).
        header: &'a [u8],
        /// The payload length that follows.
        payload_len: u64,
    },
    /// The next bytes of the current frame's payload.
    Payload(&'a [u8]),
    /// The current frame ended and its trailing length and tag matched.
    End(FrameInfo),
}

/// Why a [`FrameStream`] stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError<E> {
    /// The bytes do not form frames.
    #[error(transparent)]
    Frame(FrameError),
    /// The event handler refused an event.
    #[error("{0}")]
    Handler(E),
}

#[derive(Debug)]
enum Phase {
    FrameTag,
    FrameLen { width: usize },
    RecordTag { header: bool },
    RecordLen { header: bool, width: usize },
    Header,
    Payload { left: u64 },
    Trailer { width: usize },
}

/// Decodes frames from a stream of bytes (a range fetched over the network)
/// without holding payloads in memory: headers are collected (bounded by
/// [`MAX_HEADER_LEN`]), payloads pass through in the chunks they arrive in.
/// Checks everything [`read_frame_at`] checks.
#[derive(Debug)]
pub struct FrameStream {
    at: u64,
    phase: Phase,
    buf: Vec<u8>,
    header: Vec<u8>,
    frame: FrameInfo,
    tag: u8,
    body_end: u64,
}

impl FrameStream {
    /// A decoder for frames starting at container offset `offset`.
    pub fn new(offset: u64) -> Self {
        FrameStream {
            at: offset,
            phase: Phase::FrameTag,
            buf: Vec::new(),
            header: Vec::new(),
            frame: FrameInfo {
                offset,
                body_len: 0,
                header_offset: 0,
                header_len: 0,
                payload_offset: 0,
                payload_len: 0,
            },
            tag: 0,
            body_end: 0,
        }
    }

    /// The container offset of the next byte expected.
    pub fn position(&self) -> u64 {
        self.at
    }

    /// Whether the stream is between frames.
    pub fn at_boundary(&self) -> bool {
        matches!(self.phase, Phase::FrameTag)
    }

    /// Feeds bytes, calling `on` for every event.
    pub fn feed<E>(
        &mut self,
        mut bytes: &[u8],
        on: &mut dyn FnMut(FrameEvent<'_>) -> Result<(), E>,
    ) -> Result<(), StreamError<E>> {
        let offset = self.frame.offset;
        let fail = |e: FrameError| StreamError::Frame(e);
        while !bytes.is_empty() {
            match self.phase {
                Phase::FrameTag => {
                    let tag = bytes[0];
                    let w = width_from_tag(tag, FRAME_TAG_BASE).ok_or(fail(FrameError::BadTag {
                        offset: self.at,
                        at: self.at,
                        found: tag,
                        what: "frame",
                    }))?;
                    self.frame = FrameInfo {
                        offset: self.at,
                        body_len: 0,
                        header_offset: 0,
                        header_len: 0,
                        payload_offset: 0,
                        payload_len: 0,
                    };
                    self.tag = tag;
                    self.take(&mut bytes, 1);
                    self.phase = Phase::FrameLen { width: w };
                }
                Phase::FrameLen { width } => {
                    if let Some(len) = self.collect_len(&mut bytes, width) {
                        let off = self.frame.offset;
                        check_len(off, len, width).map_err(fail)?;
                        self.frame.body_len = len;
                        self.body_end = self.at + len;
                        self.phase = Phase::RecordTag { header: true };
                    }
                }
                Phase::RecordTag { header } => {
                    let off = self.frame.offset;
                    if self.at >= self.body_end {
                        return Err(fail(FrameError::RecordsDoNotFill { offset: off, body_len: self.frame.body_len }));
                    }
                    let tag = bytes[0];
                    let w = width_from_tag(tag, RECORD_TAG_BASE).ok_or(fail(FrameError::BadTag {
                        offset: off,
                        at: self.at,
                        found: tag,
                        what: "record",
                    }))?;
                    self.take(&mut bytes, 1);
                    self.phase = Phase::RecordLen { header, width: w };
                }
                Phase::RecordLen { header, width } => {
                    if let Some(len) = self.collect_len(&mut bytes, width) {
                        let off = self.frame.offset;
                        check_len(off, len, width).map_err(fail)?;
                        let room = self.body_end.saturating_sub(self.at);
                        let not_fill = FrameError::RecordsDoNotFill { offset: off, body_len: self.frame.body_len };
                        if header {
                            if len > MAX_HEADER_LEN {
                                return Err(fail(FrameError::HeaderTooLarge { offset: off, len }));
                            }
                            if len > room {
                                return Err(fail(not_fill));
                            }
                            self.frame.header_offset = self.at;
                            self.frame.header_len = len;
                            self.header.clear();
                            self.phase = Phase::Header;
                            if len == 0 {
                                self.phase = Phase::RecordTag { header: false };
                            }
                        } else {
                            if len != room {
                                return Err(fail(not_fill));
                            }
                            self.frame.payload_offset = self.at;
                            self.frame.payload_len = len;
                            on(FrameEvent::Header { offset: off, header: &self.header, payload_len: len })
                                .map_err(StreamError::Handler)?;
                            self.phase = Phase::Payload { left: len };
                            if len == 0 {
                                self.phase = Phase::Trailer { width: width_of(self.frame.body_len) };
                            }
                        }
                    }
                }
                Phase::Header => {
                    let need = (self.frame.header_len as usize) - self.header.len();
                    let n = need.min(bytes.len());
                    self.header.extend_from_slice(&bytes[..n]);
                    self.take(&mut bytes, n);
                    if self.header.len() as u64 == self.frame.header_len {
                        // The header event goes out once the payload length is known.
                        self.phase = Phase::RecordTag { header: false };
                    }
                }
                Phase::Payload { left } => {
                    let n = (left.min(bytes.len() as u64)) as usize;
                    on(FrameEvent::Payload(&bytes[..n])).map_err(StreamError::Handler)?;
                    self.take(&mut bytes, n);
                    let left = left - n as u64;
                    self.phase = if left == 0 {
                        Phase::Trailer { width: width_of(self.frame.body_len) }
                    } else {
                        Phase::Payload { left }
                    };
                }
                Phase::Trailer { width } => {
                    let need = width + 1 - self.buf.len();
                    let n = need.min(bytes.len());
                    self.buf.extend_from_slice(&bytes[..n]);
                    self.take(&mut bytes, n);
                    if self.buf.len() == width + 1 {
                        let mut le = [0u8; 8];
                        le[..width].copy_from_slice(&self.buf[..width]);
                        if self.buf[width] != self.tag || u64::from_le_bytes(le) != self.frame.body_len {
                            return Err(fail(FrameError::EndMismatch { offset }));
                        }
                        self.buf.clear();
                        on(FrameEvent::End(self.frame)).map_err(StreamError::Handler)?;
                        self.phase = Phase::FrameTag;
                    }
                }
            }
        }
        Ok(())
    }

    fn take(&mut self, bytes: &mut &[u8], n: usize) {
        *bytes = &bytes[n..];
        self.at += n as u64;
    }

    /// Collects a big-endian length of `width` bytes across feeds.
    fn collect_len(&mut self, bytes: &mut &[u8], width: usize) -> Option<u64> {
        let need = width - self.buf.len();
        let n = need.min(bytes.len());
        self.buf.extend_from_slice(&bytes[..n]);
        self.take(bytes, n);
        if self.buf.len() < width {
            return None;
        }
        let mut be = [0u8; 8];
        be[8 - width..].copy_from_slice(&self.buf);
        self.buf.clear();
        Some(u64::from_be_bytes(be))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames_of(bytes: &[u8]) -> Vec<Result<FrameInfo, FrameError>> {
        Frames::new(bytes, 0, bytes.len() as u64).collect()
    }

    #[test]
    fn smallest_frame_is_exact_bytes() {
        // Header "{}" and an empty payload.
        let f = encode_frame(b"{}", b"").unwrap();
        assert_eq!(f, [0xF4, 6, 0xF0, 2, b'{', b'}', 0xF0, 0, 6, 0xF4]);
        let info = read_frame_at(f.as_slice(), 0, f.len() as u64).unwrap();
        assert_eq!(info.header_offset, 4);
        assert_eq!(info.header_len, 2);
        assert_eq!(info.payload_offset, 8);
        assert_eq!(info.payload_len, 0);
        assert_eq!(info.len(), 10);
    }

    #[test]
    fn widths_switch_at_the_boundaries() {
        for (len, w) in
            [(0u64, 1), (255, 1), (256, 2), (65535, 2), (65536, 4), (u32::MAX as u64, 4), (1 << 32, 8), (MAX_LEN, 8)]
        {
            assert_eq!(width_of(len), w, "{len}");
        }
        for payload in [0usize, 1, 200, 250, 251, 252, 255, 256, 300, 65_530, 65_536, 70_000] {
            let p = vec![7u8; payload];
            let f = encode_frame(b"{\"kind\":\"x\"}", &p).unwrap();
            assert_eq!(f.len() as u64, frame_len(12, payload as u64).unwrap());
            let info = read_frame_at(f.as_slice(), 0, f.len() as u64).unwrap();
            assert_eq!(info.payload_len, payload as u64);
            assert_eq!(info.payload_offset, payload_start(12, payload as u64).unwrap());
            let back = read_frame_before(f.as_slice(), 0, f.len() as u64).unwrap();
            assert_eq!(back, info);
        }
    }

    #[test]
    fn walks_forward_and_backward() {
        let mut c = Vec::new();
        for i in 0..50usize {
            c.extend(encode_frame(format!("{{\"i\":{i}}}").as_bytes(), &vec![i as u8; i * 13]).unwrap());
        }
        let fwd: Vec<_> = frames_of(&c).into_iter().map(Result::unwrap).collect();
        let mut back: Vec<_> = FramesBack::new(c.as_slice(), 0, c.len() as u64).map(Result::unwrap).collect();
        back.reverse();
        assert_eq!(fwd.len(), 50);
        assert_eq!(fwd, back);
    }

    #[test]
    fn streaming_writer_matches_encoder() {
        let payload = vec![3u8; 100_000];
        let mut out = Vec::new();
        let n = write_frame(&mut out, b"{}", payload.len() as u64, &mut payload.as_slice()).unwrap();
        assert_eq!(out, encode_frame(b"{}", &payload).unwrap());
        assert_eq!(n, out.len() as u64);
        assert!(write_frame(&mut Vec::new(), b"{}", 10, &mut &[0u8; 9][..]).is_err());
        assert!(write_frame(&mut Vec::new(), b"{}", 10, &mut &[0u8; 11][..]).is_err());
    }

    #[test]
    fn rejects_mismatched_ends() {
        let mut f = encode_frame(b"{}", b"abc").unwrap();
        let n = f.len();
        f[n - 2] ^= 1;
        assert!(matches!(read_frame_at(f.as_slice(), 0, n as u64), Err(FrameError::EndMismatch { .. })));
        let mut f = encode_frame(b"{}", b"abc").unwrap();
        f[n - 1] = 0xF5;
        assert!(matches!(read_frame_at(f.as_slice(), 0, n as u64), Err(FrameError::EndMismatch { .. })));
    }

    #[test]
    fn rejects_truncation_everywhere() {
        let f = encode_frame(b"{\"kind\":\"entry\"}", &[9u8; 300]).unwrap();
        for cut in 0..f.len() {
            let short = &f[..cut];
            assert!(read_frame_at(short, 0, cut as u64).is_err(), "cut at {cut}");
            assert!(read_frame_before(short, 0, cut as u64).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn rejects_records_that_do_not_fill() {
        // Body of 7: header record of 2, payload record F0 00, and one extra byte.
        let f = [0xF4, 7, 0xF0, 2, b'{', b'}', 0xF0, 0, 0, 7, 0xF4];
        assert!(matches!(read_frame_at(&f[..], 0, 11), Err(FrameError::RecordsDoNotFill { .. })));
        // Only one record.
        let f = [0xF4, 4, 0xF0, 2, b'{', b'}', 4, 0xF4];
        assert!(matches!(read_frame_at(&f[..], 0, 8), Err(FrameError::RecordsDoNotFill { .. })));
        // Record length running past the body.
        let f = [0xF4, 6, 0xF0, 2, b'{', b'}', 0xF0, 9, 6, 0xF4];
        assert!(matches!(read_frame_at(&f[..], 0, 10), Err(FrameError::RecordsDoNotFill { .. })));
    }

    #[test]
    fn rejects_non_minimal_lengths() {
        let f = [0xF5, 0, 6, 0xF0, 2, b'{', b'}', 0xF0, 0, 6, 0, 0xF5];
        assert!(matches!(read_frame_at(&f[..], 0, 12), Err(FrameError::NonMinimal { .. })));
        let f = [0xF4, 7, 0xF1, 0, 2, b'{', b'}', 0xF0, 0, 7, 0xF4];
        assert!(matches!(read_frame_at(&f[..], 0, 11), Err(FrameError::NonMinimal { .. })));
    }

    #[test]
    fn rejects_huge_lengths_without_allocating() {
        // An 8-byte length of 2^63 and of 2^62 in a 20-byte buffer.
        let mut f = vec![0xF7];
        f.extend_from_slice(&(1u64 << 63).to_be_bytes());
        f.extend_from_slice(&[0; 11]);
        assert!(matches!(read_frame_at(f.as_slice(), 0, 20), Err(FrameError::TooLong { .. })));
        f[1] = 0x40;
        assert!(matches!(read_frame_at(f.as_slice(), 0, 20), Err(FrameError::Truncated { .. })));
    }

    #[test]
    fn window_reads_only_inside() {
        let f = encode_frame(b"{}", b"xyz").unwrap();
        let mut padded = vec![0u8; 5];
        padded.extend_from_slice(&f);
        let w = Window::new(1000, &padded[5..]);
        let info = read_frame_at(&w, 1000, w.end()).unwrap();
        assert_eq!(info.payload_offset, 1000 + 8);
        assert_eq!(w.slice(info.payload_offset, 3), Some(&b"xyz"[..]));
        assert!(read_frame_at(&w, 999, w.end()).is_err());
    }

    proptest::proptest! {
        #[test]
        fn round_trip(header in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
                      payload in proptest::collection::vec(proptest::num::u8::ANY, 0..70_000)) {
            let f = encode_frame(&header, &payload).unwrap();
            let info = read_frame_at(f.as_slice(), 0, f.len() as u64).unwrap();
            proptest::prop_assert_eq!(info.end(), f.len() as u64);
            proptest::prop_assert_eq!(read_header(f.as_slice(), &info).unwrap(), header);
            proptest::prop_assert_eq!(&f[info.payload_offset as usize..][..payload.len()], &payload[..]);
            proptest::prop_assert_eq!(read_frame_before(f.as_slice(), 0, f.len() as u64).unwrap(), info);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let n = bytes.len() as u64;
            for info in Frames::new(bytes.as_slice(), 0, n).flatten() {
                let _ = read_header(bytes.as_slice(), &info);
            }
            for _ in FramesBack::new(bytes.as_slice(), 0, n) {}
        }
    }

    /// Header, payload and place of each frame decoded.
    type Decoded = (Vec<u8>, Vec<u8>, FrameInfo);

    fn stream_events(bytes: &[u8], chunk: usize) -> Result<Vec<Decoded>, String> {
        let mut out = Vec::new();
        let mut cur: (Vec<u8>, Vec<u8>) = (Vec::new(), Vec::new());
        let mut st = FrameStream::new(0);
        for c in bytes.chunks(chunk.max(1)) {
            st.feed::<String>(c, &mut |ev| {
                match ev {
                    FrameEvent::Header { header, .. } => cur = (header.to_vec(), Vec::new()),
                    FrameEvent::Payload(p) => cur.1.extend_from_slice(p),
                    FrameEvent::End(info) => out.push((std::mem::take(&mut cur.0), std::mem::take(&mut cur.1), info)),
                }
                Ok(())
            })
            .map_err(|e| e.to_string())?;
        }
        if !st.at_boundary() {
            return Err("ended mid-frame".into());
        }
        Ok(out)
    }

    #[test]
    fn stream_decoder_matches_random_access_reader() {
        let mut c = Vec::new();
        for i in 0..20usize {
            c.extend(encode_frame(format!("{{\"i\":{i}}}").as_bytes(), &vec![i as u8; i * 37]).unwrap());
        }
        c.extend(encode_frame(b"", b"").unwrap());
        let want: Vec<FrameInfo> = Frames::new(c.as_slice(), 0, c.len() as u64).map(Result::unwrap).collect();
        for chunk in [1, 2, 3, 7, 64, 100_000] {
            let got = stream_events(&c, chunk).unwrap();
            assert_eq!(got.iter().map(|g| g.2).collect::<Vec<_>>(), want, "chunk {chunk}");
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(g.0, read_header(c.as_slice(), w).unwrap());
                assert_eq!(g.1.len() as u64, w.payload_len);
            }
        }
    }

    #[test]
    fn stream_decoder_rejects_what_the_reader_rejects() {
        let good = encode_frame(b"{}", b"abc").unwrap();
        for i in 0..good.len() {
            for flip in [1u8, 0x80] {
                let mut bad = good.clone();
                bad[i] ^= flip;
                let reader_ok = read_frame_at(bad.as_slice(), 0, bad.len() as u64).is_ok();
                let stream_ok = stream_events(&bad, 1).is_ok_and(|v| v.len() == 1);
                if i != 4 && i != 5 && !(8..11).contains(&i) {
                    // Outside the header and payload bytes, both must refuse.
                    assert!(!reader_ok && !stream_ok, "byte {i} flip {flip}: reader {reader_ok}, stream {stream_ok}");
                }
            }
        }
    }
}
