//! The replica (partial container) scan and the whole-container scan
//! (container/src/partial.rs, verify.rs).
//! The body is `dare_container::fuzzing::replica`, which also runs under proptest in `cargo test`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    dare_container::fuzzing::replica(data);
});
