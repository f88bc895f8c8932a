//! The tail reader: a fetched suffix read into a verified seal, then the map and
//! manifest it names (container/src/client.rs).
//! The body is `dare_container::fuzzing::tail`, which also runs under proptest in `cargo test`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    dare_container::fuzzing::tail(data);
});
