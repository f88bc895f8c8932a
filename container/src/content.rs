//! Reading stored content: an entry's payload decompressed and checked, a
//! delta applied to its base, an index's listing. Every read is bounded by
//! the signed sizes in the header, and every digest is checked.

use std::io::{self, Write};

use crate::frame::{FrameInfo, ReadAt};
use crate::hashio::{BoundedHashWriter, Hasher, stream_range, to_hex};
use crate::header::{Compression, Delta, Entry, FileRecord, Index, MAX_LISTING, Sha256Hex, parse_listing};
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
    /// Reading failed.
    #[error("reading: {0}")]
    Io(#[from] io::Error),
}

fn mismatch(m: impl Into<String>) -> ContentError {
    ContentError::Mismatch(m.into())
}

/// Checks what came out of a payload against the signed sizes and digests.
fn check_digests(
    what: &str,
    stored: (Sha256Hex, u64, [u8; 32], u64),
    content: (Sha256Hex, u64, [u8; 32], u64),
) -> Result<(), ContentError> {
    let (want_sha, want_len, got_sha, got_len) = stored;
    if got_len != want_len {
        return Err(mismatch(format!("{what}: payload is {got_len} bytes, the header says {want_len}")));
    }
    if got_sha != want_sha.0 {
        return Err(mismatch(format!("{what}: payload SHA-256 is {}, the header says {want_sha}", to_hex(&got_sha))));
    }
    let (want_sha, want_len, got_sha, got_len) = content;
    if got_len != want_len {
        return Err(mismatch(format!("{what}: content is {got_len} bytes, the header says {want_len}")));
    }
    if got_sha != want_sha.0 {
        return Err(mismatch(format!("{what}: content SHA-256 is {}, the header says {want_sha}", to_hex(&got_sha))));
    }
    Ok(())
}

/// Streams a stored payload (`compression`, `size` bytes of content) into
/// `out`, checking the stored and content digests.
#[allow(clippy::too_many_arguments)]
fn decode_into<R: ReadAt + Sync + ?Sized, W: Write>(
    src: &R,
    (at, len): (u64, u64),
    what: &str,
    compression: Compression,
    stored: (Sha256Hex, u64),
    content: (Sha256Hex, u64),
    prefix: Option<&[u8]>,
    out: W,
) -> Result<W, ContentError> {
    let mut stored_hash = Hasher::new();
    let sink = BoundedHashWriter::new(out, content.1);
    let bad = |e: io::Error| mismatch(format!("{what}: {e}"));
    let (digest, len, out) = match (compression, prefix) {
        (Compression::None, None) => {
            let mut sink = sink;
            stream_range(src, at, len, |c| {
                stored_hash.update(c);
                sink.write_all(c).map_err(bad)
            })?;
            sink.finish()
        }
        (_, prefix) => {
            let mut dec = match prefix {
                Some(p) => OneFrame::with_prefix(sink, p),
                None => OneFrame::new(sink),
            }
            .map_err(bad)?;
            stream_range(src, at, len, |c| {
                stored_hash.update(c);
                dec.write_all(c).map_err(|e| mismatch(format!("{what}: zstd: {e}")))
            })?;
            dec.finish().map_err(|e| mismatch(format!("{what}: zstd: {e}")))?.finish()
        }
    };
    let (sd, sl) = stored_hash.finish();
    check_digests(what, (stored.0, stored.1, sd, sl), (content.0, content.1, digest, len))?;
    Ok(out)
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
    decode_into(src, payload, &what, e.compression, (e.stored_sha256, e.stored_size), (e.sha256, e.size), None, out)
}

/// Checks an entry's payload: its stored and content digests and sizes.
/// Decompresses on a second thread so hashing the stored bytes and decoding overlap.
pub fn check_entry<R: ReadAt + Sync + ?Sized>(src: &R, frame: &FrameInfo, e: &Entry) -> Result<(), ContentError> {
    if e.compression == Compression::None {
        // The content is the payload: one digest checks both.
        let mut h = Hasher::new();
        stream_range(src, frame.payload_offset, frame.payload_len, |c| {
            h.update(c);
            Ok::<_, ContentError>(())
        })?;
        let (d, n) = h.finish();
        let what = format!("entry {}", e.sha256);
        return check_digests(&what, (e.stored_sha256, e.stored_size, d, n), (e.sha256, e.size, d, n));
    }
    let what = format!("entry {}", e.sha256);
    let mut stored = Hasher::new();
    let size = e.size;
    let content = std::thread::scope(|scope| -> Result<([u8; 32], u64), ContentError> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
        let decoder = scope.spawn(move || -> Result<([u8; 32], u64), String> {
            let mut dec = OneFrame::new(BoundedHashWriter::new(io::sink(), size)).map_err(|e| e.to_string())?;
            for chunk in rx {
                dec.write_all(&chunk).map_err(|e| e.to_string())?;
            }
            let (digest, n, _) = dec.finish().map_err(|e| e.to_string())?.finish();
            Ok((digest, n))
        });
        let sent = stream_range(src, frame.payload_offset, frame.payload_len, |c| {
            stored.update(c);
            // A closed channel means the decoder failed; its error is reported below.
            let _ = tx.send(c.to_vec());
            Ok::<_, ContentError>(())
        });
        drop(tx);
        let decoded = decoder.join().map_err(|_| mismatch("zstd decoder panicked"))?;
        sent?;
        decoded.map_err(|m| mismatch(format!("{what}: zstd: {m}")))
    })?;
    let (sd, sl) = stored.finish();
    check_digests(&what, (e.stored_sha256, e.stored_size, sd, sl), (e.sha256, e.size, content.0, content.1))
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
    decode_into(
        src,
        (frame.payload_offset, frame.payload_len),
        &what,
        Compression::Zstd,
        (d.stored_sha256, d.stored_size),
        (d.sha256, d.size),
        Some(base),
        out,
    )
}

/// Checks a delta's stored bytes only (when its base is not at hand).
pub fn check_delta_stored<R: ReadAt + Sync + ?Sized>(
    src: &R,
    frame: &FrameInfo,
    d: &Delta,
) -> Result<(), ContentError> {
    let mut h = Hasher::new();
    stream_range(src, frame.payload_offset, frame.payload_len, |c| {
        h.update(c);
        Ok::<_, ContentError>(())
    })?;
    let (sd, sl) = h.finish();
    if sl != d.stored_size || sd != d.stored_sha256.0 {
        return Err(mismatch(format!(
            "delta {} -> {}: payload is {sl} bytes hashing to {}, the header says {} bytes, {}",
            d.base,
            d.sha256,
            to_hex(&sd),
            d.stored_size,
            d.stored_sha256
        )));
    }
    Ok(())
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
    decode_into(
        src,
        (frame.payload_offset + patch, ix.stored_size),
        &what,
        ix.compression,
        (ix.stored_sha256, ix.stored_size),
        (ix.sha256, ix.size),
        None,
        Vec::with_capacity(ix.size as usize),
    )
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
    decode_into(
        src,
        (patch_at, p.stored_size),
        &what,
        Compression::Zstd,
        (p.stored_sha256, p.stored_size),
        (ix.sha256, ix.size),
        Some(base),
        Vec::with_capacity(ix.size as usize),
    )
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
    parse_listing(bytes.as_ref(), ix.files).map_err(|e| mismatch(format!("{what}: {e}")))
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
}
