//! The embeddable dare updater: check, fetch, verify, install.
//!
//! The network layer: [`transport::Transport`] reads byte ranges of a container from one source (HTTP(S),
//! a local file, or memory for tests); [`fetch::Mirrors`] adds retries, resumption and failover over
//! several sources.

pub mod fetch;
mod http;
mod multipart;
pub mod transport;
