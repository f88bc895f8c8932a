//! Index listings, maps, pages and stored content: entries, deltas, listings
//! (container/src/header.rs, map.rs, content.rs).
//! The body is `dare_container::fuzzing::listing`, which also runs under proptest in `cargo test`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    dare_container::fuzzing::listing(data);
});
