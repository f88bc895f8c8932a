//! Fuzzing entry points: each function is the whole body of one target in
//! `fuzz/` and also runs under proptest in `cargo test`
//! (`tests/integration/fuzz_bodies.rs`). A body takes arbitrary bytes, runs one parser
//! on them and checks what must hold of whatever it accepts; it must not
//! panic on any input. Not a stable API.

use std::path::{Component, Path};

use crate::files::RequestPath;
use crate::range::{RangeRequest, Resolution};

/// The `Range` header parser and resolver: the first byte is the
/// `max_ranges` limit, the next 8 the representation length, the rest the
/// header value. What resolves is non-empty, inside the representation,
/// pairwise disjoint, and sums to at most its length.
pub fn range(data: &[u8]) {
    let Some((&max, rest)) = data.split_first() else { return };
    let Some((len, value)) = rest.split_first_chunk::<8>() else { return };
    let len = u64::from_be_bytes(*len);
    let max = usize::from(max % 64) + 1;
    let Some(request) = RangeRequest::parse(value, max) else { return };
    let Resolution::Ranges(ranges) = request.resolve(len) else { return };
    assert!(!ranges.is_empty() && ranges.len() <= max, "{ranges:?}");
    let mut sum = 0u64;
    for (i, r) in ranges.iter().enumerate() {
        assert!(r.start < r.end && r.end <= len, "{r:?} of {len}");
        sum += r.len();
        for other in &ranges[..i] {
            assert!(r.end <= other.start || other.end <= r.start, "{r:?} overlaps {other:?}");
        }
        let cr = r.content_range(len);
        assert_eq!(cr, format!("bytes {}-{}/{len}", r.start, r.end - 1));
    }
    assert!(sum <= len, "parts sum to {sum}, more than {len}");
}

/// The request path parser: an accepted path joined to the served directory
/// stays inside it (only normal components, none hidden), and every `%` in
/// it was followed by two hex digits.
pub fn path(data: &[u8]) {
    let Ok(raw) = std::str::from_utf8(data) else { return };
    let Ok(p) = RequestPath::parse(raw) else { return };
    let decoded = p.as_str();
    assert!(decoded.starts_with('/') && decoded.len() > 1, "{decoded:?}");
    assert!(!decoded.contains('\\') && !decoded.contains('\0'), "{decoded:?}");
    for c in Path::new(&decoded[1..]).components() {
        match c {
            Component::Normal(name) => {
                assert!(!name.to_string_lossy().starts_with('.'), "a hidden name is served: {decoded:?}")
            }
            other => panic!("{raw:?} gives the component {other:?}"),
        }
    }
    let bytes = raw.as_bytes();
    for (i, _) in bytes.iter().enumerate().filter(|(_, b)| **b == b'%') {
        assert!(
            bytes.get(i + 1..i + 3).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)),
            "{raw:?}: a `%` not followed by two hex digits is accepted"
        );
    }
}
