//! `dare-mirror`: the HTTP range server behind `dare serve`.
//!
//! A mirror serves a directory of dare containers to updaters. It holds no
//! keys and understands no container bytes: it serves regular files over
//! HTTP/1.1 (and cleartext HTTP/2) with the range semantics of RFC 9110:
//! single, open-ended, suffix and multiple ranges (`multipart/byteranges`),
//! `416`, `HEAD`, strong `ETag`s, `Last-Modified`, `If-Range`,
//! `If-None-Match` and the other conditional headers. Memory per response is
//! bounded (files are read in 64 KiB chunks), slow and silent clients are
//! timed out, connections are limited, and shutdown is graceful.
//!
//! The main types:
//! - [`Server`] serves one directory; [`Server::run`] takes an already
//!   bound listener and a shutdown future, so tests bind `127.0.0.1:0`.
//! - [`ServerConfig`] holds the timeouts and limits.
//! - [`ServedLengths`] caps how much of a file is served: a container being
//!   synced is served only up to the length that has been verified.
//! - [`Overlay`] answers extra paths from memory (checkpoints, tiles).
//!
//! Paths are percent-decoded and checked: `..`, `.`, NUL, backslashes and
//! encoded slashes are refused with 400; directories, hidden names (a
//! segment starting with `.`, such as a sync's temporary file) and anything
//! whose real path leaves the served directory (symlinks) are 404.
//!
//! The crate logs through `tracing` and never prints: one event per request
//! at INFO with the target `dare_mirror::access`.
//!
//! ```no_run
//! use dare_mirror::{Server, ServerConfig, ServedLengths};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! let lengths = ServedLengths::default();
//! // Serve at most the first 4096 verified bytes of /app.dare.
//! lengths.set("/app.dare", 4096);
//! let shutdown = async {
//!     let _ = tokio::signal::ctrl_c().await;
//! };
//! Server::new("/srv/dare", ServerConfig::default())
//!     .lengths(lengths.clone())
//!     .run(listener, shutdown)
//!     .await?;
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

mod body;
mod error;
mod files;
pub mod local_logs;
mod overlay;
mod range;
mod response;
mod sendfile;
mod server;
pub mod sync;
pub mod tlog;
mod validator;

pub use body::ResponseBody;
pub use error::MirrorError;
pub use files::ServedLengths;
pub use overlay::{Overlay, OverlayBody};
pub use server::{Server, ServerConfig};
