//! Verifier and signing key texts and trust roots (container/src/keys.rs).
//! The body is `dare_container::fuzzing::keys`, which also runs under proptest in `cargo test`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    dare_container::fuzzing::keys(data);
});
