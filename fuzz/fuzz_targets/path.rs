//! The mirror's request path parser (mirror/src/files.rs).
//! The body is `dare_mirror::fuzzing::path`, which also runs under proptest in `cargo test`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    dare_mirror::fuzzing::path(data);
});
