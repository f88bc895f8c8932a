//! The mirror's Range header parser and resolver (mirror/src/range.rs).
//! The body is `dare_mirror::fuzzing::range`, which also runs under proptest in `cargo test`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    dare_mirror::fuzzing::range(data);
});
