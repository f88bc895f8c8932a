//! Reading and verifying a whole container.
//!
//! [`scan`] walks every frame forward, checks its structure and header,
//! rebuilds the Merkle tree from the leaves, and at every seal checks the
//! signed checkpoint (origin, size, root, time, signatures against the trust
//! root), the manifest's place and content, the tiles, and the consistency
//! with the seal before. With [`ScanOptions::payloads`] it also streams every
//! entry's payload through SHA-256 (and zstd) and checks the signed digests
//! and sizes.
//!
//! A problem in any frame that a later seal covers is an error naming the
//! first bad frame. Bytes after the last seal are never trusted: they are
//! reported as a [`Tail::Torn`], which a publisher cuts off before appending.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Write};
use std::sync::mpsc;

use crate::frame::{FrameError, FrameInfo, Frames, FramesBack, ReadAt, read_frame_before, read_header};
use crate::hashio::{BoundedHashWriter, Hasher, stream_range, to_hex};
use crate::header::{
    Compression, Entry, EntryRef, FrameRef, Genesis, Header, HeaderError, Manifest, Release, Seal, Sha256Hex,
};
use crate::keys::{TrustRoot, VerifierKey};
use crate::merkle::{Hash, MemoryTree, ProofError, leaf_hash, verify_consistency};
use crate::note::{Checkpoint, Note, NoteError};
use crate::tiles::{self, TileId};

/// What [`scan`] checks beyond structure, headers, tree, tiles and seals.
#[derive(Clone, Debug, Default)]
pub struct ScanOptions {
    /// Stream every entry payload and check its signed digests and sizes.
    pub payloads: bool,
    /// Only these keys count as signers of the genesis trust root (until a
    /// rotation replaces it). `None` trusts the genesis trust root as written.
    pub pins: Option<Vec<VerifierKey>>,
}

/// The first bad frame and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("frame {frame} at byte {offset}: {problem}")]
pub struct VerifyError {
    /// Index of the frame, counted from 0 (the genesis).
    pub frame: u64,
    /// Byte offset of the frame.
    pub offset: u64,
    /// What is wrong.
    pub problem: Problem,
}

impl VerifyError {
    /// True when the bytes are bad (as opposed to the file being unreadable).
    pub fn is_integrity(&self) -> bool {
        !matches!(self.problem, Problem::Io(_))
    }
}

/// What is wrong with a frame.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// Tags and lengths.
    #[error(transparent)]
    Frame(FrameError),
    /// The header.
    #[error(transparent)]
    Header(HeaderError),
    /// The container does not start with a genesis frame.
    #[error("the first frame must be a genesis frame, not {0}")]
    NotGenesis(&'static str),
    /// A genesis frame after the first.
    #[error("a genesis frame may only be the first frame")]
    ExtraGenesis,
    /// An entry's payload does not match its header.
    #[error("payload: {0}")]
    Payload(String),
    /// An entry breaks release rules (version order, duplicate paths).
    #[error("entry: {0}")]
    Entry(String),
    /// A manifest that is not the newest release of every target.
    #[error("manifest: {0}")]
    Manifest(String),
    /// A leaf whose header does not hash to what a tile records.
    #[error("leaf {leaf}: its header does not hash to the leaf hash recorded in tile {tile}")]
    LeafHash {
        /// Leaf index.
        leaf: u64,
        /// The tile path.
        tile: String,
    },
    /// A tile frame that is malformed or does not match the tree.
    #[error("tile: {0}")]
    Tile(String),
    /// A seal that does not match the container.
    #[error("seal: {0}")]
    Seal(String),
    /// A checkpoint whose signatures fail.
    #[error("seal signatures: {0}")]
    Signature(NoteError),
    /// A tree or proof failure.
    #[error("tree: {0}")]
    Proof(ProofError),
    /// A frame kind this container may not hold.
    #[error("unexpected {0} frame")]
    Unexpected(&'static str),
    /// No seal at all.
    #[error("the container has no seal")]
    NoSeal,
    /// Reading failed.
    #[error("reading: {0}")]
    Io(io::Error),
}

/// What follows the last seal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tail {
    /// The container ends with its last seal.
    Clean,
    /// Bytes after the last seal that are not a sealed release.
    Torn {
        /// Where the torn tail starts (the end of the last seal).
        offset: u64,
        /// Its length.
        len: u64,
        /// What the first unsealed problem is, or why the bytes are not sealed.
        reason: String,
    },
}

/// The last seal of a container.
#[derive(Clone, Debug)]
pub struct SealState {
    /// Index of the seal frame.
    pub frame_index: u64,
    /// Where it sits.
    pub frame: FrameInfo,
    /// The seal header.
    pub seal: Seal,
    /// The parsed checkpoint.
    pub checkpoint: Checkpoint,
    /// The keys whose signatures verified.
    pub signers: Vec<VerifierKey>,
}

/// An entry frame of the container.
#[derive(Clone, Debug)]
pub struct EntryRecord {
    /// Its leaf index.
    pub leaf: u64,
    /// Where it sits.
    pub frame: FrameInfo,
    /// Its header.
    pub entry: Entry,
}

/// Everything a scan learned about a container, up to its last seal.
#[derive(Debug)]
pub struct Scan {
    /// The genesis header.
    pub genesis: Genesis,
    /// The bytes of the genesis header (leaf 0).
    pub genesis_bytes: Vec<u8>,
    /// File length.
    pub file_len: u64,
    /// Length up to the end of the last seal.
    pub sealed_len: u64,
    /// Frames up to the last seal.
    pub frames: u64,
    /// Tree size at the last seal.
    pub size: u64,
    /// The tree of every leaf up to the last seal (empty for a partial container).
    pub tree: MemoryTree,
    /// Whether this is a partial container (a replica) holding only some leaves.
    pub partial: bool,
    /// The trust root in effect after the last seal.
    pub trust: TrustRoot,
    /// The last seal.
    pub last_seal: SealState,
    /// How many seals there are.
    pub seals: u64,
    /// The last manifest.
    pub manifest: Manifest,
    /// The last manifest's frame.
    pub manifest_frame: FrameInfo,
    /// Every entry, in order.
    pub entries: Vec<EntryRecord>,
    /// Tile frames: (level, index, width) to the offset of their first hash.
    pub tiles: HashMap<(u8, u64, u16), u64>,
    /// Bytes after the last seal.
    pub tail: Tail,
    /// Whether the whole file was also walked backward from its end.
    pub walked_backward: bool,
}

impl Scan {
    /// Tree size at the last seal.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The fingerprint of the genesis trust root.
    pub fn genesis_fingerprint(&self) -> String {
        self.genesis.trust.fingerprint()
    }
}

/// Scans and verifies a container of `len` bytes read from `src`.
pub fn scan<R: ReadAt + Sync + ?Sized>(src: &R, len: u64, opts: &ScanOptions) -> Result<Scan, VerifyError> {
    scan_from(src, len, opts, 0)
}

/// [`scan`], checking payload digests (when [`ScanOptions::payloads`]) only
/// of entries at or after byte `payloads_from`: a mirror that verified its
/// copy up to there checks only what a sync adds.
pub fn scan_from<R: ReadAt + Sync + ?Sized>(
    src: &R,
    len: u64,
    opts: &ScanOptions,
    payloads_from: u64,
) -> Result<Scan, VerifyError> {
    // If the file's last frame is a seal, nothing in it is a torn tail: a
    // break anywhere before it is corruption, not an interrupted append.
    let ends_with_seal = read_frame_before(src, 0, len)
        .ok()
        .and_then(|f| read_header(src, &f).ok())
        .is_some_and(|h| matches!(Header::parse(&h), Ok(Header::Seal(_))));
    let mut w = Walker::new(src, len, opts);
    w.payloads_from = payloads_from;
    let mut frames = Frames::new(src, 0, len);
    let mut index = 0u64;
    while let Some(next) = frames.next() {
        let offset = frames_position_before(&next, &frames);
        match next {
            Ok(frame) => {
                w.frame(index, frame)?;
                if w.saw_proof {
                    return crate::partial::scan_partial(src, len, opts, ends_with_seal);
                }
            }
            Err(e) => {
                let err = VerifyError { frame: index, offset, problem: Problem::Frame(e) };
                if ends_with_seal || w.last_seal.is_none() {
                    return Err(err);
                }
                w.problem(err);
                break;
            }
        }
        index += 1;
    }
    w.finish(index, ends_with_seal)
}

fn frames_position_before<R: ReadAt + ?Sized>(r: &Result<FrameInfo, FrameError>, frames: &Frames<'_, R>) -> u64 {
    match r {
        Ok(f) => f.offset,
        Err(_) => frames.position(),
    }
}

/// Walks the sealed part of a container backward from its end and checks it
/// meets the forward walk frame for frame.
pub fn walk_backward<R: ReadAt + ?Sized>(src: &R, scan: &Scan) -> Result<(), VerifyError> {
    let mut count = 0u64;
    let mut last = scan.sealed_len;
    for f in FramesBack::new(src, 0, scan.sealed_len) {
        let f = f.map_err(|e| VerifyError {
            frame: scan.frames.saturating_sub(count + 1),
            offset: last,
            problem: Problem::Frame(e),
        })?;
        last = f.offset;
        count += 1;
    }
    if count != scan.frames || last != 0 {
        return Err(VerifyError {
            frame: 0,
            offset: last,
            problem: Problem::Seal(format!(
                "walking backward found {count} frames ending at byte {last}, forward found {}",
                scan.frames
            )),
        });
    }
    Ok(())
}

struct Walker<'a, R: ?Sized> {
    src: &'a R,
    len: u64,
    opts: &'a ScanOptions,
    genesis: Option<(Genesis, Vec<u8>)>,
    trust: Option<TrustRoot>,
    pins: Option<Vec<VerifierKey>>,
    tree: MemoryTree,
    /// Frame index and offset of every leaf.
    leaf_frames: Vec<(u64, u64)>,
    entries: Vec<EntryRecord>,
    /// The newest release of every (channel, target), as the manifest must list it.
    latest: BTreeMap<(String, String), Draft>,
    /// (channel, target) pairs that received entries since the last seal.
    fresh: BTreeMap<(String, String), semver::Version>,
    manifest: Option<(u64, FrameInfo, Manifest)>,
    /// The manifest the last seal covers (a later one may be in a torn tail).
    sealed_manifest: Option<(FrameInfo, Manifest)>,
    tiles: HashMap<(u8, u64, u16), u64>,
    tile_at: HashMap<u64, (u8, u64, u16)>,
    pending_tiles: Vec<(u64, FrameInfo, crate::header::Tile)>,
    pending_keys: Option<(u64, FrameInfo, TrustRoot)>,
    last_seal: Option<SealState>,
    last_root: Hash,
    seals: u64,
    sealed_len: u64,
    sealed_frames: u64,
    first_problem: Option<VerifyError>,
    /// A proof frame: this is a partial container.
    saw_proof: bool,
    /// Payload digests are checked from this offset on.
    payloads_from: u64,
}

impl<'a, R: ReadAt + Sync + ?Sized> Walker<'a, R> {
    fn new(src: &'a R, len: u64, opts: &'a ScanOptions) -> Self {
        Walker {
            src,
            len,
            opts,
            genesis: None,
            trust: None,
            pins: opts.pins.clone(),
            tree: MemoryTree::new(),
            leaf_frames: Vec::new(),
            entries: Vec::new(),
            latest: BTreeMap::new(),
            fresh: BTreeMap::new(),
            manifest: None,
            sealed_manifest: None,
            tiles: HashMap::new(),
            tile_at: HashMap::new(),
            pending_tiles: Vec::new(),
            pending_keys: None,
            last_seal: None,
            last_root: [0; 32],
            seals: 0,
            sealed_len: 0,
            sealed_frames: 0,
            first_problem: None,
            saw_proof: false,
            payloads_from: 0,
        }
    }

    /// Records a problem in a frame that no seal covers yet. It becomes an
    /// error if a seal follows, and the torn tail's reason otherwise.
    fn problem(&mut self, e: VerifyError) {
        if self.first_problem.is_none() {
            self.first_problem = Some(e);
        }
    }

    fn frame(&mut self, index: u64, frame: FrameInfo) -> Result<(), VerifyError> {
        let err = |problem| VerifyError { frame: index, offset: frame.offset, problem };
        let bytes = match read_header(self.src, &frame) {
            Ok(b) => b,
            Err(e) => {
                self.problem(err(Problem::Frame(e)));
                return Ok(());
            }
        };
        let header = match Header::parse(&bytes) {
            Ok(h) => h,
            Err(e) => {
                if index == 0 {
                    return Err(err(Problem::Header(e)));
                }
                self.problem(err(Problem::Header(e)));
                return Ok(());
            }
        };
        if index == 0 {
            let Header::Genesis(g) = header else {
                return Err(err(Problem::NotGenesis(header.kind())));
            };
            self.trust = Some(g.trust.clone());
            self.push_leaf(index, &frame, &bytes);
            if frame.payload_len != 0 {
                return Err(err(Problem::Payload("a genesis frame has an empty payload".into())));
            }
            self.genesis = Some((g, bytes));
            return Ok(());
        }
        let result = match header {
            Header::Genesis(_) => Err(Problem::ExtraGenesis),
            Header::Entry(e) => self.entry(index, frame, &bytes, e),
            Header::Manifest(m) => self.manifest(index, frame, &bytes, m),
            Header::Keys(k) => {
                self.push_leaf(index, &frame, &bytes);
                if self.pending_keys.is_some() {
                    Err(Problem::Unexpected("second keys"))
                } else if frame.payload_len != 0 {
                    Err(Problem::Payload("a keys frame has an empty payload".into()))
                } else {
                    self.pending_keys = Some((index, frame, k.trust));
                    Ok(())
                }
            }
            Header::Tile(t) => {
                if frame.payload_len != u64::from(t.width) * 32 {
                    Err(Problem::Tile(format!(
                        "{} hashes need {} payload bytes, not {}",
                        t.width,
                        u64::from(t.width) * 32,
                        frame.payload_len
                    )))
                } else {
                    self.pending_tiles.push((index, frame, t));
                    Ok(())
                }
            }
            Header::Seal(s) => return self.seal(index, frame, s),
            // A partial container never holds tiles: a proof frame after a
            // tile is out of place, not a sign of a replica.
            Header::Proof(_) if self.tiles.is_empty() && self.pending_tiles.is_empty() => {
                self.saw_proof = true;
                Ok(())
            }
            Header::Proof(_) => Err(Problem::Unexpected("proof (proof frames belong to partial containers)")),
        };
        if let Err(p) = result {
            self.problem(err(p));
        }
        Ok(())
    }

    fn push_leaf(&mut self, index: u64, frame: &FrameInfo, header: &[u8]) -> u64 {
        let leaf = self.tree.size();
        self.tree.push(leaf_hash(header));
        self.leaf_frames.push((index, frame.offset));
        leaf
    }

    fn entry(&mut self, index: u64, frame: FrameInfo, bytes: &[u8], e: Entry) -> Result<(), Problem> {
        // The leaf goes into the tree whatever the rules say, so the tiles can
        // still tell which leaf a later mismatch comes from.
        let leaf = self.push_leaf(index, &frame, bytes);
        if frame.payload_len != e.stored_size {
            return Err(Problem::Payload(format!(
                "payload is {} bytes but the header says stored_size {}",
                frame.payload_len, e.stored_size
            )));
        }
        let version = e.semver();
        let key = (e.channel.clone(), e.target.clone());
        if let Some(v) = self.fresh.get(&key) {
            if *v != version {
                return Err(Problem::Entry(format!(
                    "{} {} has entries for both {v} and {version} in one release",
                    e.channel, e.target
                )));
            }
        } else if let Some(d) = self.latest.get(&key)
            && version.cmp_precedence(&d.version) != std::cmp::Ordering::Greater
        {
            return Err(Problem::Entry(format!(
                "{} {} version {version} is not newer than the published {}",
                e.channel, e.target, d.version
            )));
        }
        if let Some(d) = self.latest.get(&key)
            && d.version == version
            && d.paths.contains(&e.path)
        {
            return Err(Problem::Entry(format!("{} {} {version} has two entries for {}", e.channel, e.target, e.path)));
        }
        if self.opts.payloads && frame.offset >= self.payloads_from {
            check_payload(self.src, &frame, &e)?;
        }
        let r = EntryRef { leaf, offset: frame.offset, length: frame.len() };
        self.fresh.insert(key.clone(), version.clone());
        let slot = self.latest.entry(key).or_insert_with(|| Draft::new(version.clone()));
        if slot.version != version {
            *slot = Draft::new(version);
        }
        slot.entries.push(r);
        slot.paths.insert(e.path.clone());
        self.entries.push(EntryRecord { leaf, frame, entry: e });
        Ok(())
    }

    fn manifest(&mut self, index: u64, frame: FrameInfo, bytes: &[u8], m: Manifest) -> Result<(), Problem> {
        let leaf = self.push_leaf(index, &frame, bytes);
        if frame.payload_len != 0 {
            return Err(Problem::Payload("a manifest frame has an empty payload".into()));
        }
        let expected = Manifest {
            releases: self
                .latest
                .iter()
                .map(|((channel, target), d)| Release {
                    channel: channel.clone(),
                    target: target.clone(),
                    version: d.version.to_string(),
                    entries: d.entries.clone(),
                })
                .collect(),
        };
        if m != expected {
            let detail = describe_manifest_difference(&expected, &m);
            return Err(Problem::Manifest(detail));
        }
        self.manifest = Some((leaf, frame, m));
        Ok(())
    }

    fn seal(&mut self, index: u64, frame: FrameInfo, s: Seal) -> Result<(), VerifyError> {
        let err = |problem| VerifyError { frame: index, offset: frame.offset, problem };
        let n = self.tree.size();
        let root = self.tree.root_at(n).map_err(|e| err(Problem::Proof(e)))?;
        let parsed = Note::parse(s.checkpoint.as_bytes()).and_then(|note| {
            let cp = Checkpoint::parse(note.text())?;
            Ok((note, cp))
        });
        // Tiles name a bad leaf (or a bad tile) more precisely than a root
        // mismatch or a broken rule can; the first bad frame is reported.
        let leaves_signed = matches!(&parsed, Ok((_, cp)) if cp.root == root && cp.size == n);
        let tiles = self.check_pending_tiles(n, leaves_signed);
        match (tiles, self.first_problem.take()) {
            // A leaf blamed by the tiles may precede the first broken rule; a
            // tile frame (written before the manifest) never explains it.
            (Err((i, o, p)), Some(first)) if i < first.frame && matches!(p, Problem::LeafHash { .. }) => {
                return Err(VerifyError { frame: i, offset: o, problem: p });
            }
            (_, Some(first)) => return Err(first),
            (Err((i, o, p)), None) => return Err(VerifyError { frame: i, offset: o, problem: p }),
            (Ok(()), None) => {}
        }
        let genesis = self.genesis.as_ref().map(|g| &g.0).ok_or_else(|| err(Problem::NotGenesis("seal")))?;
        if frame.payload_len != 0 {
            return Err(err(Problem::Payload("a seal frame has an empty payload".into())));
        }
        let seal_err = |msg: String| err(Problem::Seal(msg));
        // The manifest is the last leaf.
        let (mleaf, mframe, _) =
            self.manifest.as_ref().ok_or_else(|| seal_err("no manifest before the seal".into()))?;
        if *mleaf + 1 != n {
            return Err(seal_err(format!("the last leaf ({}) is not a manifest: the manifest is leaf {mleaf}", n - 1)));
        }
        if s.manifest != (FrameRef { offset: mframe.offset, length: mframe.len() }) {
            return Err(seal_err(format!(
                "points at a manifest at byte {} ({} bytes), but it is at byte {} ({} bytes)",
                s.manifest.offset,
                s.manifest.length,
                mframe.offset,
                mframe.len()
            )));
        }
        // The checkpoint.
        let (note, cp) = parsed.map_err(|e| err(Problem::Signature(e)))?;
        if cp.origin != genesis.origin {
            return Err(seal_err(format!(
                "checkpoint origin `{}` is not the container's `{}`",
                cp.origin, genesis.origin
            )));
        }
        if cp.size != n {
            return Err(seal_err(format!("checkpoint is for {} leaves but the container has {n}", cp.size)));
        }
        if cp.root != root {
            return Err(seal_err(format!(
                "checkpoint root {} does not match the leaves' root {}",
                to_hex(&cp.root),
                to_hex(&root)
            )));
        }
        if cp.time != Some(s.time) {
            return Err(seal_err(format!("the signed time {:?} is not the seal's time {}", cp.time, s.time)));
        }
        if let Some(prev) = &self.last_seal
            && s.time < prev.seal.time
        {
            return Err(seal_err(format!("signed time {} is before the previous seal's {}", s.time, prev.seal.time)));
        }
        // Signatures: the trust root in effect, and a new root being rotated in.
        let trust = self.trust.clone().ok_or_else(|| err(Problem::NotGenesis("seal")))?;
        let mut signers = match &self.pins {
            Some(pins) => {
                let allowed: Vec<VerifierKey> = pins.iter().filter(|k| trust.contains(k)).cloned().collect();
                note.verify_with(&allowed, trust.threshold)
            }
            None => note.verify(&trust),
        }
        .map_err(|e| err(Problem::Signature(e)))?;
        if let Some((_, _, new_root)) = self.pending_keys.take() {
            let more = note.verify(&new_root).map_err(|e| err(Problem::Signature(e)))?;
            for k in more {
                if !signers.contains(&k) {
                    signers.push(k);
                }
            }
            self.trust = Some(new_root);
            self.pins = None;
        }
        // The manifest's inclusion proof.
        let proof = self.tree.inclusion_proof(n - 1, n).map_err(|e| err(Problem::Proof(e)))?;
        let proof: Vec<Sha256Hex> = proof.into_iter().map(Sha256Hex).collect();
        if proof != s.manifest_proof {
            return Err(seal_err("manifest_proof is not the inclusion proof of the manifest".into()));
        }
        // Tile locations.
        self.check_seal_tiles(n, &s).map_err(seal_err)?;
        // Consistency with the previous seal.
        if let Some(prev) = &self.last_seal {
            let m = prev.checkpoint.size;
            let proof = self.tree.consistency_proof(m, n).map_err(|e| err(Problem::Proof(e)))?;
            verify_consistency(m, n, &self.last_root, &root, &proof).map_err(|e| err(Problem::Proof(e)))?;
        }
        self.last_root = root;
        self.seals += 1;
        self.sealed_len = frame.end();
        self.sealed_frames = index + 1;
        self.fresh.clear();
        self.sealed_manifest = self.manifest.as_ref().map(|(_, f, m)| (*f, m.clone()));
        self.last_seal = Some(SealState { frame_index: index, frame, seal: s, checkpoint: cp, signers });
        Ok(())
    }

    /// Checks the tile frames since the last seal against the tree of `n`
    /// leaves. When a level-0 hash differs, the leaf is blamed unless
    /// `leaves_signed` (the leaves give the signed root), then the tile is.
    fn check_pending_tiles(&mut self, n: u64, leaves_signed: bool) -> Result<(), (u64, u64, Problem)> {
        for (index, frame, t) in std::mem::take(&mut self.pending_tiles) {
            let id = TileId { level: t.level, index: t.index, width: t.width };
            let have = n >> (8 * u32::from(t.level));
            let bad = |msg: String| (index, frame.offset, Problem::Tile(msg));
            if t.index.checked_mul(256).and_then(|s| s.checked_add(u64::from(t.width))).is_none_or(|e| e > have) {
                return Err(bad(format!("tile {} is not complete in a tree of {n} leaves", id.path())));
            }
            let want = tiles::tile_hashes(&self.tree, id).map_err(|e| bad(e.to_string()))?;
            let mut got = vec![0u8; frame.payload_len as usize];
            self.src
                .read_exact_at(&mut got, frame.payload_offset)
                .map_err(|e| (index, frame.offset, Problem::Io(e)))?;
            for (p, (w, g)) in want.iter().zip(got.chunks_exact(32)).enumerate() {
                if w[..] != *g {
                    if t.level == 0 && !leaves_signed {
                        let leaf = t.index * 256 + p as u64;
                        if let Some((fi, fo)) = self.leaf_frames.get(leaf as usize) {
                            return Err((*fi, *fo, Problem::LeafHash { leaf, tile: id.path() }));
                        }
                    }
                    return Err(bad(format!("hash {p} of tile {} does not match the tree", id.path())));
                }
            }
            self.tiles.insert((t.level, t.index, t.width), frame.payload_offset);
            self.tile_at.insert(frame.payload_offset, (t.level, t.index, t.width));
        }
        Ok(())
    }

    fn check_seal_tiles(&self, n: u64, s: &Seal) -> Result<(), String> {
        let want = tiles::tiles_at(n);
        let levels = want.iter().map(|t| t.level as usize + 1).max().unwrap_or(0);
        if s.tiles.len() != levels {
            return Err(format!("lists tiles for {} levels; a tree of {n} leaves has {levels}", s.tiles.len()));
        }
        let mut seen = vec![0usize; levels];
        for t in &want {
            let level = t.level as usize;
            let offsets = &s.tiles[level];
            let i = seen[level];
            seen[level] += 1;
            let Some(off) = offsets.get(i) else {
                return Err(format!("does not say where tile {} is", t.path()));
            };
            if u64::try_from(i).ok() != Some(t.index) || self.tile_at.get(off) != Some(&(t.level, t.index, t.width)) {
                return Err(format!("says tile {} is at byte {off}, but no such tile frame is there", t.path()));
            }
        }
        for (level, offsets) in s.tiles.iter().enumerate() {
            if offsets.len() != seen[level] {
                return Err(format!("lists {} tiles at level {level}; the tree has {}", offsets.len(), seen[level]));
            }
        }
        Ok(())
    }

    fn finish(mut self, index: u64, ends_with_seal: bool) -> Result<Scan, VerifyError> {
        let Some(last_seal) = self.last_seal.take() else {
            return Err(self.first_problem.take().unwrap_or(VerifyError {
                frame: index,
                offset: self.len,
                problem: Problem::NoSeal,
            }));
        };
        let tail = if self.sealed_len == self.len {
            Tail::Clean
        } else {
            if ends_with_seal {
                // Defensive: the walk stopped before a seal it should reach.
                if let Some(p) = self.first_problem.take() {
                    return Err(p);
                }
            }
            let reason = match self.first_problem.take() {
                Some(p) => p.to_string(),
                None => format!("{} frame(s) after the last seal are not sealed", index - self.sealed_frames),
            };
            Tail::Torn { offset: self.sealed_len, len: self.len - self.sealed_len, reason }
        };
        let (genesis, genesis_bytes) =
            self.genesis.take().ok_or(VerifyError { frame: 0, offset: 0, problem: Problem::NoSeal })?;
        let (manifest_frame, manifest) =
            self.sealed_manifest.take().ok_or(VerifyError { frame: 0, offset: 0, problem: Problem::NoSeal })?;
        // Leaves after the last seal are not part of the sealed tree.
        let sealed_size = last_seal.checkpoint.size;
        let mut tree = std::mem::take(&mut self.tree);
        if tree.size() != sealed_size {
            let mut t = MemoryTree::new();
            for i in 0..sealed_size {
                if let Some(h) = tree.leaf(i) {
                    t.push(h);
                }
            }
            tree = t;
        }
        self.entries.retain(|e| e.leaf < sealed_size);
        let trust_fallback = genesis.trust.clone();
        Ok(Scan {
            genesis,
            genesis_bytes,
            file_len: self.len,
            sealed_len: self.sealed_len,
            frames: self.sealed_frames,
            size: sealed_size,
            tree,
            partial: false,
            trust: self.trust.take().unwrap_or(trust_fallback),
            last_seal,
            seals: self.seals,
            manifest,
            manifest_frame,
            entries: self.entries,
            tiles: self.tiles,
            tail,
            walked_backward: false,
        })
    }
}

fn describe_manifest_difference(want: &Manifest, got: &Manifest) -> String {
    for w in &want.releases {
        match got.release(&w.channel, &w.target) {
            None => return format!("does not list {} {} {}", w.channel, w.target, w.version),
            Some(g) if g.version != w.version => {
                return format!("lists {} {} as {}, the newest is {}", w.channel, w.target, g.version, w.version);
            }
            Some(g) if g.entries != w.entries => {
                return format!("lists the wrong entries for {} {} {}", w.channel, w.target, w.version);
            }
            _ => {}
        }
    }
    for g in &got.releases {
        if want.release(&g.channel, &g.target).is_none() {
            return format!("lists {} {} {}, which was never published", g.channel, g.target, g.version);
        }
    }
    "is not in canonical order".into()
}

/// One target's release on one channel as entries arrive: its version, its
/// entries and their paths.
#[derive(Clone, Debug)]
pub(crate) struct Draft {
    pub(crate) version: semver::Version,
    pub(crate) entries: Vec<EntryRef>,
    pub(crate) paths: std::collections::BTreeSet<String>,
}

impl Draft {
    pub(crate) fn new(version: semver::Version) -> Self {
        Draft { version, entries: Vec::new(), paths: Default::default() }
    }
}

/// Streams an entry's payload and checks its stored and content digests and sizes.
pub fn check_payload<R: ReadAt + Sync + ?Sized>(src: &R, frame: &FrameInfo, e: &Entry) -> Result<(), Problem> {
    let mut stored = Hasher::new();
    match e.compression {
        Compression::None => {
            stream_range(src, frame.payload_offset, frame.payload_len, |c| {
                stored.update(c);
                Ok::<_, Problem>(())
            })?;
        }
        Compression::Zstd => {
            // Decompress on a second thread so hashing the stored bytes and
            // decoding overlap.
            let content = std::thread::scope(|scope| -> Result<(Hash, u64), Problem> {
                let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(4);
                let size = e.size;
                let decoder = scope.spawn(move || -> Result<(Hash, u64), String> {
                    let mut dec = crate::zstdio::OneFrame::new(BoundedHashWriter::new(io::sink(), size))
                        .map_err(|e| e.to_string())?;
                    for chunk in rx {
                        dec.write_all(&chunk).map_err(|e| e.to_string())?;
                    }
                    let (digest, n, _) = dec.finish().map_err(|e| e.to_string())?.finish();
                    Ok((digest, n))
                });
                let sent = stream_range(src, frame.payload_offset, frame.payload_len, |c| {
                    stored.update(c);
                    // A closed channel means the decoder failed; its error is reported below.
                    let _ = tx.send(c.to_vec());
                    Ok::<_, Problem>(())
                });
                drop(tx);
                let decoded = decoder.join().map_err(|_| Problem::Payload("zstd decoder panicked".into()))?;
                sent?;
                decoded.map_err(|m| Problem::Payload(format!("zstd: {m}")))
            })?;
            if content.1 != e.size {
                return Err(Problem::Payload(format!("content is {} bytes, the header says {}", content.1, e.size)));
            }
            if content.0 != e.sha256.0 {
                return Err(Problem::Payload(format!(
                    "content SHA-256 is {}, the header says {}",
                    to_hex(&content.0),
                    e.sha256
                )));
            }
        }
    }
    let (digest, n) = stored.finish();
    if n != e.stored_size {
        return Err(Problem::Payload(format!("payload is {n} bytes, the header says {}", e.stored_size)));
    }
    if digest != e.stored_sha256.0 {
        return Err(Problem::Payload(format!(
            "payload SHA-256 is {}, the header says {}",
            to_hex(&digest),
            e.stored_sha256
        )));
    }
    Ok(())
}

impl From<io::Error> for Problem {
    fn from(e: io::Error) -> Self {
        Problem::Io(e)
    }
}
