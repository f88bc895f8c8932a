//! `dare-mirror`: the HTTP range server behind `dare serve`.
//! Unix-only (sendfile, openat2, signals); the client crates build for Windows.
//!
//! A mirror serves a directory of dare containers to updaters. It holds no
//! keys: it serves regular files over
//! HTTP/1.1 (and cleartext HTTP/2) with the range semantics of RFC 9110:
//! single, open-ended, suffix and multiple ranges (`multipart/byteranges`),
//! `416`, `HEAD`, strong `ETag`s, `Last-Modified`, `If-Range`,
//! `If-None-Match` and the other conditional headers. Each response takes
//! one length from one `fstat` and sends exactly that many bytes, however
//! the file changes meanwhile. The only container bytes it reads are frame
//! boundaries: a `*.dare` file is served up to the end of its last complete
//! seal, so a publish appending to it is invisible until sealed. Memory per
//! response is bounded, slow and silent clients are timed out, connections
//! are limited (a connection with no request in progress is idle, whatever
//! else it sends, and makes room for a waiting client), and shutdown is
//! graceful. [`sync`] keeps a verified copy of an upstream container, read
//! through the updater's transport (HTTP or HTTPS).
//!
//! The main types:
//! - [`Server`] serves one directory; [`Server::run`] takes an already
//!   bound listener and a shutdown future, so tests bind `127.0.0.1:0`.
//! - [`ServerConfig`] holds the timeouts and limits.
//! - [`ServedLengths`] caps how much of a file is served: a container being
//!   synced is served only up to the length that has been verified.
//! - [`Overlay`] answers extra paths from memory (checkpoints, tiles).
//! - [`witness::Witness`] is a C2SP tlog-witness (`dare witness`): it
//!   cosigns the checkpoints of the logs it knows, if consistent with the
//!   last ones it cosigned.
//!
//! Paths are percent-decoded and checked: `..`, `.`, NUL, backslashes and
//! encoded slashes are refused with 400; directories, hidden names (a
//! segment starting with `.`, such as a sync's temporary file), special files
//! and anything whose real path leaves the served directory (symlinks) are
//! 404.
//!
//! How bytes move (Unix; the fast paths are Linux's):
//! - Files are opened with `openat2(RESOLVE_BENEATH)` below the served
//!   directory, so the kernel refuses escapes; elsewhere, or for absolute
//!   symlinks, the opened descriptor's real path is checked instead.
//! - HTTP/1 file bodies go out with `sendfile(2)`, as nginx sends them; see
//!   the `sendfile` module for how that fits under hyper. HTTP/2 bodies
//!   are read in 64 KiB chunks on tokio's blocking pool.
//! - Descriptors are reused for [`ServerConfig::open_file_ttl`] (100 ms).
//! - Opening and `fstat` run on the runtime's threads, as nginx does them:
//!   microseconds on a warm cache, less than a hop to a thread pool.
//!
//! Serving from several single-threaded runtimes (one per core, each with
//! its own `SO_REUSEPORT` listener or a clone of one shared listener) is a
//! matter of running one clone of the [`Server`] on each;
//! `examples/serve_dir.rs` shows the first, `dare serve` the second.
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

// The server uses sendfile, openat2 and Unix signals; the client side
// (container, publisher, updater) is what builds for Windows.
#[cfg(not(unix))]
compile_error!("dare-mirror (the server behind `dare serve`) is Unix-only");

mod body;
mod error;
mod files;
#[doc(hidden)]
pub mod fuzzing;
pub mod local_logs;
mod overlay;
mod range;
mod response;
mod sealed;
mod sendfile;
mod server;
pub mod sync;
pub mod tlog;
mod validator;
pub mod witness;

pub use error::MirrorError;
pub use files::ServedLengths;
pub use overlay::{Overlay, OverlayBody};
pub use server::{Server, ServerConfig};
