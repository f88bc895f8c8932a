//! The signed note and checkpoint parsers (container/src/note.rs).
//! The body is `dare_container::fuzzing::note`, which also runs under proptest in `cargo test`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    dare_container::fuzzing::note(data);
});
