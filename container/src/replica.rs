//! Partial containers: an updater's local replica.
//!
//! A replica holds the genesis frame and, for every update, copies of the
//! frames the client fetched (the same bytes as upstream: its entries and the
//! manifest), a `proof` frame, and a copy of the seal. The proof frame lists
//! the leaf index of every leaf frame since the previous seal and the node
//! hashes that, with those leaves and the previous seal's tree, give the new
//! seal's root. So every leaf present can be checked against a signed
//! checkpoint, offline, and nothing in the replica is trusted for being there.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::frame::encode_frame;
use crate::header::{Header, Proof};
use crate::merkle::{Hash, NodeId};

/// Appends update segments to a replica under an exclusive lock.
#[derive(Debug)]
pub struct ReplicaWriter {
    path: PathBuf,
    file: File,
    start: u64,
    end: u64,
}

impl ReplicaWriter {
    /// Opens (creating if missing) the replica at `path`, cutting it back to
    /// `committed` bytes: whatever an interrupted update left after that is
    /// not part of the replica.
    pub fn open(path: &Path, committed: u64) -> Result<ReplicaWriter, Error> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| Error::io("opening", path, e))?;
        crate::appender::lock_exclusive(&file, path)?;
        let len = file.metadata().map_err(|e| Error::io("reading", path, e))?.len();
        if len < committed {
            return Err(Error::Changed {
                path: path.to_path_buf(),
                reason: format!("it is {len} bytes but {committed} were committed"),
            });
        }
        if len > committed {
            file.set_len(committed).map_err(|e| Error::io("cutting back", path, e))?;
        }
        (&file).seek(SeekFrom::Start(committed)).map_err(|e| Error::io("seeking in", path, e))?;
        Ok(ReplicaWriter { path: path.to_path_buf(), file, start: committed, end: committed })
    }

    /// The replica's length so far.
    pub fn len(&self) -> u64 {
        self.end
    }

    /// Whether nothing has been written yet (not even a genesis).
    pub fn is_empty(&self) -> bool {
        self.end == 0
    }

    /// Appends exactly `len` bytes of already verified frames from `src`.
    pub fn append_frames(&mut self, src: &mut dyn Read, len: u64) -> Result<(), Error> {
        let mut out = BufWriter::with_capacity(1 << 20, &self.file);
        let n = io::copy(&mut src.take(len), &mut out)
            .and_then(|n| out.flush().map(|()| n))
            .map_err(|e| Error::io("writing", &self.path, e))?;
        if n != len {
            return Err(Error::io("writing", &self.path, io::Error::other(format!("copied {n} of {len} bytes"))));
        }
        self.end += n;
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

    /// Syncs what was appended and returns the new committed length.
    pub fn commit(self) -> Result<u64, Error> {
        self.file.sync_all().map_err(|e| Error::io("syncing", &self.path, e))?;
        Ok(self.end)
    }

    /// Cuts the replica back to where this writer started.
    pub fn abort(self) -> Result<(), Error> {
        self.file.set_len(self.start).map_err(|e| Error::io("cutting back", &self.path, e))
    }
}
