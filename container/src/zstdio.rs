//! Decoding exactly one zstd frame, streamed.
//!
//! An entry's payload is one zstd stream (DESIGN.md 3.2). The plain
//! streaming decoder accepts concatenated or skippable frames and does not
//! say whether the last frame ended; this one refuses anything after the
//! first frame and, at [`OneFrame::finish`], a frame that did not end.

use std::io::{self, Write};

use zstd::stream::raw::{DParameter, Decoder, InBuffer, Operation, OutBuffer};

/// The largest zstd window a delta may use: 2^31 bytes, zstd's maximum.
/// (A plain entry keeps zstd's default limit of 2^27.)
pub const DELTA_WINDOW_LOG_MAX: u32 = 31;

/// A writer that decodes one zstd frame into `inner`.
pub struct OneFrame<'p, W: Write> {
    decoder: Decoder<'p>,
    inner: W,
    out: Vec<u8>,
    done: bool,
}

impl<W: Write> OneFrame<'static, W> {
    /// Decodes into `inner`.
    pub fn new(inner: W) -> io::Result<Self> {
        Ok(OneFrame { decoder: Decoder::new()?, inner, out: vec![0u8; 128 * 1024], done: false })
    }
}

impl<'p, W: Write> OneFrame<'p, W> {
    /// Decodes a delta (a frame compressed with `base` as its raw prefix, as
    /// `zstd --patch-from` does) into `inner`. zstd keeps a window of at most
    /// the content's size besides `base`.
    pub fn with_prefix(inner: W, base: &'p [u8]) -> io::Result<Self> {
        let mut decoder = Decoder::with_ref_prefix(base)?;
        decoder.set_parameter(DParameter::WindowLogMax(DELTA_WINDOW_LOG_MAX))?;
        Ok(OneFrame { decoder, inner, out: vec![0u8; 128 * 1024], done: false })
    }

    /// The inner writer.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// Checks the frame ended and returns the inner writer.
    pub fn finish(self) -> io::Result<W> {
        if !self.done {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "the zstd frame is incomplete"));
        }
        Ok(self.inner)
    }
}

impl<W: Write> Write for OneFrame<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.done {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "bytes after the zstd frame"));
        }
        let mut input = InBuffer::around(buf);
        loop {
            let mut output = OutBuffer::around(&mut self.out[..]);
            let hint = self.decoder.run(&mut input, &mut output)?;
            let produced = output.pos();
            let full = produced == self.out.len();
            self.inner.write_all(&self.out[..produced])?;
            if hint == 0 {
                // The frame ended (and is flushed: zstd only says 0 then).
                self.done = true;
                if input.pos() != buf.len() {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "bytes after the zstd frame"));
                }
                return Ok(buf.len());
            }
            if input.pos() == buf.len() && !full {
                return Ok(buf.len());
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(stream: &[u8], chunk: usize) -> io::Result<Vec<u8>> {
        let mut d = OneFrame::new(Vec::new())?;
        for c in stream.chunks(chunk) {
            d.write_all(c)?;
        }
        d.finish()
    }

    #[test]
    fn decodes_one_frame_in_any_chunking() {
        let data: Vec<u8> = (0..500_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        let z = zstd::encode_all(data.as_slice(), 3).unwrap();
        for chunk in [1, 7, 4096, z.len()] {
            assert_eq!(decode(&z, chunk).unwrap(), data, "chunk {chunk}");
        }
    }

    #[test]
    fn refuses_two_frames_a_cut_frame_and_trailing_bytes() {
        let a = zstd::encode_all(&b"hello"[..], 3).unwrap();
        let mut two = a.clone();
        two.extend_from_slice(&a);
        assert!(decode(&two, 3).is_err());
        assert!(decode(&a[..a.len() - 1], 3).is_err());
        let mut trailing = a.clone();
        trailing.push(0);
        assert!(decode(&trailing, 100).is_err());
        assert!(decode(b"", 1).is_err());
    }
}
