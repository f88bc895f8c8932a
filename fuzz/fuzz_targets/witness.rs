//! The witness protocol bodies, cosignature lines and witness keys (container/src/cosign.rs).
//! The body is `dare_container::fuzzing::witness`, which also runs under proptest in `cargo test`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    dare_container::fuzzing::witness(data);
});
