//! Turning what a range server sent into the ranges that were asked for.
//!
//! [`Assembler`] takes the parts of a response (a 200 body, one 206 part, or the parts of a
//! multipart/byteranges body, in any order, coalesced or not) and delivers the requested ranges to a
//! [`RangeSink`] in request order, buffering out-of-order bytes and skipping unrequested ones only up to
//! fixed caps. [`MultipartParser`] splits a multipart/byteranges body into parts as it streams in.
//! Everything here is pure and bounded; the transports do the I/O.

use crate::transport::{ByteRange, Ended, RangeSink, SinkError, TransportError};

/// Out-of-order bytes kept for later ranges, at most.
pub(crate) const BUFFER_CAP: u64 = 1024 * 1024;
/// Bytes of a 206 response outside the requested ranges that are skipped, at most.
pub(crate) const DISCARD_CAP: u64 = 1024 * 1024;
/// The most of a 200 body (a server that ignores Range) read to reach a suffix range. A suffix is
/// asked for before anything is verified (the signed tail), so only the server vouches for where the
/// container ends: a `Content-Length` of 2^62 must not make us read 2^62 bytes. Past this, such a
/// server is given up for one that honours Range.
pub(crate) const WHOLE_SUFFIX_CAP: u64 = 64 * 1024 * 1024;
/// A multipart header line, at most.
const MAX_LINE: usize = 4096;

/// Whether to keep reading the response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    More,
    /// Every requested byte has been delivered (or the multipart body closed): stop reading.
    Done,
}

/// What kind of response the parts come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// A 200 response: the whole container from byte 0; bytes before and between the ranges are
    /// skipped without limit (the read stops at the end of the last range).
    Whole,
    /// A 206 response: parts must overlap the requested ranges and little else.
    Parts,
}

/// Why assembling stopped.
#[derive(Debug)]
pub(crate) enum AsmError {
    Sink(SinkError),
    Protocol(String),
    Unsatisfiable(Option<u64>),
    Interrupted(String),
    /// No body bytes for the idle timeout (given).
    Timeout(std::time::Duration),
    /// Fewer bytes than the minimum rate asks arrived in a rate window.
    TooSlow {
        bytes: u64,
        window: std::time::Duration,
        min_rate: u64,
    },
    /// A cap was hit: ask for the ranges one by one.
    Scattered,
}

impl From<SinkError> for AsmError {
    fn from(e: SinkError) -> Self {
        AsmError::Sink(e)
    }
}

impl AsmError {
    pub(crate) fn into_transport(self, url: &str) -> TransportError {
        let url = url.to_owned();
        match self {
            AsmError::Sink(e) => TransportError::Sink(e),
            AsmError::Protocol(reason) => TransportError::Protocol { url, reason },
            AsmError::Unsatisfiable(len) => TransportError::RangeNotSatisfiable { url, len },
            AsmError::Interrupted(reason) => TransportError::Interrupted { url, reason },
            AsmError::Timeout(after) => TransportError::Timeout { url, what: "data", after },
            AsmError::TooSlow { bytes, window, min_rate } => TransportError::TooSlow { url, bytes, window, min_rate },
            AsmError::Scattered => TransportError::Protocol { url, reason: "response too scattered".into() },
        }
    }

    /// `Scattered` is an outcome for the caller to act on, not a failure.
    pub(crate) fn into_ended(self, url: &str) -> Result<Ended, TransportError> {
        match self {
            AsmError::Scattered => Ok(Ended::Scattered),
            e => Err(e.into_transport(url)),
        }
    }
}

/// Delivers requested ranges, in request order, from response parts.
pub(crate) struct Assembler<'s> {
    requested: Vec<ByteRange>,
    mode: Mode,
    sink: &'s mut dyn RangeSink,
    /// The container length, once a part or the response told it.
    total: Option<Option<u64>>,
    /// The requested ranges as `start..end`, once they can be resolved (suffixes need the length).
    spans: Vec<(u64, u64)>,
    resolved: bool,
    /// The range being delivered, how much of it is out, and whether `begin` was called for it.
    cur: usize,
    delivered: u64,
    begun: bool,
    /// The current part: the offset of its next byte and its end, when known.
    part: Option<(u64, Option<u64>)>,
    /// Bytes that arrived before the range they belong to: (offset, bytes).
    buffer: Vec<(u64, Vec<u8>)>,
    buffered: u64,
    discarded: u64,
}

impl<'s> Assembler<'s> {
    pub(crate) fn new(requested: &[ByteRange], sink: &'s mut dyn RangeSink, mode: Mode) -> Self {
        let mut asm = Assembler {
            requested: requested.to_vec(),
            mode,
            sink,
            total: None,
            spans: Vec::new(),
            resolved: false,
            cur: 0,
            delivered: 0,
            begun: false,
            part: None,
            buffer: Vec::new(),
            buffered: 0,
            discarded: 0,
        };
        if requested.iter().all(|r| matches!(r, ByteRange::Span { .. })) {
            asm.spans = requested
                .iter()
                .map(|r| match *r {
                    ByteRange::Span { start, end } => (start, end),
                    ByteRange::Suffix(_) => (0, 0),
                })
                .collect();
            asm.resolved = true;
        }
        asm
    }

    /// The container length a response or part declared (`None`: unknown). Every part must agree.
    pub(crate) fn set_total(&mut self, total: Option<u64>) -> Result<(), AsmError> {
        if let Some(known) = self.total {
            if known != total {
                return Err(AsmError::Protocol(format!(
                    "parts disagree on the container length ({known:?} and {total:?})"
                )));
            }
            return Ok(());
        }
        self.total = Some(total);
        let mut spans = Vec::with_capacity(self.requested.len());
        for range in &self.requested {
            let span = match (*range, total) {
                (ByteRange::Span { start, end }, None) => (start, end),
                (ByteRange::Suffix(_), None) => {
                    return Err(AsmError::Protocol("a suffix range was asked for but the length is unknown".into()));
                }
                (range, Some(total)) => range.resolve(total).ok_or(AsmError::Unsatisfiable(Some(total)))?,
            };
            spans.push(span);
        }
        if self.mode == Mode::Whole
            && let Some(total) = total
            && total > WHOLE_SUFFIX_CAP
            && self.requested.iter().any(|r| matches!(r, ByteRange::Suffix(_)))
        {
            return Err(AsmError::Protocol(format!(
                "the server ignores Range requests and says the container is {total} bytes: reading more than \
                 {WHOLE_SUFFIX_CAP} bytes from its start to reach the tail is refused (use a mirror that honours Range)"
            )));
        }
        self.spans = spans;
        self.resolved = true;
        Ok(())
    }

    /// A part holding the bytes `start..end` (`end` unknown for a 200 body without Content-Length).
    pub(crate) fn begin_part(&mut self, start: u64, end: Option<u64>) -> Result<(), AsmError> {
        if !self.resolved {
            return Err(AsmError::Protocol("a part arrived before the container length".into()));
        }
        if let Some((next, Some(end))) = self.part
            && next < end
        {
            return Err(AsmError::Protocol("a part ended early".into()));
        }
        if self.mode == Mode::Parts {
            let end = end.unwrap_or(u64::MAX);
            if !self.spans.iter().any(|&(s, e)| s < end && start < e) {
                return Err(AsmError::Protocol(format!(
                    "the server sent bytes {start}..{end}, outside the requested ranges"
                )));
            }
        }
        self.part = Some((start, end));
        Ok(())
    }

    /// The current part is over; it must be complete.
    pub(crate) fn end_part(&mut self) -> Result<(), AsmError> {
        match self.part.take() {
            Some((next, Some(end))) if next < end => {
                Err(AsmError::Interrupted(format!("the response ended {} bytes early", end - next)))
            }
            _ => Ok(()),
        }
    }

    /// The body ended. A 200 body of unknown length that ended before the last range: the container is
    /// shorter than the ranges.
    pub(crate) fn end_of_body(&mut self) -> Result<(), AsmError> {
        match self.part {
            Some((next, None)) if !self.is_done() => Err(AsmError::Unsatisfiable(Some(next))),
            _ => self.end_part(),
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        self.resolved && self.cur >= self.spans.len()
    }

    /// The next bytes of the current part.
    pub(crate) fn data(&mut self, mut bytes: &[u8]) -> Result<Flow, AsmError> {
        let Some((mut p, end)) = self.part else {
            return Err(AsmError::Protocol("data outside a part".into()));
        };
        let after = p + bytes.len() as u64;
        if end.is_some_and(|end| after > end) {
            return Err(AsmError::Protocol("more data than the part's Content-Range".into()));
        }
        self.part = Some((after, end));
        while !bytes.is_empty() {
            if self.is_done() {
                return Ok(Flow::Done);
            }
            let (_, e) = self.spans[self.cur];
            let need = self.need();
            let q = p + bytes.len() as u64;
            if p == need {
                let k = (q.min(e) - p) as usize;
                let (now, rest) = bytes.split_at(k);
                self.save(p, now, self.cur + 1)?;
                self.deliver(now)?;
                p += k as u64;
                bytes = rest;
            } else {
                let stop = if need > p && need < q { need } else { q };
                let (skip, rest) = bytes.split_at((stop - p) as usize);
                let kept = self.save(p, skip, self.cur)?;
                self.discard(skip.len() as u64 - kept)?;
                p = stop;
                bytes = rest;
            }
            self.drain()?;
        }
        Ok(if self.is_done() { Flow::Done } else { Flow::More })
    }

    fn need(&self) -> u64 {
        self.spans[self.cur].0 + self.delivered
    }

    /// What is still wanted, from range `from` on (for the current range, only what is not out yet).
    fn wanted(&self, from: usize) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.spans
            .iter()
            .enumerate()
            .skip(from)
            .map(|(j, &(s, e))| if j == self.cur { (s + self.delivered, e) } else { (s, e) })
    }

    /// Keeps the bytes of `bytes` (at offset `p`) that ranges from `from` on still want. Returns how
    /// many of them were kept.
    fn save(&mut self, p: u64, bytes: &[u8], from: usize) -> Result<u64, AsmError> {
        let q = p + bytes.len() as u64;
        let mut overlaps: Vec<(u64, u64)> =
            self.wanted(from).map(|(s, e)| (s.max(p), e.min(q))).filter(|(a, b)| a < b).collect();
        if overlaps.is_empty() {
            return Ok(0);
        }
        overlaps.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(overlaps.len());
        for (a, b) in overlaps {
            match merged.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        let mut kept = 0;
        for (a, b) in merged {
            self.buffered += b - a;
            if self.buffered > BUFFER_CAP {
                return Err(AsmError::Scattered);
            }
            self.buffer.push((a, bytes[(a - p) as usize..(b - p) as usize].to_vec()));
            kept += b - a;
        }
        Ok(kept)
    }

    fn discard(&mut self, n: u64) -> Result<(), AsmError> {
        self.discarded += n;
        if self.mode == Mode::Parts && self.discarded > DISCARD_CAP {
            return Err(AsmError::Scattered);
        }
        Ok(())
    }

    /// Delivers bytes of the current range (at most what it still needs).
    fn deliver(&mut self, bytes: &[u8]) -> Result<(), AsmError> {
        let (s, e) = self.spans[self.cur];
        if !self.begun {
            self.sink.begin(self.cur, s, self.total.flatten())?;
            self.begun = true;
        }
        self.sink.data(bytes)?;
        self.delivered += bytes.len() as u64;
        if s + self.delivered == e {
            self.cur += 1;
            self.delivered = 0;
            self.begun = false;
            self.prune();
        }
        Ok(())
    }

    /// Delivers what the buffer holds for the current range.
    fn drain(&mut self) -> Result<(), AsmError> {
        while !self.is_done() {
            let need = self.need();
            let Some(i) = self.buffer.iter().position(|(a, d)| *a <= need && need < a + d.len() as u64) else {
                return Ok(());
            };
            let (a, chunk) = self.buffer.swap_remove(i);
            let e = self.spans[self.cur].1;
            let to = (e.min(a + chunk.len() as u64) - a) as usize;
            self.deliver(&chunk[(need - a) as usize..to])?;
            self.buffer.push((a, chunk));
            self.prune();
        }
        Ok(())
    }

    /// Forgets buffered bytes no range still wants.
    fn prune(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        let wanted: Vec<(u64, u64)> = if self.is_done() { Vec::new() } else { self.wanted(self.cur).collect() };
        self.buffer.retain(|(a, d)| {
            let b = a + d.len() as u64;
            wanted.iter().any(|&(s, e)| s < b && *a < e)
        });
        self.buffered = self.buffer.iter().map(|(_, d)| d.len() as u64).sum();
    }
}

// ---------------------------------------------------------------------------------------------------------
// Header values

/// A Content-Range value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ContentRange {
    /// `bytes first-last/total` (`total` unknown when `*`).
    Bytes { first: u64, last: u64, total: Option<u64> },
    /// `bytes */total` (with a 416).
    Unsatisfied { total: u64 },
}

/// Parses a Content-Range value strictly (RFC 9110 section 14.4).
pub(crate) fn parse_content_range(value: &[u8]) -> Option<ContentRange> {
    let value = std::str::from_utf8(value).ok()?.trim_matches([' ', '\t']);
    let (unit, rest) = value.split_once(' ')?;
    if !unit.eq_ignore_ascii_case("bytes") {
        return None;
    }
    let (range, total) = rest.split_once('/')?;
    let total = if total == "*" { None } else { Some(parse_number(total)?) };
    if range == "*" {
        return total.map(|total| ContentRange::Unsatisfied { total });
    }
    let (first, last) = range.split_once('-')?;
    let (first, last) = (parse_number(first)?, parse_number(last)?);
    if first > last || total.is_some_and(|total| last >= total) {
        return None;
    }
    Some(ContentRange::Bytes { first, last, total })
}

/// Decimal digits only, below 2^63.
pub(crate) fn parse_number(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|&n: &u64| n < 1 << 63)
}

/// The boundary of a `multipart/byteranges` Content-Type; `Ok(None)` for any other type.
pub(crate) fn byteranges_boundary(content_type: &[u8]) -> Result<Option<String>, String> {
    let text = std::str::from_utf8(content_type).map_err(|_| "Content-Type is not ASCII".to_owned())?;
    let mut params = text.split(';');
    let media = params.next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("multipart/byteranges") {
        return Ok(None);
    }
    for param in params {
        let Some((name, value)) = param.split_once('=') else { continue };
        if !name.trim().eq_ignore_ascii_case("boundary") {
            continue;
        }
        let value = value.trim();
        let value = match value.strip_prefix('"') {
            Some(quoted) => quoted.strip_suffix('"').ok_or("unterminated quoted boundary")?,
            None => value,
        };
        if value.is_empty() || value.len() > 70 || value.bytes().any(|b| b.is_ascii_control()) {
            return Err(format!("bad multipart boundary {value:?}"));
        }
        return Ok(Some(value.to_owned()));
    }
    Err("multipart/byteranges without a boundary".into())
}

// ---------------------------------------------------------------------------------------------------------
// multipart/byteranges bodies

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Before the first boundary.
    Preamble,
    /// Part headers, up to the empty line.
    Headers,
    /// Part data with this many bytes left.
    Body(u64),
    /// The line break after part data.
    AfterBody,
    /// The boundary line after a part.
    Boundary,
    /// After the closing boundary.
    End,
}

/// A streaming multipart/byteranges parser that trusts each part's Content-Range for its length and
/// checks that the boundary follows. All framing is bounded.
pub(crate) struct MultipartParser {
    /// `--boundary`.
    delimiter: Vec<u8>,
    state: State,
    line: Vec<u8>,
    range: Option<ContentRange>,
    framing: u64,
    framing_cap: u64,
}

impl MultipartParser {
    /// A parser for `boundary`, allowing `framing_cap` bytes of framing (boundaries, part headers,
    /// preamble) in all.
    pub(crate) fn new(boundary: &str, framing_cap: u64) -> Self {
        let mut delimiter = b"--".to_vec();
        delimiter.extend_from_slice(boundary.as_bytes());
        MultipartParser { delimiter, state: State::Preamble, line: Vec::new(), range: None, framing: 0, framing_cap }
    }

    /// Feeds the next bytes of the body. `Done` when the assembler has everything or the body closed.
    pub(crate) fn feed(&mut self, mut chunk: &[u8], asm: &mut Assembler<'_>) -> Result<Flow, AsmError> {
        while !chunk.is_empty() {
            match self.state {
                State::End => return Ok(Flow::Done),
                State::Body(left) => {
                    let n = left.min(chunk.len() as u64) as usize;
                    let flow = asm.data(&chunk[..n])?;
                    chunk = &chunk[n..];
                    let left = left - n as u64;
                    self.state = if left == 0 { State::AfterBody } else { State::Body(left) };
                    if left == 0 {
                        asm.end_part()?;
                    }
                    if flow == Flow::Done {
                        return Ok(Flow::Done);
                    }
                }
                _ => {
                    let (taken, complete) = match chunk.iter().position(|&b| b == b'\n') {
                        Some(i) => (i + 1, true),
                        None => (chunk.len(), false),
                    };
                    self.framing += taken as u64;
                    if self.framing > self.framing_cap {
                        return Err(AsmError::Protocol("too much multipart framing".into()));
                    }
                    self.line.extend_from_slice(&chunk[..taken]);
                    chunk = &chunk[taken..];
                    if self.line.len() > MAX_LINE {
                        return Err(AsmError::Protocol("a multipart line is too long".into()));
                    }
                    if complete {
                        let line = std::mem::take(&mut self.line);
                        self.on_line(&line, asm)?;
                    }
                }
            }
        }
        Ok(if self.state == State::End || asm.is_done() { Flow::Done } else { Flow::More })
    }

    /// The body ended: it must have closed (or delivered everything).
    pub(crate) fn finish(&self, asm: &Assembler<'_>) -> Result<(), AsmError> {
        if self.state == State::End || asm.is_done() {
            Ok(())
        } else {
            Err(AsmError::Interrupted("the multipart body ended before its closing boundary".into()))
        }
    }

    fn on_line(&mut self, line: &[u8], asm: &mut Assembler<'_>) -> Result<(), AsmError> {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match self.state {
            State::Preamble | State::Boundary => {
                // RFC 2046 allows whitespace after the boundary.
                let trimmed = trim_end_ws(line);
                if trimmed == self.delimiter.as_slice() {
                    self.state = State::Headers;
                    self.range = None;
                } else if trimmed.strip_prefix(self.delimiter.as_slice()) == Some(b"--") {
                    self.state = State::End;
                } else if self.state == State::Boundary {
                    return Err(AsmError::Protocol("expected a multipart boundary after a part".into()));
                }
            }
            State::Headers if line.is_empty() => {
                let (first, last, total) = match self.range.take() {
                    Some(ContentRange::Bytes { first, last, total }) => (first, last, total),
                    _ => return Err(AsmError::Protocol("a multipart part without a Content-Range".into())),
                };
                asm.set_total(total)?;
                asm.begin_part(first, Some(last + 1))?;
                self.state = State::Body(last - first + 1);
            }
            State::Headers => {
                let colon = line.iter().position(|&b| b == b':');
                let Some(colon) = colon else {
                    return Err(AsmError::Protocol("a malformed multipart part header".into()));
                };
                if line[..colon].eq_ignore_ascii_case(b"content-range") {
                    let parsed = parse_content_range(&line[colon + 1..]);
                    if self.range.is_some() || parsed.is_none() {
                        return Err(AsmError::Protocol(format!(
                            "bad multipart Content-Range {:?}",
                            String::from_utf8_lossy(&line[colon + 1..])
                        )));
                    }
                    self.range = parsed;
                }
            }
            State::AfterBody if line.is_empty() => self.state = State::Boundary,
            State::AfterBody => return Err(AsmError::Protocol("a part is longer than its Content-Range".into())),
            State::Body(_) | State::End => {}
        }
        Ok(())
    }
}

fn trim_end_ws(mut s: &[u8]) -> &[u8] {
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Collect {
        ranges: Vec<(usize, u64, Vec<u8>)>,
    }

    impl RangeSink for Collect {
        fn begin(&mut self, index: usize, start: u64, _total: Option<u64>) -> Result<(), SinkError> {
            self.ranges.push((index, start, Vec::new()));
            Ok(())
        }
        fn data(&mut self, bytes: &[u8]) -> Result<(), SinkError> {
            self.ranges.last_mut().expect("data after begin").2.extend_from_slice(bytes);
            Ok(())
        }
    }

    fn content(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    fn span(start: u64, end: u64) -> ByteRange {
        ByteRange::Span { start, end }
    }

    fn expect(c: &[u8], ranges: &[ByteRange]) -> Vec<(usize, u64, Vec<u8>)> {
        ranges
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let (s, e) = r.resolve(c.len() as u64).expect("test range fits");
                (i, s, c[s as usize..e as usize].to_vec())
            })
            .collect()
    }

    /// Feeds `parts` in chunks of `chunk` bytes.
    fn run(
        c: &[u8],
        ranges: &[ByteRange],
        mode: Mode,
        parts: &[(u64, u64)],
        chunk: usize,
    ) -> Result<Collect, AsmError> {
        let mut sink = Collect::default();
        let mut asm = Assembler::new(ranges, &mut sink, mode);
        asm.set_total(Some(c.len() as u64))?;
        'parts: for &(s, e) in parts {
            asm.begin_part(s, Some(e))?;
            for piece in c[s as usize..e as usize].chunks(chunk) {
                if asm.data(piece)? == Flow::Done {
                    break 'parts;
                }
            }
            asm.end_part()?;
        }
        assert!(asm.is_done());
        Ok(sink)
    }

    #[test]
    fn content_range_is_strict() {
        assert_eq!(
            parse_content_range(b"bytes 0-9/100"),
            Some(ContentRange::Bytes { first: 0, last: 9, total: Some(100) })
        );
        assert_eq!(parse_content_range(b" bytes 5-5/*"), Some(ContentRange::Bytes { first: 5, last: 5, total: None }));
        assert_eq!(parse_content_range(b"bytes */42"), Some(ContentRange::Unsatisfied { total: 42 }));
        for bad in [
            &b"bytes 9-0/100"[..],
            b"bytes 0-100/100",
            b"bytes -1-9/100",
            b"bytes 0-9/",
            b"bytes +0-9/100",
            b"items 0-9/100",
            b"bytes 0-9",
            b"bytes 0-9/100/3",
            b"bytes 0 - 9/100",
            b"bytes */*",
            b"bytes 0-99999999999999999999/*",
            b"bytes 0-9223372036854775808/*",
            b"",
        ] {
            assert_eq!(parse_content_range(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn a_200_for_a_suffix_is_read_only_when_its_length_is_small() {
        // The unverified tail of a server that ignores Range and claims 2^62 bytes: refused at once.
        let mut sink = Collect::default();
        let mut asm = Assembler::new(&[ByteRange::Suffix(1024)], &mut sink, Mode::Whole);
        match asm.set_total(Some(1 << 62)) {
            Err(AsmError::Protocol(reason)) => assert!(reason.contains("ignores Range"), "{reason}"),
            other => panic!("{other:?}"),
        }
        let mut asm = Assembler::new(&[ByteRange::Suffix(1024)], &mut sink, Mode::Whole);
        assert!(asm.set_total(Some(WHOLE_SUFFIX_CAP)).is_ok());
        // Spans come from signed data: read up to their end, whatever the declared length.
        let mut asm = Assembler::new(&[span(0, 10)], &mut sink, Mode::Whole);
        assert!(asm.set_total(Some(1 << 62)).is_ok());
        // A 206 names its range; the suffix is not read from byte 0.
        let mut asm = Assembler::new(&[ByteRange::Suffix(1024)], &mut sink, Mode::Parts);
        assert!(asm.set_total(Some(1 << 62)).is_ok());
    }

    #[test]
    fn boundary_from_content_type() {
        assert_eq!(byteranges_boundary(b"multipart/byteranges; boundary=abc").unwrap(), Some("abc".into()));
        assert_eq!(byteranges_boundary(b"Multipart/ByteRanges;boundary=\"a b\"").unwrap(), Some("a b".into()));
        assert_eq!(byteranges_boundary(b"application/octet-stream").unwrap(), None);
        assert!(byteranges_boundary(b"multipart/byteranges").is_err());
        assert!(byteranges_boundary(b"multipart/byteranges; boundary=\"x").is_err());
    }

    #[test]
    fn in_order_parts() {
        let c = content(1000);
        let ranges = [span(10, 20), span(500, 700), ByteRange::Suffix(30)];
        let parts = [(10, 20), (500, 700), (970, 1000)];
        for chunk in [1, 7, 1000] {
            assert_eq!(run(&c, &ranges, Mode::Parts, &parts, chunk).unwrap().ranges, expect(&c, &ranges));
        }
    }

    #[test]
    fn reordered_overlapping_and_coalesced_parts() {
        let c = content(5000);
        let ranges = [span(3000, 3100), span(0, 50), span(20, 80), ByteRange::Suffix(100)];
        let want = expect(&c, &ranges);
        let cases: [&[(u64, u64)]; 4] = [
            &[(4900, 5000), (0, 80), (3000, 3100)],
            &[(0, 5000)],
            &[(20, 80), (0, 50), (3000, 3100), (4900, 5000)],
            &[(3000, 3100), (0, 80), (4900, 5000)],
        ];
        for parts in cases {
            for chunk in [3, 64, 5000] {
                assert_eq!(run(&c, &ranges, Mode::Parts, parts, chunk).unwrap().ranges, want, "{parts:?} {chunk}");
            }
        }
        assert_eq!(run(&c, &ranges, Mode::Whole, &[(0, 5000)], 100).unwrap().ranges, want);
    }

    #[test]
    fn whole_body_stops_at_the_last_range() {
        let c = content(10_000);
        let ranges = [span(100, 200)];
        let mut sink = Collect::default();
        let mut asm = Assembler::new(&ranges, &mut sink, Mode::Whole);
        asm.set_total(Some(10_000)).unwrap();
        asm.begin_part(0, Some(10_000)).unwrap();
        assert_eq!(asm.data(&c[..150]).unwrap(), Flow::More);
        assert_eq!(asm.data(&c[150..300]).unwrap(), Flow::Done);
    }

    #[test]
    fn caps_and_lies() {
        let c = content(4 << 20);
        // Out of order beyond the buffer cap: ask one by one.
        let ranges = [span(3 << 20, (3 << 20) + 10), span(0, 2 << 20)];
        assert!(matches!(run(&c, &ranges, Mode::Whole, &[(0, 4 << 20)], 65536), Err(AsmError::Scattered)));
        // A coalesced part with a gap beyond the discard cap.
        let ranges = [span(0, 10), span(3 << 20, (3 << 20) + 10)];
        assert!(matches!(run(&c, &ranges, Mode::Parts, &[(0, 4 << 20)], 65536), Err(AsmError::Scattered)));
        // A part nobody asked for.
        let ranges = [span(0, 10)];
        assert!(matches!(run(&c, &ranges, Mode::Parts, &[(20, 30)], 10), Err(AsmError::Protocol(_))));
        // A span past the end.
        assert!(matches!(run(&c[..5], &ranges, Mode::Parts, &[(0, 5)], 10), Err(AsmError::Unsatisfiable(Some(5)))));
        // A part cut short.
        let mut sink = Collect::default();
        let mut asm = Assembler::new(&ranges, &mut sink, Mode::Parts);
        asm.set_total(Some(100)).unwrap();
        asm.begin_part(0, Some(10)).unwrap();
        asm.data(&c[..4]).unwrap();
        assert!(matches!(asm.end_part(), Err(AsmError::Interrupted(_))));
        // More data than the part holds.
        asm.begin_part(0, Some(10)).unwrap();
        assert!(matches!(asm.data(&c[..11]), Err(AsmError::Protocol(_))));
    }

    fn multipart(c: &[u8], parts: &[(u64, u64)], total: &str) -> Vec<u8> {
        let mut body = b"preamble\r\n".to_vec();
        for &(s, e) in parts {
            body.extend_from_slice(
                format!(
                    "\r\n--BOUND \r\nContent-Type: application/octet-stream\r\ncontent-range: bytes {}-{}/{total}\r\n\r\n",
                    s,
                    e - 1
                )
                .as_bytes(),
            );
            body.extend_from_slice(&c[s as usize..e as usize]);
        }
        body.extend_from_slice(b"\r\n--BOUND--\r\nepilogue");
        body
    }

    fn parse(body: &[u8], ranges: &[ByteRange], chunk: usize) -> Result<Collect, AsmError> {
        let mut sink = Collect::default();
        let mut asm = Assembler::new(ranges, &mut sink, Mode::Parts);
        let mut parser = MultipartParser::new("BOUND", 64 * 1024);
        for piece in body.chunks(chunk) {
            if parser.feed(piece, &mut asm)? == Flow::Done {
                break;
            }
        }
        parser.finish(&asm)?;
        Ok(sink)
    }

    #[test]
    fn multipart_bodies() {
        let c = content(2000);
        let ranges = [span(1500, 1600), span(0, 10), ByteRange::Suffix(5)];
        let body = multipart(&c, &[(0, 10), (1500, 1600), (1995, 2000)], "2000");
        for chunk in [1, 2, 5, 17, body.len()] {
            assert_eq!(parse(&body, &ranges, chunk).unwrap().ranges, expect(&c, &ranges), "{chunk}");
        }
        // Truncated mid-part, a missing closing boundary with parts missing, a lying Content-Range.
        assert!(matches!(parse(&body[..body.len() / 2], &ranges, 7), Err(AsmError::Interrupted(_))));
        let short = multipart(&c, &[(0, 10)], "2000");
        let short = &short[..short.len() - 20];
        assert!(matches!(parse(short, &ranges, 7), Err(AsmError::Interrupted(_))));
        let mut long = multipart(&c, &[(0, 10)], "2000");
        long.splice(100..100, b"xx".iter().copied());
        assert!(parse(&long, &ranges, 7).is_err());
        let star = multipart(&c, &[(0, 10), (1500, 1600)], "*");
        assert!(matches!(parse(&star, &ranges, 7), Err(AsmError::Protocol(_))));
        assert_eq!(parse(&star, &ranges[..2], 7).unwrap().ranges, expect(&c, &ranges[..2]));
        let disagree = String::from_utf8_lossy(&multipart(&c[..20], &[(0, 10), (10, 20)], "2000")).replacen(
            "10-19/2000",
            "10-19/3000",
            1,
        );
        let ranges2 = [span(0, 10), span(10, 20)];
        assert!(matches!(parse(disagree.as_bytes(), &ranges2, 7), Err(AsmError::Protocol(_))));
        // Endless framing.
        let endless = [b"\r\n--BOUND\r\n".as_slice(), &b"X-Pad: 1\r\n".repeat(10_000)].concat();
        assert!(matches!(parse(&endless, &ranges, 4096), Err(AsmError::Protocol(_))));
    }
}
