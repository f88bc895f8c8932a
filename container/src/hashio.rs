//! Hashing while streaming. sha2 0.11 no longer implements `io::Write`, so
//! these small adapters count and hash bytes as they pass through, and
//! [`stream_range`] reads a range of a file on one thread while the caller
//! hashes (or decompresses) the previous chunk on another.

use std::io::{self, Read, Write};
use std::sync::mpsc;

use sha2::{Digest, Sha256};

use crate::frame::ReadAt;

/// A SHA-256 digest.
pub type Digest32 = [u8; 32];

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> Digest32 {
    Sha256::digest(bytes).into()
}

/// A running SHA-256 with a byte count.
#[derive(Clone, Default)]
pub struct Hasher {
    inner: Sha256,
    count: u64,
}

impl Hasher {
    /// A fresh hasher.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.inner.update(bytes);
        self.count += bytes.len() as u64;
    }

    /// Bytes hashed so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The digest and the byte count.
    pub fn finish(self) -> (Digest32, u64) {
        (self.inner.finalize().into(), self.count)
    }
}

/// A writer that hashes what passes through to `inner`.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        HashingWriter { inner, hasher: Hasher::new() }
    }

    /// The digest, byte count and the inner writer.
    pub fn finish(self) -> (Digest32, u64, W) {
        let (d, n) = self.hasher.finish();
        (d, n, self.inner)
    }

    /// Bytes written so far.
    pub fn count(&self) -> u64 {
        self.hasher.count()
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes what it reads from `inner`.
pub struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> HashingReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        HashingReader { inner, hasher: Hasher::new() }
    }

    /// The digest, byte count and the inner reader.
    pub fn finish(self) -> (Digest32, u64, R) {
        let (d, n) = self.hasher.finish();
        (d, n, self.inner)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A writer that hashes what passes through to `inner` and fails once more
/// than `limit` bytes arrive: the sink for decompressed content whose signed
/// size is `limit` (use [`io::sink`] to only hash it).
pub struct BoundedHashWriter<W> {
    inner: W,
    hasher: Hasher,
    limit: u64,
}

impl<W: Write> BoundedHashWriter<W> {
    /// Accepts at most `limit` bytes for `inner`.
    pub fn new(inner: W, limit: u64) -> Self {
        BoundedHashWriter { inner, hasher: Hasher::new(), limit }
    }

    /// The digest, the byte count and the inner writer.
    pub fn finish(self) -> (Digest32, u64, W) {
        let (d, n) = self.hasher.finish();
        (d, n, self.inner)
    }
}

impl<W: Write> Write for BoundedHashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.hasher.count() + buf.len() as u64 > self.limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("content is longer than its signed size of {} bytes", self.limit),
            ));
        }
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The chunk size [`stream_range`] reads with.
pub const CHUNK: usize = 1 << 20;

/// Reads `[offset, offset + len)` of `src` in chunks on a helper thread and
/// hands each chunk, in order, to `consume` on the calling thread, so reading
/// and hashing overlap. Stops at the first error of either side.
pub fn stream_range<R, E>(
    src: &R,
    offset: u64,
    len: u64,
    mut consume: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<(), E>
where
    R: ReadAt + Sync + ?Sized,
    E: From<io::Error>,
{
    if len <= CHUNK as u64 {
        let mut buf = vec![0u8; len as usize];
        src.read_exact_at(&mut buf, offset)?;
        return consume(&buf);
    }
    std::thread::scope(|scope| {
        let (full_tx, full_rx) = mpsc::sync_channel::<io::Result<Vec<u8>>>(2);
        let (empty_tx, empty_rx) = mpsc::sync_channel::<Vec<u8>>(3);
        for _ in 0..3 {
            // Cannot fail: the channel holds three.
            let _ = empty_tx.send(vec![0u8; CHUNK]);
        }
        scope.spawn(move || {
            let mut at = offset;
            let end = offset + len;
            while at < end {
                let Ok(mut buf) = empty_rx.recv() else { return };
                let n = (end - at).min(CHUNK as u64) as usize;
                buf.resize(n, 0);
                let r = src.read_exact_at(&mut buf, at).map(|()| buf);
                let failed = r.is_err();
                if full_tx.send(r).is_err() || failed {
                    return;
                }
                at += n as u64;
            }
        });
        let mut done = 0u64;
        while done < len {
            let buf = match full_rx.recv() {
                Ok(r) => r?,
                Err(_) => return Err(io::Error::other("reader thread stopped").into()),
            };
            done += buf.len() as u64;
            consume(&buf)?;
            // The reader may have finished; a closed channel is fine.
            let _ = empty_tx.send(buf);
        }
        Ok(())
    })
}

/// Lowercase hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

/// Parses exactly 64 lowercase hex digits.
pub fn digest_from_hex(s: &str) -> Option<Digest32> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let nib = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = (nib(b[2 * i])? << 4) | nib(b[2 * i + 1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_strictness() {
        let d = sha256(b"abc");
        let h = to_hex(&d);
        assert_eq!(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(digest_from_hex(&h), Some(d));
        assert_eq!(digest_from_hex(&h.to_uppercase()), None);
        assert_eq!(digest_from_hex(&h[..63]), None);
    }

    #[test]
    fn stream_range_hashes_every_byte_in_order() {
        let data: Vec<u8> = (0..(3 * CHUNK + 12345)).map(|i| (i * 7 + i / 1000) as u8).collect();
        for (off, len) in [(0u64, data.len() as u64), (5, 10), (17, 2 * CHUNK as u64 + 1)] {
            let mut h = Hasher::new();
            stream_range::<_, io::Error>(data.as_slice(), off, len, |c| {
                h.update(c);
                Ok(())
            })
            .unwrap();
            assert_eq!(h.finish(), (sha256(&data[off as usize..(off + len) as usize]), len));
        }
        let r = stream_range::<_, io::Error>(data.as_slice(), 10, data.len() as u64, |_| Ok(()));
        assert!(r.is_err());
    }

    #[test]
    fn bounded_sink_refuses_extra_bytes() {
        let mut s = BoundedHashWriter::new(io::sink(), 4);
        assert!(s.write_all(b"abcd").is_ok());
        assert!(s.write_all(b"e").is_err());
    }
}
