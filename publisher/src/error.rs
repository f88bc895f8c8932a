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
    /// True when a container or a payload failed verification (a bad digest,
    /// signature or frame), as opposed to I/O trouble, a malformed request or
    /// a release that is not there. The `dare` CLI exits with code 3 for these.
    pub fn is_verification_failure(&self) -> bool {
        match self {
            PublishError::Container(e) => e.is_verification_failure(),
            PublishError::Integrity(_) => true,
            PublishError::Io { .. } | PublishError::Invalid(_) | PublishError::NotFound(_) => false,
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        PublishError::Io { op, path: path.into(), source }
    }
}
