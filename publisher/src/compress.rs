//! Streaming zstd into a staging file while hashing both sides.
//!
//! The content is read once: SHA-256 of the content on the way in, zstd
//! (multi-threaded), SHA-256 of the stored bytes on the way out to an
//! anonymous temporary file. Nothing is held whole in memory. When zstd does
//! not shrink a file it is stored as-is (`compression: none`).
//!
//! zstd's multi-threaded output is the same for any worker count of one or
//! more, so the container's bytes do not depend on the machine's core count.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use dare_container::crypt::{PayloadKey, SealWriter, sealed_len};
use dare_container::hashio::{HashingReader, HashingWriter};
use dare_container::header::{Compression, Sha256Hex};

use crate::error::PublishError;
use crate::release::SourceFile;

/// The zstd level `dare publish` uses by default.
pub const DEFAULT_LEVEL: i32 = 3;

/// A file ready to append: its digests and where its payload bytes are.
#[derive(Debug)]
pub struct Staged {
    /// Content length.
    pub size: u64,
    /// Content SHA-256.
    pub sha256: Sha256Hex,
    /// Payload length.
    pub stored_size: u64,
    /// Payload SHA-256.
    pub stored_sha256: Sha256Hex,
    /// How the payload is stored.
    pub compression: Compression,
    payload: Option<File>,
}

impl Staged {
    /// The payload bytes: the compressed staging file, or the source again.
    pub fn payload(&mut self, source: &Path) -> Result<Box<dyn Read + '_>, PublishError> {
        match &mut self.payload {
            Some(f) => {
                f.seek(SeekFrom::Start(0)).map_err(|e| PublishError::io("reading staged", source, e))?;
                Ok(Box::new(BufReader::with_capacity(1 << 20, f)))
            }
            None => {
                let f = File::open(source).map_err(|e| PublishError::io("reading", source, e))?;
                Ok(Box::new(BufReader::with_capacity(1 << 20, f)))
            }
        }
    }
}

/// The hashing staging file an encoder writes into, through a private
/// channel's sealing when there is one.
enum StagingSink {
    Plain(HashingWriter<BufWriter<File>>),
    Sealed(SealWriter<HashingWriter<BufWriter<File>>>),
}

impl StagingSink {
    fn new(tmp: File, key: Option<&PayloadKey>) -> Self {
        let out = HashingWriter::new(BufWriter::with_capacity(1 << 20, tmp));
        match key {
            Some(k) => StagingSink::Sealed(SealWriter::new(k, out)),
            None => StagingSink::Plain(out),
        }
    }

    fn finish(self) -> io::Result<HashingWriter<BufWriter<File>>> {
        match self {
            StagingSink::Plain(w) => Ok(w),
            StagingSink::Sealed(w) => w.finish(),
        }
    }
}

impl Write for StagingSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            StagingSink::Plain(w) => w.write(buf),
            StagingSink::Sealed(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            StagingSink::Plain(w) => w.flush(),
            StagingSink::Sealed(w) => w.flush(),
        }
    }
}

/// Streams `file` through the zstd encoder `make` builds (then, with `key`,
/// seals it), into an anonymous temporary file in `dir`, hashing the content
/// on the way in and the stored bytes on the way out. Returns the staged
/// payload, zstd-compressed.
fn encode<'p>(
    file: &SourceFile,
    dir: &Path,
    what: &'static str,
    key: Option<&PayloadKey>,
    make: impl FnOnce(StagingSink) -> io::Result<zstd::stream::write::Encoder<'p, StagingSink>>,
) -> Result<Staged, PublishError> {
    let src = File::open(&file.source).map_err(|e| PublishError::io("reading", &file.source, e))?;
    let tmp = tempfile::tempfile_in(dir).map_err(|e| PublishError::io("creating a staging file in", dir, e))?;
    let mut reader = HashingReader::new(BufReader::with_capacity(1 << 20, src));
    let zstd_err = |e: io::Error| PublishError::io(what, &file.source, e);
    let mut enc = make(StagingSink::new(tmp, key)).map_err(zstd_err)?;
    enc.include_checksum(false).map_err(zstd_err)?;
    enc.set_pledged_src_size(Some(file.size)).map_err(zstd_err)?;
    io::copy(&mut reader, &mut enc).map_err(|e| PublishError::io(what, &file.source, e))?;
    let writer = enc.finish().and_then(StagingSink::finish).map_err(zstd_err)?;
    finish_staged(file, reader, writer, Compression::Zstd)
}

/// The staged payload of `file` once read through `reader` and written
/// through `writer`: the staging file flushed, both digests taken, and the
/// file refused if its length changed between listing and reading it.
fn finish_staged(
    file: &SourceFile,
    reader: HashingReader<BufReader<File>>,
    writer: HashingWriter<BufWriter<File>>,
    compression: Compression,
) -> Result<Staged, PublishError> {
    let io_err = |e: io::Error| PublishError::io("writing staged", &file.source, e);
    let (sha256, size, _) = reader.finish();
    let (stored_sha256, stored_size, buf) = writer.finish();
    let mut tmp = buf.into_inner().map_err(|e| io_err(e.into_error()))?;
    tmp.flush().map_err(io_err)?;
    if size != file.size {
        return Err(PublishError::Invalid(format!(
            "{}: the file changed while being read ({} bytes, then {size})",
            file.source.display(),
            file.size
        )));
    }
    Ok(Staged {
        size,
        sha256: Sha256Hex(sha256),
        stored_size,
        stored_sha256: Sha256Hex(stored_sha256),
        compression,
        payload: Some(tmp),
    })
}

/// Compresses `file` into an anonymous temporary file in `dir`; stored
/// as-is when zstd does not shrink it. With `key` (a private channel's
/// payload key for the entry's leaf), the payload is sealed.
pub fn stage(
    file: &SourceFile,
    dir: &Path,
    level: i32,
    workers: u32,
    key: Option<&PayloadKey>,
) -> Result<Staged, PublishError> {
    let staged = encode(file, dir, "compressing", key, |w| {
        let mut enc = zstd::stream::write::Encoder::new(w, level)?;
        enc.multithread(workers.max(1))?;
        Ok(enc)
    })?;
    if let Some(key) = key {
        if staged.stored_size >= sealed_len(staged.size).unwrap_or(u64::MAX) {
            return seal_source(file, dir, key);
        }
        return Ok(staged);
    }
    if staged.stored_size >= staged.size {
        return Ok(Staged {
            stored_size: staged.size,
            stored_sha256: staged.sha256,
            compression: Compression::None,
            payload: None,
            ..staged
        });
    }
    Ok(staged)
}

/// Seals `file` as it is (zstd did not shrink it) into a staging file.
fn seal_source(file: &SourceFile, dir: &Path, key: &PayloadKey) -> Result<Staged, PublishError> {
    let src = File::open(&file.source).map_err(|e| PublishError::io("reading", &file.source, e))?;
    let tmp = tempfile::tempfile_in(dir).map_err(|e| PublishError::io("creating a staging file in", dir, e))?;
    let mut reader = HashingReader::new(BufReader::with_capacity(1 << 20, src));
    let mut out = StagingSink::new(tmp, Some(key));
    let io_err = |e: io::Error| PublishError::io("sealing", &file.source, e);
    io::copy(&mut reader, &mut out).map_err(io_err)?;
    finish_staged(file, reader, out.finish().map_err(io_err)?, Compression::None)
}

/// Seals an already staged payload (a delta, once it is known to be
/// appended) with `key`, into a new staging file in `dir`.
pub fn seal_staged(mut staged: Staged, source: &Path, dir: &Path, key: &PayloadKey) -> Result<Staged, PublishError> {
    let tmp = tempfile::tempfile_in(dir).map_err(|e| PublishError::io("creating a staging file in", dir, e))?;
    let mut out = StagingSink::new(tmp, Some(key));
    let io_err = |e: io::Error| PublishError::io("sealing", source, e);
    io::copy(&mut staged.payload(source)?, &mut out).map_err(io_err)?;
    let (stored_sha256, stored_size, buf) = out.finish().map_err(io_err)?.finish();
    let mut tmp = buf.into_inner().map_err(|e| io_err(e.into_error()))?;
    tmp.flush().map_err(io_err)?;
    Ok(Staged { stored_size, stored_sha256: Sha256Hex(stored_sha256), payload: Some(tmp), ..staged })
}

/// The SHA-256 and length of a file, read once.
pub fn hash_file(path: &Path) -> Result<(Sha256Hex, u64), PublishError> {
    let f = File::open(path).map_err(|e| PublishError::io("reading", path, e))?;
    let mut reader = HashingReader::new(BufReader::with_capacity(1 << 20, f));
    io::copy(&mut reader, &mut io::sink()).map_err(|e| PublishError::io("reading", path, e))?;
    let (sha, n, _) = reader.finish();
    Ok((Sha256Hex(sha), n))
}

/// The zstd level of deltas by default: deltas are made once and fetched by
/// every client of the previous release, so they are worth the time.
pub const DEFAULT_DELTA_LEVEL: i32 = 19;

/// The largest base or new file a delta is made for (256 MiB): the publisher
/// and every client that applies it hold the base in memory.
pub const DELTA_MAX: u64 = 256 << 20;

/// A zstd patch of `file` against `base` (`zstd --patch-from`: the base is a
/// raw prefix, the window covers both, long-distance matching on) into an
/// anonymous temporary file in `dir`: its stored size and digest. One thread,
/// so the bytes do not depend on the machine.
pub fn stage_delta(base: &[u8], file: &SourceFile, dir: &Path, level: i32) -> Result<Staged, PublishError> {
    let span = (base.len() as u64).max(file.size).max(1);
    let window_log = (64 - span.leading_zeros() + 1).clamp(10, 31);
    encode(file, dir, "making a delta of", None, |w| {
        let mut enc = zstd::stream::write::Encoder::with_ref_prefix(w, level, base)?;
        enc.window_log(window_log)?;
        enc.long_distance_matching(true)?;
        Ok(enc)
    })
}
