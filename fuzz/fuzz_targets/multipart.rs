//! The updater's multipart/byteranges parser and range assembler
//! (updater/src/multipart.rs).
//! The body is `dare_updater::fuzzing::multipart`, which also runs under proptest in `cargo test`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = dare_updater::fuzzing::multipart(data);
});
