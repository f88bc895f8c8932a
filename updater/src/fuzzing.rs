//! Fuzzing entry points: each function is the whole body of one target in
//! `fuzz/` and also runs under proptest in `cargo test`
//! (`tests/integration/fuzz_bodies.rs`). A body takes arbitrary bytes, runs one parser
//! on them and checks what must hold of whatever it accepts; it must not
//! panic on any input. Not a stable API.

use crate::multipart::{
    Assembler, ContentRange, Flow, Mode, MultipartParser, byteranges_boundary, parse_content_range,
};
use crate::transport::{ByteRange, RangeSink, SinkError};

/// Framing a multipart body may hold in these bodies (the transport's cap is of this order).
const FRAMING_CAP: u64 = 64 * 1024;

/// Checks what the assembler delivers: ranges in request order, each from
/// its start, never more bytes than asked.
struct Checked {
    requested: Vec<ByteRange>,
    /// The range being delivered and how many bytes it may still take.
    current: Option<(usize, u64)>,
    begun: usize,
}

impl RangeSink for Checked {
    fn begin(&mut self, index: usize, start: u64, total: Option<u64>) -> Result<(), SinkError> {
        assert_eq!(index, self.begun, "ranges are delivered in request order, each once");
        if let Some((_, left)) = self.current {
            assert_eq!(left, 0, "the previous range was delivered whole");
        }
        let len = match (self.requested[index], total) {
            (ByteRange::Span { start: s, end }, _) => {
                assert_eq!(start, s, "a range is delivered from its start");
                end - s
            }
            (r @ ByteRange::Suffix(_), Some(total)) => {
                let (s, e) = r.resolve(total).expect("a delivered suffix resolves");
                assert_eq!(start, s, "a suffix is delivered from its start");
                e - s
            }
            (ByteRange::Suffix(_), None) => panic!("a suffix delivered without the container length"),
        };
        self.current = Some((index, len));
        self.begun += 1;
        Ok(())
    }

    fn data(&mut self, bytes: &[u8]) -> Result<(), SinkError> {
        let (_, left) = self.current.as_mut().expect("data after begin");
        *left = left.checked_sub(bytes.len() as u64).expect("no more bytes than the range asked for");
        Ok(())
    }
}

/// Requested ranges from the first bytes of `data`: a shape byte (count and
/// flags), then 6 bytes per range (start, length; a flag bit makes it a
/// suffix). Returns the ranges, the flags and the rest.
fn requested(data: &[u8]) -> Option<(Vec<ByteRange>, u8, &[u8])> {
    let (&shape, mut rest) = data.split_first()?;
    let mut ranges = Vec::new();
    for _ in 0..usize::from(shape & 3) + 1 {
        let (r, tail) = rest.split_first_chunk::<6>()?;
        rest = tail;
        let start = u64::from(u32::from_be_bytes([r[0], r[1], r[2], r[3]]) & 0x7fff_ffff);
        let len = u64::from(u16::from_be_bytes([r[4], r[5]])) + 1;
        ranges.push(if r[0] & 0x80 != 0 {
            ByteRange::Suffix(len)
        } else {
            ByteRange::Span { start, end: start + len }
        });
    }
    Some((ranges, shape >> 2, rest))
}

/// The Content-Range parser: what it accepts is consistent and is written
/// back to a value that parses the same; a single 206 part with that value
/// goes through the assembler.
pub fn content_range(data: &[u8]) {
    let (value, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Some(parsed) = parse_content_range(value) else { return };
    let written = match parsed {
        ContentRange::Bytes { first, last, total } => {
            assert!(first <= last && total.is_none_or(|t| last < t), "{parsed:?}");
            let total = total.map_or("*".to_string(), |t| t.to_string());
            format!("bytes {first}-{last}/{total}")
        }
        ContentRange::Unsatisfied { total } => format!("bytes */{total}"),
    };
    assert_eq!(parse_content_range(written.as_bytes()), Some(parsed), "{written}");
    let ContentRange::Bytes { first, last, total } = parsed else { return };
    // The part as the answer to a request for the same span.
    let requested = [ByteRange::Span { start: first, end: last + 1 }];
    let mut sink = Checked { requested: requested.to_vec(), current: None, begun: 0 };
    let mut asm = Assembler::new(&requested, &mut sink, Mode::Parts);
    let _ = asm
        .set_total(total)
        .and_then(|()| asm.begin_part(first, Some(last + 1)))
        .and_then(|()| asm.data(body))
        .and_then(|_| asm.end_of_body());
}

/// The multipart/byteranges parser: ranges requested (see [`requested`]),
/// then a Content-Type line, then the body, fed in chunks of a size the
/// flags choose. Whatever is delivered is checked by [`Checked`]. Returns
/// whether every requested byte was delivered.
pub fn multipart(data: &[u8]) -> bool {
    let Some((ranges, flags, rest)) = requested(data) else { return false };
    let (content_type, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let boundary = match byteranges_boundary(content_type) {
        Ok(Some(b)) => b,
        Ok(None) => "B".to_string(),
        Err(_) => return false,
    };
    let chunk = usize::from(flags) + 1;
    let mut sink = Checked { requested: ranges.clone(), current: None, begun: 0 };
    let mut asm = Assembler::new(&ranges, &mut sink, Mode::Parts);
    let mut parser = MultipartParser::new(&boundary, FRAMING_CAP);
    for piece in body.chunks(chunk) {
        match parser.feed(piece, &mut asm) {
            Ok(Flow::More) => {}
            Ok(Flow::Done) => return asm.is_done(),
            Err(_) => return false,
        }
    }
    parser.finish(&asm).is_ok() && asm.is_done()
}
