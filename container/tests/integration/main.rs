//! The container's API tests, as one test binary (one link, one process
//! start): a module per topic and the shared fixtures in `support`.
//!
//! Run one topic with `cargo test -p dare-container --test integration hostile::`.

mod append;
mod big;
mod cosigned;
mod crafted;
mod fuzz_bodies;
mod hostile;
mod props;
mod roundtrip;
mod seal_time;
mod support;
