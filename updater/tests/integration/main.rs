//! The updater's API tests, as one test binary (one link, one process
//! start): a module per topic and the shared fixtures in `support`.
//!
//! Run one topic with `cargo test -p dare-updater --test integration hostile::`.

mod fuzz_bodies;
mod hostile;
mod private;
mod signed_time;
mod support;
mod transport;
mod update;
mod witness;
