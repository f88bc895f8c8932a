//! The whole-container verifier (container/src/verify.rs), as `dare verify` runs it.
//! The body is `dare_container::fuzzing::container`, which also runs under proptest in `cargo test`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    dare_container::fuzzing::container(data);
});
