//! The publisher's error type.

use std::io;
use std::path::PathBuf;

/// What can go wrong publishing, sealing or extracting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The container refused the request or does not verify.
    #[error(transparent)]
    Container(#[from] dare_container::Error),
    /// A file could not be read or written.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The request is malformed: an unknown target triple, a bad version,
    /// a missing or unsupported artifact file.
    #[error("{0}")]
    Invalid(String),
    /// The release asked for is not in the container.
    #[error("{0}")]
    NotFound(String),
    /// A payload does not match its signed digest.
    #[error("{0}")]
    Integrity(String),
}

impl PublishError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        PublishError::Io { op, path: path.into(), source }
    }
}
