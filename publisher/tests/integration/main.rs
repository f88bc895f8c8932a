//! The publisher's API tests, as one test binary; a module per topic.
//!
//! Run one topic with `cargo test -p dare-publisher --test integration publish::`.

mod private;
mod publish;
