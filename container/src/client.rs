//! What a client needs to check a container it only reads parts of.
//!
//! An updater fetches a suffix of the container and hands it to
//! [`read_tail`], which finds the seal and the manifest in it, verifies the
//! checkpoint's signatures and the manifest's inclusion as the last leaf.
//! [`ProofPlan`] then says which node hashes the client still needs to tie
//! the entries it fetches (and its stored checkpoint) to the signed root, and
//! where in the container's tiles those hashes sit, so it range-reads only
//! those bytes. [`ProofPlan::root`] computes the root from what came back.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::frame::{FrameError, FrameInfo, ReadAt, Window, read_frame_at, read_frame_before, read_header};
use crate::header::{Entry, Header, HeaderError, Manifest, Seal};
use crate::keys::VerifierKey;
use crate::merkle::{Frontier, Hash, NodeId, ProofError, leaf_hash, plan_nodes, root_from_nodes, verify_inclusion};
use crate::note::{Checkpoint, Note, NoteError};
use crate::tiles::{TileError, hash_span, node_span};

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
    /// The last frame is not a seal, or the seal's manifest is not a manifest.
    #[error("the container's tail: {0}")]
    Layout(String),
    /// The container does not end with a complete seal: a publish caught in
    /// progress, or a damaged copy. Nothing in it can be used.
    #[error("the container does not end with a seal ({0}): a publish in progress, or a damaged copy")]
    Unsealed(String),
    /// The checkpoint's signatures do not verify with the trusted keys.
    #[error("the checkpoint is not signed by the trusted keys: {0}")]
    Signature(#[source] NoteError),
    /// The manifest is not the last leaf of the signed tree.
    #[error("the manifest is not the last leaf of the signed tree: {0}")]
    Manifest(#[source] ProofError),
}

/// A verified tail: the seal, its signed checkpoint and the manifest proven
/// to be its last leaf.
#[derive(Clone, Debug)]
pub struct SignedTail {
    /// The container length the tail was read at.
    pub len: u64,
    /// The seal frame.
    pub seal_frame: FrameInfo,
    /// The seal.
    pub seal: Seal,
    /// The checkpoint it signs.
    pub checkpoint: Checkpoint,
    /// The keys whose signatures verified.
    pub signers: Vec<VerifierKey>,
    /// The manifest frame.
    pub manifest_frame: FrameInfo,
    /// The manifest.
    pub manifest: Manifest,
    /// The manifest's leaf hash (leaf `size - 1`).
    pub manifest_leaf: Hash,
    /// The frontier of the tree before the manifest (size - 1), from the seal's proof.
    pub frontier_before: Frontier,
}

impl SignedTail {
    /// Tree size.
    pub fn size(&self) -> u64 {
        self.checkpoint.size
    }

    /// The frontier of the whole signed tree.
    pub fn frontier(&self) -> Result<Frontier, ProofError> {
        let mut f = self.frontier_before.clone();
        f.push(self.manifest_leaf)?;
        Ok(f)
    }
}

/// What [`read_tail`] found.
#[derive(Debug)]
pub enum TailRead {
    /// The seal and manifest, verified.
    Complete(Box<SignedTail>),
    /// The window does not reach back far enough: fetch from `start`.
    NeedMore {
        /// The offset the window must start at.
        start: u64,
    },
}

/// Reads the seal at the end of a container of `len` bytes and the manifest
/// it names from `window` (a suffix of the container), verifying the
/// checkpoint against `keys` (at least `threshold` distinct signers) and the
/// manifest's inclusion proof.
pub fn read_tail(window: &Window<'_>, len: u64, keys: &[VerifierKey], threshold: u32) -> Result<TailRead, TailError> {
    if window.end() != len {
        return Err(TailError::Layout(format!("the window ends at {} but the container is {len} bytes", window.end())));
    }
    let seal_frame = match read_frame_before(window, window.base(), len) {
        Ok(f) => f,
        Err(FrameError::Truncated { needed, .. }) if window.base() > 0 && needed <= len => {
            return Ok(TailRead::NeedMore { start: len - needed });
        }
        Err(e) => return Err(TailError::Unsealed(e.to_string())),
    };
    let seal = match Header::parse(&read_header(window, &seal_frame)?) {
        Ok(Header::Seal(s)) => s,
        Ok(other) => return Err(TailError::Unsealed(format!("its last frame is a {} frame", other.kind()))),
        Err(e) => return Err(e.into()),
    };
    let note = Note::parse(seal.checkpoint.as_bytes()).map_err(TailError::Signature)?;
    let checkpoint = Checkpoint::parse(note.text()).map_err(TailError::Signature)?;
    let signers = note.verify_with(keys, threshold).map_err(TailError::Signature)?;
    if checkpoint.time != Some(seal.time) {
        return Err(TailError::Layout("the seal's time is not the signed time".into()));
    }
    let n = checkpoint.size;
    if n < 2 {
        return Err(TailError::Layout(format!("a signed tree of {n} leaves has no manifest")));
    }
    let m = seal.manifest;
    if m.offset.checked_add(m.length).is_none_or(|end| end > seal_frame.offset) {
        return Err(TailError::Layout("the seal names a manifest that is not before it".into()));
    }
    if m.offset < window.base() {
        return Ok(TailRead::NeedMore { start: m.offset });
    }
    let manifest_frame = read_frame_at(window, m.offset, m.offset + m.length)?;
    if manifest_frame.len() != m.length {
        return Err(TailError::Layout("the manifest frame's length is not the one the seal names".into()));
    }
    let bytes = read_header(window, &manifest_frame)?;
    let manifest = match Header::parse(&bytes)? {
        Header::Manifest(x) => x,
        other => return Err(TailError::Layout(format!("the seal names a {} frame as its manifest", other.kind()))),
    };
    let manifest_leaf = leaf_hash(&bytes);
    let proof: Vec<Hash> = seal.manifest_proof.iter().map(|h| h.0).collect();
    verify_inclusion(n - 1, n, &manifest_leaf, &proof, &checkpoint.root).map_err(TailError::Manifest)?;
    let frontier_before = Frontier::from_last_leaf_proof(n, &proof).map_err(TailError::Manifest)?;
    Ok(TailRead::Complete(Box::new(SignedTail {
        len,
        seal_frame,
        seal,
        checkpoint,
        signers,
        manifest_frame,
        manifest,
        manifest_leaf,
        frontier_before,
    })))
}

/// Why a proof could not be planned or checked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// Tree arithmetic.
    #[error(transparent)]
    Proof(#[from] ProofError),
    /// Tile arithmetic, or the seal does not say where a tile is.
    #[error(transparent)]
    Tile(#[from] TileError),
    /// The seal lacks a tile location.
    #[error("the seal does not say where tile {0} is")]
    NoTile(String),
    /// Fetched bytes are missing for a hash.
    #[error("no bytes were fetched for {0}")]
    Missing(NodeId),
}

/// The node hashes a client needs, and the container byte ranges they come from.
#[derive(Clone, Debug)]
pub struct ProofPlan {
    size: u64,
    old: Frontier,
    /// Nodes the tail already gives (the frontier before the manifest).
    known: HashMap<NodeId, Hash>,
    /// Nodes to fetch: the byte offset of the first tile hash, and how many hashes.
    fetch: Vec<(NodeId, u64, u16)>,
}

impl ProofPlan {
    /// Plans the hashes that prove `leaves` (and the manifest, and, when
    /// `old` is a stored tree, consistency with it) against `tail`'s root.
    pub fn new(tail: &SignedTail, old: &Frontier, leaves: &BTreeSet<u64>) -> Result<ProofPlan, PlanError> {
        let n = tail.size();
        let mut wanted = leaves.clone();
        wanted.insert(n - 1);
        let nodes = plan_nodes(n, old, &wanted)?;
        let known: HashMap<NodeId, Hash> =
            tail.frontier_before.nodes().into_iter().zip(tail.frontier_before.hashes().iter().copied()).collect();
        let mut fetch = Vec::new();
        for node in nodes {
            if known.contains_key(&node) {
                continue;
            }
            let span = node_span(node, n)?;
            let offsets = tail.seal.tiles.get(span.tile.level as usize);
            let base = offsets
                .and_then(|l| l.get(usize::try_from(span.tile.index).ok()?))
                .ok_or_else(|| PlanError::NoTile(span.tile.path()))?;
            fetch.push((node, base + u64::from(span.first) * 32, span.count));
        }
        Ok(ProofPlan { size: n, old: old.clone(), known, fetch })
    }

    /// Byte ranges `[start, end)` to fetch, sorted and merged where they touch.
    pub fn ranges(&self) -> Vec<(u64, u64)> {
        merge_ranges(self.fetch.iter().map(|(_, at, n)| (*at, *at + u64::from(*n) * 32)).collect())
    }

    /// Bytes of hashes to fetch.
    pub fn fetch_bytes(&self) -> u64 {
        self.ranges().iter().map(|(s, e)| e - s).sum()
    }

    /// Every node hash of the plan, from the fetched bytes (`bytes(start, len)`).
    pub fn nodes<'a>(&self, bytes: impl Fn(u64, u64) -> Option<&'a [u8]>) -> Result<HashMap<NodeId, Hash>, PlanError> {
        let mut out = self.known.clone();
        for (node, at, count) in &self.fetch {
            let raw = bytes(*at, u64::from(*count) * 32).ok_or(PlanError::Missing(*node))?;
            let hashes: Vec<Hash> = raw
                .chunks_exact(32)
                .map(|c| {
                    let mut h = [0u8; 32];
                    h.copy_from_slice(c);
                    h
                })
                .collect();
            out.insert(*node, hash_span(&hashes)?);
        }
        Ok(out)
    }

    /// The root computed from `leaves` (leaf index to leaf hash, which must
    /// include the manifest) and `nodes`, using the old frontier for
    /// everything before it.
    pub fn root(&self, leaves: &BTreeMap<u64, Hash>, nodes: &HashMap<NodeId, Hash>) -> Result<Hash, ProofError> {
        root_from_nodes(self.size, &self.old, leaves, nodes)
    }

    /// The nodes the plan uses (to keep as proof material in a replica), sorted.
    pub fn node_ids(&self) -> Vec<NodeId> {
        let mut ids: Vec<NodeId> = self.fetch.iter().map(|(n, _, _)| *n).chain(self.known.keys().copied()).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }
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

    /// Records bytes fetched at `start`.
    pub fn insert(&mut self, start: u64, bytes: Vec<u8>) {
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

/// Checks that a fetched entry header is the one the manifest promised:
/// the right kind, target, channel and version.
pub fn check_entry_header(bytes: &[u8], channel: &str, target: &str, version: &str) -> Result<Entry, String> {
    match Header::parse(bytes) {
        Ok(Header::Entry(e)) if e.channel == channel && e.target == target && e.version == version => Ok(e),
        Ok(Header::Entry(e)) => Err(format!(
            "an entry for {} {} {} where {channel} {target} {version} was expected",
            e.channel, e.target, e.version
        )),
        Ok(other) => Err(format!("a {} frame where an entry was expected", other.kind())),
        Err(e) => Err(e.to_string()),
    }
}
