//! Partial containers: an updater's local replica.
//!
//! A replica holds what verification and the next update need, not every
//! payload ever fetched: the genesis frame, the index of the installed build,
//! the manifest, a `proof` frame and a copy of the seal. The proof frame
//! lists the leaf index of every leaf frame and the node hashes that, with
//! those leaves, give the seal's root. So every leaf present can be checked
//! against a signed checkpoint, offline, and nothing in the replica is
//! trusted for being there. Each update writes a whole new replica and
//! renames it over the old one: its size stays that of one build's metadata.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read};
use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::frame::encode_frame;
use crate::header::{Header, Proof};
use crate::merkle::{Hash, NodeId};

/// Writes a new replica beside the old one, then replaces it in one rename.
#[derive(Debug)]
pub struct ReplicaWriter {
    path: PathBuf,
    tmp: PathBuf,
    out: BufWriter<File>,
    len: u64,
}

impl ReplicaWriter {
    /// Starts a new replica that will replace `path` when committed.
    pub fn create(path: &Path) -> Result<ReplicaWriter, Error> {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = path.with_file_name(format!(".{name}.new"));
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| Error::io("creating", &tmp, e))?;
        Ok(ReplicaWriter { path: path.to_path_buf(), tmp, out: BufWriter::with_capacity(1 << 20, file), len: 0 })
    }

    /// The replica's length so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing has been written yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends exactly `len` bytes of already verified frames from `src`.
    pub fn append_frames(&mut self, src: &mut dyn Read, len: u64) -> Result<(), Error> {
        let n = io::copy(&mut src.take(len), &mut self.out).map_err(|e| Error::io("writing", &self.tmp, e))?;
        if n != len {
            return Err(Error::io("writing", &self.tmp, io::Error::other(format!("copied {n} of {len} bytes"))));
        }
        self.len += n;
        Ok(())
    }

    /// Appends a proof frame: the leaf index of each leaf frame appended
    /// since the last seal, and the node hashes for the seal that follows.
    pub fn append_proof(&mut self, size: u64, leaves: &[u64], nodes: &[(NodeId, Hash)]) -> Result<(), Error> {
        let header = Header::Proof(Proof {
            size,
            leaves: leaves.to_vec(),
            nodes: nodes.iter().map(|(id, _)| (id.height, id.index)).collect(),
        })
        .to_bytes()?;
        let payload: Vec<u8> = nodes.iter().flat_map(|(_, h)| h.iter().copied()).collect();
        let frame = encode_frame(&header, &payload).ok_or_else(|| Error::Refused("proof frame too large".into()))?;
        self.append_frames(&mut frame.as_slice(), frame.len() as u64)
    }

    /// Syncs the new replica and renames it over the old one; returns its length.
    pub fn commit(self) -> Result<u64, Error> {
        let file = self.out.into_inner().map_err(|e| Error::io("writing", &self.tmp, e.into_error()))?;
        file.sync_all().map_err(|e| Error::io("syncing", &self.tmp, e))?;
        drop(file);
        std::fs::rename(&self.tmp, &self.path).map_err(|e| Error::io("replacing", &self.path, e))?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::fsys::sync_dir(dir).map_err(|e| Error::io("syncing", dir, e))?;
        }
        Ok(self.len)
    }

    /// Drops the new replica; the old one stays.
    pub fn abort(self) -> Result<(), Error> {
        drop(self.out);
        match std::fs::remove_file(&self.tmp) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("removing", &self.tmp, e)),
        }
    }
}
