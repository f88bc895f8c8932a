//! The crate's error type.

use std::io;
use std::path::PathBuf;

/// Everything that can stop the mirror.
///
/// Problems with single requests or connections never surface here: they are
/// answered with an HTTP status, logged, and the server keeps running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MirrorError {
    /// The directory to serve does not exist, cannot be resolved, or is not a
    /// directory.
    #[error("cannot serve {}: {source}", path.display())]
    Root {
        /// The root as given to [`Server::new`](crate::Server::new).
        path: PathBuf,
        /// Why it could not be used.
        #[source]
        source: io::Error,
    },
    /// The listener handed to [`Server::run`](crate::Server::run) is unusable.
    #[error("listener: {0}")]
    Listener(#[source] io::Error),
    /// A witness's state directory or one of its files cannot be created,
    /// locked, read or parsed.
    #[error("witness state {}: {source}", path.display())]
    WitnessState {
        /// The directory or file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: io::Error,
    },
}

impl MirrorError {
    /// True when the directory to serve does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, MirrorError::Root { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}
