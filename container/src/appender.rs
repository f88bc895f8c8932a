//! Creating containers and appending releases to them, crash-safely.
//!
//! An [`Appender`] holds an exclusive lock on the container for its whole
//! life. Before its first write it records the sealed length in a small
//! *pending* file beside the container (`CONTAINER.pending`), so that a
//! reader finding bytes after the last seal can tell an interrupted publish
//! from a damaged file. It then appends entries, and [`Appender::seal`]
//! appends the tail (new full tiles, the right-edge tiles, the manifest, the
//! signed seal), fsyncs, and removes the pending file. A crash at any moment
//! leaves the previous seal intact; the next [`Appender::open`] cuts the
//! torn tail off.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::frame::{encode_frame, write_frame};
use crate::hashio::{HashingReader, to_hex};
use crate::header::{
    Entry, EntryRef, FrameRef, Genesis, Header, Manifest, Release, Seal, Sha256Hex, Tile, validate_origin,
};
use crate::keys::{SigningKey, TrustRoot};
use crate::merkle::{MemoryTree, leaf_hash};
use crate::note::{Checkpoint, Note};
use crate::tiles::{self, TileId};
use crate::verify::{Draft, Scan, ScanOptions, Tail, scan};

/// The pending file that marks an append in progress: `CONTAINER.pending`.
pub fn pending_path(container: &Path) -> PathBuf {
    let mut name = container.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".pending");
    container.with_file_name(name)
}

/// The sealed length recorded by an append that has not finished, if any.
pub fn pending_publish(container: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(pending_path(container)).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v.get("sealed_len")?.as_u64()
}

/// What one seal wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealSummary {
    /// Tree size of the new checkpoint.
    pub size: u64,
    /// Its root.
    pub root: [u8; 32],
    /// The signed time.
    pub time: u64,
    /// The container's length after the seal.
    pub len: u64,
    /// Bytes this append wrote.
    pub appended: u64,
    /// The signed checkpoint note.
    pub checkpoint: String,
}

/// A torn tail that [`Appender::open`] cut off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CutTail {
    /// Where it started.
    pub offset: u64,
    /// How long it was.
    pub len: u64,
    /// Why it was not sealed.
    pub reason: String,
}

/// The log state an append builds on.
struct State {
    origin: String,
    trust: TrustRoot,
    /// A trust root appended since the last seal.
    pending_trust: Option<TrustRoot>,
    tree: MemoryTree,
    sealed_size: u64,
    last_time: Option<u64>,
    manifest: Manifest,
    manifest_frame: Option<FrameRef>,
    tiles: HashMap<(u8, u64, u16), u64>,
    /// Releases appended since the last seal: version, entries, paths.
    fresh: BTreeMap<(String, String), Draft>,
}

/// Bytes written after a position, counted.
struct Sink<'f> {
    out: BufWriter<&'f File>,
    pos: u64,
}

impl Sink<'_> {
    fn frame(&mut self, header: &Header, payload: &[u8]) -> Result<(FrameRef, u64), Error> {
        let bytes = header.to_bytes()?;
        let frame = encode_frame(&bytes, payload).ok_or_else(|| Error::Refused("frame over the size limit".into()))?;
        let payload_at = self.pos
            + crate::frame::payload_start(bytes.len() as u64, payload.len() as u64)
                .ok_or_else(|| Error::Refused("frame over the size limit".into()))?;
        self.out.write_all(&frame).map_err(|e| Error::io("writing", "container", e))?;
        let r = FrameRef { offset: self.pos, length: frame.len() as u64 };
        self.pos += frame.len() as u64;
        Ok((r, payload_at))
    }
}

/// Appends to a container under an exclusive lock.
pub struct Appender {
    path: PathBuf,
    file: File,
    state: State,
    /// The sealed length when opened (after any cut).
    base_len: u64,
    /// The current end of the file.
    end: u64,
    cut: Option<CutTail>,
    pending_written: bool,
    /// Where the last seal frame sits and its SHA-256 (it carries the signed root).
    last_seal: (u64, u64, [u8; 32]),
}

impl std::fmt::Debug for Appender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Appender").field("path", &self.path).field("end", &self.end).finish()
    }
}

impl Appender {
    /// Opens a container for appending: takes the lock, verifies every frame's
    /// structure, header, tree, tiles and seals (payload digests too when
    /// `payloads`), and cuts off a torn tail after the last seal.
    pub fn open(path: &Path, payloads: bool) -> Result<Appender, Error> {
        let file = OpenOptions::new().read(true).write(true).open(path).map_err(|e| Error::io("opening", path, e))?;
        lock_exclusive(&file, path)?;
        let len = file.metadata().map_err(|e| Error::io("reading", path, e))?.len();
        let s = scan(&file, len, &ScanOptions { payloads, pins: None })?;
        if s.partial {
            return Err(Error::Refused(format!(
                "{} is a partial container (an updater's replica); publish to the full container",
                path.display()
            )));
        }
        let mut cut = None;
        if let Tail::Torn { offset, len, reason } = &s.tail {
            // Only an interrupted append (which left its pending marker) is
            // cut; bytes nobody explains may be a damaged last release.
            if pending_publish(path) != Some(*offset) {
                return Err(Error::Refused(format!(
                    "{} has {len} bytes after its last valid seal (byte {offset}) that no interrupted publish \
                     explains: {reason}. If they are a damaged release, `dare verify` says where; to drop them, \
                     truncate the file to {offset} bytes",
                    path.display()
                )));
            }
            file.set_len(*offset).map_err(|e| Error::io("cutting the torn tail of", path, e))?;
            file.sync_all().map_err(|e| Error::io("syncing", path, e))?;
            cut = Some(CutTail { offset: *offset, len: *len, reason: reason.clone() });
        }
        remove_pending(path)?;
        let base_len = s.sealed_len;
        let seal_frame = s.last_seal.frame;
        let last_seal =
            (seal_frame.offset, seal_frame.len(), seal_digest(&file, seal_frame.offset, seal_frame.len(), path)?);
        let state = State::from_scan(s);
        Ok(Appender {
            path: path.to_path_buf(),
            file,
            state,
            base_len,
            end: base_len,
            cut,
            pending_written: false,
            last_seal,
        })
    }

    /// Creates a new container at `path` (refusing to overwrite anything):
    /// the genesis frame, an empty manifest and a seal signed by `keys` at `time`.
    /// The file appears whole or not at all.
    pub fn create(path: &Path, genesis: Genesis, keys: &[&SigningKey], time: u64) -> Result<SealSummary, Error> {
        validate_origin(&genesis.origin)?;
        genesis.trust.validate()?;
        if path.exists() {
            return Err(Error::Exists(path.to_path_buf()));
        }
        let dir = parent_dir(path);
        let tmp = tempfile_in(&dir, path)?;
        let result = (|| {
            let file =
                OpenOptions::new().read(true).write(true).open(&tmp).map_err(|e| Error::io("writing", &tmp, e))?;
            let genesis_bytes = Header::Genesis(genesis.clone()).to_bytes()?;
            let mut state = State {
                origin: genesis.origin.clone(),
                trust: genesis.trust.clone(),
                pending_trust: None,
                tree: MemoryTree::new(),
                sealed_size: 0,
                last_time: None,
                manifest: Manifest::default(),
                manifest_frame: None,
                tiles: HashMap::new(),
                fresh: BTreeMap::new(),
            };
            let mut sink = Sink { out: BufWriter::new(&file), pos: 0 };
            let frame = encode_frame(&genesis_bytes, b"").ok_or_else(|| Error::Refused("genesis too large".into()))?;
            sink.out.write_all(&frame).map_err(|e| Error::io("writing", &tmp, e))?;
            sink.pos = frame.len() as u64;
            state.tree.push(leaf_hash(&genesis_bytes));
            let summary = state.write_tail(&mut sink, keys, time, true)?;
            let out = sink.out.into_inner().map_err(|e| Error::io("writing", &tmp, e.into_error()))?;
            out.sync_all().map_err(|e| Error::io("syncing", &tmp, e))?;
            Ok(summary)
        })();
        let result = result.and_then(|summary| {
            // A hard link never replaces an existing file.
            std::fs::hard_link(&tmp, path).map_err(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => Error::Exists(path.to_path_buf()),
                _ => Error::io("creating", path, e),
            })?;
            sync_dir(&dir)?;
            Ok(summary)
        });
        let _ = std::fs::remove_file(&tmp);
        result
    }

    /// The torn tail that [`Appender::open`] cut off, if there was one.
    pub fn cut_tail(&self) -> Option<&CutTail> {
        self.cut.as_ref()
    }

    /// The container's origin.
    pub fn origin(&self) -> &str {
        &self.state.origin
    }

    /// The trust root in effect.
    pub fn trust(&self) -> &TrustRoot {
        &self.state.trust
    }

    /// The last sealed manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.state.manifest
    }

    /// The signed time of the last seal.
    pub fn last_time(&self) -> Option<u64> {
        self.state.last_time
    }

    /// Tree size at the last seal.
    pub fn sealed_size(&self) -> u64 {
        self.state.sealed_size
    }

    /// The sealed length of the container.
    pub fn sealed_len(&self) -> u64 {
        self.base_len
    }

    /// Checks that an entry may be appended: a version newer than the sealed
    /// release of its target and channel, one version per target and channel
    /// in one release, and no path twice.
    pub fn check_entry(&self, e: &Entry) -> Result<(), Error> {
        Header::Entry(e.clone()).validate()?;
        // Writers are stricter than readers: only triples target-lexicon knows.
        crate::header::validate_known_target(&e.target)?;
        let version = e.semver();
        let key = (e.channel.clone(), e.target.clone());
        if let Some(d) = self.state.fresh.get(&key) {
            let v = &d.version;
            if *v != version {
                return Err(Error::Refused(format!(
                    "{} on {} gets both {v} and {version} in one release",
                    e.target, e.channel
                )));
            }
            if d.paths.contains(&e.path) {
                return Err(Error::Refused(format!(
                    "{} {} {version} already has a file {}",
                    e.target, e.channel, e.path
                )));
            }
        } else if let Some(r) = self.state.manifest.release(&e.channel, &e.target) {
            let published = semver::Version::parse(&r.version).map_err(|err| Error::Refused(err.to_string()))?;
            if version.cmp_precedence(&published) != std::cmp::Ordering::Greater {
                return Err(Error::Refused(format!(
                    "version {version} is not greater than {published}, already published for {} on {}",
                    e.target, e.channel
                )));
            }
        }
        Ok(())
    }

    /// Appends one entry whose payload (exactly `entry.stored_size` bytes,
    /// hashing to `entry.stored_sha256`) is streamed from `payload`.
    pub fn append_entry(&mut self, entry: Entry, payload: &mut dyn Read) -> Result<EntryRef, Error> {
        self.check_entry(&entry)?;
        let bytes = Header::Entry(entry.clone()).to_bytes()?;
        self.begin()?;
        let mut out = BufWriter::with_capacity(1 << 20, &self.file);
        let mut reader = HashingReader::new(payload);
        let n = write_frame(&mut out, &bytes, entry.stored_size, &mut reader)
            .and_then(|n| out.flush().map(|()| n))
            .map_err(|e| Error::io("appending to", &self.path, e))?;
        drop(out);
        let (digest, _, _) = reader.finish();
        if digest != entry.stored_sha256.0 {
            return Err(Error::Refused(format!(
                "payload for {} hashed to {} while being written, not the announced {}",
                entry.path,
                to_hex(&digest),
                entry.stored_sha256
            )));
        }
        let leaf = self.state.tree.size();
        self.state.tree.push(leaf_hash(&bytes));
        let r = EntryRef { leaf, offset: self.end, length: n };
        self.end += n;
        let key = (entry.channel.clone(), entry.target.clone());
        let slot = self.state.fresh.entry(key).or_insert_with(|| Draft::new(entry.semver()));
        slot.entries.push(r);
        slot.paths.insert(entry.path);
        Ok(r)
    }

    /// Appends a new trust root. The next seal must be signed by a threshold
    /// of both the current root and the new one.
    pub fn append_keys(&mut self, trust: TrustRoot) -> Result<(), Error> {
        trust.validate()?;
        if self.state.pending_trust.is_some() {
            return Err(Error::Refused("one trust root rotation per seal".into()));
        }
        let bytes = Header::Keys(crate::header::Keys { trust: trust.clone() }).to_bytes()?;
        self.begin()?;
        let frame = encode_frame(&bytes, b"").ok_or_else(|| Error::Refused("keys frame too large".into()))?;
        (&self.file).write_all(&frame).map_err(|e| Error::io("appending to", &self.path, e))?;
        self.state.tree.push(leaf_hash(&bytes));
        self.end += frame.len() as u64;
        self.state.pending_trust = Some(trust);
        Ok(())
    }

    /// Appends the tail and a seal signed by `keys` at `time`, then syncs.
    /// With no new leaves this is a heartbeat: only a fresh seal is written.
    pub fn seal(mut self, keys: &[&SigningKey], time: u64) -> Result<SealSummary, Error> {
        self.begin()?;
        let file = &self.file;
        let mut sink = Sink { out: BufWriter::new(file), pos: self.end };
        let new_leaves = self.state.tree.size() != self.state.sealed_size;
        let mut summary = self.state.write_tail(&mut sink, keys, time, new_leaves)?;
        sink.out.flush().map_err(|e| Error::io("appending to", &self.path, e))?;
        drop(sink);
        self.file.sync_all().map_err(|e| Error::io("syncing", &self.path, e))?;
        remove_pending(&self.path)?;
        summary.appended = summary.len - self.base_len;
        Ok(summary)
    }

    /// Gives up this append: cuts the file back to its sealed length, syncs,
    /// and removes the pending file. The container is as it was when opened.
    pub fn abort(self) -> Result<(), Error> {
        if self.end != self.base_len || self.pending_written {
            self.file.set_len(self.base_len).map_err(|e| Error::io("cutting back", &self.path, e))?;
            self.file.sync_all().map_err(|e| Error::io("syncing", &self.path, e))?;
        }
        remove_pending(&self.path)
    }

    /// Writes the pending file and positions the file at its end, once,
    /// after checking the file has not changed since it was opened.
    fn begin(&mut self) -> Result<(), Error> {
        let len = self.file.metadata().map_err(|e| Error::io("reading", &self.path, e))?.len();
        if len != self.end {
            return Err(Error::Changed {
                path: self.path.clone(),
                reason: format!("its length is {len}, expected {}", self.end),
            });
        }
        if !self.pending_written {
            self.check_same_file()?;
            // The same length is not enough: the last seal (and so the signed
            // root) must still be the one this append builds on.
            let (at, n, digest) = self.last_seal;
            if seal_digest(&self.file, at, n, &self.path)? != digest {
                return Err(Error::Changed { path: self.path.clone(), reason: "its last seal was rewritten".into() });
            }
            let pending = pending_path(&self.path);
            let body = format!("{{\"sealed_len\":{}}}\n", self.base_len);
            write_synced(&pending, body.as_bytes())?;
            sync_dir(&parent_dir(&self.path))?;
            self.pending_written = true;
        }
        (&self.file).seek(SeekFrom::Start(self.end)).map_err(|e| Error::io("seeking in", &self.path, e))?;
        Ok(())
    }

    /// The path must still name the file we locked (not a replacement).
    fn check_same_file(&self) -> Result<(), Error> {
        use std::os::unix::fs::MetadataExt;
        let a = self.file.metadata().map_err(|e| Error::io("reading", &self.path, e))?;
        let b = std::fs::metadata(&self.path).map_err(|e| Error::io("reading", &self.path, e))?;
        if a.ino() != b.ino() || a.dev() != b.dev() {
            return Err(Error::Changed { path: self.path.clone(), reason: "the path now names another file".into() });
        }
        Ok(())
    }
}

impl State {
    fn from_scan(s: Scan) -> State {
        State {
            origin: s.genesis.origin.clone(),
            trust: s.trust.clone(),
            pending_trust: None,
            sealed_size: s.size(),
            last_time: Some(s.last_seal.seal.time),
            manifest: s.manifest,
            manifest_frame: Some(FrameRef { offset: s.manifest_frame.offset, length: s.manifest_frame.len() }),
            tiles: s.tiles,
            tree: s.tree,
            fresh: BTreeMap::new(),
        }
    }

    /// The manifest after this release: the sealed one with fresh releases merged in.
    fn next_manifest(&self) -> Manifest {
        let mut map: BTreeMap<(String, String), Release> =
            self.manifest.releases.iter().map(|r| ((r.channel.clone(), r.target.clone()), r.clone())).collect();
        for ((channel, target), d) in &self.fresh {
            map.insert(
                (channel.clone(), target.clone()),
                Release {
                    channel: channel.clone(),
                    target: target.clone(),
                    version: d.version.to_string(),
                    entries: d.entries.clone(),
                },
            );
        }
        Manifest { releases: map.into_values().collect() }
    }

    /// Writes (when `new_tree`) the tiles and manifest, then the seal.
    fn write_tail(
        &mut self,
        sink: &mut Sink<'_>,
        keys: &[&SigningKey],
        time: u64,
        new_tree: bool,
    ) -> Result<SealSummary, Error> {
        if keys.is_empty() {
            return Err(Error::Refused("no signing key given".into()));
        }
        if let Some(last) = self.last_time
            && time < last
        {
            return Err(Error::Refused(format!("time {time} is before the last seal's signed time {last}")));
        }
        let distinct: BTreeSet<String> = keys.iter().map(|k| k.verifier().to_string()).collect();
        if distinct.len() < self.trust.threshold as usize {
            return Err(Error::Refused(format!(
                "the trust root needs {} distinct signing keys; {} given",
                self.trust.threshold,
                distinct.len()
            )));
        }
        for k in keys {
            let v = k.verifier();
            let in_new = self.pending_trust.as_ref().is_some_and(|t| t.contains(&v));
            if !self.trust.contains(&v) && !in_new {
                return Err(Error::Refused(format!("signing key {v} is not in the container's trust root")));
            }
        }
        if new_tree {
            let manifest = self.next_manifest();
            let mbytes = Header::Manifest(manifest.clone()).to_bytes()?;
            let old = self.sealed_size;
            self.tree.push(leaf_hash(&mbytes));
            let n = self.tree.size();
            let mut written: BTreeSet<TileId> = BTreeSet::new();
            for t in tiles::new_full_tiles(old, n).into_iter().chain(tiles::right_edge(n)) {
                if !written.insert(t) || self.tiles.contains_key(&(t.level, t.index, t.width)) {
                    continue;
                }
                let hashes = tiles::tile_hashes(&self.tree, t)?;
                let payload = tiles::tile_bytes(&hashes);
                let header = Header::Tile(Tile { level: t.level, index: t.index, width: t.width });
                let (_, at) = sink.frame(&header, &payload)?;
                self.tiles.insert((t.level, t.index, t.width), at);
            }
            let (mref, _) = sink.frame(&Header::Manifest(manifest.clone()), b"")?;
            self.manifest = manifest;
            self.manifest_frame = Some(mref);
        }
        let n = self.tree.size();
        let root = self.tree.root_at(n)?;
        let mref = self.manifest_frame.ok_or_else(|| Error::Refused("no manifest to seal".into()))?;
        let mut tile_offsets: Vec<Vec<u64>> = Vec::new();
        for t in tiles::tiles_at(n) {
            let at = *self
                .tiles
                .get(&(t.level, t.index, t.width))
                .ok_or_else(|| Error::Refused(format!("tile {} was never written", t.path())))?;
            let level = t.level as usize;
            if tile_offsets.len() <= level {
                tile_offsets.resize(level + 1, Vec::new());
            }
            tile_offsets[level].push(at);
        }
        let proof = self.tree.inclusion_proof(n - 1, n)?;
        let cp = Checkpoint { origin: self.origin.clone(), size: n, root, time: Some(time), extensions: Vec::new() };
        let note = Note::sign(&cp.to_text(), keys)?;
        // Sign only what verifies: the threshold of the root in effect (and of a new root).
        note.verify(&self.trust)?;
        if let Some(t) = &self.pending_trust {
            note.verify(t)?;
        }
        let checkpoint = String::from_utf8(note.to_bytes()).map_err(|e| Error::Refused(e.to_string()))?;
        let seal = Seal {
            checkpoint: checkpoint.clone(),
            time,
            manifest: mref,
            manifest_proof: proof.into_iter().map(Sha256Hex).collect(),
            tiles: tile_offsets,
        };
        sink.frame(&Header::Seal(seal), b"")?;
        if let Some(t) = self.pending_trust.take() {
            self.trust = t;
        }
        self.sealed_size = n;
        self.last_time = Some(time);
        self.fresh.clear();
        Ok(SealSummary { size: n, root, time, len: sink.pos, appended: 0, checkpoint })
    }
}

/// Takes an exclusive lock on `file`, waiting up to two seconds: a lock can
/// be held for a moment by a process another thread is spawning (between its
/// fork and exec), which is not another publisher.
pub(crate) fn lock_exclusive(file: &File, path: &Path) -> Result<(), Error> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(()),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(std::fs::TryLockError::WouldBlock) => return Err(Error::Locked(path.to_path_buf())),
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io("locking", path, e)),
        }
    }
}

fn seal_digest(file: &File, offset: u64, len: u64, path: &Path) -> Result<[u8; 32], Error> {
    let mut buf = vec![0u8; usize::try_from(len).map_err(|_| Error::Refused("seal frame too large".into()))?];
    crate::frame::ReadAt::read_exact_at(file, &mut buf, offset).map_err(|e| Error::io("reading", path, e))?;
    Ok(crate::hashio::sha256(&buf))
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn tempfile_in(dir: &Path, target: &Path) -> Result<PathBuf, Error> {
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    for i in 0..100u32 {
        let p = dir.join(format!(".{name}.tmp-{}-{i}", std::process::id()));
        match OpenOptions::new().write(true).create_new(true).open(&p) {
            Ok(_) => return Ok(p),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io("creating a file in", dir, e)),
        }
    }
    Err(Error::io("creating a file in", dir, io::Error::other("no free temporary name")))
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let mut f = File::create(path).map_err(|e| Error::io("writing", path, e))?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(|e| Error::io("writing", path, e))
}

fn remove_pending(container: &Path) -> Result<(), Error> {
    let p = pending_path(container);
    match std::fs::remove_file(&p) {
        Ok(()) => sync_dir(&parent_dir(container)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("removing", p, e)),
    }
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::io("syncing", dir, e))
}
