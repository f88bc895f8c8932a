//! The whole-container verifier on arbitrary bytes: no panic.
#![no_main]

use dare_container::verify::{ScanOptions, scan};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = scan(data, data.len() as u64, &ScanOptions::full());
});
