//! The `Range` request header (RFC 9110 section 14): parsing and resolving
//! against a representation length.
//!
//! Policy, chosen to match nginx where the RFC leaves room:
//! - a header with an unknown unit, a syntax error or an invalid range
//!   (`last < first`) is ignored: the full representation is sent;
//! - more than [`RangeRequest::parse`]'s `max_ranges` range-specs are ignored
//!   the same way (nginx's `max_ranges`);
//! - ranges that overlap or lie at most [`COALESCE_GAP`] bytes apart are merged,
//!   so the parts of a multipart answer never overlap and never sum to more
//!   than the representation; the remaining parts keep the order in which
//!   they were requested (RFC 9110 section 15.3.7.2).

/// Ranges separated by at most this many bytes are sent as one part: the
/// overhead of a part's headers is about this size (RFC 9110 section 14.6).
pub(crate) const COALESCE_GAP: u64 = 80;

/// One range-spec as written by the client, not yet checked against a length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RangeSpec {
    /// `first-last`, both inclusive.
    FromTo(u64, u64),
    /// `first-`
    From(u64),
    /// `-suffix_length`
    Suffix(u64),
}

/// A parsed `Range: bytes=...` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RangeRequest {
    specs: Vec<RangeSpec>,
}

/// A satisfiable byte range: `start..end`, half-open, never empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// The `Content-Range` value for this range of a representation of
    /// `total` bytes.
    pub fn content_range(&self, total: u64) -> String {
        format!("bytes {}-{}/{}", self.start, self.end - 1, total)
    }
}

/// What a range request asks of a representation of a given length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Resolution {
    /// Non-empty, pairwise non-overlapping ranges in request order.
    Ranges(Vec<ByteRange>),
    /// No range-spec is satisfiable: 416.
    Unsatisfiable,
}

impl RangeRequest {
    /// Parses a `Range` header value. `None` means "ignore the header": an
    /// unknown unit, a syntax error, an invalid range, or more than
    /// `max_ranges` range-specs.
    pub fn parse(value: &[u8], max_ranges: usize) -> Option<RangeRequest> {
        let eq = value.iter().position(|&b| b == b'=')?;
        let (unit, set) = (&value[..eq], &value[eq + 1..]);
        if !unit.eq_ignore_ascii_case(b"bytes") {
            return None;
        }
        let mut specs = Vec::new();
        // `1#range-spec`: empty list elements are allowed and skipped.
        for element in set.split(|&b| b == b',') {
            let element = trim_ows(element);
            if element.is_empty() {
                continue;
            }
            if specs.len() == max_ranges {
                return None;
            }
            specs.push(parse_spec(element)?);
        }
        if specs.is_empty() {
            return None;
        }
        Some(RangeRequest { specs })
    }

    /// Resolves the range-specs against a representation of `len` bytes.
    pub fn resolve(&self, len: u64) -> Resolution {
        let mut merged: Vec<ByteRange> = Vec::with_capacity(self.specs.len());
        for spec in &self.specs {
            if let Some(range) = satisfiable(*spec, len) {
                insert_coalescing(&mut merged, range);
            }
        }
        if merged.is_empty() { Resolution::Unsatisfiable } else { Resolution::Ranges(merged) }
    }
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

fn parse_spec(s: &[u8]) -> Option<RangeSpec> {
    let dash = s.iter().position(|&b| b == b'-')?;
    let (first, last) = (&s[..dash], &s[dash + 1..]);
    match (first.is_empty(), last.is_empty()) {
        (true, true) => None,
        (true, false) => Some(RangeSpec::Suffix(parse_pos(last)?)),
        (false, true) => Some(RangeSpec::From(parse_pos(first)?)),
        (false, false) => {
            let (first, last) = (parse_pos(first)?, parse_pos(last)?);
            // RFC 9110 14.1.1: such a range-spec is invalid.
            (first <= last).then_some(RangeSpec::FromTo(first, last))
        }
    }
}

/// `1*DIGIT`; values past `u64::MAX` saturate (they lie past any length).
fn parse_pos(s: &[u8]) -> Option<u64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u64, |n, &d| n.saturating_mul(10).saturating_add(u64::from(d - b'0'))))
}

fn satisfiable(spec: RangeSpec, len: u64) -> Option<ByteRange> {
    match spec {
        RangeSpec::FromTo(first, last) if first < len => Some(ByteRange { start: first, end: last.min(len - 1) + 1 }),
        RangeSpec::From(first) if first < len => Some(ByteRange { start: first, end: len }),
        RangeSpec::Suffix(n) if n > 0 && len > 0 => Some(ByteRange { start: len - n.min(len), end: len }),
        _ => None,
    }
}

fn near(a: ByteRange, b: ByteRange) -> bool {
    a.start <= b.end.saturating_add(COALESCE_GAP) && b.start <= a.end.saturating_add(COALESCE_GAP)
}

/// Adds `range` to `merged` (pairwise far apart), merging it with every range
/// it comes near; the union takes the place of the earliest one it absorbed.
fn insert_coalescing(merged: &mut Vec<ByteRange>, mut range: ByteRange) {
    let mut slot = merged.len();
    while let Some(i) = merged.iter().position(|&m| near(m, range)) {
        let m = merged.remove(i);
        range = ByteRange { start: range.start.min(m.start), end: range.end.max(m.end) };
        // The union goes where the earliest absorbed range was.
        slot = slot.min(i);
    }
    merged.insert(slot.min(merged.len()), range);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn r(start: u64, end: u64) -> ByteRange {
        ByteRange { start, end }
    }

    fn resolve(header: &str, len: u64) -> Option<Resolution> {
        RangeRequest::parse(header.as_bytes(), 64).map(|q| q.resolve(len))
    }

    #[test]
    fn single_forms() {
        assert_eq!(resolve("bytes=0-9", 100), Some(Resolution::Ranges(vec![r(0, 10)])));
        assert_eq!(resolve("bytes=90-", 100), Some(Resolution::Ranges(vec![r(90, 100)])));
        assert_eq!(resolve("bytes=-10", 100), Some(Resolution::Ranges(vec![r(90, 100)])));
        assert_eq!(resolve("bytes=-1000", 100), Some(Resolution::Ranges(vec![r(0, 100)])));
        assert_eq!(resolve("bytes=50-1000", 100), Some(Resolution::Ranges(vec![r(50, 100)])));
        assert_eq!(resolve("BYTES=1-1", 100), Some(Resolution::Ranges(vec![r(1, 2)])));
        assert_eq!(resolve("bytes=0-99999999999999999999999", 100), Some(Resolution::Ranges(vec![r(0, 100)])));
    }

    #[test]
    fn unsatisfiable() {
        assert_eq!(resolve("bytes=100-", 100), Some(Resolution::Unsatisfiable));
        assert_eq!(resolve("bytes=100-200", 100), Some(Resolution::Unsatisfiable));
        assert_eq!(resolve("bytes=-0", 100), Some(Resolution::Unsatisfiable));
        assert_eq!(resolve("bytes=0-0", 0), Some(Resolution::Unsatisfiable));
        assert_eq!(resolve("bytes=-5", 0), Some(Resolution::Unsatisfiable));
        assert_eq!(resolve("bytes=99999999999999999999999-", 100), Some(Resolution::Unsatisfiable));
        // Unsatisfiable specs are dropped when another one is satisfiable.
        assert_eq!(resolve("bytes=200-300, 0-0", 100), Some(Resolution::Ranges(vec![r(0, 1)])));
    }

    #[test]
    fn ignored_headers() {
        for h in [
            "",
            "bytes",
            "bytes=",
            "bytes=,",
            "bytes=-",
            "bytes=5-4",
            "bytes=a-b",
            "bytes=1-2-3",
            "bytes=0x10-",
            "bytes=+1-2",
            "bytes=1 - 2",
            "items=0-1",
            "bytes =0-1",
            "bytes=0-1,5-4",
        ] {
            assert_eq!(resolve(h, 100), None, "{h:?}");
        }
    }

    #[test]
    fn list_syntax_is_lenient() {
        assert_eq!(resolve("bytes= 0-0 ,, \t 500-500 ,", 1000), Some(Resolution::Ranges(vec![r(0, 1), r(500, 501)])));
    }

    #[test]
    fn too_many_ranges_are_ignored() {
        let many: Vec<String> = (0..65).map(|i| format!("{}-{}", i * 1000, i * 1000)).collect();
        let header = format!("bytes={}", many.join(","));
        assert_eq!(RangeRequest::parse(header.as_bytes(), 64), None);
        let header = format!("bytes={}", many[..64].join(","));
        assert!(RangeRequest::parse(header.as_bytes(), 64).is_some());
    }

    #[test]
    fn coalescing_keeps_request_order() {
        assert_eq!(
            resolve("bytes=5000-5999,0-99,50-150,1000-1099", 10_000),
            Some(Resolution::Ranges(vec![r(5000, 6000), r(0, 151), r(1000, 1100)]))
        );
        // A gap of up to COALESCE_GAP bytes is bridged; a larger one is not.
        assert_eq!(resolve("bytes=0-9,89-99", 1000), Some(Resolution::Ranges(vec![r(0, 100)])));
        assert_eq!(resolve("bytes=0-9,90-99", 1000), Some(Resolution::Ranges(vec![r(0, 100)])));
        assert_eq!(resolve("bytes=0-9,91-99", 1000), Some(Resolution::Ranges(vec![r(0, 10), r(91, 100)])));
        // A late range can join two earlier ones; the union takes the first slot.
        assert_eq!(resolve("bytes=900-999,0-99,300-399,100-899", 1000), Some(Resolution::Ranges(vec![r(0, 1000)])));
        assert_eq!(
            resolve("bytes=2000-2099,1000-1099,0-99,100-1000", 3000),
            Some(Resolution::Ranges(vec![r(2000, 2100), r(0, 1100)]))
        );
    }

    #[test]
    fn content_range() {
        assert_eq!(r(0, 10).content_range(100), "bytes 0-9/100");
    }

    fn spec() -> impl Strategy<Value = String> {
        prop_oneof![
            (0u64..300, 0u64..300).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
            (0u64..300).prop_map(|a| format!("{a}-")),
            (0u64..300).prop_map(|n| format!("-{n}")),
        ]
    }

    proptest! {
        /// Resolved ranges are in bounds, non-empty, far apart, cover every
        /// requested byte, and cover nothing that is not requested or in a
        /// small gap.
        #[test]
        fn resolution_covers_exactly(specs in prop::collection::vec(spec(), 1..12), len in 0u64..260) {
            let header = format!("bytes={}", specs.join(","));
            let q = RangeRequest::parse(header.as_bytes(), 64).expect("generated headers are valid");
            let mut wanted = vec![false; len as usize];
            for s in &q.specs {
                if let Some(b) = satisfiable(*s, len) {
                    for i in b.start..b.end { wanted[i as usize] = true; }
                }
            }
            match q.resolve(len) {
                Resolution::Unsatisfiable => prop_assert!(wanted.iter().all(|w| !w)),
                Resolution::Ranges(ranges) => {
                    let mut covered = vec![false; len as usize];
                    for (i, a) in ranges.iter().enumerate() {
                        prop_assert!(a.start < a.end && a.end <= len);
                        for b in &ranges[i + 1..] {
                            prop_assert!(!near(*a, *b));
                        }
                        for i in a.start..a.end { covered[i as usize] = true; }
                        // Each end of a part is a requested byte.
                        prop_assert!(wanted[a.start as usize] && wanted[a.end as usize - 1]);
                    }
                    for i in 0..len as usize {
                        prop_assert!(!wanted[i] || covered[i]);
                    }
                }
            }
        }
    }
}
