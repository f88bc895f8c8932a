//! Reading and verifying a whole container.
//!
//! [`scan`] walks every frame forward, checks its structure and header,
//! rebuilds the Merkle tree from the leaves, checks every index's listing
//! (each file's content stored once in an earlier entry, each delta between
//! two stored contents, versions growing per channel and target), and at
//! every seal checks the signed checkpoint (origin, size, root, time,
//! signatures against the trust root), the manifest's place and content, the
//! tiles, pages and map, and the consistency with the seal before. With
//! [`ScanOptions::payloads`] it also streams every entry's payload through
//! SHA-256 (and zstd), applies every delta to its base, and checks the signed
//! digests and sizes.
//!
//! A problem in any frame that a later seal covers is an error naming the
//! first bad frame. Bytes after the last seal are never trusted: they are
//! reported as a [`Tail::Torn`], which a publisher cuts off before appending.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;

use crate::content::{self, MAX_DELTA_SIZE};
use crate::frame::{FrameError, FrameInfo, Frames, FramesBack, ReadAt, read_frame_before, read_header};
use crate::hashio::to_hex;
use crate::header::{
    Delta, Entry, Exchange, FileRecord, FrameRef, Genesis, Header, HeaderError, Index, LeafRef, Manifest, Release,
    Seal, Sha256Hex,
};
use crate::keys::{TrustRoot, VerifierKey};
use crate::map::{TileMap, decode_page, level_counts};
use crate::merkle::{Hash, MemoryTree, ProofError, leaf_hash, verify_consistency};
use crate::note::{Checkpoint, Note, NoteError};
use crate::tiles::{self, TileId};

/// What [`scan`] checks beyond structure, headers, tree, tiles and seals.
/// The default checks no payloads and trusts the genesis trust root.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct ScanOptions {
    /// Stream every entry payload and check its signed digests and sizes.
    pub payloads: bool,
    /// Only these keys count as signers of the genesis trust root (until a
    /// rotation replaces it). `None` trusts the genesis trust root as written.
    pub pins: Option<Vec<VerifierKey>>,
    /// For a partial container (a replica) only: the trust root in effect at
    /// its first seal, instead of its genesis root. A client that followed
    /// key rotations keeps its replica without the `keys` leaves it walked,
    /// so it gives the root it ended on. A full container ignores it (it
    /// walks its own `keys` leaves).
    pub replica_trust: Option<TrustRoot>,
}

impl ScanOptions {
    /// Everything: every payload too, against the genesis trust root.
    pub fn full() -> Self {
        ScanOptions { payloads: true, pins: None, replica_trust: None }
    }

    /// With [`replica_trust`](Self::replica_trust) set.
    pub fn with_replica_trust(mut self, trust: Option<TrustRoot>) -> Self {
        self.replica_trust = trust;
        self
    }

    /// With [`payloads`](Self::payloads) set.
    pub fn with_payloads(mut self, payloads: bool) -> Self {
        self.payloads = payloads;
        self
    }

    /// With [`pins`](Self::pins) set (`None`: the genesis trust root).
    pub fn with_pins(mut self, pins: Option<Vec<VerifierKey>>) -> Self {
        self.pins = pins;
        self
    }
}

/// The first bad frame and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("frame {frame} at byte {offset}: {problem}")]
#[non_exhaustive]
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
    /// An entry or delta breaks the content rules (stored once, bases stored).
    #[error("entry: {0}")]
    Entry(String),
    /// An index breaks release rules (version order, one per release) or
    /// names content the container does not hold.
    #[error("index: {0}")]
    Index(String),
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
    /// A page or map frame that does not say where the tiles are.
    #[error("map: {0}")]
    Map(String),
    /// A seal that does not match the container.
    #[error("seal: {0}")]
    Seal(String),
    /// A checkpoint whose signatures fail.
    #[error("seal signatures: {0}")]
    Signature(NoteError),
    /// A `keys` leaf (a rotation) that is not signed by the root it
    /// replaces and the new one, or does not follow the keys leaf before.
    #[error("keys: {0}")]
    Rotation(String),
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

impl From<crate::seal::SealError> for Problem {
    /// A note that does not parse or verify is a signature problem; a broken
    /// seal rule (origin, time, order) a seal problem.
    fn from(e: crate::seal::SealError) -> Self {
        match e {
            crate::seal::SealError::Note(n) | crate::seal::SealError::Signature(n) => Problem::Signature(n),
            other => Problem::Seal(other.to_string()),
        }
    }
}

/// What follows the last seal.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
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
#[non_exhaustive]
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

/// A stored content: a whole entry or a delta.
#[derive(Clone, Debug)]
pub enum Stored {
    /// A content stored whole.
    Entry(Entry),
    /// A content stored as a patch against another.
    Delta(Delta),
}

impl Stored {
    /// The payload length.
    pub fn stored_size(&self) -> u64 {
        match self {
            Stored::Entry(e) => e.stored_size,
            Stored::Delta(d) => d.stored_size,
        }
    }

    /// The content's SHA-256.
    pub fn sha256(&self) -> Sha256Hex {
        match self {
            Stored::Entry(e) => e.sha256,
            Stored::Delta(d) => d.sha256,
        }
    }
}

/// An entry or delta frame of the container.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct EntryRecord {
    /// Its leaf index.
    pub leaf: u64,
    /// Where it sits.
    pub frame: FrameInfo,
    /// Its header.
    pub stored: Stored,
}

/// An index frame: one build of one target on one channel.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct IndexRecord {
    /// Its leaf index.
    pub leaf: u64,
    /// Where it sits.
    pub frame: FrameInfo,
    /// Its header.
    pub index: Index,
    /// Its files.
    pub files: Vec<FileRecord>,
}

impl IndexRecord {
    /// Where the index frame sits.
    pub fn at(&self) -> LeafRef {
        LeafRef { leaf: self.leaf, offset: self.frame.offset, length: self.frame.len() }
    }
}

/// Everything a scan learned about a container, up to its last seal.
#[derive(Debug)]
#[non_exhaustive]
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
    /// Every entry and delta, in order.
    pub entries: Vec<EntryRecord>,
    /// Every index, in order.
    pub indexes: Vec<IndexRecord>,
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

    /// The entry or delta at `leaf`.
    pub fn entry(&self, leaf: u64) -> Option<&EntryRecord> {
        self.entries.binary_search_by_key(&leaf, |e| e.leaf).ok().map(|i| &self.entries[i])
    }

    /// The index of `version` of `target` on `channel`, or the newest one.
    pub fn index(&self, channel: &str, target: &str, version: Option<&str>) -> Option<&IndexRecord> {
        self.indexes.iter().rev().find(|i| {
            i.index.channel == channel && i.index.target == target && version.is_none_or(|v| i.index.version == v)
        })
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
        let offset = match &next {
            Ok(f) => f.offset,
            Err(_) => frames.position(),
        };
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

/// The newest release of one (channel, target) as indexes arrive.
#[derive(Clone, Debug)]
struct Latest {
    version: semver::Version,
    version_text: String,
    index: LeafRef,
    /// The bytes to read for the index and its patch, when it has one.
    head: Option<u64>,
    /// The listing, the base of the next index's patch.
    listing: Vec<u8>,
    listing_sha: Sha256Hex,
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
    /// Content SHA-256 to the leaf of the entry that stores it.
    content: HashMap<Sha256Hex, u64>,
    /// (base, result) to the leaf of the delta between them.
    deltas: HashMap<(Sha256Hex, Sha256Hex), u64>,
    indexes: Vec<IndexRecord>,
    latest: BTreeMap<(String, String), Latest>,
    /// (channel, target) pairs that got an index since the last seal.
    fresh: BTreeSet<(String, String)>,
    /// Entries and deltas since the last seal that no index of this release names yet.
    unreferenced: BTreeSet<u64>,
    /// Every exchange leaf, by leaf: where it is and its channel.
    exchanges: HashMap<u64, (LeafRef, String)>,
    /// Channels that got an exchange since the last seal, and its leaf.
    fresh_exchanges: BTreeMap<String, u64>,
    manifest: Option<(u64, FrameInfo, Manifest)>,
    /// The manifest the last seal covers (a later one may be in a torn tail).
    sealed_manifest: Option<(FrameInfo, Manifest)>,
    /// The latest map frame: its index, where it sits and the tree size it is for.
    map: Option<(u64, FrameInfo, u64)>,
    tiles: HashMap<(u8, u64, u16), u64>,
    tile_at: HashMap<u64, (u8, u64, u16)>,
    pending_tiles: Vec<(u64, FrameInfo, crate::header::Tile)>,
    page_at: HashMap<u64, (u8, u64)>,
    pending_pages: Vec<(u64, FrameInfo, crate::header::Page)>,
    pending_keys: Option<(u64, FrameInfo, TrustRoot)>,
    /// The last keys leaf, as the manifest must name it.
    keys: Option<LeafRef>,
    last_seal: Option<SealState>,
    /// The signed times of the seals so far.
    seal_times: BTreeSet<u64>,
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
            content: HashMap::new(),
            deltas: HashMap::new(),
            indexes: Vec::new(),
            latest: BTreeMap::new(),
            fresh: BTreeSet::new(),
            unreferenced: BTreeSet::new(),
            exchanges: HashMap::new(),
            fresh_exchanges: BTreeMap::new(),
            manifest: None,
            sealed_manifest: None,
            map: None,
            tiles: HashMap::new(),
            tile_at: HashMap::new(),
            pending_tiles: Vec::new(),
            page_at: HashMap::new(),
            pending_pages: Vec::new(),
            pending_keys: None,
            keys: None,
            last_seal: None,
            seal_times: BTreeSet::new(),
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
        let empty_payload = |kind: &str| {
            if frame.payload_len != 0 {
                Err(Problem::Payload(format!("a {kind} frame has an empty payload")))
            } else {
                Ok(())
            }
        };
        let result = match header {
            Header::Genesis(_) => Err(Problem::ExtraGenesis),
            Header::Entry(e) => self.entry(index, frame, &bytes, e),
            Header::Delta(d) => self.delta(index, frame, &bytes, d),
            Header::Index(i) => self.index(index, frame, &bytes, i),
            Header::Manifest(m) => self.manifest(index, frame, &bytes, m),
            Header::Exchange(x) => self.exchange(index, frame, &bytes, x),
            Header::Keys(k) => {
                let leaf = self.push_leaf(index, &frame, &bytes);
                if self.pending_keys.is_some() {
                    Err(Problem::Unexpected("second keys"))
                } else {
                    empty_payload("keys").and_then(|()| self.rotation(&k)).map(|()| {
                        self.pending_keys = Some((index, frame, k.trust));
                        self.keys = Some(LeafRef { leaf, offset: frame.offset, length: frame.len() });
                    })
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
            Header::Page(p) => {
                if frame.payload_len != crate::map::PAGE_WIDTH * 8 {
                    Err(Problem::Map(format!("a page holds 256 offsets (2048 bytes), not {} bytes", frame.payload_len)))
                } else {
                    self.pending_pages.push((index, frame, p));
                    Ok(())
                }
            }
            Header::Map(m) => {
                if frame.payload_len != crate::map::payload_len(m.size) || m.size == 0 {
                    Err(Problem::Map(format!(
                        "a map of a tree of {} leaves has {} payload bytes, not {}",
                        m.size,
                        crate::map::payload_len(m.size),
                        frame.payload_len
                    )))
                } else {
                    self.map = Some((index, frame, m.size));
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
            Header::Listing(_) => Err(Problem::Unexpected("listing (listing frames belong to partial containers)")),
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

    fn check_payloads(&self, frame: &FrameInfo) -> bool {
        self.opts.payloads && frame.offset >= self.payloads_from
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
        if self.check_payloads(&frame) {
            content::check_entry(self.src, &frame, &e).map_err(content_problem)?;
        }
        if let Some(x) = e.sealed {
            // A private entry: its listing, and so who names it, is sealed too.
            self.exchange_named(x, None)?;
            self.entries.push(EntryRecord { leaf, frame, stored: Stored::Entry(e) });
            return Ok(());
        }
        // Stored twice is wasteful, not wrong: deltas name the first.
        self.content.entry(e.sha256).or_insert(leaf);
        self.unreferenced.insert(leaf);
        self.entries.push(EntryRecord { leaf, frame, stored: Stored::Entry(e) });
        Ok(())
    }

    fn delta(&mut self, index: u64, frame: FrameInfo, bytes: &[u8], d: Delta) -> Result<(), Problem> {
        let leaf = self.push_leaf(index, &frame, bytes);
        if frame.payload_len != d.stored_size {
            return Err(Problem::Payload(format!(
                "payload is {} bytes but the header says stored_size {}",
                frame.payload_len, d.stored_size
            )));
        }
        if d.base_size > MAX_DELTA_SIZE || d.size > MAX_DELTA_SIZE {
            return Err(Problem::Entry(format!("a delta's base and result are at most {MAX_DELTA_SIZE} bytes")));
        }
        if let Some(x) = d.sealed {
            // A private delta: its base and result are known to key holders
            // only, who check them through the sealed listing.
            self.exchange_named(x, None)?;
            if self.check_payloads(&frame) {
                let what = format!("delta {} -> {}", d.base, d.sha256);
                content::check_sealed_stored(self.src, &frame, content::PayloadSpec::delta(&d), &what)
                    .map_err(content_problem)?;
            }
            self.entries.push(EntryRecord { leaf, frame, stored: Stored::Delta(d) });
            return Ok(());
        }
        let stored = |sha: &Sha256Hex, what: &str| -> Result<&EntryRecord, Problem> {
            let leaf = self
                .content
                .get(sha)
                .ok_or_else(|| Problem::Entry(format!("the delta's {what} {sha} is not stored in an earlier entry")))?;
            Ok(self.entry_at(*leaf).expect("every content leaf is an entry"))
        };
        let base = stored(&d.base, "base")?.clone();
        let result = stored(&d.sha256, "result")?;
        if base_size(&base) != d.base_size || base_size(result) != d.size {
            return Err(Problem::Entry("the delta's sizes are not those of its base and result".into()));
        }
        if self.check_payloads(&frame) {
            let Stored::Entry(be) = &base.stored else { unreachable!("content leaves are entries") };
            let base_bytes =
                content::entry_bytes(self.src, &base.frame, be, MAX_DELTA_SIZE).map_err(content_problem)?;
            content::delta_content(self.src, &frame, &d, &base_bytes, io::sink()).map_err(content_problem)?;
        }
        self.deltas.entry((d.base, d.sha256)).or_insert(leaf);
        self.unreferenced.insert(leaf);
        self.entries.push(EntryRecord { leaf, frame, stored: Stored::Delta(d) });
        Ok(())
    }

    /// An exchange leaf: a private channel's content key for this release.
    fn exchange(&mut self, index: u64, frame: FrameInfo, bytes: &[u8], x: Exchange) -> Result<(), Problem> {
        let leaf = self.push_leaf(index, &frame, bytes);
        if frame.payload_len != x.stored_size {
            return Err(Problem::Payload(format!(
                "payload is {} bytes but the header says stored_size {}",
                frame.payload_len, x.stored_size
            )));
        }
        if self.fresh_exchanges.insert(x.channel.clone(), leaf).is_some() {
            return Err(Problem::Index(format!("channel {} has two key exchanges in one release", x.channel)));
        }
        if self.check_payloads(&frame) {
            let spec = content::PayloadSpec {
                stored_size: x.stored_size,
                stored_sha256: x.stored_sha256,
                compression: crate::header::Compression::None,
                size: x.stored_size,
                sha256: x.stored_sha256,
                sealed: true,
                key: None,
                digest_key: None,
            };
            content::check_sealed_stored(self.src, &frame, spec, &format!("exchange of {}", x.channel))
                .map_err(content_problem)?;
        }
        let at = LeafRef { leaf, offset: frame.offset, length: frame.len() };
        self.exchanges.insert(leaf, (at, x.channel));
        Ok(())
    }

    /// A sealed frame names an earlier exchange leaf exactly; an index's
    /// is one of its channel in this release.
    fn exchange_named(&self, x: LeafRef, channel: Option<&str>) -> Result<(), Problem> {
        match self.exchanges.get(&x.leaf) {
            Some((at, c)) if *at == x => match channel {
                Some(ch) if c != ch || self.fresh_exchanges.get(ch) != Some(&x.leaf) => Err(Problem::Index(format!(
                    "a private index of {ch} names the key exchange at leaf {} of another channel or release",
                    x.leaf
                ))),
                _ => Ok(()),
            },
            _ => Err(Problem::Entry(format!("names no key exchange at leaf {} (byte {})", x.leaf, x.offset))),
        }
    }

    fn entry_at(&self, leaf: u64) -> Option<&EntryRecord> {
        self.entries.binary_search_by_key(&leaf, |e| e.leaf).ok().map(|i| &self.entries[i])
    }

    fn index(&mut self, index: u64, frame: FrameInfo, bytes: &[u8], ix: Index) -> Result<(), Problem> {
        let leaf = self.push_leaf(index, &frame, bytes);
        if frame.payload_len != ix.payload_len() {
            return Err(Problem::Payload(format!(
                "payload is {} bytes but the header says {}",
                frame.payload_len,
                ix.payload_len()
            )));
        }
        let (listing, files) = match ix.sealed {
            Some(x) => {
                // A private listing: its stored bytes are all a keyless reader checks.
                self.exchange_named(x, Some(&ix.channel))?;
                let spec = content::PayloadSpec {
                    stored_size: ix.stored_size,
                    stored_sha256: ix.stored_sha256,
                    compression: ix.compression,
                    size: ix.size,
                    sha256: ix.sha256,
                    sealed: true,
                    key: None,
                    digest_key: None,
                };
                let what = format!("index of {} {} {}", ix.channel, ix.target, ix.version);
                content::check_sealed_stored(self.src, &frame, spec, &what).map_err(content_problem)?;
                (Vec::new(), Vec::new())
            }
            None => {
                let listing = content::listing_bytes(self.src, &frame, &ix).map_err(content_problem)?;
                let files = content::parse(&listing, &ix).map_err(content_problem)?;
                (listing, files)
            }
        };
        let key = (ix.channel.clone(), ix.target.clone());
        let version = ix.semver();
        if self.fresh.contains(&key) {
            return Err(Problem::Index(format!("{} {} has two indexes in one release", ix.channel, ix.target)));
        }
        match self.latest.get(&key) {
            Some(l) if version.cmp_precedence(&l.version) != std::cmp::Ordering::Greater => {
                return Err(Problem::Index(format!(
                    "{} {} version {version} is not newer than the published {}",
                    ix.channel, ix.target, l.version_text
                )));
            }
            Some(l) if ix.previous != Some(l.index) => {
                return Err(Problem::Index(format!(
                    "{} {} {version}: `previous` does not name the index of {}",
                    ix.channel, ix.target, l.version_text
                )));
            }
            None if ix.previous.is_some() => {
                return Err(Problem::Index(format!(
                    "{} {} {version}: `previous` names an index, but this is the first release",
                    ix.channel, ix.target
                )));
            }
            _ => {}
        }
        if let (Some(p), Some(l)) = (&ix.patch, self.latest.get(&key)) {
            if p.base != l.listing_sha {
                return Err(Problem::Index(format!(
                    "{} {} {version}: its patch is not against the listing of {}",
                    ix.channel, ix.target, l.version_text
                )));
            }
            content::listing_from_patch(self.src, frame.payload_offset, &ix, &l.listing).map_err(content_problem)?;
        }
        for f in &files {
            let Some(Stored::Entry(e)) = self
                .entry_at(f.entry.leaf)
                .filter(|r| {
                    matches!(r.stored, Stored::Entry(_))
                        && r.frame.offset == f.entry.offset
                        && r.frame.len() == f.entry.length
                })
                .map(|r| &r.stored)
            else {
                return Err(Problem::Index(format!(
                    "{}: no entry at leaf {} (byte {})",
                    f.path, f.entry.leaf, f.entry.offset
                )));
            };
            if e.sha256 != f.sha256 || e.size != f.size {
                return Err(Problem::Index(format!(
                    "{}: the entry at leaf {} holds other content",
                    f.path, f.entry.leaf
                )));
            }
            for dr in &f.deltas {
                let ok = matches!(
                    self.entry_at(dr.leaf),
                    Some(EntryRecord { stored: Stored::Delta(d), frame: df, .. })
                        if d.base == dr.base && d.sha256 == f.sha256 && df.offset == dr.offset && df.len() == dr.length
                );
                if !ok {
                    return Err(Problem::Index(format!(
                        "{}: no delta from {} at leaf {} (byte {})",
                        f.path, dr.base, dr.leaf, dr.offset
                    )));
                }
            }
        }
        for f in &files {
            self.unreferenced.remove(&f.entry.leaf);
            for d in &f.deltas {
                self.unreferenced.remove(&d.leaf);
            }
        }
        let at = LeafRef { leaf, offset: frame.offset, length: frame.len() };
        let head = ix.patch.map(|p| frame.payload_offset - frame.offset + p.stored_size);
        self.fresh.insert(key.clone());
        self.latest.insert(
            key,
            Latest { version, version_text: ix.version.clone(), index: at, head, listing, listing_sha: ix.sha256 },
        );
        self.indexes.push(IndexRecord { leaf, frame, index: ix, files });
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
                .map(|((channel, target), l)| Release {
                    channel: channel.clone(),
                    target: target.clone(),
                    version: l.version_text.clone(),
                    index: l.index,
                    head: l.head,
                })
                .collect(),
            keys: self.keys,
        };
        if m != expected {
            return Err(Problem::Manifest(describe_manifest_difference(&expected, &m)));
        }
        self.manifest = Some((leaf, frame, m));
        Ok(())
    }

    /// A keys leaf: it names the keys leaf before it, and its note is
    /// signed by the root in effect and the new root.
    fn rotation(&self, k: &crate::header::Keys) -> Result<(), Problem> {
        if k.previous != self.keys {
            return Err(Problem::Rotation(format!(
                "names {} as the keys leaf before it, but that is {}",
                k.previous.map_or_else(|| "none".to_string(), |r| format!("leaf {}", r.leaf)),
                self.keys.map_or_else(|| "none".to_string(), |r| format!("leaf {}", r.leaf)),
            )));
        }
        let (Some((genesis, _)), Some(trust)) = (&self.genesis, &self.trust) else {
            return Err(Problem::NotGenesis("keys"));
        };
        crate::seal::check_rotation(k, &genesis.origin, trust, self.pins.as_deref(), Some(trust))
            .map(|_| ())
            .map_err(|e| Problem::Rotation(e.to_string()))
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
        let tiles = self.check_pending_tiles(n, leaves_signed).and_then(|()| self.check_pending_pages());
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
        if let Some(leaf) = self.unreferenced.first() {
            let e = self.entry_at(*leaf).map_or(0, |e| e.frame.offset);
            return Err(VerifyError {
                frame: self.leaf_frames[*leaf as usize].0,
                offset: e,
                problem: Problem::Entry(format!("leaf {leaf} is stored in this release but no index names it")),
            });
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
        // The checkpoint: the one seal check, then what only the leaves tell.
        let trust = self.trust.clone().ok_or_else(|| err(Problem::NotGenesis("seal")))?;
        let new_root = self.pending_keys.take().map(|(_, _, r)| r);
        let previous = match &self.last_seal {
            Some(prev) => crate::seal::Previous::Seal { time: prev.seal.time, earlier: &self.seal_times },
            None => crate::seal::Previous::First,
        };
        let rules = crate::seal::SealRules::new(&trust)
            .origin(&genesis.origin)
            .pins(self.pins.as_deref())
            .rotation(new_root.as_ref())
            .previous(previous);
        let checked = crate::seal::check_seal(&s, &rules).map_err(|e| err(e.into()))?;
        let (cp, signers) = (checked.checkpoint, checked.signers);
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
        if let Some(new_root) = new_root {
            // From here on seals answer to the new root only.
            self.trust = Some(new_root);
            self.pins = None;
        }
        // The map: the frontier before the manifest, and every tile's place.
        // What the map itself gets wrong names the map frame.
        self.check_map(n, &s).map_err(|(at, m)| match at {
            Some((i, o)) => VerifyError { frame: i, offset: o, problem: Problem::Map(m) },
            None => err(Problem::Map(m)),
        })?;
        // Consistency with the previous seal.
        if let Some(prev) = &self.last_seal {
            let m = prev.checkpoint.size;
            let proof = self.tree.consistency_proof(m, n).map_err(|e| err(Problem::Proof(e)))?;
            verify_consistency(m, n, &self.last_root, &root, &proof).map_err(|e| err(Problem::Proof(e)))?;
        }
        self.last_root = root;
        self.seal_times.insert(s.time);
        self.seals += 1;
        self.sealed_len = frame.end();
        self.sealed_frames = index + 1;
        self.fresh.clear();
        self.fresh_exchanges.clear();
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

    /// Checks the page frames since the last seal: each lists exactly the
    /// payload offsets of 256 full tile frames of its level.
    fn check_pending_pages(&mut self) -> Result<(), (u64, u64, Problem)> {
        for (index, frame, p) in std::mem::take(&mut self.pending_pages) {
            let bad = |msg: String| (index, frame.offset, Problem::Map(msg));
            let mut raw = vec![0u8; frame.payload_len as usize];
            self.src
                .read_exact_at(&mut raw, frame.payload_offset)
                .map_err(|e| (index, frame.offset, Problem::Io(e)))?;
            let offsets = decode_page(&raw).ok_or_else(|| bad("a page holds 256 offsets".into()))?;
            for (slot, off) in offsets.iter().enumerate() {
                let want = p.index.checked_mul(256).and_then(|b| b.checked_add(slot as u64));
                if want.is_none() || self.tile_at.get(off) != Some(&(p.level, want.unwrap_or(0), 256)) {
                    return Err(bad(format!(
                        "slot {slot} of page {}/{} says tile {:?} is at byte {off}, but no such full tile frame is there",
                        p.level, p.index, want
                    )));
                }
            }
            self.page_at.insert(frame.payload_offset, (p.level, p.index));
        }
        Ok(())
    }

    /// The seal's map is the latest map frame, for this tree, and it holds
    /// the frontier before the manifest and every tile's place.
    /// Errors name the map frame (`Some((frame index, offset))`) when its
    /// content is wrong, the seal (`None`) when the seal names another map.
    fn check_map(&self, n: u64, s: &Seal) -> Result<(), (Option<(u64, u64)>, String)> {
        let (mi, frame, size) = self.map.as_ref().ok_or((None, "no map before the seal".to_string()))?;
        let at = Some((*mi, frame.offset));
        if s.map != (FrameRef { offset: frame.offset, length: frame.len() }) {
            return Err((
                None,
                format!(
                    "the seal points at a map at byte {} ({} bytes), but the latest map is at byte {} ({} bytes)",
                    s.map.offset,
                    s.map.length,
                    frame.offset,
                    frame.len()
                ),
            ));
        }
        if *size != n {
            return Err((at, format!("the map is for a tree of {size} leaves, the seal's has {n}")));
        }
        let mut raw = vec![0u8; frame.payload_len as usize];
        self.src.read_exact_at(&mut raw, frame.payload_offset).map_err(|e| (at, e.to_string()))?;
        let map = TileMap::decode(n, &raw).map_err(|e| (at, e.to_string()))?;
        let before = self.tree.frontier_at(n - 1).map_err(|e| (at, e.to_string()))?;
        if map.before != before {
            return Err((at, "its frontier is not the tree's before the manifest".into()));
        }
        for (l, level) in map.levels.iter().enumerate() {
            let l = l as u8;
            let c = level_counts(n, l);
            for (p, off) in level.pages.iter().enumerate() {
                if self.page_at.get(off) != Some(&(l, p as u64)) {
                    return Err((at, format!("says page {l}/{p} is at byte {off}, but no such page frame is there")));
                }
            }
            for (i, off) in level.loose.iter().enumerate() {
                let t = TileId { level: l, index: c.pages * 256 + i as u64, width: 256 };
                if self.tile_at.get(off) != Some(&(t.level, t.index, t.width)) {
                    return Err((
                        at,
                        format!("says tile {} is at byte {off}, but no such tile frame is there", t.path()),
                    ));
                }
            }
            if let Some(off) = level.edge {
                let m = n >> (8 * u32::from(l));
                let t = TileId { level: l, index: m / 256, width: (m % 256) as u16 };
                if self.tile_at.get(&off) != Some(&(t.level, t.index, t.width)) {
                    return Err((
                        at,
                        format!("says tile {} is at byte {off}, but no such tile frame is there", t.path()),
                    ));
                }
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
        self.indexes.retain(|e| e.leaf < sealed_size);
        let sealed_len = self.sealed_len;
        self.tiles.retain(|_, off| *off < sealed_len);
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
            indexes: self.indexes,
            tiles: self.tiles,
            tail,
            walked_backward: false,
        })
    }
}

fn base_size(r: &EntryRecord) -> u64 {
    match &r.stored {
        Stored::Entry(e) => e.size,
        Stored::Delta(d) => d.size,
    }
}

pub(crate) fn content_problem(e: content::ContentError) -> Problem {
    match e {
        content::ContentError::Mismatch(m) => Problem::Payload(m),
        content::ContentError::Payload { source: content::PayloadError::Write(e), .. } => Problem::Io(e),
        e @ content::ContentError::Payload { .. } => Problem::Payload(e.to_string()),
        content::ContentError::Io(e) => Problem::Io(e),
    }
}

fn describe_manifest_difference(want: &Manifest, got: &Manifest) -> String {
    for w in &want.releases {
        match got.release(&w.channel, &w.target) {
            None => return format!("does not list {} {} {}", w.channel, w.target, w.version),
            Some(g) if g.version != w.version => {
                return format!("lists {} {} as {}, the newest is {}", w.channel, w.target, g.version, w.version);
            }
            Some(g) if g.index != w.index || g.head != w.head => {
                return format!("points at the wrong index for {} {} {}", w.channel, w.target, w.version);
            }
            _ => {}
        }
    }
    for g in &got.releases {
        if want.release(&g.channel, &g.target).is_none() {
            return format!("lists {} {} {}, which was never published", g.channel, g.target, g.version);
        }
    }
    if want.keys != got.keys {
        return "does not name the latest keys leaf".into();
    }
    "is not in canonical order".into()
}

impl From<io::Error> for Problem {
    fn from(e: io::Error) -> Self {
        Problem::Io(e)
    }
}
