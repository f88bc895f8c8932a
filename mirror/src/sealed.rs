//! Serving a container only up to its last complete seal.
//!
//! A publisher appends to a container in place: entries, then the tiles, the
//! map, the manifest and the seal. A client that reads the file meanwhile
//! would find a tail that is not a seal ("unsealed"), or, with a suffix read,
//! a signature over bytes that are not all there yet. So every `*.dare` file
//! is served as its *sealed prefix*: the bytes up to the end of its last
//! complete seal frame. Finding it is cheap: the file's last frame is read
//! backward from its end, and when it is a seal, the whole file is sealed
//! (the common case). Otherwise a publish is in progress, and the frames are
//! walked forward (reading only their lengths and headers, never payloads)
//! from the last sealed length found before for the same file, or from the
//! start. The answer is kept per path and looked for again only when the
//! file's length, modification time or inode changes.
//!
//! A file whose first frame is not a frame (not a container) is served
//! whole. While a publish is in progress the served prefix keeps the
//! modification time it was first seen with, so its `ETag` stays the same
//! as long as its bytes do.

use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::os::unix::fs::MetadataExt;
use std::sync::{Mutex, PoisonError};

use dare_container::frame::{FrameInfo, Frames, read_frame_before, read_header};

/// Cached answers, at most this many paths.
const MAX_PATHS: usize = 4096;

/// How much of a file is served, and the modification time its validators
/// use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Sealed {
    pub len: u64,
    /// Seconds and nanoseconds.
    pub mtime: (i64, i64),
}

#[derive(Clone, Copy, Debug)]
struct Known {
    dev: u64,
    ino: u64,
    file_len: u64,
    file_mtime: (i64, i64),
    /// The sealed prefix; `None` for a file that is not a container.
    sealed: Option<u64>,
    /// The modification time the validators of that prefix use.
    mtime: (i64, i64),
}

/// The sealed prefixes of the `*.dare` files served, by URL path.
#[derive(Debug, Default)]
pub(crate) struct SealedPrefixes {
    known: Mutex<HashMap<String, Known>>,
}

/// Whether a path is served as a container's sealed prefix.
pub(crate) fn is_container_path(path: &str) -> bool {
    path.ends_with(".dare")
}

impl SealedPrefixes {
    /// What of the open `file` (at URL `path`, with `meta` from one `fstat`)
    /// is served.
    pub fn get(&self, path: &str, file: &File, meta: &Metadata) -> Sealed {
        let file_mtime = (meta.mtime(), meta.mtime_nsec());
        let whole = Sealed { len: meta.len(), mtime: file_mtime };
        if !is_container_path(path) {
            return whole;
        }
        let before = self.lock().get(path).copied().filter(|k| k.dev == meta.dev() && k.ino == meta.ino());
        if let Some(k) = before
            && k.file_len == meta.len()
            && k.file_mtime == file_mtime
        {
            return Sealed { len: k.sealed.unwrap_or(k.file_len), mtime: k.mtime };
        }
        let len = meta.len();
        let sealed = if ends_with_seal(file, len) {
            Some(len)
        } else {
            // Walk on from the last seal seen in this file, if it is still one.
            let from =
                before.and_then(|k| k.sealed).filter(|&s| s <= len && s > 0 && ends_with_seal(file, s)).unwrap_or(0);
            last_seal_end(file, from, len)
        };
        // A prefix seen before keeps its validators while the file grows past it.
        let mtime = match before {
            Some(k) if sealed.is_some() && k.sealed == sealed && sealed != Some(len) => k.mtime,
            _ => file_mtime,
        };
        let known = Known { dev: meta.dev(), ino: meta.ino(), file_len: len, file_mtime, sealed, mtime };
        let mut all = self.lock();
        if all.len() >= MAX_PATHS && !all.contains_key(path) {
            all.clear();
        }
        all.insert(path.to_owned(), known);
        if sealed.is_some_and(|s| s < len) {
            tracing::debug!(path, len, sealed, "serving a container up to its last complete seal");
        }
        Sealed { len: sealed.unwrap_or(len), mtime }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Known>> {
        self.known.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn is_seal(file: &File, frame: &FrameInfo) -> bool {
    #[derive(serde::Deserialize)]
    struct Kind {
        kind: String,
    }
    read_header(file, frame)
        .ok()
        .and_then(|h| serde_json::from_slice::<Kind>(&h).ok())
        .is_some_and(|k| k.kind == "seal")
}

/// Whether the first `len` bytes of `file` end with a complete seal frame.
fn ends_with_seal(file: &File, len: u64) -> bool {
    read_frame_before(file, 0, len).is_ok_and(|f| is_seal(file, &f))
}

/// The end of the last complete seal frame in `[from, len)`, walking frames
/// forward from `from` (a frame boundary); `from` itself when there is none
/// after it. `None` when `from` is 0 and the file does not start with a
/// frame: not a container.
fn last_seal_end(file: &File, from: u64, len: u64) -> Option<u64> {
    let mut last = from;
    for (i, frame) in Frames::new(file, from, len).enumerate() {
        match frame {
            Ok(f) if is_seal(file, &f) => last = f.end(),
            Ok(_) => {}
            Err(_) if i == 0 && from == 0 => return None,
            Err(_) => break,
        }
    }
    Some(last)
}
