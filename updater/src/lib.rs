//! dare-updater: the embeddable client that keeps an application up to date
//! from a dare release container on untrusted mirrors.
//!
//! An [`Updater`] reads the signed tail of the container (one request),
//! verifies the checkpoint against the trusted keys, its freshness, that it
//! extends the checkpoint stored last time, and that the manifest is its last
//! leaf; then fetches only this target's entries and the few tile hashes the
//! proofs need (a second round trip), verifies every byte against the signed
//! tree while streaming it into the state directory, installs atomically
//! (keeping the previous version), and appends what it fetched to a local
//! replica that `dare verify` can check offline.
//!
//! Main types: [`UpdaterBuilder`], [`Updater`] (async) and
//! [`blocking::Updater`], [`Outcome`], [`UpdateError`] (one variant per
//! attack: rollback, freeze, fork, bad signature, bad digest, missing target,
//! network), and the [`transport::Transport`] seam.
//!
//! Every mirror costs bounded time: reads are bounded by what the signed data
//! (before the seal is verified, the fixed size of the request) says is needed,
//! whatever the server claims; a mirror slower than a minimum rate, or past its
//! deadline for the run, is dropped and the next one tried. The defaults and
//! their reasons are on [`transport::Timeouts`].
//!
//! Cargo features: `native-roots` (default) checks HTTPS mirrors against the
//! system's root certificates, `webpki-roots` against Mozilla's compiled in
//! (pick with [`UpdaterBuilder::tls_roots`] and [`TlsRoots`]);
//! `rt-multi-thread` runs [`blocking::Updater`] on two worker threads instead
//! of the current thread; `encryption` adds `UpdaterBuilder::identity` for
//! private channels (FORMAT.md 13: age X25519 identities, ChaCha20-Poly1305),
//! without which a private release is refused with `UpdateError::Identity`;
//! `test-util` adds `transport::MemoryTransport`, an in-memory mirror with
//! faults, for tests. No HTTP server, HTTP/2 or signal handling is compiled
//! in.
//!
//! ```no_run
//! use dare_updater::{UpdaterBuilder, Status};
//! use dare_container::keys::VerifierKey;
//!
//! let key: VerifierKey = "example.com/app+c74f20a3+AZE5pN...".parse()?;
//! let updater = dare_updater::blocking::Updater::new(
//!     UpdaterBuilder::new()
//!         .mirror("https://mirror.example.com/app.dare")
//!         .trust(key)
//!         .state_dir("/var/lib/app/update")
//!         .install_dir("/opt/app"),
//! )?;
//! let outcome = updater.update()?;
//! if outcome.status == Status::Updated {
//!     println!("updated to {}", outcome.version);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

pub mod blocking;
pub mod config;
pub mod error;
pub mod fetch;
#[doc(hidden)]
pub mod fuzzing;
mod http;
mod install;
mod multipart;
pub mod progress;
mod session;
pub mod state;
pub mod transport;

use std::path::PathBuf;
use std::sync::Arc;

pub use config::{UpdaterBuilder, host_target};
pub use error::UpdateError;
// The install directory's layout for apps (where `current` is); staging and
// committing builds stays inside the crate.
pub use install::{current_dir, current_link, current_version};
pub use progress::{Event, Progress};
pub use transport::TlsRoots;

/// What a check or an update found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Status {
    /// A newer build was installed.
    Updated,
    /// The installed build is the newest.
    UpToDate,
    /// A newer build exists (a check only).
    Available,
}

impl Status {
    /// `updated`, `up-to-date` or `available`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Updated => "updated",
            Status::UpToDate => "up-to-date",
            Status::Available => "available",
        }
    }
}

/// The result of [`Updater::check`] or [`Updater::update`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Outcome {
    /// What happened.
    pub status: Status,
    /// The target triple.
    pub target: String,
    /// The channel.
    pub channel: String,
    /// The newest version in the signed manifest for this target.
    pub version: String,
    /// The version installed before, if any.
    pub previous: Option<String>,
    /// Bytes received from mirrors (bodies, including framing).
    pub bytes_fetched: u64,
    /// HTTP requests (or reads) made.
    pub requests: u64,
    /// Bytes of entry and delta frames fetched (`bytes_full + bytes_delta`).
    pub payload_bytes: u64,
    /// Bytes of whole-entry frames fetched.
    pub bytes_full: u64,
    /// Bytes of delta frames fetched.
    pub bytes_delta: u64,
    /// Content bytes taken from the installed build instead of fetched.
    pub bytes_reused: u64,
    /// Where the new build was installed.
    pub install_path: Option<PathBuf>,
    /// The signed tree size.
    pub tree_size: u64,
    /// The signed time of the seal.
    pub signed_time: u64,
    /// Key rotations followed since the trust root this client held (with
    /// `--check`, rotations pending: the state is not moved).
    pub rotations: u64,
    /// The fingerprint of the trust root in effect for the signed tree.
    pub trust_fingerprint: String,
}

/// Checks for and installs new builds. Cheap to keep; each call is one session.
pub struct Updater {
    cfg: config::Config,
}

impl std::fmt::Debug for Updater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Updater").field("target", &self.cfg.target).field("channel", &self.cfg.channel).finish()
    }
}

impl Updater {
    pub(crate) fn new(cfg: config::Config) -> Self {
        Updater { cfg }
    }

    /// Reads the signed seal (one request of about 1 KiB when the tree is the
    /// one verified last; else also the map and manifest) and reports whether
    /// a newer build exists. Installs nothing and records nothing.
    pub async fn check(&self) -> Result<Outcome, UpdateError> {
        self.run(false).await
    }

    /// Installs the newest build for the target if it is newer than the
    /// installed one, after verifying everything.
    pub async fn update(&self) -> Result<Outcome, UpdateError> {
        self.run(true).await
    }

    /// Runs a session, starting with each mirror in turn when one serves
    /// data that fails verification or is stale (a bad signature or digest,
    /// a fork, a rollback, a freeze): another mirror may be honest and
    /// current. The first mirror's error is returned when all fail.
    async fn run(&self, install: bool) -> Result<Outcome, UpdateError> {
        let n = self.cfg.transports.len();
        let mut spent = fetch::Mirrors::new(Vec::new(), self.cfg.retry.clone()).stats();
        let mut first_error = None;
        // Each mirror's deadline covers the whole run, whichever session asks it.
        let clocks = Arc::new(fetch::MirrorClocks::default());
        for start in 0..n {
            let mut order = self.cfg.transports.clone();
            order.rotate_left(start);
            let mirrors = fetch::Mirrors::new(order, self.cfg.retry.clone())
                .with_deadline(&self.cfg.timeouts)
                .with_clocks(Arc::clone(&clocks));
            match session::run(&self.cfg, &mirrors, install).await {
                Ok(mut outcome) => {
                    outcome.bytes_fetched += spent.bytes;
                    outcome.requests += spent.requests;
                    return Ok(outcome);
                }
                Err(e) if start + 1 < n && e.another_mirror_may_help() => {
                    tracing::warn!(mirror = %mirrors.names()[0], error = %e, "trying the next mirror");
                    let s = mirrors.stats();
                    spent.bytes += s.bytes;
                    spent.requests += s.requests;
                    first_error.get_or_insert(e);
                }
                Err(e) => return Err(first_error.unwrap_or(e)),
            }
        }
        Err(first_error.unwrap_or_else(|| UpdateError::Config("no mirror given".into())))
    }

    /// The install directory.
    pub fn install_dir(&self) -> &std::path::Path {
        &self.cfg.install_dir
    }
}
