//! The crate's error type.

use std::io;
use std::path::PathBuf;

use crate::header::HeaderError;
use crate::keys::KeyError;
use crate::merkle::ProofError;
use crate::note::NoteError;
use crate::tiles::TileError;
use crate::verify::VerifyError;

/// Everything that can go wrong reading, verifying or appending to a container.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read or written.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done ("reading", "writing", ...).
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The file is not a dare container at all: it does not start with a frame.
    #[error("{} is not a dare container: {starts}", path.display())]
    NotAContainer {
        /// The file.
        path: PathBuf,
        /// What it starts with instead.
        starts: String,
    },
    /// The container does not verify.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// Another process holds the container's lock.
    #[error("{} is locked by another publisher", .0.display())]
    Locked(PathBuf),
    /// The file to create already exists.
    #[error("{} already exists; refusing to overwrite it", .0.display())]
    Exists(PathBuf),
    /// The file changed between reading and appending.
    #[error("{} changed while it was being appended to: {reason}", path.display())]
    Changed {
        /// The container.
        path: PathBuf,
        /// What changed.
        reason: String,
    },
    /// The request breaks a rule of the log (version order, duplicate path,
    /// signing key not trusted, time going backward, ...).
    #[error("{0}")]
    Refused(String),
    /// The signed time asked for is too far ahead of the clock.
    #[error("refusing to sign a time from the future: {0}")]
    FutureTime(#[from] crate::client::FutureTime),
    /// A key problem.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A note or checkpoint problem.
    #[error(transparent)]
    Note(#[from] NoteError),
    /// A header problem.
    #[error(transparent)]
    Header(#[from] HeaderError),
    /// A tree or proof problem.
    #[error(transparent)]
    Proof(#[from] ProofError),
    /// A tile problem.
    #[error(transparent)]
    Tile(#[from] TileError),
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io { op, path: path.into(), source }
    }

    /// True when the bytes of a container (or a signature) are bad, as opposed
    /// to I/O trouble or a refused request.
    pub fn is_integrity(&self) -> bool {
        match self {
            Error::Verify(v) => v.is_integrity(),
            Error::NotAContainer { .. } | Error::Note(_) | Error::Proof(_) | Error::Header(_) | Error::Tile(_) => true,
            _ => false,
        }
    }

    /// True when the container failed verification: its bytes, a digest, a
    /// signature or a proof are bad, or its seals are not signed by the keys
    /// required. False for I/O trouble, a file that is not a container at
    /// all, and refused or malformed requests. The `dare` CLI exits with code
    /// 3 for these.
    pub fn is_verification_failure(&self) -> bool {
        // Not `NotAContainer` (a file given by mistake) nor `Header` (also how
        // an origin or a name given as input is refused): a damaged header
        // inside a container is a `Verify` error.
        match self {
            Error::Verify(v) => v.is_integrity(),
            Error::Note(_) | Error::Proof(_) | Error::Tile(_) => true,
            _ => false,
        }
    }
}
