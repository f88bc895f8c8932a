//! Creating containers and appending releases to them, crash-safely, from
//! the tail alone.
//!
//! An [`Appender`] holds an exclusive lock on the container for its whole
//! life. Opening reads only the genesis and the tail: the last seal (whose
//! signatures it checks), the map and manifest it names (checked against the
//! signed root), and the right-edge tiles (checked against the map's
//! frontier): enough to append leaves and write the tiles they complete,
//! without re-reading the log. `dare verify` stays the full check.
//!
//! Before its first write an append records the sealed length in a small
//! *pending* file beside the container (`CONTAINER.pending`), so that a
//! reader finding bytes after the last seal can tell an interrupted publish
//! from a damaged file. It then appends entries, deltas and indexes, and
//! [`Appender::seal`] appends the tail (new full tiles, filled pages, the
//! right-edge tiles, the map, the manifest, the signed seal), fsyncs, and
//! removes the pending file. A crash at any moment leaves the previous seal
//! intact; the next [`Appender::open`] cuts the torn tail off.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::client::prove_local;
use crate::content;
use crate::crypt::{ContentKey, PayloadKey};
use crate::error::Error;
use crate::frame::{FrameInfo, encode_frame, read_frame_at, read_frame_before, read_header, write_frame};
use crate::hashio::{HashingReader, sha256, to_hex};
use crate::header::{
    Compression, Delta, Entry, FileRecord, FrameRef, Genesis, Header, Index, LeafRef, Manifest, Map, Page, Patch,
    Release, Seal, Sha256Hex, Tile, listing_bytes, validate_origin,
};
use crate::keys::{SigningKey, TrustRoot};
use crate::map::{Edge, LevelMap, PAGE_WIDTH, TileMap, encode_page, levels};
use crate::merkle::{Hash, leaf_hash};
use crate::note::{Checkpoint, Note, NoteSignature};
use crate::tiles::{TILE_WIDTH, TileId};

/// The zstd level of index listings (small, and read by every client of a target).
const LISTING_LEVEL: i32 = 19;

/// `listing` as one zstd frame compressed with `base` as its raw prefix.
fn patch_listing(base: &[u8], listing: &[u8]) -> Result<Vec<u8>, Error> {
    let err = |e: io::Error| Error::Refused(format!("patching the listing: {e}"));
    let span = (base.len().max(listing.len()).max(1)) as u64;
    let window_log = (64 - span.leading_zeros() + 1).clamp(10, 31);
    let mut enc = zstd::stream::write::Encoder::with_ref_prefix(Vec::new(), LISTING_LEVEL, base).map_err(err)?;
    enc.window_log(window_log).map_err(err)?;
    enc.include_checksum(false).map_err(err)?;
    enc.set_pledged_src_size(Some(listing.len() as u64)).map_err(err)?;
    enc.write_all(listing).map_err(err)?;
    enc.finish().map_err(err)
}

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
#[non_exhaustive]
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

/// What [`Appender::seal_cosigned`] asks cosigners for: signature lines to
/// add to the signed checkpoint before the seal is written.
pub type Cosigner<'a> = dyn FnMut(&CosignRequest<'_>) -> Result<Vec<NoteSignature>, Error> + 'a;

/// A checkpoint signed by the publisher and not yet sealed, with what a
/// witness needs to cosign it (C2SP tlog-witness `add-checkpoint`).
pub struct CosignRequest<'a> {
    note: &'a Note,
    checkpoint: &'a Checkpoint,
    previous_size: u64,
    file: &'a File,
    map: &'a TileMap,
    frontier: &'a crate::merkle::Frontier,
}

impl std::fmt::Debug for CosignRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CosignRequest")
            .field("checkpoint", self.checkpoint)
            .field("previous_size", &self.previous_size)
            .finish()
    }
}

impl CosignRequest<'_> {
    /// The checkpoint note, signed by the publisher's keys.
    pub fn note(&self) -> &Note {
        self.note
    }

    /// The encoded note: what a witness is sent.
    pub fn note_bytes(&self) -> Vec<u8> {
        self.note.to_bytes()
    }

    /// The checkpoint.
    pub fn checkpoint(&self) -> &Checkpoint {
        self.checkpoint
    }

    /// The tree size of the checkpoint.
    pub fn size(&self) -> u64 {
        self.checkpoint.size
    }

    /// The tree size of the last seal (0 for a new container): the size a
    /// witness that cosigned it holds.
    pub fn previous_size(&self) -> u64 {
        self.previous_size
    }

    /// The consistency proof from the tree of `from_size` leaves to this
    /// checkpoint's tree, from the container's tiles (O(log n) reads).
    pub fn consistency_proof(&self, from_size: u64) -> Result<Vec<Hash>, Error> {
        let mut nodes = crate::consistency::TileNodes::new(self.file, self.map, self.frontier)?;
        nodes.consistency_proof(from_size).map_err(|e| match e {
            crate::client::PlanError::Proof(p) => Error::Proof(p),
            crate::client::PlanError::Tile(t) => Error::Tile(t),
            other => Error::Refused(format!("a consistency proof from size {from_size}: {other}")),
        })
    }
}

/// How an append checks the time it signs against the clock.
#[derive(Clone, Copy, Debug)]
struct TimeRule {
    /// How far ahead of the clock the signed time may be.
    max_skew: u64,
    /// Sign a time before the last seal's, which is in the future.
    supersede_future: bool,
}

impl Default for TimeRule {
    fn default() -> Self {
        TimeRule { max_skew: crate::client::MAX_CLOCK_SKEW, supersede_future: false }
    }
}

fn clock() -> Result<u64, Error> {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .map_err(|_| Error::Refused("the clock is before 1970".into()))
}

/// A torn tail that [`Appender::open`] cut off.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CutTail {
    /// Where it started.
    pub offset: u64,
    /// How long it was.
    pub len: u64,
    /// Why it was not sealed.
    pub reason: String,
}

/// The sealed log an append builds on, read from its tail, and what this
/// append added since.
struct State {
    origin: String,
    trust: TrustRoot,
    /// A trust root appended since the last seal.
    pending_trust: Option<TrustRoot>,
    /// The latest keys leaf.
    keys: Option<LeafRef>,
    edge: Edge,
    sealed_size: u64,
    last_time: Option<u64>,
    manifest: Manifest,
    manifest_frame: Option<FrameRef>,
    /// Where the tiles of the sealed tree are.
    map: TileMap,
    map_frame: Option<FrameRef>,
    /// Full tiles completed since the last seal.
    completed: Vec<(TileId, Vec<Hash>)>,
    /// Indexes appended since the last seal.
    fresh: BTreeMap<(String, String), Release>,
    /// Entries and deltas appended since the last seal: leaf to what it holds.
    stored: HashMap<u64, (LeafRef, Sha256Hex, Option<Sha256Hex>)>,
    /// Of those, the ones no index names yet.
    unreferenced: BTreeSet<u64>,
}

/// Bytes written after a position, counted.
struct Sink<W: Write> {
    out: W,
    pos: u64,
}

impl<W: Write> Sink<W> {
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
    /// The sealed root.
    root: Hash,
    /// The sealed length when opened (after any cut).
    base_len: u64,
    /// The current end of the file.
    end: u64,
    cut: Option<CutTail>,
    pending_written: bool,
    /// Where the last seal frame sits and its SHA-256 (it carries the signed root).
    last_seal: (u64, u64, [u8; 32]),
    /// Listings of live indexes already read through [`Appender::read_index`].
    live_listings: std::sync::Mutex<HashMap<u64, Vec<u8>>>,
    time_rule: TimeRule,
    /// Opened by [`Appender::open_for_repair`]: the file's length, whose
    /// bytes after `base_len` are the seal that was cut off.
    repair_len: Option<u64>,
}

impl std::fmt::Debug for Appender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Appender").field("path", &self.path).field("end", &self.end).finish()
    }
}

/// A container whose tail is damaged (not torn by an interrupted append,
/// which is cut off): nothing is appended to it.
fn corrupt_tail(path: &Path, why: impl std::fmt::Display) -> Error {
    let p = path.display();
    Error::Refused(format!(
        "{p}: its tail is damaged ({why}); refusing to append to it. `dare verify {p}` checks the whole \
         container; if only its last seal was cut off, `dare seal {p} --key KEY --repair` seals the same tree again"
    ))
}

fn refused(path: &Path, why: impl std::fmt::Display) -> Error {
    Error::Refused(format!("{}: {why}", path.display()))
}

impl Appender {
    /// Opens a container for appending: takes the lock, reads the genesis
    /// and the tail (the last seal, checked against the trust root in
    /// effect; the map and manifest, checked against the signed root; the
    /// right-edge tiles, checked against the map), and cuts off a torn tail
    /// that the pending file of an interrupted append explains.
    pub fn open(path: &Path) -> Result<Appender, Error> {
        let file = crate::fsys::open_exclusive_rw(path).map_err(|e| Error::io("opening", path, e))?;
        lock_exclusive(&file, path)?;
        let len = file.metadata().map_err(|e| Error::io("reading", path, e))?.len();
        crate::check_is_container(&file, len, path)?;
        let last = read_frame_before(&file, 0, len).ok().filter(|f| is_seal(&file, f));
        let (sealed_len, cut) = match (last, pending_publish(path)) {
            (Some(_), _) => (len, None),
            (None, Some(sealed))
                if sealed < len && read_frame_before(&file, 0, sealed).is_ok_and(|f| is_seal(&file, &f)) =>
            {
                let reason = "an interrupted publish (its pending file names the last seal)".to_string();
                (sealed, Some(CutTail { offset: sealed, len: len - sealed, reason }))
            }
            _ => {
                return Err(corrupt_tail(
                    path,
                    "it does not end with a seal, and no interrupted publish (pending file) explains the bytes \
                     after its last one",
                ));
            }
        };
        let (state, root, seal_frame) = State::read_tail(&file, sealed_len).map_err(|e| match e {
            Error::Refused(m) => corrupt_tail(path, m),
            e => e,
        })?;
        if let Some(c) = &cut {
            file.set_len(c.offset).map_err(|e| Error::io("cutting the torn tail of", path, e))?;
            file.sync_all().map_err(|e| Error::io("syncing", path, e))?;
        }
        remove_pending(path)?;
        let last_seal =
            (seal_frame.offset, seal_frame.len(), seal_digest(&file, seal_frame.offset, seal_frame.len(), path)?);
        Ok(Appender {
            path: path.to_path_buf(),
            file,
            state,
            root,
            base_len: sealed_len,
            end: sealed_len,
            cut,
            pending_written: false,
            last_seal,
            live_listings: Default::default(),
            time_rule: TimeRule::default(),
            repair_len: None,
        })
    }

    /// Opens a container whose last seal was cut off (a copy or a disk that
    /// lost its end after the seal was written), to seal the same tree
    /// again with [`Appender::repair`] instead of cutting a signed release
    /// away, which would fork clients that saw it. The file must end, after
    /// its last complete frame, with at most part of a seal, and that frame
    /// must be the manifest of a release (after its map). The repaired
    /// container is verified in full before anything is written.
    pub fn open_for_repair(path: &Path) -> Result<Appender, Error> {
        let file = crate::fsys::open_exclusive_rw(path).map_err(|e| Error::io("opening", path, e))?;
        lock_exclusive(&file, path)?;
        let len = file.metadata().map_err(|e| Error::io("reading", path, e))?.len();
        crate::check_is_container(&file, len, path)?;
        if read_frame_before(&file, 0, len).ok().is_some_and(|f| is_seal(&file, &f)) {
            return Err(refused(
                path,
                "ends with a complete seal: there is nothing to repair (`dare verify` checks it)",
            ));
        }
        // The complete frames from the start; what follows the last one is
        // the part of the seal that was written.
        let (mut before, mut top) = (None, None);
        for f in crate::frame::Frames::new(&file, 0, len) {
            let Ok(f) = f else { break };
            before = top.replace(f);
        }
        let map_frame = before.filter(|f| is_kind(&file, f, "map"));
        let nothing = |why: &str| {
            refused(
                path,
                format!(
                    "cannot repair: {why}; only a container whose last seal alone was cut off can be re-sealed \
                     (`dare verify {}` says where it breaks)",
                    path.display()
                ),
            )
        };
        let (Some(top), Some(map_frame)) = (top, map_frame) else {
            return Err(nothing("its last complete frames are not a release's map and manifest"));
        };
        let mbytes = read_header(&file, &top).map_err(|e| nothing(&e.to_string()))?;
        let Ok(Header::Manifest(manifest)) = Header::parse(&mbytes) else {
            return Err(nothing("its last complete frame is not a manifest"));
        };
        let Ok(Header::Map(Map { size: n })) =
            read_header(&file, &map_frame).map_err(|e| nothing(&e.to_string())).map(|b| Header::parse(&b))?
        else {
            return Err(nothing("the frame before its last manifest is not a map"));
        };
        let good_end = top.end();
        // What the seals before say: the trust root, the last signed time.
        let scan = crate::verify::scan(&file, good_end, &crate::verify::ScanOptions::default())
            .map_err(|e| nothing(&e.to_string()))?;
        if scan.size >= n {
            return Err(nothing("its last manifest is already sealed"));
        }
        let mut raw = vec![0u8; map_frame.payload_len as usize];
        crate::frame::ReadAt::read_exact_at(&file, &mut raw, map_frame.payload_offset)
            .map_err(|e| Error::io("reading", path, e))?;
        let map = TileMap::decode(n, &raw).map_err(|e| nothing(&format!("its map: {e}")))?;
        let mut frontier = map.before.clone();
        frontier.push(leaf_hash(&mbytes))?;
        let edge = right_edge(&file, &map, n, &frontier).map_err(|e| nothing(&e.to_string()))?;
        // A release that rotated the keys is sealed by both roots.
        let pending_trust = match manifest.keys {
            Some(at) if manifest.keys != scan.manifest.keys => {
                let (_, _, h) =
                    header_at(&file, FrameRef { offset: at.offset, length: at.length }, good_end, "keys leaf")
                        .map_err(|e| nothing(&e.to_string()))?;
                let Header::Keys(k) = h else { return Err(nothing("its manifest's keys leaf is not one")) };
                Some(k.trust)
            }
            _ => None,
        };
        let last = &scan.last_seal;
        let last_seal =
            (last.frame.offset, last.frame.len(), seal_digest(&file, last.frame.offset, last.frame.len(), path)?);
        let state = State {
            origin: scan.genesis.origin.clone(),
            trust: scan.trust.clone(),
            pending_trust,
            keys: manifest.keys,
            edge,
            sealed_size: n,
            last_time: Some(last.seal.time),
            manifest,
            manifest_frame: Some(FrameRef { offset: top.offset, length: top.len() }),
            map,
            map_frame: Some(FrameRef { offset: map_frame.offset, length: map_frame.len() }),
            completed: Vec::new(),
            fresh: BTreeMap::new(),
            stored: HashMap::new(),
            unreferenced: BTreeSet::new(),
        };
        Ok(Appender {
            path: path.to_path_buf(),
            file,
            state,
            root: frontier.root(),
            base_len: good_end,
            end: good_end,
            cut: None,
            pending_written: false,
            last_seal,
            live_listings: Default::default(),
            time_rule: TimeRule::default(),
            repair_len: Some(len),
        })
    }

    /// Seals the tree of a container opened with
    /// [`Appender::open_for_repair`] again, at `time`, in place of the seal
    /// that was cut off: the same size and root, so a client that saw the
    /// lost seal accepts the new one. The whole repaired container (payloads
    /// included) is verified before it is written. Returns the summary and
    /// how many bytes of the cut-off seal were replaced.
    pub fn repair(mut self, keys: &[&SigningKey], time: u64) -> Result<(SealSummary, u64), Error> {
        let Some(len) = self.repair_len else {
            return Err(Error::Refused("repair: the container was not opened for repair".into()));
        };
        let now = self.file.metadata().map_err(|e| Error::io("reading", &self.path, e))?.len();
        if now != len {
            return Err(Error::Changed {
                path: self.path.clone(),
                reason: format!("its length is {now}, expected {len}"),
            });
        }
        self.check_same_file()?;
        let mut sink = Sink { out: Vec::new(), pos: self.end };
        let mut summary = self.state.write_tail(&mut sink, keys, time, false, self.time_rule, None)?;
        let seal = sink.out;
        let spliced = Spliced { file: &self.file, at: self.end, tail: &seal };
        let total = self.end + seal.len() as u64;
        let opts = crate::verify::ScanOptions::full();
        let scan = crate::verify::scan(&spliced, total, &opts)
            .and_then(|scan| crate::verify::walk_backward(&spliced, &scan).map(|()| scan))
            .map_err(|e| refused(&self.path, format!("the repaired container would not verify: {e}")))?;
        if !matches!(scan.tail, crate::verify::Tail::Clean) || scan.size != summary.size {
            return Err(refused(&self.path, "the repaired container would not end with its new seal"));
        }
        crate::fsys::write_all_at(&self.file, &seal, self.end)
            .and_then(|()| self.file.set_len(total))
            .and_then(|()| self.file.sync_all())
            .map_err(|e| Error::io("repairing", &self.path, e))?;
        remove_pending(&self.path)?;
        summary.appended = seal.len() as u64;
        Ok((summary, len - self.end))
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
                keys: None,
                edge: Edge::new(),
                sealed_size: 0,
                last_time: None,
                manifest: Manifest::default(),
                manifest_frame: None,
                map: TileMap { before: Default::default(), levels: Vec::new() },
                map_frame: None,
                completed: Vec::new(),
                fresh: BTreeMap::new(),
                stored: HashMap::new(),
                unreferenced: BTreeSet::new(),
            };
            let mut sink = Sink { out: BufWriter::new(&file), pos: 0 };
            let frame = encode_frame(&genesis_bytes, b"").ok_or_else(|| Error::Refused("genesis too large".into()))?;
            sink.out.write_all(&frame).map_err(|e| Error::io("writing", &tmp, e))?;
            sink.pos = frame.len() as u64;
            state.push_leaf(leaf_hash(&genesis_bytes));
            let summary = state.write_tail(&mut sink, keys, time, true, TimeRule::default(), None)?;
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

    /// Lets the seal's signed time be up to `secs` ahead of the clock
    /// (default [`MAX_CLOCK_SKEW`](crate::client::MAX_CLOCK_SKEW)); more than
    /// [`MAX_SKEW_LIMIT`](crate::client::MAX_SKEW_LIMIT) is refused.
    pub fn set_max_skew(&mut self, secs: u64) -> Result<(), Error> {
        if secs > crate::client::MAX_SKEW_LIMIT {
            return Err(Error::Refused(format!(
                "a skew of {secs} s is more than the limit of {} s: a seal that far ahead of the clock is refused",
                crate::client::MAX_SKEW_LIMIT
            )));
        }
        self.time_rule.max_skew = secs;
        Ok(())
    }

    /// The way out for a container whose last seal was signed in the
    /// future: the next seal may be signed before it (at a time at most the
    /// skew ahead of the clock, as always), and its checkpoint says which
    /// time it supersedes (`supersedes-time`, docs/FORMAT.md). Refused when
    /// the last seal is not more than
    /// [`MAX_CLOCK_SKEW`](crate::client::MAX_CLOCK_SKEW) ahead of the new one.
    pub fn supersede_future_time(&mut self) {
        self.time_rule.supersede_future = true;
    }

    /// Checks `time` as [`Appender::seal`] will: at most the allowed skew
    /// ahead of the clock, and not before the last seal's time (unless it
    /// supersedes a time from the future). Lets a caller refuse early.
    pub fn check_time(&self, time: u64) -> Result<(), Error> {
        check_time(self.state.last_time, time, self.time_rule).map(drop)
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

    /// Reads an index of the sealed log and its listing, proving the index
    /// is in the signed tree at its leaf (with tile hashes read from the
    /// file) and its listing matches the index's digests.
    pub fn read_index(&self, at: LeafRef) -> Result<(Index, Vec<FileRecord>), Error> {
        self.read_index_with(at, &|_| None)
    }

    /// [`Self::read_index`], opening a private index with the content key
    /// `key` gives for its exchange leaf. A private index whose key is not
    /// given comes back with no files: nothing in it can be reused.
    pub fn read_index_with(
        &self,
        at: LeafRef,
        key: &dyn Fn(LeafRef) -> Option<ContentKey>,
    ) -> Result<(Index, Vec<FileRecord>), Error> {
        let bad = |m: String| refused(&self.path, format!("the index at byte {}: {m}", at.offset));
        if at.leaf >= self.state.sealed_size || at.end() > self.base_len {
            return Err(bad("is not in the sealed log".into()));
        }
        let frame = read_frame_at(&self.file, at.offset, at.end()).map_err(|e| bad(e.to_string()))?;
        let bytes = read_header(&self.file, &frame).map_err(|e| bad(e.to_string()))?;
        let Ok(Header::Index(ix)) = Header::parse(&bytes) else { return Err(bad("is not an index".into())) };
        if frame.len() != at.length {
            return Err(bad("has another length".into()));
        }
        prove_local(&self.file, &self.state.map, &self.root, &BTreeMap::from([(at.leaf, leaf_hash(&bytes))]))
            .map_err(|e| bad(format!("is not leaf {} of the signed tree: {e}", at.leaf)))?;
        if let Some(x) = ix.sealed {
            let Some(k) = key(x) else { return Ok((ix, Vec::new())) };
            let listing =
                content::sealed_listing_bytes(&self.file, &frame, &ix, at.leaf, &k).map_err(|e| bad(e.to_string()))?;
            let files = content::parse(&listing, &ix).map_err(|e| bad(e.to_string()))?;
            return Ok((ix, files));
        }
        let listing = content::listing_bytes(&self.file, &frame, &ix).map_err(|e| bad(e.to_string()))?;
        let files = content::parse(&listing, &ix).map_err(|e| bad(e.to_string()))?;
        // A live index's listing is the base of its target's next patch: kept, not read again.
        if self.state.manifest.releases.iter().any(|r| r.index == at) {
            self.live_listings.lock().unwrap_or_else(|e| e.into_inner()).insert(at.leaf, listing);
        }
        Ok((ix, files))
    }

    /// The listing of an index of the sealed log, checked against its
    /// digests; `None` for a private index (no patch is made against it).
    fn listing_bytes(&self, at: LeafRef) -> Result<Option<Vec<u8>>, Error> {
        if let Some(l) = self.live_listings.lock().unwrap_or_else(|e| e.into_inner()).remove(&at.leaf) {
            return Ok(Some(l));
        }
        let bad = |m: String| refused(&self.path, format!("the index at byte {}: {m}", at.offset));
        let frame =
            read_frame_at(&self.file, at.offset, at.end().min(self.base_len)).map_err(|e| bad(e.to_string()))?;
        let bytes = read_header(&self.file, &frame).map_err(|e| bad(e.to_string()))?;
        let Ok(Header::Index(ix)) = Header::parse(&bytes) else { return Err(bad("is not an index".into())) };
        if ix.sealed.is_some() {
            return Ok(None);
        }
        content::listing_bytes(&self.file, &frame, &ix).map(Some).map_err(|e| bad(e.to_string()))
    }

    /// The content of the private entry at `at`, opened with `key` (from a
    /// private listing), which must hash to `sha256`; at most `limit` bytes.
    pub fn sealed_entry_bytes(
        &self,
        at: LeafRef,
        key: PayloadKey,
        sha256: Sha256Hex,
        limit: u64,
    ) -> Result<Vec<u8>, Error> {
        let bad = |m: String| refused(&self.path, format!("the entry at byte {}: {m}", at.offset));
        let frame = read_frame_at(&self.file, at.offset, at.end().min(self.end)).map_err(|e| bad(e.to_string()))?;
        let bytes = read_header(&self.file, &frame).map_err(|e| bad(e.to_string()))?;
        match Header::parse(&bytes) {
            Ok(Header::Entry(e)) if e.sealed.is_some() && e.size <= limit => {
                let spec = content::PayloadSpec::entry(&e).opened(key, sha256);
                let out = Vec::with_capacity(e.size as usize);
                content::payload_content(&self.file, &frame, spec, &format!("entry {sha256}"), out)
                    .map_err(|e| bad(e.to_string()))
            }
            _ => Err(bad(format!("is not a private entry of at most {limit} bytes"))),
        }
    }

    /// The payload of the exchange leaf at `at` in the sealed log: a private
    /// release's content key, wrapped to its recipients.
    pub fn exchange_payload(&self, at: LeafRef) -> Result<Vec<u8>, Error> {
        let bad = |m: String| refused(&self.path, format!("the key exchange at byte {}: {m}", at.offset));
        if at.end() > self.base_len {
            return Err(bad("is not in the sealed log".into()));
        }
        let frame = read_frame_at(&self.file, at.offset, at.end()).map_err(|e| bad(e.to_string()))?;
        let bytes = read_header(&self.file, &frame).map_err(|e| bad(e.to_string()))?;
        let Ok(Header::Exchange(x)) = Header::parse(&bytes) else { return Err(bad("is not an exchange".into())) };
        if frame.len() != at.length || frame.payload_len != x.stored_size {
            return Err(bad("has another length".into()));
        }
        let mut payload = vec![0u8; x.stored_size as usize];
        crate::frame::ReadAt::read_exact_at(&self.file, &mut payload, frame.payload_offset)
            .map_err(|e| Error::io("reading", &self.path, e))?;
        if sha256(&payload) != x.stored_sha256.0 {
            return Err(bad("its payload does not hash to its stored_sha256".into()));
        }
        Ok(payload)
    }

    /// The leaf index the next appended leaf gets: a private payload's key
    /// derives from it.
    pub fn next_leaf(&self) -> u64 {
        self.state.edge.size()
    }

    /// Appends a private channel's key exchange for this release: `payload`
    /// is the content key wrapped to every recipient (an age file).
    pub fn append_exchange(&mut self, channel: &str, payload: &[u8]) -> Result<LeafRef, Error> {
        let x = crate::header::Exchange {
            channel: channel.into(),
            stored_size: payload.len() as u64,
            stored_sha256: Sha256Hex(sha256(payload)),
        };
        let (len, digest) = (payload.len() as u64, Sha256Hex(sha256(payload)));
        let at = self.append_payload(Header::Exchange(x), len, digest, &mut &*payload)?;
        // Named by the private indexes of this release, not by a listing.
        self.state.unreferenced.remove(&at.leaf);
        Ok(at)
    }

    /// The header of the entry at `at`, which must hold `sha256`.
    pub fn entry_header(&self, at: LeafRef, sha256: Sha256Hex) -> Result<Entry, Error> {
        let bad = |m: String| refused(&self.path, format!("the entry at byte {}: {m}", at.offset));
        let frame = read_frame_at(&self.file, at.offset, at.end().min(self.end)).map_err(|e| bad(e.to_string()))?;
        let bytes = read_header(&self.file, &frame).map_err(|e| bad(e.to_string()))?;
        match Header::parse(&bytes) {
            Ok(Header::Entry(e)) if e.sha256 == sha256 && frame.len() == at.length => Ok(e),
            _ => Err(bad(format!("does not hold {sha256}"))),
        }
    }

    /// The content of the entry at `at` (which must hold `sha256`), in memory,
    /// at most `limit` bytes: a delta's base.
    pub fn entry_bytes(&self, at: LeafRef, sha256: Sha256Hex, limit: u64) -> Result<Vec<u8>, Error> {
        let bad = |m: String| refused(&self.path, format!("the entry at byte {}: {m}", at.offset));
        let frame = read_frame_at(&self.file, at.offset, at.end().min(self.end)).map_err(|e| bad(e.to_string()))?;
        let bytes = read_header(&self.file, &frame).map_err(|e| bad(e.to_string()))?;
        match Header::parse(&bytes) {
            Ok(Header::Entry(e)) if e.sha256 == sha256 => {
                content::entry_bytes(&self.file, &frame, &e, limit).map_err(|e| bad(e.to_string()))
            }
            _ => Err(bad(format!("does not hold {sha256}"))),
        }
    }

    /// Checks that an index may be appended: a version newer than the sealed
    /// release of its target and channel, and one index per target and
    /// channel in one release.
    pub fn check_release(&self, channel: &str, target: &str, version: &str) -> Result<(), Error> {
        crate::header::validate_channel(channel)?;
        // Writers are stricter than readers: only triples target-lexicon knows.
        crate::header::validate_known_target(target)?;
        crate::header::validate_version(version)?;
        let v = semver::Version::parse(version).map_err(|e| Error::Refused(e.to_string()))?;
        if self.state.fresh.contains_key(&(channel.to_string(), target.to_string())) {
            return Err(Error::Refused(format!("{target} on {channel} gets two builds in one release")));
        }
        if let Some(r) = self.state.manifest.release(channel, target) {
            let published = semver::Version::parse(&r.version).map_err(|err| Error::Refused(err.to_string()))?;
            if v.cmp_precedence(&published) != std::cmp::Ordering::Greater {
                return Err(Error::Refused(format!(
                    "version {v} is not greater than {published}, already published for {target} on {channel}"
                )));
            }
        }
        Ok(())
    }

    /// Appends one entry whose payload (exactly `entry.stored_size` bytes,
    /// hashing to `entry.stored_sha256`) is streamed from `payload`.
    pub fn append_entry(&mut self, entry: Entry, payload: &mut dyn Read) -> Result<LeafRef, Error> {
        let (sha, size) = (entry.sha256, entry.stored_size);
        let stored_sha = entry.stored_sha256;
        let at = self.append_payload(Header::Entry(entry), size, stored_sha, payload)?;
        self.state.stored.insert(at.leaf, (at, sha, None));
        Ok(at)
    }

    /// Appends one delta whose payload is streamed from `payload`.
    pub fn append_delta(&mut self, delta: Delta, payload: &mut dyn Read) -> Result<LeafRef, Error> {
        let (sha, base, size) = (delta.sha256, delta.base, delta.stored_size);
        let stored_sha = delta.stored_sha256;
        let at = self.append_payload(Header::Delta(delta), size, stored_sha, payload)?;
        self.state.stored.insert(at.leaf, (at, sha, Some(base)));
        Ok(at)
    }

    fn append_payload(
        &mut self,
        header: Header,
        size: u64,
        stored_sha: Sha256Hex,
        payload: &mut dyn Read,
    ) -> Result<LeafRef, Error> {
        let bytes = header.to_bytes()?;
        self.begin()?;
        let mut out = BufWriter::with_capacity(1 << 20, &self.file);
        let mut reader = HashingReader::new(payload);
        let n = write_frame(&mut out, &bytes, size, &mut reader)
            .and_then(|n| out.flush().map(|()| n))
            .map_err(|e| Error::io("appending to", &self.path, e))?;
        drop(out);
        let (digest, _, _) = reader.finish();
        if digest != stored_sha.0 {
            return Err(Error::Refused(format!(
                "a payload hashed to {} while being written, not the announced {stored_sha}",
                to_hex(&digest)
            )));
        }
        let leaf = self.state.push_leaf(leaf_hash(&bytes));
        let at = LeafRef { leaf, offset: self.end, length: n };
        self.end += n;
        self.state.unreferenced.insert(leaf);
        Ok(at)
    }

    /// Appends the index of one build: its listing (sorted by path) is
    /// compressed and stored as the index's payload. Every entry and delta
    /// it names must be in the sealed log or appended in this release.
    pub fn append_index(
        &mut self,
        channel: &str,
        target: &str,
        version: &str,
        files: &[FileRecord],
    ) -> Result<LeafRef, Error> {
        self.append_index_inner(channel, target, version, files, None)
    }

    /// Appends the index of one build of a private channel: its listing
    /// (which gives every entry's and delta's key) is compressed and sealed
    /// with `key`, this release's content key, which `exchange` (appended in
    /// this release with [`Self::append_exchange`]) wraps.
    #[cfg(feature = "encryption")]
    pub fn append_sealed_index(
        &mut self,
        channel: &str,
        target: &str,
        version: &str,
        files: &[FileRecord],
        key: &ContentKey,
        exchange: LeafRef,
    ) -> Result<LeafRef, Error> {
        if exchange.leaf < self.state.sealed_size {
            return Err(Error::Refused("a private index names the key exchange of its own release".into()));
        }
        self.append_index_inner(channel, target, version, files, Some((key, exchange)))
    }

    fn append_index_inner(
        &mut self,
        channel: &str,
        target: &str,
        version: &str,
        files: &[FileRecord],
        seal: Option<(&ContentKey, LeafRef)>,
    ) -> Result<LeafRef, Error> {
        self.check_release(channel, target, version)?;
        // A private listing names only private payloads, each with its key.
        let keyed = |sha: Sha256Hex| seal.map_or(sha, |(k, _)| k.keyed_digest(&sha));
        for f in files {
            if f.key.is_some() != seal.is_some() || f.deltas.iter().any(|d| d.key.is_some() != seal.is_some()) {
                return Err(Error::Refused(format!(
                    "{}: a private listing gives every payload's key, a plain one none",
                    f.path
                )));
            }
            self.check_named(f.entry, keyed(f.sha256), None, &f.path)?;
            for d in &f.deltas {
                self.check_named(d.at(), keyed(f.sha256), Some(keyed(d.base)), &f.path)?;
            }
        }
        let listing = listing_bytes(files)?;
        // After the listing's own rules (sorted, no repeats), which name the path.
        if let Some(m) = crate::header::find_name_collision(files.iter().map(|f| f.path.as_str())) {
            return Err(Error::Refused(format!("{target} {version}: {m}")));
        }
        let packed = zstd::bulk::compress(&listing, LISTING_LEVEL)
            .map_err(|e| Error::Refused(format!("compressing the listing: {e}")))?;
        let (stored, compression) = if packed.len() < listing.len() {
            (packed, Compression::Zstd)
        } else {
            (listing.clone(), Compression::None)
        };
        // The listing as a patch against the previous release's: what a
        // client one release behind reads instead of the whole listing.
        let previous = self.state.manifest.release(channel, target).map(|r| r.index);
        let mut patch = None;
        let mut patch_bytes = Vec::new();
        if let Some(prev) = previous
            && seal.is_none()
            && let Some(base) = self.listing_bytes(prev)?
        {
            let p = patch_listing(&base, &listing)?;
            // A listing identical to the previous one needs no patch.
            if p.len() < stored.len() && base != listing {
                patch = Some(Patch {
                    base: Sha256Hex(sha256(&base)),
                    stored_size: p.len() as u64,
                    stored_sha256: Sha256Hex(sha256(&p)),
                });
                patch_bytes = p;
            }
        }
        let stored = match seal {
            #[cfg(feature = "encryption")]
            Some((k, _)) => crate::crypt::seal_all(&k.payload_key(self.next_leaf()), &stored),
            #[cfg(not(feature = "encryption"))]
            Some(_) => return Err(Error::Refused("sealing a private listing needs the encryption feature".into())),
            None => stored,
        };
        let index = Index {
            channel: channel.into(),
            target: target.into(),
            version: version.into(),
            files: files.len() as u64,
            size: listing.len() as u64,
            sha256: keyed(Sha256Hex(sha256(&listing))),
            stored_size: stored.len() as u64,
            stored_sha256: Sha256Hex(sha256(&stored)),
            compression,
            previous,
            patch,
            sealed: seal.map(|(_, x)| x),
        };
        let header_len = Header::Index(index.clone()).to_bytes()?.len() as u64;
        let mut payload = patch_bytes;
        payload.extend_from_slice(&stored);
        let at = self.append_payload(
            Header::Index(index),
            payload.len() as u64,
            Sha256Hex(sha256(&payload)),
            &mut payload.as_slice(),
        )?;
        let head =
            patch.map(|p| crate::frame::payload_start(header_len, payload.len() as u64).unwrap_or(0) + p.stored_size);
        self.state.unreferenced.remove(&at.leaf);
        for f in files {
            self.state.unreferenced.remove(&f.entry.leaf);
            for d in &f.deltas {
                self.state.unreferenced.remove(&d.leaf);
            }
        }
        let key = (channel.to_string(), target.to_string());
        self.state.fresh.insert(
            key,
            Release { channel: channel.into(), target: target.into(), version: version.into(), index: at, head },
        );
        Ok(at)
    }

    /// An entry or delta an index names: one appended in this release must
    /// be exactly what was appended; one in the sealed log is taken from an
    /// index the caller read through [`Self::read_index`].
    fn check_named(&self, at: LeafRef, sha: Sha256Hex, base: Option<Sha256Hex>, path: &str) -> Result<(), Error> {
        if at.leaf < self.state.sealed_size && at.end() <= self.base_len {
            return Ok(());
        }
        match self.state.stored.get(&at.leaf) {
            Some((r, s, b)) if *r == at && *s == sha && *b == base => Ok(()),
            _ => Err(Error::Refused(format!("{path}: no such entry at leaf {} was appended", at.leaf))),
        }
    }

    /// Appends a new trust root (a rotation), with its rotation note signed
    /// by `keys`: they must hold a threshold of the current root and of the
    /// new one, and each must be in one of them. The next seal must be
    /// signed by a threshold of both roots too.
    pub fn append_keys(&mut self, trust: TrustRoot, keys: &[&SigningKey]) -> Result<(), Error> {
        trust.validate()?;
        if self.state.pending_trust.is_some() {
            return Err(Error::Refused("one trust root rotation per seal".into()));
        }
        if trust.fingerprint() == self.state.trust.fingerprint() {
            return Err(Error::Refused("the new trust root is the current one".into()));
        }
        let note = crate::seal::sign_rotation(&self.state.origin, &self.state.trust, &trust, keys)
            .map_err(|e| Error::Refused(format!("the rotation: {e}")))?;
        let rotation = String::from_utf8(note.to_bytes()).map_err(|e| Error::Refused(e.to_string()))?;
        let keys_leaf = crate::header::Keys { trust: trust.clone(), previous: self.state.keys, rotation };
        let bytes = Header::Keys(keys_leaf).to_bytes()?;
        self.begin()?;
        let frame = encode_frame(&bytes, b"").ok_or_else(|| Error::Refused("keys frame too large".into()))?;
        (&self.file).write_all(&frame).map_err(|e| Error::io("appending to", &self.path, e))?;
        let leaf = self.state.push_leaf(leaf_hash(&bytes));
        self.state.keys = Some(LeafRef { leaf, offset: self.end, length: frame.len() as u64 });
        self.end += frame.len() as u64;
        self.state.pending_trust = Some(trust);
        Ok(())
    }

    /// Appends the tail and a seal signed by `keys` at `time`, then syncs.
    /// With no new leaves this is a heartbeat: only a fresh seal is written.
    pub fn seal(self, keys: &[&SigningKey], time: u64) -> Result<SealSummary, Error> {
        self.seal_cosigned(keys, time, &mut |_| Ok(Vec::new()))
    }

    /// [`Appender::seal`], with cosignatures: once the tail is written and
    /// the checkpoint signed by `keys`, and before the seal frame is
    /// written, `cosigner` is asked for signature lines to add to the
    /// checkpoint (witness cosignatures, which it must have verified). They
    /// are added only if the note still verifies against the trust root and
    /// fits a seal. If the cosigner fails (or anything fails after it was
    /// asked), nothing is sealed: the file is cut back to its sealed length,
    /// as by [`Appender::abort`], and the error returned. An error before
    /// (a refused key, say) leaves the unsealed tail as [`Appender::seal`]
    /// does, for the next open to cut.
    pub fn seal_cosigned(
        mut self,
        keys: &[&SigningKey],
        time: u64,
        cosigner: &mut Cosigner<'_>,
    ) -> Result<SealSummary, Error> {
        let asked = std::cell::Cell::new(false);
        let result = self.write_seal(keys, time, &mut |req| {
            asked.set(true);
            cosigner(req)
        });
        match result {
            Ok(mut summary) => {
                remove_pending(&self.path)?;
                summary.appended = summary.len - self.base_len;
                Ok(summary)
            }
            // A file changed under the lock is not ours to cut.
            Err(e @ Error::Changed { .. }) => Err(e),
            Err(e) if asked.get() => {
                // If cutting back fails too, the pending file still marks
                // the bytes, and the next open cuts them: the first error
                // is the one to report.
                let _ = self.abort();
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    fn write_seal(
        &mut self,
        keys: &[&SigningKey],
        time: u64,
        cosigner: &mut Cosigner<'_>,
    ) -> Result<SealSummary, Error> {
        self.begin()?;
        let file = &self.file;
        let mut sink = Sink { out: BufWriter::new(file), pos: self.end };
        let new_leaves = self.state.edge.size() != self.state.sealed_size;
        let summary =
            self.state.write_tail(&mut sink, keys, time, new_leaves, self.time_rule, Some((file, cosigner)))?;
        sink.out.flush().map_err(|e| Error::io("appending to", &self.path, e))?;
        drop(sink);
        self.file.sync_all().map_err(|e| Error::io("syncing", &self.path, e))?;
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
        let a = self.file.metadata().map_err(|e| Error::io("reading", &self.path, e))?;
        let b = std::fs::metadata(&self.path).map_err(|e| Error::io("reading", &self.path, e))?;
        if !crate::fsys::same_file(&a, &b) {
            return Err(Error::Changed { path: self.path.clone(), reason: "the path now names another file".into() });
        }
        Ok(())
    }
}

fn is_kind(file: &File, f: &FrameInfo, kind: &str) -> bool {
    read_header(file, f).ok().is_some_and(|h| Header::parse(&h).is_ok_and(|h| h.kind() == kind))
}

fn is_seal(file: &File, f: &FrameInfo) -> bool {
    read_header(file, f).ok().is_some_and(|h| matches!(Header::parse(&h), Ok(Header::Seal(_))))
}

/// The right edge of a tree of `n` leaves: each level's partial tile, read
/// where the map says, which must give the frontier `top`.
fn right_edge(file: &File, map: &TileMap, n: u64, top: &crate::merkle::Frontier) -> Result<Edge, Error> {
    let mut partials = Vec::new();
    for (l, level) in map.levels.iter().enumerate() {
        let w = (n >> (8 * l)) % TILE_WIDTH;
        let mut hashes = Vec::new();
        if let Some(at) = level.edge {
            let mut raw = vec![0u8; (w * 32) as usize];
            crate::frame::ReadAt::read_exact_at(file, &mut raw, at)
                .map_err(|e| Error::Refused(format!("a tile: {e}")))?;
            hashes = raw.chunks_exact(32).map(|c| c.try_into().unwrap_or([0; 32])).collect();
        }
        partials.push(hashes);
    }
    let edge = Edge::from_partials(n, partials)?;
    if edge.frontier() != *top {
        return Err(Error::Refused("its right-edge tiles do not match its tree".into()));
    }
    Ok(edge)
}

/// A container file cut at `at` with `tail` in place of what follows: the
/// repaired container, verified before a byte of it is written.
struct Spliced<'a> {
    file: &'a File,
    at: u64,
    tail: &'a [u8],
}

impl crate::frame::ReadAt for Spliced<'_> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let end = offset.checked_add(buf.len() as u64).ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        if end > self.at + self.tail.len() as u64 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let head = (self.at.saturating_sub(offset) as usize).min(buf.len());
        if head > 0 {
            crate::frame::ReadAt::read_exact_at(self.file, &mut buf[..head], offset)?;
        }
        if head < buf.len() {
            let from = (offset + head as u64 - self.at) as usize;
            let rest = buf.len() - head;
            buf[head..].copy_from_slice(&self.tail[from..from + rest]);
        }
        Ok(())
    }
}

/// Reads one frame's header at `r`, which must be exactly that frame.
fn header_at(file: &File, r: FrameRef, end: u64, what: &str) -> Result<(FrameInfo, Vec<u8>, Header), Error> {
    let bad = |m: String| Error::Refused(format!("its {what} at byte {}: {m}", r.offset));
    let frame = read_frame_at(file, r.offset, end).map_err(|e| bad(e.to_string()))?;
    if frame.len() != r.length {
        return Err(bad("has another length than the seal says".into()));
    }
    let bytes = read_header(file, &frame).map_err(|e| bad(e.to_string()))?;
    let h = Header::parse(&bytes).map_err(|e| bad(e.to_string()))?;
    Ok((frame, bytes, h))
}

impl State {
    /// Reads the sealed state from the genesis and the tail ending at `sealed_len`.
    fn read_tail(file: &File, sealed_len: u64) -> Result<(State, Hash, FrameInfo), Error> {
        let bad = |m: String| Error::Refused(m);
        let g = read_frame_at(file, 0, sealed_len).map_err(|e| bad(format!("its genesis frame: {e}")))?;
        let genesis = match read_header(file, &g).ok().map(|b| Header::parse(&b)) {
            Some(Ok(Header::Genesis(g))) => g,
            _ => return Err(bad("its first frame is not a genesis frame".into())),
        };
        let seal_frame = read_frame_before(file, 0, sealed_len).map_err(|e| bad(format!("its last seal: {e}")))?;
        let seal = match read_header(file, &seal_frame).ok().map(|b| Header::parse(&b)) {
            Some(Ok(Header::Seal(s))) => s,
            _ => return Err(bad("its last frame is not a seal".into())),
        };
        let (_, cp) = crate::seal::parse_seal(&seal).map_err(|e| bad(format!("its last seal: {e}")))?;
        let n = cp.size;
        if n < 2 {
            return Err(bad(format!("its last seal signs a tree of {n} leaves")));
        }
        let (map_frame, _, map_h) = header_at(file, seal.map, seal_frame.offset, "map")?;
        if !matches!(map_h, Header::Map(Map { size }) if size == n) {
            return Err(bad(format!("the seal's map is not a map of {n} leaves")));
        }
        let mut raw = vec![0u8; map_frame.payload_len as usize];
        crate::frame::ReadAt::read_exact_at(file, &mut raw, map_frame.payload_offset)
            .map_err(|e| bad(format!("its map: {e}")))?;
        let map = TileMap::decode(n, &raw).map_err(|e| bad(format!("its map: {e}")))?;
        let (_, mbytes, mh) = header_at(file, seal.manifest, seal_frame.offset, "manifest")?;
        let Header::Manifest(manifest) = mh else { return Err(bad("the seal's manifest is not a manifest".into())) };
        let mut top = map.before.clone();
        top.push(leaf_hash(&mbytes))?;
        if top.root() != cp.root {
            return Err(bad("its manifest and map do not give the signed root".into()));
        }
        let edge = right_edge(file, &map, n, &top)?;
        // The trust root in effect: the genesis one, or the latest keys leaf's.
        let trust = match manifest.keys {
            None => genesis.trust.clone(),
            Some(at) => {
                let (_, kbytes, kh) =
                    header_at(file, FrameRef { offset: at.offset, length: at.length }, sealed_len, "keys leaf")?;
                let Header::Keys(k) = kh else { return Err(bad("the manifest's keys leaf is not one".into())) };
                prove_local(file, &map, &cp.root, &BTreeMap::from([(at.leaf, leaf_hash(&kbytes))]))
                    .map_err(|e| bad(format!("its keys leaf is not in the signed tree: {e}")))?;
                k.trust
            }
        };
        // The one seal check, against the root in effect.
        let rules = crate::seal::SealRules::new(&trust).origin(&genesis.origin);
        crate::seal::check_seal(&seal, &rules).map_err(|e| match e {
            crate::seal::SealError::Rule(m) => bad(format!("its last seal: {m}")),
            e => bad(format!("its last seal is not signed by its trust root: {e}")),
        })?;
        let state = State {
            origin: genesis.origin,
            trust,
            pending_trust: None,
            keys: manifest.keys,
            edge,
            sealed_size: n,
            last_time: Some(seal.time),
            manifest,
            manifest_frame: Some(seal.manifest),
            map,
            map_frame: Some(seal.map),
            completed: Vec::new(),
            fresh: BTreeMap::new(),
            stored: HashMap::new(),
            unreferenced: BTreeSet::new(),
        };
        Ok((state, cp.root, seal_frame))
    }

    /// `note` with the cosignature lines `extra`: the result must still be
    /// a note every client reads (the limits of a note and of a seal) and
    /// still verify against the trust roots.
    fn add_cosignatures(&self, note: &Note, extra: &[NoteSignature]) -> Result<Note, Error> {
        if extra.is_empty() {
            return Ok(note.clone());
        }
        let cosigned = crate::cosign::append_cosignatures(note, extra)
            .map_err(|e| Error::Refused(format!("the cosignatures do not fit in the checkpoint: {e}")))?;
        if cosigned.to_bytes().len() > crate::header::MAX_CHECKPOINT_LEN {
            return Err(Error::Refused(format!(
                "{} cosignatures make the checkpoint longer than the {} bytes a seal holds",
                extra.len(),
                crate::header::MAX_CHECKPOINT_LEN
            )));
        }
        cosigned.verify(&self.trust)?;
        if let Some(t) = &self.pending_trust {
            cosigned.verify(t)?;
        }
        Ok(cosigned)
    }

    fn push_leaf(&mut self, hash: Hash) -> u64 {
        let leaf = self.edge.size();
        self.completed.extend(self.edge.push(hash));
        leaf
    }

    /// The manifest after this release: the sealed one with fresh releases merged in.
    fn next_manifest(&self) -> Manifest {
        let mut map: BTreeMap<(String, String), Release> =
            self.manifest.releases.iter().map(|r| ((r.channel.clone(), r.target.clone()), r.clone())).collect();
        for (k, r) in &self.fresh {
            map.insert(k.clone(), r.clone());
        }
        Manifest { releases: map.into_values().collect(), keys: self.keys }
    }

    /// Writes (when `new_tree`) the tiles, pages, map and manifest, then the seal.
    fn write_tail(
        &mut self,
        sink: &mut Sink<impl Write>,
        keys: &[&SigningKey],
        time: u64,
        new_tree: bool,
        rule: TimeRule,
        cosign: Option<(&File, &mut Cosigner<'_>)>,
    ) -> Result<SealSummary, Error> {
        if keys.is_empty() {
            return Err(Error::Refused("no signing key given".into()));
        }
        let supersedes = check_time(self.last_time, time, rule)?;
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
            if let Some(leaf) = self.unreferenced.first() {
                return Err(Error::Refused(format!("the entry at leaf {leaf} is named by no index of this release")));
            }
            let manifest = self.next_manifest();
            let mbytes = Header::Manifest(manifest.clone()).to_bytes()?;
            let before = self.edge.frontier();
            self.push_leaf(leaf_hash(&mbytes));
            let n = self.edge.size();
            let mut map = TileMap { before, levels: std::mem::take(&mut self.map.levels) };
            map.levels.resize(usize::from(levels(n)), LevelMap::default());
            // New full tiles, by level then index; then the pages they fill.
            let mut done = std::mem::take(&mut self.completed);
            done.sort_by_key(|(t, _)| (t.level, t.index));
            for (t, hashes) in &done {
                let header = Header::Tile(Tile { level: t.level, index: t.index, width: t.width });
                let (_, at) = sink.frame(&header, &hashes.concat())?;
                map.levels[usize::from(t.level)].loose.push(at);
            }
            for (l, level) in map.levels.iter_mut().enumerate() {
                while level.loose.len() as u64 >= PAGE_WIDTH {
                    let rest = level.loose.split_off(PAGE_WIDTH as usize);
                    let page = Page { level: l as u8, index: level.pages.len() as u64 };
                    let (_, at) = sink.frame(&Header::Page(page), &encode_page(&level.loose))?;
                    level.pages.push(at);
                    level.loose = rest;
                }
                level.edge = None;
            }
            for (t, hashes) in self.edge.partials() {
                let header = Header::Tile(Tile { level: t.level, index: t.index, width: t.width });
                let (_, at) = sink.frame(&header, &hashes.concat())?;
                map.levels[usize::from(t.level)].edge = Some(at);
            }
            let (map_ref, _) =
                sink.frame(&Header::Map(Map { size: n }), &map.encode().map_err(|e| Error::Refused(e.to_string()))?)?;
            let (mref, _) = sink.frame(&Header::Manifest(manifest.clone()), b"")?;
            self.manifest = manifest;
            self.manifest_frame = Some(mref);
            self.map = map;
            self.map_frame = Some(map_ref);
        }
        let n = self.edge.size();
        let root = self.edge.root();
        let mref = self.manifest_frame.ok_or_else(|| Error::Refused("no manifest to seal".into()))?;
        let map_ref = self.map_frame.ok_or_else(|| Error::Refused("no map to seal".into()))?;
        let extensions = supersedes.map(|t| format!("{} {t}", crate::client::SUPERSEDES_TIME)).into_iter().collect();
        let cp = Checkpoint { origin: self.origin.clone(), size: n, root, time: Some(time), extensions };
        let note = Note::sign(&cp.to_text(), keys)?;
        // Sign only what verifies: the threshold of the root in effect (and of a new root).
        note.verify(&self.trust)?;
        if let Some(t) = &self.pending_trust {
            note.verify(t)?;
        }
        let note = match cosign {
            None => note,
            Some((file, cosigner)) => {
                // The tiles must be on disk for the consistency proofs.
                sink.out.flush().map_err(|e| Error::io("appending to", "container", e))?;
                let frontier = self.edge.frontier();
                let request = CosignRequest {
                    note: &note,
                    checkpoint: &cp,
                    previous_size: self.sealed_size,
                    file,
                    map: &self.map,
                    frontier: &frontier,
                };
                let extra = cosigner(&request)?;
                self.add_cosignatures(&note, &extra)?
            }
        };
        let checkpoint = String::from_utf8(note.to_bytes()).map_err(|e| Error::Refused(e.to_string()))?;
        let seal = Seal { checkpoint: checkpoint.clone(), time, manifest: mref, map: map_ref };
        sink.frame(&Header::Seal(seal), b"")?;
        if let Some(t) = self.pending_trust.take() {
            self.trust = t;
        }
        self.sealed_size = n;
        self.last_time = Some(time);
        self.fresh.clear();
        self.stored.clear();
        Ok(SealSummary { size: n, root, time, len: sink.pos, appended: 0, checkpoint })
    }
}

/// The time rule of an append: `time` at most the allowed skew ahead of the
/// clock, and ordered after the last seal's (`last`) by
/// [`check_seal_order`](crate::client::check_seal_order). Returns the time a
/// superseding seal names.
fn check_time(last_time: Option<u64>, time: u64, rule: TimeRule) -> Result<Option<u64>, Error> {
    let now = clock()?;
    crate::client::check_signed_time(time, now, rule.max_skew)?;
    let supersedes = match last_time {
        Some(last) if rule.supersede_future && time < last => Some(last),
        Some(last) if rule.supersede_future => {
            return Err(Error::Refused(format!(
                "nothing to supersede: the last seal's signed time {last} is not after {time}"
            )));
        }
        _ => None,
    };
    if let Some(last) = last_time {
        crate::client::check_seal_order(time, supersedes, last, &BTreeSet::from([last])).map_err(|e| {
            if !rule.supersede_future && !crate::client::stored_time_binds(last, now) {
                Error::Refused(format!(
                    "{e}; the last seal was signed {} s in the future: `dare seal --supersede-future-time` \
                     appends a seal at the right time that says it supersedes it",
                    last - now
                ))
            } else {
                Error::Refused(e)
            }
        })?;
    }
    Ok(supersedes)
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
    crate::fsys::sync_dir(dir).map_err(|e| Error::io("syncing", dir, e))
}
