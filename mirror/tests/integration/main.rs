//! The mirror's API tests, as one test binary (one link, one process start):
//! a module per topic and the shared fixtures in `support`. The server tests
//! bind `127.0.0.1:0`, serve a temporary directory and shut the server down;
//! `sync` drives the verified upstream sync against loopback upstreams.
//!
//! Run one topic with `cargo test -p dare-mirror --test integration sync::`.

mod access_log;
mod basics;
mod conditional;
mod connections;
mod curl;
mod fuzz_bodies;
mod lengths;
mod paths;
mod publishing;
mod ranges;
mod support;
mod sync;
mod witness;
