//! What the client remembers between runs: the last verified checkpoint and
//! its tree's frontier, the installed version, and how long the last seal
//! was (the next check reads that much). Written atomically (temporary file,
//! fsync, rename) and only after the install it records. The replica beside
//! it holds the installed build's index, proven against that checkpoint.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use dare_container::hashio::{digest_from_hex, to_hex};
use dare_container::header::LeafRef;
use dare_container::keys::TrustRoot;
use dare_container::merkle::{Frontier, Hash};
use serde::{Deserialize, Serialize};

use crate::error::UpdateError;

/// The state file's format: 2 goes with container format 2.
const STATE_FORMAT: u32 = 2;

/// The installed build.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Installed {
    /// Target triple.
    pub target: String,
    /// Channel.
    pub channel: String,
    /// Version.
    pub version: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct StateFile {
    format: u32,
    origin: String,
    checkpoint: String,
    size: u64,
    root: String,
    time: u64,
    frontier: Vec<String>,
    seal_len: u64,
    installed: Option<Installed>,
    /// The trust root in effect at `checkpoint`, after the rotations walked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    trust: Option<TrustRoot>,
    /// The `keys` leaf that root came from (none: the client's own keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    keys: Option<LeafRef>,
    /// The fingerprint of the keys the client was configured with when it
    /// started from them: other keys given later start over from those.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pinned: Option<String>,
}

/// The client's verified state.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct State {
    /// The container's origin, pinned at the first update.
    pub origin: String,
    /// The last verified signed checkpoint note.
    pub checkpoint: String,
    /// Its tree size.
    pub size: u64,
    /// Its root.
    pub root: Hash,
    /// Its signed time.
    pub time: u64,
    /// Its tree's frontier (for consistency proofs).
    pub frontier: Frontier,
    /// The length of the last verified seal frame: the next check reads
    /// about that much. Bounded by what was verified.
    pub seal_len: u64,
    /// The installed build.
    pub installed: Option<Installed>,
    /// Where the client's trust stands after the rotations it walked.
    pub trust: Option<Trusted>,
}

/// The trust root a client follows: the keys it was configured with, moved
/// along each key rotation it verified.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Trusted {
    /// The trust root in effect at the stored checkpoint.
    pub root: TrustRoot,
    /// The `keys` leaf that root came from; `None` while it is the client's own keys.
    pub keys: Option<LeafRef>,
    /// The fingerprint of the configured keys (and threshold) it started from.
    pub pinned: String,
}

/// The state file in a state directory.
pub fn state_path(dir: &Path) -> PathBuf {
    dir.join("state.json")
}

/// The replica in a state directory.
pub fn replica_path(dir: &Path) -> PathBuf {
    dir.join("replica.dare")
}

impl State {
    /// Loads the state, or `None` for a new client.
    pub fn load(dir: &Path) -> Result<Option<State>, UpdateError> {
        let path = state_path(dir);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(UpdateError::io("reading", &path, e)),
        };
        let bad = |why: String| UpdateError::State(format!("{}: {why}", path.display()));
        let f: StateFile = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if f.format != STATE_FORMAT {
            return Err(bad(format!(
                "format {} is not supported (this updater writes {STATE_FORMAT}); remove the state directory to start over",
                f.format
            )));
        }
        let root = digest_from_hex(&f.root).ok_or_else(|| bad("root is not a digest".into()))?;
        let hashes = f
            .frontier
            .iter()
            .map(|h| digest_from_hex(h).ok_or_else(|| bad("frontier is not digests".into())))
            .collect::<Result<Vec<_>, _>>()?;
        let frontier = Frontier::from_parts(f.size, hashes).map_err(|e| bad(e.to_string()))?;
        if frontier.root() != root {
            return Err(bad("the stored frontier does not match the stored root".into()));
        }
        Ok(Some(State {
            origin: f.origin,
            checkpoint: f.checkpoint,
            size: f.size,
            root,
            time: f.time,
            frontier,
            seal_len: f.seal_len,
            installed: f.installed,
            trust: match (f.trust, f.pinned) {
                (Some(root), Some(pinned)) => Some(Trusted { root, keys: f.keys, pinned }),
                _ => None,
            },
        }))
    }

    /// Writes the state atomically.
    pub fn save(&self, dir: &Path) -> Result<(), UpdateError> {
        let f = StateFile {
            format: STATE_FORMAT,
            origin: self.origin.clone(),
            checkpoint: self.checkpoint.clone(),
            size: self.size,
            root: to_hex(&self.root),
            time: self.time,
            frontier: self.frontier.hashes().iter().map(|h| to_hex(h)).collect(),
            seal_len: self.seal_len,
            installed: self.installed.clone(),
            trust: self.trust.as_ref().map(|t| t.root.clone()),
            keys: self.trust.as_ref().and_then(|t| t.keys),
            pinned: self.trust.as_ref().map(|t| t.pinned.clone()),
        };
        let bytes = serde_json::to_vec_pretty(&f).map_err(|e| UpdateError::State(e.to_string()))?;
        write_atomic(&state_path(dir), &bytes)
    }
}

/// Writes a file whole or not at all: temporary file, fsync, rename, fsync the directory.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), UpdateError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{}.tmp", path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()));
    let mut f = fs::File::create(&tmp).map_err(|e| UpdateError::io("writing", &tmp, e))?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(|e| UpdateError::io("writing", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| UpdateError::io("writing", path, e))?;
    sync_dir(dir)
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), UpdateError> {
    dare_container::fsys::sync_dir(dir).map_err(|e| UpdateError::io("syncing", dir, e))
}
