//! The frame reader, both walkers, the stream decoder and the header parser
//! (container/src/frame.rs, header.rs).
//! The body is `dare_container::fuzzing::frames`, which also runs under proptest in `cargo test`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    dare_container::fuzzing::frames(data);
});
