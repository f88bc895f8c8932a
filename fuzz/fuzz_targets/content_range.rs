//! The updater's Content-Range parser and a single 206 part (updater/src/multipart.rs).
//! The body is `dare_updater::fuzzing::content_range`, which also runs under proptest in `cargo test`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    dare_updater::fuzzing::content_range(data);
});
