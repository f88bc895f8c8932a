//! Reading stored content: an entry's payload decompressed and checked, a
//! delta applied to its base, an index's listing. Every read is bounded by
//! the signed sizes in the header, and every digest is checked.
//!
//! [`PayloadCheck`] is the one place the payload rules live: the stored
//! bytes' size and SHA-256, decoding (as is, zstd, or zstd against a delta's
//! base) into at most the signed content size, and the content's SHA-256.
//! `dare verify`, `dare extract` and the updater all stream through it.

use std::io::{self, Write};

#[cfg(feature = "encryption")]
use crate::crypt::Opener;
use crate::crypt::{ContentKey, CryptError, PayloadKey};
use crate::frame::{FrameInfo, ReadAt};
use crate::hashio::{Digest32, Hasher, stream_range, to_hex};
use crate::header::{
    Compression, Delta, Entry, FileRecord, Index, MAX_LISTING, Sha256Hex, parse_plain_listing, parse_sealed_listing,
};
use crate::zstdio::OneFrame;

/// The largest base or result a delta may have (1 GiB): both sides are held
/// in memory to apply it. Readers refuse bigger deltas.
pub const MAX_DELTA_SIZE: u64 = 1 << 30;

/// Why stored content is not what its header says.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContentError {
    /// The payload, decompressed content or listing does not match the header.
    #[error("{0}")]
    Mismatch(String),
    /// A payload broke one of [`PayloadCheck`]'s rules.
    #[error("{what}: {source}")]
    Payload {
        /// Whose payload: `entry <sha256>`, `delta <base> -> <result>`, ...
        what: String,
        /// The rule it broke.
        #[source]
        source: PayloadError,
    },
    /// Reading failed.
    #[error("reading: {0}")]
    Io(#[from] io::Error),
}

fn mismatch(m: impl Into<String>) -> ContentError {
    ContentError::Mismatch(m.into())
}

/// What a payload must be, from its signed header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PayloadSpec {
    /// Length of the stored bytes.
    pub stored_size: u64,
    /// SHA-256 of the stored bytes.
    pub stored_sha256: Sha256Hex,
    /// How the content is stored (a delta is zstd against its base).
    pub compression: Compression,
    /// Length of the content.
    pub size: u64,
    /// SHA-256 of the content.
    pub sha256: Sha256Hex,
    /// The payload is sealed (a private channel's): only its stored bytes
    /// can be checked without its key.
    pub sealed: bool,
    /// The key that opens a sealed payload.
    pub key: Option<PayloadKey>,
    /// With a sealed payload whose plaintext digest is not known: `sha256`
    /// is the content's keyed digest under this content key.
    pub digest_key: Option<ContentKey>,
}

impl PayloadSpec {
    /// An entry's payload.
    pub fn entry(e: &Entry) -> Self {
        PayloadSpec {
            stored_size: e.stored_size,
            stored_sha256: e.stored_sha256,
            compression: e.compression,
            size: e.size,
            sha256: e.sha256,
            sealed: e.sealed.is_some(),
            key: None,
            digest_key: None,
        }
    }

    /// A delta's payload: zstd against the base, giving the result.
    pub fn delta(d: &Delta) -> Self {
        PayloadSpec {
            stored_size: d.stored_size,
            stored_sha256: d.stored_sha256,
            compression: Compression::Zstd,
            size: d.size,
            sha256: d.sha256,
            sealed: d.sealed.is_some(),
            key: None,
            digest_key: None,
        }
    }

    /// A sealed payload, opened with `key` (from a private listing): its
    /// content must hash to `sha256`, the plaintext digest the listing gives.
    pub fn opened(mut self, key: PayloadKey, sha256: Sha256Hex) -> Self {
        self.key = Some(key);
        self.sha256 = sha256;
        self
    }

    /// The stored-bytes rule: `len` bytes hashing to `digest` are the payload.
    pub fn check_stored(&self, digest: &Digest32, len: u64) -> Result<(), PayloadError> {
        if len != self.stored_size {
            return Err(PayloadError::StoredSize { got: len, want: self.stored_size });
        }
        if *digest != self.stored_sha256.0 {
            return Err(PayloadError::StoredDigest { got: to_hex(digest), want: self.stored_sha256 });
        }
        Ok(())
    }

    /// The content rule: `len` bytes hashing to `digest` are the content.
    pub fn check_content(&self, digest: &Digest32, len: u64) -> Result<(), PayloadError> {
        if len != self.size {
            return Err(PayloadError::ContentSize { got: len, want: self.size });
        }
        let digest = match &self.digest_key {
            Some(k) => k.keyed_digest(&Sha256Hex(*digest)).0,
            None => *digest,
        };
        if digest != self.sha256.0 {
            return Err(PayloadError::ContentDigest { got: to_hex(&digest), want: self.sha256 });
        }
        Ok(())
    }
}

/// Which rule of a [`PayloadSpec`] a payload broke, or why it could not be
/// checked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// More stored bytes arrived than the header says.
    #[error("payload is longer than the header's {want} bytes")]
    StoredTooLong {
        /// The signed stored size.
        want: u64,
    },
    /// The stored bytes have another length.
    #[error("payload is {got} bytes, the header says {want}")]
    StoredSize {
        /// Bytes received.
        got: u64,
        /// The signed stored size.
        want: u64,
    },
    /// The stored bytes have another SHA-256.
    #[error("payload SHA-256 is {got}, the header says {want}")]
    StoredDigest {
        /// The digest of the bytes received, in hex.
        got: String,
        /// The signed digest.
        want: Sha256Hex,
    },
    /// The decoded content grew past its signed size.
    #[error("content is longer than its signed size of {want} bytes")]
    ContentTooLong {
        /// The signed content size.
        want: u64,
    },
    /// The content has another length.
    #[error("content is {got} bytes, the header says {want}")]
    ContentSize {
        /// Bytes decoded.
        got: u64,
        /// The signed content size.
        want: u64,
    },
    /// The content has another SHA-256.
    #[error("content SHA-256 is {got}, the header says {want}")]
    ContentDigest {
        /// The digest of the content, in hex.
        got: String,
        /// The signed digest.
        want: Sha256Hex,
    },
    /// The stored bytes are not one complete zstd frame.
    #[error("zstd: {0}")]
    Zstd(#[source] io::Error),
    /// A sealed payload did not open: tampered, cut short or another key.
    #[error("{0}")]
    Open(#[from] CryptError),
    /// A sealed payload was to be decoded without its key (or by a build
    /// without the `encryption` feature, which opens none).
    #[error("a private channel's payload: it cannot be read without its key (--identity)")]
    Sealed,
    /// Writing the content out failed (an I/O error, not a mismatch).
    #[error("writing the content: {0}")]
    Write(#[source] io::Error),
}

impl PayloadError {
    /// Whether the payload is not what its header says (rather than the
    /// content's writer failing).
    pub fn is_mismatch(&self) -> bool {
        !matches!(self, PayloadError::Write(_))
    }
}

impl From<PayloadError> for io::Error {
    /// A writer failure gives back the writer's own error; a mismatch is
    /// `InvalidData` carrying the [`PayloadError`].
    fn from(e: PayloadError) -> io::Error {
        match e {
            PayloadError::Write(e) => e,
            e => io::Error::new(io::ErrorKind::InvalidData, e),
        }
    }
}

/// The content side of a [`PayloadCheck`]: hashes, refuses more than the
/// signed size, and keeps the inner writer's error apart from a decoder's.
struct ContentSink<W> {
    inner: W,
    /// `None` for content stored as is: the stored digest is the content's.
    hasher: Option<Hasher>,
    written: u64,
    limit: u64,
    failed: Option<PayloadError>,
}

impl<W: Write> Write for ContentSink<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.written + buf.len() as u64 > self.limit {
            self.failed = Some(PayloadError::ContentTooLong { want: self.limit });
            return Err(io::Error::new(io::ErrorKind::InvalidData, "content over its signed size"));
        }
        let n = match self.inner.write(buf) {
            Ok(n) => n,
            Err(e) => {
                let kind = e.kind();
                self.failed = Some(PayloadError::Write(e));
                return Err(io::Error::new(kind, "the content's writer failed"));
            }
        };
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush().map_err(|e| {
            let kind = e.kind();
            self.failed = Some(PayloadError::Write(e));
            io::Error::new(kind, "the content's writer failed")
        })
    }
}

fn content_sink<W: Write>(spec: &PayloadSpec, inner: W) -> ContentSink<W> {
    let hasher = (spec.compression == Compression::Zstd || spec.sealed).then(Hasher::new);
    ContentSink { inner, hasher, written: 0, limit: spec.size, failed: None }
}

enum Decode<'b, W: Write> {
    /// Stored as is: the stored bytes are the content.
    Plain(ContentSink<W>),
    /// One zstd frame (against a base for a delta).
    Zstd(Box<OneFrame<'b, ContentSink<W>>>),
    /// The stored bytes pass through undecoded (a delta kept to apply later);
    /// only the stored rule is checked.
    Stored(W),
}

/// Checks a payload as it streams through: feed it the stored bytes, in
/// order, then [`finish`](PayloadCheck::finish). It hashes the stored bytes
/// and refuses more than the signed stored size, decodes them (as is or
/// zstd) into `out`, refusing content past the signed size, and at the end
/// checks the stored size and SHA-256, that the zstd frame ended, and the
/// content's size and SHA-256. Nothing is buffered beyond zstd's window.
pub struct PayloadCheck<'b, W: Write> {
    spec: PayloadSpec,
    stored: Hasher,
    /// Opens a sealed payload before it is decoded.
    #[cfg(feature = "encryption")]
    open: Option<Opener>,
    decode: Decode<'b, W>,
}

/// The opener a spec needs: none for a plain payload, its key's for a
/// sealed one, and an error for a sealed one without a key.
#[cfg(feature = "encryption")]
fn opener(spec: &PayloadSpec) -> Result<Option<Opener>, PayloadError> {
    match (spec.sealed, &spec.key) {
        (false, _) => Ok(None),
        (true, Some(k)) => Ok(Some(Opener::new(k))),
        (true, None) => Err(PayloadError::Sealed),
    }
}

/// Without the `encryption` feature nothing is opened: a sealed payload
/// can only be checked as stored bytes.
#[cfg(not(feature = "encryption"))]
fn opener(spec: &PayloadSpec) -> Result<(), PayloadError> {
    if spec.sealed { Err(PayloadError::Sealed) } else { Ok(()) }
}

impl<W: Write> PayloadCheck<'static, W> {
    /// Checks a payload whose content goes to `out`.
    pub fn new(spec: PayloadSpec, out: W) -> Result<Self, PayloadError> {
        #[cfg(feature = "encryption")]
        let open = opener(&spec)?;
        #[cfg(not(feature = "encryption"))]
        opener(&spec)?;
        let sink = content_sink(&spec, out);
        let decode = match spec.compression {
            Compression::None => Decode::Plain(sink),
            Compression::Zstd => Decode::Zstd(Box::new(OneFrame::new(sink).map_err(PayloadError::Zstd)?)),
        };
        Ok(PayloadCheck {
            spec,
            stored: Hasher::new(),
            #[cfg(feature = "encryption")]
            open,
            decode,
        })
    }

    /// Checks only the stored size and digest, passing the stored bytes to
    /// `out` as they are (a delta to apply once its base is at hand, or a
    /// sealed payload checked without its key).
    pub fn stored_only(spec: PayloadSpec, out: W) -> Self {
        PayloadCheck {
            spec,
            stored: Hasher::new(),
            #[cfg(feature = "encryption")]
            open: None,
            decode: Decode::Stored(out),
        }
    }
}

impl<'b, W: Write> Decode<'b, W> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), PayloadError> {
        match self {
            Decode::Plain(sink) => {
                sink.write_all(bytes).map_err(|e| sink.failed.take().unwrap_or(PayloadError::Write(e)))
            }
            Decode::Zstd(dec) => {
                dec.write_all(bytes).map_err(|e| dec.get_mut().failed.take().unwrap_or(PayloadError::Zstd(e)))
            }
            Decode::Stored(out) => out.write_all(bytes).map_err(PayloadError::Write),
        }
    }
}

impl<'b, W: Write> PayloadCheck<'b, W> {
    /// Checks a delta's payload: zstd against `base` (whose digest the
    /// caller checked), the result going to `out`.
    pub fn with_base(spec: PayloadSpec, base: &'b [u8], out: W) -> Result<Self, PayloadError> {
        #[cfg(feature = "encryption")]
        let open = opener(&spec)?;
        #[cfg(not(feature = "encryption"))]
        opener(&spec)?;
        let sink = content_sink(&spec, out);
        let dec = OneFrame::with_prefix(sink, base).map_err(PayloadError::Zstd)?;
        Ok(PayloadCheck {
            spec,
            stored: Hasher::new(),
            #[cfg(feature = "encryption")]
            open,
            decode: Decode::Zstd(Box::new(dec)),
        })
    }

    /// Feeds the next stored bytes.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), PayloadError> {
        if self.stored.count() + bytes.len() as u64 > self.spec.stored_size {
            return Err(PayloadError::StoredTooLong { want: self.spec.stored_size });
        }
        self.stored.update(bytes);
        let decode = &mut self.decode;
        #[cfg(feature = "encryption")]
        if let Some(open) = &mut self.open {
            return open.push(bytes, &mut |plain| decode.write(plain));
        }
        decode.write(bytes)
    }

    /// Checks what was fed and returns the content's writer, flushed.
    #[cfg_attr(not(feature = "encryption"), allow(unused_mut))]
    pub fn finish(mut self) -> Result<W, PayloadError> {
        let (stored, stored_len) = self.stored.finish();
        self.spec.check_stored(&stored, stored_len)?;
        #[cfg(feature = "encryption")]
        if let Some(open) = self.open.take() {
            let decode = &mut self.decode;
            open.finish(&mut |plain| decode.write(plain))?;
        }
        let mut sink = match self.decode {
            Decode::Stored(mut out) => {
                out.flush().map_err(PayloadError::Write)?;
                return Ok(out);
            }
            Decode::Plain(sink) => sink,
            Decode::Zstd(dec) => dec.finish().map_err(PayloadError::Zstd)?,
        };
        sink.flush().map_err(|e| sink.failed.take().unwrap_or(PayloadError::Write(e)))?;
        let digest = match sink.hasher {
            Some(h) => h.finish().0,
            None => stored,
        };
        self.spec.check_content(&digest, sink.written)?;
        Ok(sink.inner)
    }
}

impl<W: Write> Write for PayloadCheck<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.feed(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Streams `len` payload bytes at `at` in `src` through `check`.
fn run_check<R: ReadAt + Sync + ?Sized, W: Write>(
    src: &R,
    (at, len): (u64, u64),
    what: &str,
    check: Result<PayloadCheck<'_, W>, PayloadError>,
) -> Result<W, ContentError> {
    let payload = |source| ContentError::Payload { what: what.to_owned(), source };
    let mut check = check.map_err(payload)?;
    stream_range(src, at, len, |c| check.feed(c).map_err(payload))?;
    check.finish().map_err(payload)
}

/// Streams an entry's content into `out`, checking both digests.
pub fn entry_content<R: ReadAt + Sync + ?Sized, W: Write>(
    src: &R,
    frame: &FrameInfo,
    e: &Entry,
    out: W,
) -> Result<W, ContentError> {
    let what = format!("entry {}", e.sha256);
    let payload = (frame.payload_offset, frame.payload_len);
    run_check(src, payload, &what, PayloadCheck::new(PayloadSpec::entry(e), out))
}

/// Streams a payload checked against `spec` (a sealed one opened with the
/// key `spec` holds) into `out`.
pub fn payload_content<R: ReadAt + Sync + ?Sized, W: Write>(
    src: &R,
    frame: &FrameInfo,
    spec: PayloadSpec,
    what: &str,
    out: W,
) -> Result<W, ContentError> {
    run_check(src, (frame.payload_offset, frame.payload_len), what, PayloadCheck::new(spec, out))
}

/// Checks an entry's payload: its stored and content digests and sizes.
pub fn check_entry<R: ReadAt + Sync + ?Sized>(src: &R, frame: &FrameInfo, e: &Entry) -> Result<(), ContentError> {
    if e.sealed.is_some() {
        return check_sealed_stored(src, frame, PayloadSpec::entry(e), &format!("entry {}", e.sha256));
    }
    entry_content(src, frame, e, io::sink()).map(drop)
}

/// An entry's content in memory, for use as a delta base; at most `limit` bytes.
pub fn entry_bytes<R: ReadAt + Sync + ?Sized>(
    src: &R,
    frame: &FrameInfo,
    e: &Entry,
    limit: u64,
) -> Result<Vec<u8>, ContentError> {
    if e.size > limit {
        return Err(mismatch(format!("entry {} is {} bytes, over the {limit} bytes allowed here", e.sha256, e.size)));
    }
    entry_content(src, frame, e, Vec::with_capacity(e.size as usize))
}

/// Applies a delta payload to `base` (whose digest the caller checked), streaming
/// the result into `out` and checking both digests.
pub fn delta_content<R: ReadAt + Sync + ?Sized, W: Write>(
    src: &R,
    frame: &FrameInfo,
    d: &Delta,
    base: &[u8],
    out: W,
) -> Result<W, ContentError> {
    if base.len() as u64 != d.base_size {
        return Err(mismatch(format!("delta to {}: the base is {} bytes, not {}", d.sha256, base.len(), d.base_size)));
    }
    let what = format!("delta {} -> {}", d.base, d.sha256);
    let payload = (frame.payload_offset, frame.payload_len);
    run_check(src, payload, &what, PayloadCheck::with_base(PayloadSpec::delta(d), base, out))
}

/// Checks a delta's stored bytes only (when its base is not at hand).
pub fn check_delta_stored<R: ReadAt + Sync + ?Sized>(
    src: &R,
    frame: &FrameInfo,
    d: &Delta,
) -> Result<(), ContentError> {
    let what = format!("delta {} -> {}", d.base, d.sha256);
    let payload = (frame.payload_offset, frame.payload_len);
    run_check(src, payload, &what, Ok(PayloadCheck::stored_only(PayloadSpec::delta(d), io::sink()))).map(drop)
}

/// Reads and checks an index's listing as stored (after its patch, if any):
/// the listing's bytes, not yet parsed.
pub fn listing_bytes<R: ReadAt + Sync + ?Sized>(
    src: &R,
    frame: &FrameInfo,
    ix: &Index,
) -> Result<Vec<u8>, ContentError> {
    check_listing_sizes(frame, ix)?;
    let what = format!("index of {} {} {}", ix.channel, ix.target, ix.version);
    let patch = ix.patch.map_or(0, |p| p.stored_size);
    if ix.sealed.is_some() {
        return Err(ContentError::Payload { what, source: PayloadError::Sealed });
    }
    let spec = PayloadSpec {
        stored_size: ix.stored_size,
        stored_sha256: ix.stored_sha256,
        compression: ix.compression,
        size: ix.size,
        sha256: ix.sha256,
        sealed: false,
        key: None,
        digest_key: None,
    };
    let out = Vec::with_capacity(ix.size as usize);
    run_check(src, (frame.payload_offset + patch, ix.stored_size), &what, PayloadCheck::new(spec, out))
}

/// Reads, opens and checks the listing of a sealed index (leaf `leaf`)
/// with its release's content key: the listing's bytes, not yet parsed.
pub fn sealed_listing_bytes<R: ReadAt + Sync + ?Sized>(
    src: &R,
    frame: &FrameInfo,
    ix: &Index,
    leaf: u64,
    key: &ContentKey,
) -> Result<Vec<u8>, ContentError> {
    check_listing_sizes(frame, ix)?;
    let what = format!("index of {} {} {}", ix.channel, ix.target, ix.version);
    let spec = PayloadSpec {
        stored_size: ix.stored_size,
        stored_sha256: ix.stored_sha256,
        compression: ix.compression,
        size: ix.size,
        sha256: ix.sha256,
        sealed: true,
        key: Some(key.payload_key(leaf)),
        digest_key: Some(*key),
    };
    let out = Vec::with_capacity(ix.size as usize);
    run_check(src, (frame.payload_offset, ix.stored_size), &what, PayloadCheck::new(spec, out))
}

/// Checks a sealed payload's stored bytes only: all that can be checked
/// without its key.
pub fn check_sealed_stored<R: ReadAt + Sync + ?Sized>(
    src: &R,
    frame: &FrameInfo,
    spec: PayloadSpec,
    what: &str,
) -> Result<(), ContentError> {
    let payload = (frame.payload_offset, frame.payload_len);
    run_check(src, payload, what, Ok(PayloadCheck::stored_only(spec, io::sink()))).map(drop)
}

fn check_listing_sizes(frame: &FrameInfo, ix: &Index) -> Result<(), ContentError> {
    if ix.stored_size > MAX_LISTING || ix.size > MAX_LISTING {
        return Err(mismatch(format!("the listing is over {MAX_LISTING} bytes")));
    }
    if frame.payload_len != ix.payload_len() {
        return Err(mismatch(format!(
            "the index's payload is {} bytes, its header says {}",
            frame.payload_len,
            ix.payload_len()
        )));
    }
    Ok(())
}

/// Reads an index's listing from its patch (the first `patch.stored_size`
/// payload bytes, at `patch_at` in `src`) and the base listing, checking the
/// patch's and the listing's digests. Returns the listing's bytes.
pub fn listing_from_patch<R: ReadAt + Sync + ?Sized>(
    src: &R,
    patch_at: u64,
    ix: &Index,
    base: &[u8],
) -> Result<Vec<u8>, ContentError> {
    let p = ix.patch.ok_or_else(|| mismatch("the index has no patch"))?;
    if crate::hashio::sha256(base) != p.base.0 {
        return Err(mismatch("the base listing is not the one the patch is against"));
    }
    let what = format!("the patch of the index of {} {} {}", ix.channel, ix.target, ix.version);
    let spec = PayloadSpec {
        stored_size: p.stored_size,
        stored_sha256: p.stored_sha256,
        compression: Compression::Zstd,
        size: ix.size,
        sha256: ix.sha256,
        sealed: false,
        key: None,
        digest_key: None,
    };
    let out = Vec::with_capacity(ix.size as usize);
    run_check(src, (patch_at, p.stored_size), &what, PayloadCheck::with_base(spec, base, out))
}

/// Reads, checks and parses an index's listing.
pub fn listing<R: ReadAt + Sync + ?Sized>(
    src: &R,
    frame: &FrameInfo,
    ix: &Index,
) -> Result<Vec<FileRecord>, ContentError> {
    let bytes = listing_bytes(src, frame, ix)?;
    parse(&bytes, ix)
}

/// Parses listing bytes already checked against `ix`.
pub fn parse<R: AsRef<[u8]>>(bytes: R, ix: &Index) -> Result<Vec<FileRecord>, ContentError> {
    let what = format!("index of {} {} {}", ix.channel, ix.target, ix.version);
    let parsed = if ix.sealed.is_some() {
        parse_sealed_listing(bytes.as_ref(), ix.files)
    } else {
        parse_plain_listing(bytes.as_ref(), ix.files)
    };
    parsed.map_err(|e| mismatch(format!("{what}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{encode_frame, read_frame_at};
    use crate::hashio::sha256;

    fn framed(payload: &[u8]) -> (Vec<u8>, FrameInfo) {
        let bytes = encode_frame(b"{}", payload).unwrap();
        let f = read_frame_at(bytes.as_slice(), 0, bytes.len() as u64).unwrap();
        (bytes, f)
    }

    #[test]
    fn deltas_apply_to_their_base_and_nothing_else() {
        let base: Vec<u8> = (0..200_000u32).flat_map(|i| (i / 7).to_le_bytes()).collect();
        let mut new = base.clone();
        new[1000..1010].copy_from_slice(b"0123456789");
        new.extend_from_slice(b"tail");
        let mut enc = zstd::stream::write::Encoder::with_ref_prefix(Vec::new(), 19, &base).unwrap();
        enc.write_all(&new).unwrap();
        let payload = enc.finish().unwrap();
        assert!(payload.len() < 200, "{}", payload.len());
        let d = Delta {
            sealed: None,
            base: Sha256Hex(sha256(&base)),
            base_size: base.len() as u64,
            size: new.len() as u64,
            sha256: Sha256Hex(sha256(&new)),
            stored_size: payload.len() as u64,
            stored_sha256: Sha256Hex(sha256(&payload)),
        };
        let (bytes, f) = framed(&payload);
        assert_eq!(delta_content(bytes.as_slice(), &f, &d, &base, Vec::new()).unwrap(), new);
        check_delta_stored(bytes.as_slice(), &f, &d).unwrap();
        let mut other = base.clone();
        other[5] ^= 1;
        assert!(delta_content(bytes.as_slice(), &f, &d, &other, Vec::new()).is_err());
        assert!(delta_content(bytes.as_slice(), &f, &d, &base[1..], Vec::new()).is_err());
        let mut flipped = bytes.clone();
        flipped[f.payload_offset as usize + 3] ^= 1;
        assert!(delta_content(flipped.as_slice(), &f, &d, &base, Vec::new()).is_err());
    }

    #[test]
    fn entries_stop_at_their_signed_size() {
        let content = vec![b'a'; 100_000];
        let payload = zstd::encode_all(content.as_slice(), 3).unwrap();
        let mut e = Entry {
            sealed: None,
            size: content.len() as u64,
            sha256: Sha256Hex(sha256(&content)),
            stored_size: payload.len() as u64,
            stored_sha256: Sha256Hex(sha256(&payload)),
            compression: Compression::Zstd,
        };
        let (bytes, f) = framed(&payload);
        assert_eq!(entry_bytes(bytes.as_slice(), &f, &e, 1 << 20).unwrap(), content);
        assert!(entry_bytes(bytes.as_slice(), &f, &e, 10).is_err());
        e.size -= 1;
        assert!(check_entry(bytes.as_slice(), &f, &e).is_err());
    }

    /// A writer that fails as a full disk does.
    struct FullDisk;
    impl Write for FullDisk {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from_raw_os_error(28))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn spec_of(content: &[u8], stored: &[u8], compression: Compression) -> PayloadSpec {
        PayloadSpec {
            sealed: false,
            key: None,
            digest_key: None,
            stored_size: stored.len() as u64,
            stored_sha256: Sha256Hex(sha256(stored)),
            compression,
            size: content.len() as u64,
            sha256: Sha256Hex(sha256(content)),
        }
    }

    fn run(spec: PayloadSpec, stored: &[u8], chunk: usize) -> Result<Vec<u8>, PayloadError> {
        let mut check = PayloadCheck::new(spec, Vec::new())?;
        for c in stored.chunks(chunk.max(1)) {
            check.feed(c)?;
        }
        check.finish()
    }

    #[test]
    fn payload_check_names_the_rule_a_payload_breaks() {
        let content: Vec<u8> = (0..100_000u32).flat_map(|i| (i % 97).to_le_bytes()).collect();
        let z = zstd::encode_all(content.as_slice(), 3).unwrap();
        for (stored, compression) in [(&z, Compression::Zstd), (&content, Compression::None)] {
            let spec = spec_of(&content, stored, compression);
            for chunk in [1, 4096, stored.len()] {
                assert_eq!(run(spec, stored, chunk).unwrap(), content, "{compression:?} {chunk}");
            }
            let mut longer = stored.clone();
            longer.push(0);
            assert!(matches!(run(spec, &longer, 4096), Err(PayloadError::StoredTooLong { .. })));
            let mut s = spec;
            s.stored_size += 1;
            s.size += u64::from(compression == Compression::None);
            assert!(matches!(run(s, stored, 4096), Err(PayloadError::StoredSize { .. })), "{compression:?}");
            let mut s = spec;
            s.stored_sha256.0[0] ^= 1;
            assert!(matches!(run(s, stored, 4096), Err(PayloadError::StoredDigest { .. })));
            let mut s = spec;
            s.size -= 1;
            assert!(matches!(run(s, stored, 4096), Err(PayloadError::ContentTooLong { .. })));
            let mut s = spec;
            s.sha256.0[0] ^= 1;
            assert!(matches!(run(s, stored, 4096), Err(PayloadError::ContentDigest { .. })));
        }
        // zstd that decodes to less than the signed size.
        let mut s = spec_of(&content, &z, Compression::Zstd);
        s.size += 1;
        assert!(matches!(run(s, &z, 4096), Err(PayloadError::ContentSize { .. })));
        // Not zstd, a cut frame.
        let plain = spec_of(&content, &content, Compression::Zstd);
        assert!(matches!(run(plain, &content, 4096), Err(PayloadError::Zstd(_))));
        let cut = &z[..z.len() - 1];
        assert!(matches!(run(spec_of(&content, cut, Compression::Zstd), cut, 4096), Err(PayloadError::Zstd(_))));
        // A failing writer is an I/O error, not a mismatch, and keeps its OS error.
        for (stored, compression) in [(&z, Compression::Zstd), (&content, Compression::None)] {
            let mut check = PayloadCheck::new(spec_of(&content, stored, compression), FullDisk).unwrap();
            let err = check.feed(stored).unwrap_err();
            assert!(!err.is_mismatch(), "{err}");
            assert!(matches!(&err, PayloadError::Write(e) if e.raw_os_error() == Some(28)), "{err}");
            // Through io::Write, the same.
            let mut check = PayloadCheck::new(spec_of(&content, stored, compression), FullDisk).unwrap();
            assert_eq!(io::copy(&mut stored.as_slice(), &mut check).unwrap_err().raw_os_error(), Some(28));
        }
        // Through io::Write a mismatch is InvalidData carrying the rule.
        let mut check = PayloadCheck::new(plain, Vec::new()).unwrap();
        let err = io::copy(&mut content.as_slice(), &mut check).unwrap_err();
        assert!(err.get_ref().and_then(|e| e.downcast_ref::<PayloadError>()).is_some_and(PayloadError::is_mismatch));
    }

    #[test]
    fn stored_only_checks_the_stored_bytes_and_passes_them_on() {
        let stored = b"not decoded here".to_vec();
        let spec = spec_of(b"whatever", &stored, Compression::Zstd);
        let mut check = PayloadCheck::stored_only(spec, Vec::new());
        check.feed(&stored).unwrap();
        assert_eq!(check.finish().unwrap(), stored);
        let mut check = PayloadCheck::stored_only(spec, Vec::new());
        check.feed(&stored[1..]).unwrap();
        assert!(matches!(check.finish(), Err(PayloadError::StoredSize { .. })));
    }
}
