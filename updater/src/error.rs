//! The updater's error type: each attack the updater defends against has its
//! own variant, so an application can tell them apart.

use std::path::PathBuf;

use crate::fetch::FetchError;

/// Why an update (or a check) did not happen. Nothing is installed when any
/// of these is returned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpdateError {
    /// The builder was given something unusable.
    #[error("configuration: {0}")]
    Config(String),
    /// The mirror offers an older tree or an older seal than this client
    /// already verified: a rollback (replay) attack or a stale mirror.
    #[error("rollback refused: {0}")]
    Rollback(String),
    /// The newest seal is older than the maximum age: the mirror may be
    /// frozen, or the publisher stopped sealing.
    #[error(
        "freeze refused: the newest seal was signed {age_secs} s ago, more than the maximum age of {max_age_secs} s"
    )]
    Freeze {
        /// Seconds since the seal was signed.
        age_secs: u64,
        /// The maximum age configured.
        max_age_secs: u64,
    },
    /// The seal is signed further ahead of this client's clock than the
    /// allowed skew ([`MAX_CLOCK_SKEW`](dare_container::client::MAX_CLOCK_SKEW)):
    /// a publisher's mistake (a time in milliseconds) or a wrong clock here.
    #[error("seal from the future refused: {0}; check this machine's clock, or the publisher's signed time")]
    FutureTime(dare_container::client::FutureTime),
    /// The signed tree does not extend the one this client stored: the log
    /// forked, or the mirror served proof data that does not match.
    #[error("fork refused: {0}")]
    Fork(String),
    /// The mirror's copy does not end with a seal: a publish caught in
    /// progress (try again soon), or a damaged copy.
    #[error("unsealed: {0}")]
    Unsealed(String),
    /// The mirror's copy is not a container where the signed data says: its
    /// last bytes are not a frame, or the frames the seal names are not at
    /// the offsets it signs (a damaged, cut or shifted file).
    #[error("damaged copy: {0}")]
    Damaged(String),
    /// The checkpoint is not signed by enough trusted keys, or its tail is malformed.
    #[error("bad signature: {0}")]
    BadSignature(String),
    /// The checkpoint is not cosigned by enough of the witnesses this client
    /// requires ([`UpdaterBuilder::witness`](crate::UpdaterBuilder::witness)):
    /// a publisher that did not show it to them, maybe a split view.
    #[error("witness cosignatures refused: {0}")]
    Witness(String),
    /// Fetched bytes do not match their signed digests or the signed tree.
    #[error("bad digest: {0}")]
    BadDigest(String),
    /// The key rotations since the trust root this client holds cannot be
    /// followed: one is not signed by the root before it, a `keys` leaf is
    /// missing or not in the signed tree, or there are more than
    /// [`MAX_ROTATIONS`](dare_container::seal::MAX_ROTATIONS).
    #[error("key rotation refused: {0}")]
    Rotation(String),
    /// The signed manifest has no release for this target and channel.
    #[error("no release for target {target} on channel {channel}; the container has: {available}")]
    MissingTarget {
        /// The target asked for.
        target: String,
        /// The channel asked for.
        channel: String,
        /// What the manifest lists.
        available: String,
    },
    /// The checkpoint is for another container than this client follows.
    #[error("wrong container: the checkpoint's origin is {found}, this client follows {expected}")]
    WrongOrigin {
        /// The origin pinned in the state or configuration.
        expected: String,
        /// The origin found.
        found: String,
    },
    /// Every mirror failed.
    #[error("network: {0}")]
    Network(FetchError),
    /// Local files could not be read or written.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The release is on a private channel (FORMAT.md section 13) and this
    /// updater cannot open it: no identity was given, none given is a
    /// recipient of the release, an identity file is unusable, or the
    /// updater was built without its `encryption` feature. Not an attack:
    /// nothing was fetched beyond the index and the key exchange.
    #[error("private channel: {0}")]
    Identity(String),
    /// The state directory or replica is damaged or locked.
    #[error("local state: {0}")]
    State(String),
}

impl UpdateError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        UpdateError::Io { op, path: path.into(), source }
    }

    /// Whether starting over from another mirror could succeed: the data
    /// failed verification or was stale, which says more about a mirror
    /// than about the publisher.
    pub fn another_mirror_may_help(&self) -> bool {
        matches!(
            self,
            UpdateError::Rollback(_)
                | UpdateError::Freeze { .. }
                | UpdateError::FutureTime(_)
                | UpdateError::Fork(_)
                | UpdateError::BadSignature(_)
                | UpdateError::Witness(_)
                | UpdateError::BadDigest(_)
                | UpdateError::Rotation(_)
                | UpdateError::Unsealed(_)
                | UpdateError::Damaged(_)
        )
    }

    /// True when the update was refused as an attack or failed verification:
    /// a bad signature or digest, too few witness cosignatures, a rollback, a
    /// freeze, a seal from the future, a fork, a damaged copy or the wrong origin. False for
    /// configuration, network, local I/O and state trouble, a missing target
    /// and a publish caught in progress. The `dare` CLI exits with code 3 for
    /// these.
    pub fn is_verification_failure(&self) -> bool {
        match self {
            UpdateError::Rollback(_)
            | UpdateError::Freeze { .. }
            | UpdateError::FutureTime(_)
            | UpdateError::Fork(_)
            | UpdateError::Damaged(_)
            | UpdateError::BadSignature(_)
            | UpdateError::Witness(_)
            | UpdateError::BadDigest(_)
            | UpdateError::Rotation(_)
            | UpdateError::WrongOrigin { .. } => true,
            UpdateError::Config(_)
            | UpdateError::Unsealed(_)
            | UpdateError::MissingTarget { .. }
            | UpdateError::Network(_)
            | UpdateError::Io { .. }
            | UpdateError::Identity(_)
            | UpdateError::State(_) => false,
        }
    }

    /// A short stable name for the kind of failure (for `--json` and logs).
    pub fn kind(&self) -> &'static str {
        match self {
            UpdateError::Config(_) => "config",
            UpdateError::Rollback(_) => "rollback",
            UpdateError::Freeze { .. } => "freeze",
            UpdateError::FutureTime(_) => "future-time",
            UpdateError::Fork(_) => "fork",
            UpdateError::BadSignature(_) => "bad-signature",
            UpdateError::Witness(_) => "witness",
            UpdateError::Unsealed(_) => "unsealed",
            UpdateError::Damaged(_) => "damaged",
            UpdateError::BadDigest(_) => "bad-digest",
            UpdateError::Rotation(_) => "rotation",
            UpdateError::MissingTarget { .. } => "missing-target",
            UpdateError::WrongOrigin { .. } => "wrong-origin",
            UpdateError::Network(_) => "network",
            UpdateError::Io { .. } => "io",
            UpdateError::Identity(_) => "identity",
            UpdateError::State(_) => "state",
        }
    }
}

impl From<dare_container::Error> for UpdateError {
    fn from(e: dare_container::Error) -> Self {
        match e {
            // Writing the replica on a full disk is an I/O error, not damaged state.
            dare_container::Error::Io { op, path, source } => UpdateError::Io { op, path, source },
            e => UpdateError::State(e.to_string()),
        }
    }
}
