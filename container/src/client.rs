//! What a client needs to check a container it only reads parts of.
//!
//! An update reads, in order:
//! 1. a small suffix holding the last seal: [`read_seal`] verifies the
//!    checkpoint's signatures. If the tree is the one the client already
//!    verified, that is all (an up-to-date check is this one read);
//! 2. the map and the manifest the seal names ([`top_ranges`]):
//!    [`read_top`] checks the manifest is the last leaf of the signed tree,
//!    using the frontier in the map;
//! 3. its own target's index and, through [`ProofPlan`], the few tile hashes
//!    that tie it (and the client's stored tree) to the signed root;
//! 4. the entries and deltas it lacks, proven the same way.
//!
//! [`ProofPlan`] says which node hashes are needed and where in the tiles
//! they are (the map lists the tiles; a tile listed in a page costs one more
//! 8-byte read), so a client range-reads only those bytes.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::frame::{FrameError, FrameInfo, ReadAt, Window, frame_len, read_frame_at, read_frame_before, read_header};
use crate::header::{FrameRef, Header, HeaderError, Index, Manifest, Map, Release, Seal};
use crate::keys::{TrustRoot, VerifierKey};
use crate::map::{Located, MapError, TileMap, payload_len};
use crate::merkle::{Frontier, Hash, NodeId, ProofError, leaf_hash, plan_nodes, root_from_nodes};
use crate::note::{Checkpoint, NoteError};
use crate::seal::{SealError, SealRules, check_seal, parse_seal};
use crate::tiles::{TileError, TileId, hash_span, node_span};

/// The longest manifest frame a client reads (1 MiB of header and framing).
pub const MAX_MANIFEST_FRAME: u64 = (1 << 20) + 32;

/// Why a container's tail cannot be trusted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TailError {
    /// The bytes do not form frames.
    #[error("the container's tail: {0}")]
    Frame(#[from] FrameError),
    /// A header is malformed.
    #[error("the container's tail: {0}")]
    Header(#[from] HeaderError),
    /// The last frame is not a seal, or the seal's manifest or map is not one.
    #[error("the container's tail: {0}")]
    Layout(String),
    /// The container does not end with a complete seal: a publish caught in
    /// progress, or a damaged copy. Nothing in it can be used.
    #[error("the container does not end with a seal ({0}): a publish in progress, or a damaged copy")]
    Unsealed(String),
    /// The last bytes are not a whole frame: the file is damaged, cut or
    /// shifted (or caught while a frame was being written).
    #[error("{0}")]
    Damaged(String),
    /// The checkpoint's signatures do not verify with the trusted keys.
    #[error("the checkpoint is not signed by the trusted keys: {0}")]
    Signature(#[source] NoteError),
    /// The manifest is not the last leaf of the signed tree.
    #[error("the manifest is not the last leaf of the signed tree: {0}")]
    Manifest(#[source] ProofError),
}

/// A verified seal: its checkpoint's signatures hold.
#[derive(Clone, Debug)]
pub struct SignedSeal {
    /// The container length the seal was read at.
    pub len: u64,
    /// The seal frame.
    pub frame: FrameInfo,
    /// The seal.
    pub seal: Seal,
    /// The checkpoint it signs.
    pub checkpoint: Checkpoint,
    /// The keys whose signatures verified.
    pub signers: Vec<VerifierKey>,
}

impl SignedSeal {
    /// Tree size.
    pub fn size(&self) -> u64 {
        self.checkpoint.size
    }
}

/// What [`read_seal`] found.
#[derive(Debug)]
pub enum SealRead {
    /// The seal, verified.
    Complete(Box<SignedSeal>),
    /// The window does not reach back far enough: fetch from `start`.
    NeedMore {
        /// The offset the window must start at.
        start: u64,
    },
}

/// A seal read from a container's tail, its note parsed but not yet checked
/// against a trust root (a client that follows key rotations needs the
/// manifest it names first): [`TailSeal::verify`] gives a [`SignedSeal`].
#[derive(Clone, Debug)]
pub struct TailSeal {
    /// The container length the seal was read at.
    pub len: u64,
    /// The seal frame.
    pub frame: FrameInfo,
    /// The seal.
    pub seal: Seal,
    /// The checkpoint it signs, not yet verified.
    pub checkpoint: Checkpoint,
}

impl TailSeal {
    /// Tree size (unverified).
    pub fn size(&self) -> u64 {
        self.checkpoint.size
    }

    /// The one seal check ([`check_seal`]) against `rules`.
    pub fn verify(self, rules: &SealRules<'_>) -> Result<SignedSeal, TailError> {
        let checked = check_seal(&self.seal, rules).map_err(seal_error)?;
        Ok(SignedSeal {
            len: self.len,
            frame: self.frame,
            seal: self.seal,
            checkpoint: checked.checkpoint,
            signers: checked.signers,
        })
    }
}

fn seal_error(e: SealError) -> TailError {
    match e {
        SealError::Note(n) | SealError::Signature(n) => TailError::Signature(n),
        other => TailError::Layout(other.to_string()),
    }
}

/// What [`read_tail`] found.
#[derive(Debug)]
pub enum TailRead {
    /// The seal, parsed.
    Complete(Box<TailSeal>),
    /// The window does not reach back far enough: fetch from `start`.
    NeedMore {
        /// The offset the window must start at.
        start: u64,
    },
}

/// Reads the seal at the end of a container of `len` bytes from `window` (a
/// suffix of the container) and parses its note, without checking
/// signatures: see [`read_seal`].
pub fn read_tail(window: &Window<'_>, len: u64) -> Result<TailRead, TailError> {
    if window.end() != len {
        return Err(TailError::Layout(format!("the window ends at {} but the container is {len} bytes", window.end())));
    }
    let frame = match read_frame_before(window, window.base(), len) {
        Ok(f) => f,
        Err(FrameError::Truncated { needed, .. }) if window.base() > 0 && needed <= len => {
            return Ok(TailRead::NeedMore { start: len - needed });
        }
        Err(e) => {
            return Err(TailError::Damaged(format!(
                "the last bytes are not a seal frame ({e}): the mirror serves a damaged, cut or shifted file \
                 (or one caught in the middle of writing a frame)"
            )));
        }
    };
    let seal = match Header::parse(&read_header(window, &frame)?) {
        Ok(Header::Seal(s)) => s,
        Ok(other) => return Err(TailError::Unsealed(format!("its last frame is a {} frame", other.kind()))),
        Err(e) => return Err(e.into()),
    };
    let (_, checkpoint) = parse_seal(&seal).map_err(seal_error)?;
    if checkpoint.size < 2 {
        return Err(TailError::Layout(format!("a signed tree of {} leaves has no manifest", checkpoint.size)));
    }
    for (what, r) in [("manifest", seal.manifest), ("map", seal.map)] {
        if r.offset.checked_add(r.length).is_none_or(|end| end > frame.offset) {
            // Signed, so not forged: the file around it is shifted or cut.
            return Err(TailError::Damaged(
                format!(
                    "the signed seal places its {what} at bytes {}..{}, past the seal itself at byte {}",
                    r.offset,
                    r.offset.saturating_add(r.length),
                    frame.offset
                ) + ": the mirror serves a shifted or damaged file",
            ));
        }
    }
    Ok(TailRead::Complete(Box::new(TailSeal { len, frame, seal, checkpoint })))
}

/// Reads the seal at the end of a container of `len` bytes from `window` (a
/// suffix of the container), verifying its checkpoint against `keys` (at
/// least `threshold` distinct signers).
pub fn read_seal(window: &Window<'_>, len: u64, keys: &[VerifierKey], threshold: u32) -> Result<SealRead, TailError> {
    match read_tail(window, len)? {
        TailRead::NeedMore { start } => Ok(SealRead::NeedMore { start }),
        TailRead::Complete(tail) => {
            let root = TrustRoot::new(keys.to_vec(), threshold)
                .map_err(|e| TailError::Signature(crate::note::NoteError::TrustRoot(e)))?;
            Ok(SealRead::Complete(Box::new(tail.verify(&SealRules::new(&root))?)))
        }
    }
}

/// How far ahead of a clock a signed time may be: the publisher's and a
/// client's clocks disagree by a few minutes at most. Publishers refuse to
/// sign further ahead ([`check_signed_time`]), clients refuse a seal signed
/// further ahead, and a seal may go back in time only past seals that are
/// more than this ahead of it ([`check_seal_order`]).
pub const MAX_CLOCK_SKEW: u64 = 300;

/// The widest skew a publisher may ask for (`dare seal --max-skew`): one
/// day. Whatever is asked, the far future is refused.
pub const MAX_SKEW_LIMIT: u64 = 86_400;

/// The checkpoint extension line of a seal that goes back in time past a
/// seal signed in the future: `supersedes-time <that seal's time>`.
pub const SUPERSEDES_TIME: &str = "supersedes-time";

/// A signed time further ahead of the clock than the allowed skew.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "signed time {signed} is {} s ahead of the clock ({now}), more than the allowed skew of {skew} s{}",
    signed.saturating_sub(*now),
    millis_hint(*signed, *now)
)]
#[non_exhaustive]
pub struct FutureTime {
    /// The signed time, Unix seconds.
    pub signed: u64,
    /// The clock, Unix seconds.
    pub now: u64,
    /// The skew allowed, seconds.
    pub skew: u64,
}

fn millis_hint(signed: u64, now: u64) -> String {
    // Milliseconds (or micro-, nanoseconds) since 1970 are a thousand times
    // (or more) too big; seconds divided down land near the clock.
    let mut t = signed;
    let mut unit = 0;
    while t > now.saturating_add(MAX_SKEW_LIMIT) && unit < 3 {
        t /= 1000;
        unit += 1;
    }
    let names = ["", "milliseconds", "microseconds", "nanoseconds"];
    if unit > 0 && t + 10 * 365 * 86_400 >= now && t <= now.saturating_add(MAX_SKEW_LIMIT) {
        format!(" (it looks like {}; in seconds that is {t})", names[unit])
    } else {
        String::new()
    }
}

/// Checks a signed time is at most `skew` seconds ahead of `now` (a clock in
/// Unix seconds). Any time in the past is fine: backdating is a publisher's
/// choice (reproducible builds), and freshness is the client's `max-age`.
pub fn check_signed_time(signed: u64, now: u64, skew: u64) -> Result<(), FutureTime> {
    if signed > now.saturating_add(skew) { Err(FutureTime { signed, now, skew }) } else { Ok(()) }
}

/// Whether a client's stored seal time still orders the seals it reads: a
/// stored time more than [`MAX_CLOCK_SKEW`] ahead of the clock came from a
/// seal signed in the future (a publisher's mistake) and must not make every
/// honest later seal look like a rollback. The tree size and the consistency
/// proofs still refuse rollbacks; the freeze check still applies.
pub fn stored_time_binds(stored: u64, now: u64) -> bool {
    check_signed_time(stored, now, MAX_CLOCK_SKEW).is_ok()
}

/// The time a checkpoint says it supersedes: its `supersedes-time` line.
pub fn superseded_time(checkpoint: &Checkpoint) -> Result<Option<u64>, String> {
    let mut found = None;
    for line in &checkpoint.extensions {
        let Some(rest) = line.strip_prefix(SUPERSEDES_TIME) else { continue };
        let value = rest
            .strip_prefix(' ')
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) && (*v == "0" || !v.starts_with('0')))
            .and_then(|v| v.parse::<u64>().ok());
        match (value, found) {
            (Some(v), None) => found = Some(v),
            (None, _) => return Err(format!("`{line}` is not `{SUPERSEDES_TIME} <unix seconds>`")),
            (Some(_), Some(_)) => return Err(format!("more than one `{SUPERSEDES_TIME}` line")),
        }
    }
    Ok(found)
}

/// The rule for the signed times of consecutive seals, applied by `dare
/// verify` (with every earlier seal's time) and by publishers (with the last
/// one's): a seal is not signed before the seal it follows (`prev`), with one
/// way out for a container holding a seal signed in the future. Such a seal
/// may be followed by one signed earlier when that one names it in its
/// checkpoint (`supersedes-time <prev>`, so the step back is signed on
/// purpose), `prev` is more than [`MAX_CLOCK_SKEW`] ahead of it, and so is
/// every earlier seal it goes back past (`earlier`: the times of the seals
/// before, `prev` included; a publisher that knows only `prev` passes it alone).
pub fn check_seal_order(time: u64, supersedes: Option<u64>, prev: u64, earlier: &BTreeSet<u64>) -> Result<(), String> {
    if time >= prev {
        return match supersedes {
            None => Ok(()),
            Some(t) => Err(format!(
                "signed time {time} is not before the previous seal's {prev}, yet its checkpoint says it supersedes time {t}"
            )),
        };
    }
    if supersedes != Some(prev) {
        return Err(format!(
            "signed time {time} is before the previous seal's {prev} (only a seal whose checkpoint says \
             `{SUPERSEDES_TIME} {prev}` may go back past a seal signed in the future)"
        ));
    }
    if let Some(t) = earlier.range(time + 1..=time.saturating_add(MAX_CLOCK_SKEW)).next_back() {
        return Err(format!(
            "signed time {time} goes back past a seal signed at {t}, which is not more than {MAX_CLOCK_SKEW} s ahead of it"
        ));
    }
    Ok(())
}

/// The exact length of the map frame of a tree of `size` leaves.
pub fn map_frame_len(size: u64) -> Option<u64> {
    let header = Header::Map(Map { size }).to_bytes().ok()?;
    frame_len(header.len() as u64, payload_len(size))
}

/// The byte ranges holding the map and the manifest a verified seal names,
/// merged when they touch (a publisher writes the map just before the
/// manifest). Each is bounded by what the signed tree size allows.
pub fn top_ranges(seal: &SignedSeal) -> Result<Vec<(u64, u64)>, TailError> {
    seal_top_ranges(&seal.seal, seal.size())
}

/// [`top_ranges`] of a seal read from the tail, not yet verified.
pub fn tail_top_ranges(tail: &TailSeal) -> Result<Vec<(u64, u64)>, TailError> {
    seal_top_ranges(&tail.seal, tail.size())
}

fn seal_top_ranges(s: &Seal, size: u64) -> Result<Vec<(u64, u64)>, TailError> {
    if Some(s.map.length) != map_frame_len(size) {
        return Err(TailError::Layout(format!(
            "the seal names a map of {} bytes; a tree of {size} leaves has a map of {:?}",
            s.map.length,
            map_frame_len(size)
        )));
    }
    if s.manifest.length > MAX_MANIFEST_FRAME {
        return Err(TailError::Layout(format!("the seal names a manifest of {} bytes", s.manifest.length)));
    }
    Ok(merge_ranges(vec![(s.map.offset, s.map.end()), (s.manifest.offset, s.manifest.end())]))
}

/// A verified top of the tree: the seal, its map, and the manifest proven
/// to be its last leaf.
#[derive(Clone, Debug)]
pub struct SignedTop {
    /// The seal.
    pub seal: SignedSeal,
    /// The map frame.
    pub map_frame: FrameInfo,
    /// The map (its frontier is proven with the manifest; its tile offsets
    /// are checked by every proof that uses them).
    pub map: TileMap,
    /// The manifest frame.
    pub manifest_frame: FrameInfo,
    /// The manifest.
    pub manifest: Manifest,
    /// The manifest's leaf hash (leaf `size - 1`).
    pub manifest_leaf: Hash,
}

impl SignedTop {
    /// Tree size.
    pub fn size(&self) -> u64 {
        self.seal.size()
    }

    /// The frontier of the whole signed tree.
    pub fn frontier(&self) -> Result<Frontier, ProofError> {
        let mut f = self.map.before.clone();
        f.push(self.manifest_leaf)?;
        Ok(f)
    }
}

fn frame_at<R: ReadAt + ?Sized>(src: &R, what: &str, r: FrameRef) -> Result<(FrameInfo, Header), TailError> {
    let frame = read_frame_at(src, r.offset, r.end())?;
    if frame.len() != r.length {
        return Err(TailError::Layout(format!("the {what} frame's length is not the one the seal names")));
    }
    Ok((frame, Header::parse(&read_header(src, &frame)?)?))
}

/// Reads the map and manifest a verified seal names from `src` (holding the
/// [`top_ranges`]) and checks the manifest is leaf `n-1` of the signed tree.
pub fn read_top<R: ReadAt + ?Sized>(seal: SignedSeal, src: &R) -> Result<SignedTop, TailError> {
    let (map_frame, map, manifest_frame, manifest, manifest_leaf) = top_parts(&seal.seal, &seal.checkpoint, src)?;
    Ok(SignedTop { seal, map_frame, map, manifest_frame, manifest, manifest_leaf })
}

/// [`read_top`] for a seal read from the tail and not yet verified: the
/// manifest is the last leaf of the tree the checkpoint names, which is
/// worth only what the checkpoint's signatures are. A client following key
/// rotations reads the `keys` leaf the manifest names before it can check them.
pub fn read_tail_manifest<R: ReadAt + ?Sized>(tail: &TailSeal, src: &R) -> Result<Manifest, TailError> {
    Ok(top_parts(&tail.seal, &tail.checkpoint, src)?.3)
}

type TopParts = (FrameInfo, TileMap, FrameInfo, Manifest, Hash);

fn top_parts<R: ReadAt + ?Sized>(seal: &Seal, checkpoint: &Checkpoint, src: &R) -> Result<TopParts, TailError> {
    let n = checkpoint.size;
    let (map_frame, h) = frame_at(src, "map", seal.map)?;
    match h {
        Header::Map(m) if m.size == n => {}
        Header::Map(m) => {
            return Err(TailError::Layout(format!("the map is for {} leaves, the seal's tree {n}", m.size)));
        }
        other => return Err(TailError::Layout(format!("the seal names a {} frame as its map", other.kind()))),
    }
    let mut raw = vec![0u8; map_frame.payload_len as usize];
    src.read_exact_at(&mut raw, map_frame.payload_offset)
        .map_err(|e| TailError::Frame(FrameError::Io { offset: map_frame.offset, source: e }))?;
    let map = TileMap::decode(n, &raw).map_err(|e| TailError::Layout(e.to_string()))?;
    let manifest_frame = read_frame_at(src, seal.manifest.offset, seal.manifest.end())?;
    if manifest_frame.len() != seal.manifest.length {
        return Err(TailError::Layout("the manifest frame's length is not the one the seal names".into()));
    }
    let bytes = read_header(src, &manifest_frame)?;
    let manifest = match Header::parse(&bytes)? {
        Header::Manifest(x) => x,
        other => return Err(TailError::Layout(format!("the seal names a {} frame as its manifest", other.kind()))),
    };
    let manifest_leaf = leaf_hash(&bytes);
    let mut f = map.before.clone();
    f.push(manifest_leaf).map_err(TailError::Manifest)?;
    if f.root() != checkpoint.root {
        return Err(TailError::Manifest(ProofError::RootMismatch));
    }
    Ok((map_frame, map, manifest_frame, manifest, manifest_leaf))
}

/// Why a proof could not be planned or checked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// Tree arithmetic.
    #[error(transparent)]
    Proof(#[from] ProofError),
    /// Tile arithmetic.
    #[error(transparent)]
    Tile(#[from] TileError),
    /// The map does not list a tile.
    #[error(transparent)]
    Map(#[from] MapError),
    /// Fetched bytes are missing for a hash or a page slot.
    #[error("no bytes were fetched for {0}")]
    Missing(String),
}

/// The node hashes a client needs, and the container byte ranges they come from.
#[derive(Clone, Debug)]
pub struct ProofPlan {
    size: u64,
    old: Frontier,
    /// Nodes the map already gives (the frontier before the manifest).
    known: HashMap<NodeId, Hash>,
    /// Nodes to fetch, with the tile span holding them.
    want: Vec<(NodeId, crate::tiles::TileSpan)>,
    /// Where each needed tile's hashes start.
    tiles: HashMap<TileId, u64>,
    /// Tiles listed in a page: the 8-byte slot to read first.
    slots: Vec<(TileId, u64)>,
    /// Every node the root computation takes as given.
    used: Vec<NodeId>,
}

impl ProofPlan {
    /// Plans the hashes that prove `leaves` (which should include the
    /// manifest, `size - 1`) and, when `old` is a stored tree, consistency
    /// with it, against the tree `map` describes.
    pub fn new(map: &TileMap, old: &Frontier, leaves: &BTreeSet<u64>) -> Result<ProofPlan, PlanError> {
        Self::with_known(map, old, leaves, &HashMap::new())
    }

    /// [`Self::new`], taking `known` node hashes (already verified: e.g. the
    /// nodes that proved a stored tree, which never change) instead of
    /// fetching them.
    pub fn with_known(
        map: &TileMap,
        old: &Frontier,
        leaves: &BTreeSet<u64>,
        known: &HashMap<NodeId, Hash>,
    ) -> Result<ProofPlan, PlanError> {
        let n = map.size();
        let nodes = plan_nodes(n, old, leaves)?;
        let mut known_all: HashMap<NodeId, Hash> =
            map.before.nodes().into_iter().zip(map.before.hashes().iter().copied()).collect();
        known_all.extend(known.iter().map(|(k, v)| (*k, *v)));
        let known: HashMap<NodeId, Hash> = nodes.iter().filter_map(|id| known_all.get(id).map(|h| (*id, *h))).collect();
        let mut want = Vec::new();
        let mut tiles = HashMap::new();
        let mut slots = Vec::new();
        for &node in &nodes {
            if known.contains_key(&node) {
                continue;
            }
            let span = node_span(node, n)?;
            if let std::collections::hash_map::Entry::Vacant(v) = tiles.entry(span.tile) {
                match map.locate(span.tile)? {
                    Located::Tile(at) => {
                        v.insert(at);
                    }
                    Located::InPage { page, slot } => {
                        if !slots.iter().any(|(t, _)| *t == span.tile) {
                            slots.push((span.tile, page + slot * 8));
                        }
                    }
                }
            }
            want.push((node, span));
        }
        Ok(ProofPlan { size: n, old: old.clone(), known, want, tiles, slots, used: nodes })
    }

    /// Byte ranges of page slots to read before [`Self::ranges`] is known
    /// (tiles listed in a page rather than in the map). Usually none.
    pub fn slot_ranges(&self) -> Vec<(u64, u64)> {
        merge_ranges(
            self.slots.iter().filter(|(t, _)| !self.tiles.contains_key(t)).map(|(_, at)| (*at, at + 8)).collect(),
        )
    }

    /// Reads the page slots from the fetched bytes (`bytes(start, len)`).
    pub fn resolve_slots<'a>(&mut self, bytes: impl Fn(u64, u64) -> Option<&'a [u8]>) -> Result<(), PlanError> {
        for (tile, at) in &self.slots {
            let raw = bytes(*at, 8).ok_or_else(|| PlanError::Missing(format!("the page slot of {tile}")))?;
            let off = u64::from_be_bytes(raw.try_into().map_err(|_| PlanError::Missing(tile.to_string()))?);
            self.tiles.insert(*tile, off);
        }
        Ok(())
    }

    /// Byte ranges `[start, end)` of tile hashes to fetch, sorted and merged
    /// where they touch. Call after the page slots are resolved.
    pub fn ranges(&self) -> Vec<(u64, u64)> {
        merge_ranges(self.want.iter().filter_map(|(_, s)| self.span_range(s)).collect())
    }

    fn span_range(&self, s: &crate::tiles::TileSpan) -> Option<(u64, u64)> {
        let base = self.tiles.get(&s.tile)?;
        let start = base.checked_add(u64::from(s.first) * 32)?;
        Some((start, start.checked_add(u64::from(s.count) * 32)?))
    }

    /// Every node hash of the plan, from the fetched bytes (`bytes(start, len)`).
    pub fn nodes<'a>(&self, bytes: impl Fn(u64, u64) -> Option<&'a [u8]>) -> Result<HashMap<NodeId, Hash>, PlanError> {
        let mut out = self.known.clone();
        for (node, span) in &self.want {
            let (s, e) = self.span_range(span).ok_or_else(|| PlanError::Missing(span.tile.to_string()))?;
            let raw = bytes(s, e - s).ok_or_else(|| PlanError::Missing(node.to_string()))?;
            let hashes: Vec<Hash> = raw.chunks_exact(32).map(|c| c.try_into().unwrap_or([0; 32])).collect();
            out.insert(*node, hash_span(&hashes)?);
        }
        Ok(out)
    }

    /// The root computed from `leaves` (leaf index to leaf hash) and `nodes`,
    /// using the old frontier for everything before it.
    pub fn root(&self, leaves: &BTreeMap<u64, Hash>, nodes: &HashMap<NodeId, Hash>) -> Result<Hash, ProofError> {
        root_from_nodes(self.size, &self.old, leaves, nodes)
    }

    /// The nodes the root computation takes as given (to keep as proof
    /// material in a replica), sorted.
    pub fn node_ids(&self) -> Vec<NodeId> {
        self.used.clone()
    }
}

/// Proves `leaves` against the signed root with tile hashes read from `src`
/// (a whole container on disk): what a publisher does to trust an index it
/// builds on without re-reading the log. Returns the node hashes used.
pub fn prove_local<R: ReadAt + ?Sized>(
    src: &R,
    map: &TileMap,
    root: &Hash,
    leaves: &BTreeMap<u64, Hash>,
) -> Result<HashMap<NodeId, Hash>, PlanError> {
    let mut plan = ProofPlan::new(map, &Frontier::new(), &leaves.keys().copied().collect())?;
    let read = |ranges: Vec<(u64, u64)>| -> Result<Fetched, PlanError> {
        let mut f = Fetched::new();
        for (s, e) in ranges {
            let mut buf = vec![0u8; (e - s) as usize];
            src.read_exact_at(&mut buf, s).map_err(|err| PlanError::Missing(format!("bytes {s}..{e}: {err}")))?;
            f.insert(s, buf);
        }
        Ok(f)
    };
    let slots = read(plan.slot_ranges())?;
    plan.resolve_slots(|s, l| slots.get(s, l))?;
    let hashes = read(plan.ranges())?;
    let nodes = plan.nodes(|s, l| hashes.get(s, l))?;
    if plan.root(leaves, &nodes)? != *root {
        return Err(PlanError::Proof(ProofError::RootMismatch));
    }
    Ok(nodes)
}

/// Sorts byte ranges `[start, end)` and merges the ones that overlap or touch.
pub fn merge_ranges(mut ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    ranges.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (s, e) in ranges {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// Fetched byte ranges of a container, looked up by offset.
#[derive(Clone, Debug, Default)]
pub struct Fetched {
    parts: BTreeMap<u64, Vec<u8>>,
}

impl Fetched {
    /// Nothing fetched yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records bytes fetched at `start`, joined to a part it continues.
    pub fn insert(&mut self, start: u64, bytes: Vec<u8>) {
        if let Some((s, b)) = self.parts.range_mut(..start).next_back()
            && *s + b.len() as u64 == start
        {
            b.extend_from_slice(&bytes);
            return;
        }
        self.parts.insert(start, bytes);
    }

    /// The bytes `[start, start + len)` if one fetched part holds them all.
    pub fn get(&self, start: u64, len: u64) -> Option<&[u8]> {
        let (s, b) = self.parts.range(..=start).next_back()?;
        let from = usize::try_from(start - s).ok()?;
        let to = from.checked_add(usize::try_from(len).ok()?)?;
        b.get(from..to)
    }

    /// Whether `[start, start + len)` is already here.
    pub fn has(&self, start: u64, len: u64) -> bool {
        self.get(start, len).is_some()
    }

    /// The parts of `ranges` not already here.
    pub fn missing(&self, ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
        ranges.into_iter().filter(|(s, e)| !self.has(*s, e - s)).collect()
    }
}

impl ReadAt for Fetched {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        match self.get(offset, buf.len() as u64) {
            Some(b) => {
                buf.copy_from_slice(b);
                Ok(())
            }
            None => Err(std::io::ErrorKind::UnexpectedEof.into()),
        }
    }
}

/// Checks that a fetched index header is the one the manifest promised: the
/// right kind, channel, target and version.
pub fn check_index_header(bytes: &[u8], release: &Release) -> Result<Index, String> {
    match Header::parse(bytes) {
        Ok(Header::Index(i))
            if i.channel == release.channel && i.target == release.target && i.version == release.version =>
        {
            Ok(i)
        }
        Ok(Header::Index(i)) => Err(format!(
            "an index of {} {} {} where {} {} {} was expected",
            i.channel, i.target, i.version, release.channel, release.target, release.version
        )),
        Ok(other) => Err(format!("a {} frame where an index was expected", other.kind())),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod time_tests {
    use super::*;

    const NOW: u64 = 1_764_057_600;

    #[test]
    fn future_times_name_the_unit_they_look_like() {
        for (signed, unit) in
            [(NOW * 1000, "milliseconds"), (NOW * 1_000_000, "microseconds"), (NOW * 1_000_000_000, "nanoseconds")]
        {
            let e = check_signed_time(signed, NOW, MAX_CLOCK_SKEW).unwrap_err().to_string();
            assert!(e.contains(&format!("it looks like {unit}; in seconds that is {NOW}")), "{e}");
        }
        // A year ahead is not a unit mistake.
        let e = check_signed_time(NOW + 365 * 86_400, NOW, MAX_CLOCK_SKEW).unwrap_err().to_string();
        assert!(!e.contains("looks like"), "{e}");
        // The skew is allowed, the past always.
        check_signed_time(NOW + MAX_CLOCK_SKEW, NOW, MAX_CLOCK_SKEW).unwrap();
        check_signed_time(0, NOW, MAX_CLOCK_SKEW).unwrap();
        assert!(stored_time_binds(NOW + MAX_CLOCK_SKEW, NOW));
        assert!(!stored_time_binds(NOW + MAX_CLOCK_SKEW + 1, NOW));
    }
}
