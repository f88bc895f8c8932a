//! The Merkle tree of RFC 6962 / RFC 9162 section 2.1, exactly: leaf and node
//! hashing, tree heads, inclusion and consistency proofs and their verification.
//!
//! Three representations of a tree live here:
//! - [`Frontier`]: the O(log n) roots of the perfect subtrees of a tree, enough
//!   to append leaves and compute the root (what a client keeps).
//! - [`MemoryTree`]: every complete node, for the publisher and for proofs.
//! - [`plan_nodes`] / [`root_from_nodes`]: a sparse verifier that rebuilds a
//!   root from a trusted old [`Frontier`], the caller's own leaf hashes and the
//!   fewest complete-node hashes from an untrusted source.
//!
//! A complete node is named by a [`NodeId`]: its height and its index among the
//! nodes of that height, the same addressing C2SP tlog-tiles uses.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use sha2::{Digest, Sha256};

/// A SHA-256 hash: a leaf hash, a node hash or a tree root.
pub type Hash = [u8; 32];

/// The longest inclusion proof of any tree of at most `u64::MAX` leaves.
pub const MAX_INCLUSION_PROOF_LEN: usize = 64;

/// The longest consistency proof between any two trees of at most `u64::MAX`
/// leaves (one more than an inclusion proof: the seed of a non-power-of-two
/// old tree).
pub const MAX_CONSISTENCY_PROOF_LEN: usize = 65;

/// The hash of a leaf: `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x00]);
    hasher.update(data);
    hasher.finalize().into()
}

/// The hash of an interior node: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x01]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// The root of the empty tree: `SHA-256("")`.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// A hash as 64 lowercase hex digits.
pub fn to_hex(h: &Hash) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(64);
    for b in h {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// Parses exactly 64 lowercase hex digits (the form [`to_hex`] writes).
pub fn from_hex(s: &str) -> Result<Hash, ProofError> {
    fn digit(c: u8) -> Result<u8, ProofError> {
        match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            _ => Err(ProofError::BadHex),
        }
    }
    let bytes = s.as_bytes();
    if bytes.len() != 64 {
        return Err(ProofError::BadHex);
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *o = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Ok(out)
}

/// Why a proof, a frontier or a tree query was refused.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProofError {
    /// A leaf index is not inside the tree.
    #[error("leaf index {index} is out of range for a tree of {size} leaves")]
    IndexOutOfRange {
        /// The leaf index asked for.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// The old tree of a consistency check is bigger than the new one.
    #[error("old tree size {old} is larger than the new tree size {size}")]
    OldSizeTooLarge {
        /// The old tree size.
        old: u64,
        /// The new tree size.
        size: u64,
    },
    /// A tree size beyond what a [`MemoryTree`] holds was asked for.
    #[error("tree size {size} is larger than the {have} leaves held")]
    SizeBeyondTree {
        /// The tree size asked for.
        size: u64,
        /// The number of leaves the tree holds.
        have: u64,
    },
    /// An empty leaf range `[lo, hi)` was asked for.
    #[error("the leaf range {lo}..{hi} is empty")]
    EmptyRange {
        /// Start of the range.
        lo: u64,
        /// End of the range (exclusive).
        hi: u64,
    },
    /// The empty tree has no last leaf.
    #[error("the empty tree has no leaves")]
    EmptyTree,
    /// A tree already holds `u64::MAX` leaves.
    #[error("the tree is full: it already holds u64::MAX leaves")]
    TreeFull,
    /// A proof or a frontier does not have the number of hashes its sizes imply.
    #[error("expected {expected} hashes, got {got}")]
    WrongProofLength {
        /// The number of hashes the sizes imply.
        expected: usize,
        /// The number of hashes supplied.
        got: usize,
    },
    /// A proof is longer than any valid proof can be.
    #[error("proof of {len} hashes is longer than the maximum of {max}")]
    ProofTooLong {
        /// The number of hashes supplied.
        len: usize,
        /// The maximum for this kind of proof.
        max: usize,
    },
    /// The proof does not lead to the expected (new) root.
    #[error("the proof does not match the tree root")]
    RootMismatch,
    /// The consistency proof does not lead to the old root.
    #[error("the consistency proof does not match the old tree root")]
    OldRootMismatch,
    /// A complete-node hash that is needed was not supplied or is not held.
    #[error("missing hash of {0}")]
    MissingNode(NodeId),
    /// A recomputed node of the trusted old frontier differs from the trusted
    /// value: the new tree is not an extension of the old one (a fork), or a
    /// supplied hash or leaf is wrong.
    #[error("recomputed {node} differs from the trusted old frontier")]
    FrontierMismatch {
        /// The old frontier node that did not match.
        node: NodeId,
    },
    /// A hash was not 64 lowercase hex digits.
    #[error("a hash must be 64 lowercase hex digits")]
    BadHex,
}

/// A complete (perfect, aligned) subtree: leaves
/// `[index << height, (index + 1) << height)`.
///
/// Height 0 nodes are the leaves themselves. The derived order sorts by
/// height, then index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    /// The height above the leaves (0 for a leaf).
    pub height: u8,
    /// The position among the nodes of this height, left to right.
    pub index: u64,
}

impl NodeId {
    /// The first leaf under this node (saturating at `u64::MAX`).
    pub fn start(&self) -> u64 {
        shl_saturating(self.index, self.height)
    }

    /// One past the last leaf under this node (saturating at `u64::MAX`).
    pub fn end(&self) -> u64 {
        shl_saturating(self.index.saturating_add(1), self.height)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node {} at height {}", self.index, self.height)
    }
}

fn shl_saturating(x: u64, by: u8) -> u64 {
    if x == 0 {
        return 0;
    }
    match 1u64.checked_shl(u32::from(by)) {
        Some(unit) => x.saturating_mul(unit),
        None => u64::MAX,
    }
}

/// The largest power of two strictly less than `n`, for `n >= 2`: where the
/// RFC 6962 recursion splits a range of `n` leaves.
fn split_point(n: u64) -> u64 {
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The node covering exactly `[lo, hi)`, if that range is perfect and aligned.
fn perfect_node(lo: u64, hi: u64) -> Option<NodeId> {
    let len = hi.checked_sub(lo)?;
    if len.is_power_of_two() && lo.is_multiple_of(len) {
        let height = len.trailing_zeros() as u8;
        Some(NodeId { height, index: lo >> height })
    } else {
        None
    }
}

/// Where `node` sits in the frontier of a tree of `size` leaves, if it is one
/// of its roots.
fn frontier_position(size: u64, node: NodeId) -> Option<usize> {
    let above = size.checked_shr(u32::from(node.height))?;
    if above & 1 == 1 && node.index == above ^ 1 { Some((above >> 1).count_ones() as usize) } else { None }
}

/// The roots of the perfect subtrees of the binary decomposition of `size`,
/// left (largest) to right.
///
/// This is all a client needs to keep about a tree to append leaves, compute
/// its root and check that a bigger tree extends it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    hashes: Vec<Hash>,
}

impl Frontier {
    /// The frontier of the empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// A frontier from its size and its hashes, largest subtree first;
    /// `hashes.len()` must equal `size.count_ones()`.
    pub fn from_parts(size: u64, hashes: Vec<Hash>) -> Result<Self, ProofError> {
        let expected = size.count_ones() as usize;
        if hashes.len() != expected {
            return Err(ProofError::WrongProofLength { expected, got: hashes.len() });
        }
        Ok(Self { size, hashes })
    }

    /// The number of leaves of the tree.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The subtree roots, largest (leftmost) first.
    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }

    /// The [`NodeId`]s of [`Self::hashes`], in the same order.
    pub fn nodes(&self) -> Vec<NodeId> {
        (0..64u8)
            .rev()
            .filter(|&h| (self.size >> h) & 1 == 1)
            .map(|h| NodeId { height: h, index: (self.size >> h) ^ 1 })
            .collect()
    }

    /// The hash of `node` if it is one of this frontier's roots.
    pub fn get(&self, node: NodeId) -> Option<Hash> {
        frontier_position(self.size, node).and_then(|i| self.hashes.get(i).copied())
    }

    /// Appends a leaf hash: O(1) amortized, O(log n) at worst.
    ///
    /// Fails only if the tree already holds `u64::MAX` leaves.
    pub fn push(&mut self, leaf: Hash) -> Result<(), ProofError> {
        let size = self.size.checked_add(1).ok_or(ProofError::TreeFull)?;
        // Each trailing one bit of the old size is a subtree the new leaf completes.
        let mut carry = leaf;
        for _ in 0..self.size.trailing_ones() {
            match self.hashes.pop() {
                Some(left) => carry = node_hash(&left, &carry),
                None => break,
            }
        }
        self.hashes.push(carry);
        self.size = size;
        Ok(())
    }

    /// The tree root: [`empty_root`] for size 0, else the RFC 6962 MTH (the
    /// subtree roots folded right to left).
    pub fn root(&self) -> Hash {
        let mut rest = self.hashes.iter().rev();
        match rest.next() {
            None => empty_root(),
            Some(last) => rest.fold(*last, |acc, h| node_hash(h, &acc)),
        }
    }

    /// The frontier of tree `size - 1`, read from the inclusion proof of leaf
    /// `size - 1` in tree `size`: that proof is exactly the frontier's roots,
    /// smallest first.
    ///
    /// Nothing is verified here: check the proof with [`verify_inclusion`]
    /// first (or push the leaf and compare [`Self::root`] with the signed root).
    pub fn from_last_leaf_proof(size: u64, proof: &[Hash]) -> Result<Self, ProofError> {
        let old = size.checked_sub(1).ok_or(ProofError::EmptyTree)?;
        Self::from_parts(old, proof.iter().rev().copied().collect())
    }
}

/// Every complete node of a growing tree, in memory (`levels[h][k]` is the
/// hash of `NodeId { height: h, index: k }`).
///
/// Used by the publisher and the verifier for proofs and tiles. Appending is
/// O(1) amortized; proofs cost O(log n) node lookups.
#[derive(Clone, Debug, Default)]
pub struct MemoryTree {
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a leaf hash and every node it completes.
    pub fn push(&mut self, leaf: Hash) {
        let mut carry = leaf;
        let mut height = 0;
        loop {
            if self.levels.len() == height {
                self.levels.push(Vec::new());
            }
            let level = &mut self.levels[height];
            level.push(carry);
            let n = level.len();
            if n % 2 == 1 {
                break;
            }
            carry = node_hash(&level[n - 2], &level[n - 1]);
            height += 1;
        }
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// The hash of leaf `index`.
    pub fn leaf(&self, index: u64) -> Option<Hash> {
        self.node(NodeId { height: 0, index })
    }

    /// The hash of a complete node; `None` if the node is not complete yet.
    pub fn node(&self, id: NodeId) -> Option<Hash> {
        let level = self.levels.get(usize::from(id.height))?;
        level.get(usize::try_from(id.index).ok()?).copied()
    }

    fn node_or_missing(&self, id: NodeId) -> Result<Hash, ProofError> {
        self.node(id).ok_or(ProofError::MissingNode(id))
    }

    /// `MTH(D[lo:hi])`, for `lo < hi <= size`.
    ///
    /// Ranges the RFC recursion produces cost O(log n) node lookups; an
    /// unaligned range costs up to its length, since its subtrees are not
    /// nodes of the tree.
    pub fn subtree_root(&self, lo: u64, hi: u64) -> Result<Hash, ProofError> {
        if lo >= hi {
            return Err(ProofError::EmptyRange { lo, hi });
        }
        self.check_size(hi)?;
        self.mth(lo, hi)
    }

    fn mth(&self, lo: u64, hi: u64) -> Result<Hash, ProofError> {
        if let Some(id) = perfect_node(lo, hi) {
            return self.node_or_missing(id);
        }
        let mid = lo + split_point(hi - lo);
        Ok(node_hash(&self.mth(lo, mid)?, &self.mth(mid, hi)?))
    }

    fn check_size(&self, size: u64) -> Result<(), ProofError> {
        let have = self.size();
        if size > have {
            return Err(ProofError::SizeBeyondTree { size, have });
        }
        Ok(())
    }

    /// The root of the prefix tree of `size` leaves ([`empty_root`] for 0).
    pub fn root_at(&self, size: u64) -> Result<Hash, ProofError> {
        self.check_size(size)?;
        if size == 0 {
            return Ok(empty_root());
        }
        self.mth(0, size)
    }

    /// The frontier of the prefix tree of `size` leaves.
    pub fn frontier_at(&self, size: u64) -> Result<Frontier, ProofError> {
        self.check_size(size)?;
        let shape = Frontier { size, hashes: Vec::new() };
        let hashes = shape.nodes().into_iter().map(|id| self.node_or_missing(id)).collect::<Result<Vec<_>, _>>()?;
        Ok(Frontier { size, hashes })
    }

    /// The inclusion proof of leaf `index` in the prefix tree of `size`
    /// leaves: `PATH(index, D[0:size])` of RFC 9162 section 2.1.3.1.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
        self.check_size(size)?;
        if index >= size {
            return Err(ProofError::IndexOutOfRange { index, size });
        }
        // Walk down from the root; the RFC lists the siblings bottom-up.
        let (mut lo, mut hi) = (0, size);
        let mut path = Vec::new();
        while hi - lo > 1 {
            let mid = lo + split_point(hi - lo);
            if index < mid {
                path.push(self.mth(mid, hi)?);
                hi = mid;
            } else {
                path.push(self.mth(lo, mid)?);
                lo = mid;
            }
        }
        path.reverse();
        Ok(path)
    }

    /// The consistency proof from the prefix tree of `old` leaves to that of
    /// `size` leaves: `PROOF(old, D[0:size])` of RFC 9162 section 2.1.4.1.
    ///
    /// Empty when `old == size`, and when `old == 0` (every tree extends the
    /// empty tree; RFC 9162 defines PROOF only for `0 < old`).
    pub fn consistency_proof(&self, old: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
        self.check_size(size)?;
        // The one RFC walk, with this tree's nodes as the oracle.
        crate::consistency::consistency_proof(old, size, &mut |id| self.node_or_missing(id))
    }
}

/// The length of every valid inclusion proof of leaf `index < size`.
fn inclusion_proof_len(index: u64, size: u64) -> usize {
    let inner = 64 - (index ^ (size - 1)).leading_zeros();
    let border = index.checked_shr(inner).unwrap_or(0).count_ones();
    (inner + border) as usize
}

/// The length of every valid consistency proof for `0 < old < size`.
fn consistency_proof_len(old: u64, size: u64) -> usize {
    let inner = 64 - ((old - 1) ^ (size - 1)).leading_zeros();
    let border = (old - 1).checked_shr(inner).unwrap_or(0).count_ones();
    // The subtree of 2^shift leaves where the old tree's last leaf sits is
    // one hash (the seed), not a path.
    let inner = inner.saturating_sub(old.trailing_zeros());
    let seed = usize::from(!old.is_power_of_two());
    (inner + border) as usize + seed
}

/// Checks that `proof` proves leaf hash `leaf` at `index` in the tree of
/// `size` leaves with root `root` (RFC 9162 section 2.1.3.2).
///
/// A proof of the wrong length for `(index, size)` is refused before hashing.
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    if proof.len() > MAX_INCLUSION_PROOF_LEN {
        return Err(ProofError::ProofTooLong { len: proof.len(), max: MAX_INCLUSION_PROOF_LEN });
    }
    let expected = inclusion_proof_len(index, size);
    if proof.len() != expected {
        return Err(ProofError::WrongProofLength { expected, got: proof.len() });
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return Err(ProofError::WrongProofLength { expected, got: proof.len() });
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::WrongProofLength { expected, got: proof.len() });
    }
    if r != *root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Checks that the tree of `size` leaves with root `root` extends the tree of
/// `old` leaves with root `old_root` (RFC 9162 section 2.1.4.2).
///
/// `old == size` needs an empty proof and equal roots; `old == 0` needs an
/// empty proof and `old_root == empty_root()`. A proof of the wrong length is
/// refused before hashing.
pub fn verify_consistency(old: u64, size: u64, old_root: &Hash, root: &Hash, proof: &[Hash]) -> Result<(), ProofError> {
    if old > size {
        return Err(ProofError::OldSizeTooLarge { old, size });
    }
    if proof.len() > MAX_CONSISTENCY_PROOF_LEN {
        return Err(ProofError::ProofTooLong { len: proof.len(), max: MAX_CONSISTENCY_PROOF_LEN });
    }
    let expected = if old == 0 || old == size { 0 } else { consistency_proof_len(old, size) };
    if proof.len() != expected {
        return Err(ProofError::WrongProofLength { expected, got: proof.len() });
    }
    if old == 0 {
        return if *old_root == empty_root() { Ok(()) } else { Err(ProofError::OldRootMismatch) };
    }
    if old == size {
        return if old_root == root { Ok(()) } else { Err(ProofError::RootMismatch) };
    }
    let (seed, rest) = if old.is_power_of_two() {
        (*old_root, proof)
    } else {
        match proof.split_first() {
            Some((first, rest)) => (*first, rest),
            None => return Err(ProofError::WrongProofLength { expected, got: 0 }),
        }
    };
    let (mut fn_, mut sn) = (old - 1, size - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (seed, seed);
    for c in rest {
        if sn == 0 {
            return Err(ProofError::WrongProofLength { expected, got: proof.len() });
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::WrongProofLength { expected, got: proof.len() });
    }
    if fr != *old_root {
        return Err(ProofError::OldRootMismatch);
    }
    if sr != *root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// What the sparse verifier does with one range of the RFC 6962 recursion.
enum Step {
    /// A wanted leaf: the caller's own hash, compared with the old frontier
    /// if this leaf is one of its roots.
    Leaf { expect: Option<Hash> },
    /// An old frontier root with no wanted leaf under it: trusted as is.
    Old(Hash),
    /// A complete node to take from the untrusted source.
    Given(NodeId),
    /// Split at `mid`; if the range is an old frontier root, the recomputed
    /// hash must equal the trusted one.
    Split { mid: u64, expect: Option<(NodeId, Hash)> },
}

fn step(lo: u64, hi: u64, old: &Frontier, has_leaf: bool) -> Step {
    let m = old.size();
    if let Some(id) = perfect_node(lo, hi) {
        let trusted = old.get(id);
        if has_leaf {
            if id.height == 0 {
                return Step::Leaf { expect: trusted };
            }
            if let Some(h) = trusted {
                return Step::Split { mid: lo + (hi - lo) / 2, expect: Some((id, h)) };
            }
        } else if let Some(h) = trusted {
            return Step::Old(h);
        } else if hi <= m || lo >= m {
            return Step::Given(id);
        }
    }
    Step::Split { mid: lo + split_point(hi - lo), expect: None }
}

fn check_sparse_args(size: u64, old: &Frontier, last_leaf: Option<u64>) -> Result<(), ProofError> {
    if old.size() > size {
        return Err(ProofError::OldSizeTooLarge { old: old.size(), size });
    }
    match last_leaf {
        Some(index) if index >= size => Err(ProofError::IndexOutOfRange { index, size }),
        _ => Ok(()),
    }
}

/// Which complete-node hashes the caller must supply so that
/// [`root_from_nodes`] can compute the root of tree `size`.
///
/// The plan is such that every leaf in `leaves` is used from the caller's own
/// hash (no ancestor of it is taken as given), every node inside
/// `[0, old.size())` that is not expanded is taken from `old` (so a matching
/// root proves consistency with the old tree), and any old frontier node that
/// must be expanded (it holds a wanted leaf) is recomputed and compared with
/// the old value.
///
/// Nodes are sorted and minimal: walking the RFC 6962 recursion from
/// `[0, size)`, a perfect aligned range with no wanted leaf that does not
/// straddle `old.size()` is one node (from `old` if inside it, else
/// requested); anything else splits at the largest power of two below its
/// length. Costs O((|leaves| + 1) * log size).
pub fn plan_nodes(size: u64, old: &Frontier, leaves: &BTreeSet<u64>) -> Result<Vec<NodeId>, ProofError> {
    check_sparse_args(size, old, leaves.last().copied())?;
    let mut out = Vec::new();
    if size > 0 {
        plan_walk(0, size, old, leaves, &mut out);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

fn plan_walk(lo: u64, hi: u64, old: &Frontier, leaves: &BTreeSet<u64>, out: &mut Vec<NodeId>) {
    let has_leaf = leaves.range(lo..hi).next().is_some();
    match step(lo, hi, old, has_leaf) {
        Step::Leaf { .. } | Step::Old(_) => {}
        Step::Given(id) => out.push(id),
        Step::Split { mid, .. } => {
            plan_walk(lo, mid, old, leaves, out);
            plan_walk(mid, hi, old, leaves, out);
        }
    }
}

/// The root of tree `size` computed from the trusted old frontier, the
/// caller's own leaf hashes and the complete-node hashes `nodes` (at least
/// those [`plan_nodes`] lists; others are ignored).
///
/// If the result equals a signed root of `size`, every leaf in `leaves` is in
/// that tree at its index and the tree extends `old`.
pub fn root_from_nodes(
    size: u64,
    old: &Frontier,
    leaves: &BTreeMap<u64, Hash>,
    nodes: &HashMap<NodeId, Hash>,
) -> Result<Hash, ProofError> {
    check_sparse_args(size, old, leaves.last_key_value().map(|(&i, _)| i))?;
    if size == 0 {
        return Ok(empty_root());
    }
    root_walk(0, size, old, leaves, nodes)
}

/// The hash of the complete node `node` computed as [`root_from_nodes`]
/// computes the root: from the old frontier, the caller's leaves and given
/// node hashes. With the nodes that gave a tree's root, this yields each node
/// of that tree's frontier.
pub fn subtree_from_nodes(
    node: NodeId,
    old: &Frontier,
    leaves: &BTreeMap<u64, Hash>,
    nodes: &HashMap<NodeId, Hash>,
) -> Result<Hash, ProofError> {
    if node.height >= 64 {
        return Err(ProofError::MissingNode(node));
    }
    root_walk(node.start(), node.end(), old, leaves, nodes)
}

fn root_walk(
    lo: u64,
    hi: u64,
    old: &Frontier,
    leaves: &BTreeMap<u64, Hash>,
    nodes: &HashMap<NodeId, Hash>,
) -> Result<Hash, ProofError> {
    let has_leaf = leaves.range(lo..hi).next().is_some();
    match step(lo, hi, old, has_leaf) {
        Step::Leaf { expect } => {
            let id = NodeId { height: 0, index: lo };
            let h = *leaves.get(&lo).ok_or(ProofError::MissingNode(id))?;
            match expect {
                Some(e) if e != h => Err(ProofError::FrontierMismatch { node: id }),
                _ => Ok(h),
            }
        }
        Step::Old(h) => Ok(h),
        Step::Given(id) => nodes.get(&id).copied().ok_or(ProofError::MissingNode(id)),
        Step::Split { mid, expect } => {
            let h = node_hash(&root_walk(lo, mid, old, leaves, nodes)?, &root_walk(mid, hi, old, leaves, nodes)?);
            match expect {
                Some((node, e)) if e != h => Err(ProofError::FrontierMismatch { node }),
                _ => Ok(h),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::OnceLock;

    // ---- The RFC definitions, recursively over a slice of leaf hashes ----

    fn ref_split(n: usize) -> usize {
        let mut k = 1;
        while k * 2 < n {
            k *= 2;
        }
        k
    }

    fn ref_mth(d: &[Hash]) -> Hash {
        match d.len() {
            0 => empty_root(),
            1 => d[0],
            n => {
                let k = ref_split(n);
                node_hash(&ref_mth(&d[..k]), &ref_mth(&d[k..]))
            }
        }
    }

    fn ref_path(m: usize, d: &[Hash]) -> Vec<Hash> {
        if d.len() <= 1 {
            return Vec::new();
        }
        let k = ref_split(d.len());
        let (mut p, sibling) =
            if m < k { (ref_path(m, &d[..k]), ref_mth(&d[k..])) } else { (ref_path(m - k, &d[k..]), ref_mth(&d[..k])) };
        p.push(sibling);
        p
    }

    fn ref_subproof(m: usize, d: &[Hash], b: bool) -> Vec<Hash> {
        if m == d.len() {
            return if b { Vec::new() } else { vec![ref_mth(d)] };
        }
        let k = ref_split(d.len());
        let (mut p, sibling) = if m <= k {
            (ref_subproof(m, &d[..k], b), ref_mth(&d[k..]))
        } else {
            (ref_subproof(m - k, &d[k..], false), ref_mth(&d[..k]))
        };
        p.push(sibling);
        p
    }

    fn ref_proof(m: usize, d: &[Hash]) -> Vec<Hash> {
        ref_subproof(m, d, true)
    }

    fn synthetic_leaves(n: u64, salt: u8) -> Vec<Hash> {
        (0..n)
            .map(|i| {
                let mut data = i.to_le_bytes().to_vec();
                data.push(salt);
                leaf_hash(&data)
            })
            .collect()
    }

    fn tree_of(leaves: &[Hash]) -> MemoryTree {
        let mut t = MemoryTree::new();
        for l in leaves {
            t.push(*l);
        }
        t
    }

    fn h(s: &str) -> Hash {
        from_hex(s).unwrap()
    }

    /// xorshift64*: deterministic, dependency-free randomness for loops.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    // ---- Certificate Transparency reference vectors ----

    const CT_INPUTS: [&str; 8] =
        ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"];

    const CT_ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn unhex_bytes(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    fn ct_tree() -> MemoryTree {
        let mut t = MemoryTree::new();
        for input in CT_INPUTS {
            t.push(leaf_hash(&unhex_bytes(input)));
        }
        t
    }

    #[test]
    fn ct_roots() {
        let t = ct_tree();
        assert_eq!(to_hex(&t.root_at(0).unwrap()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        let mut f = Frontier::new();
        for (i, want) in CT_ROOTS.iter().enumerate() {
            let size = i as u64 + 1;
            assert_eq!(to_hex(&t.root_at(size).unwrap()), *want, "size {size}");
            f.push(t.leaf(i as u64).unwrap()).unwrap();
            assert_eq!(to_hex(&f.root()), *want, "frontier size {size}");
        }
    }

    #[test]
    fn ct_inclusion_proofs() {
        let cases: [(u64, u64, &[&str]); 5] = [
            (0, 1, &[]),
            (
                0,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                5,
                8,
                &[
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (2, 3, &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
            (
                1,
                5,
                &[
                    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        let t = ct_tree();
        for (index, size, want) in cases {
            let proof = t.inclusion_proof(index, size).unwrap();
            let got: Vec<String> = proof.iter().map(to_hex).collect();
            assert_eq!(got, want, "inclusion {index} in {size}");
            let root = h(CT_ROOTS[size as usize - 1]);
            verify_inclusion(index, size, &t.leaf(index).unwrap(), &proof, &root).unwrap();
        }
    }

    #[test]
    fn ct_consistency_proofs() {
        let cases: [(u64, u64, &[&str]); 4] = [
            (1, 1, &[]),
            (
                1,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                6,
                8,
                &[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                5,
                &[
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        let t = ct_tree();
        for (old, size, want) in cases {
            let proof = t.consistency_proof(old, size).unwrap();
            let got: Vec<String> = proof.iter().map(to_hex).collect();
            assert_eq!(got, want, "consistency {old} -> {size}");
            let old_root = h(CT_ROOTS[old as usize - 1]);
            let root = h(CT_ROOTS[size as usize - 1]);
            verify_consistency(old, size, &old_root, &root, &proof).unwrap();
        }
    }

    /// RFC 9162 section 2.1.5 (RFC 6962 section 2.1.3): the 7-leaf tree
    ///
    /// ```text
    ///            hash
    ///           /    \
    ///          k      l
    ///         / \    / \
    ///        g   h  i   j
    ///       / \ / \ / \ |
    ///       a b c d e f d6
    /// ```
    #[test]
    fn rfc9162_worked_example() {
        let leaves: Vec<Hash> = (0u8..7).map(|i| leaf_hash(&[b'd', i])).collect();
        let [a, b, c, d, e, f, j] = leaves[..] else { unreachable!() };
        let (g, hh, i) = (node_hash(&a, &b), node_hash(&c, &d), node_hash(&e, &f));
        let (k, l) = (node_hash(&g, &hh), node_hash(&i, &j));
        let root = node_hash(&k, &l);
        let t = tree_of(&leaves);
        assert_eq!(t.root_at(7).unwrap(), root);

        // Audit paths of d0, d1 (b), d3 (d), d4 and d6.
        assert_eq!(t.inclusion_proof(0, 7).unwrap(), [b, hh, l]);
        assert_eq!(t.inclusion_proof(1, 7).unwrap(), [a, hh, l]);
        assert_eq!(t.inclusion_proof(3, 7).unwrap(), [c, g, l]);
        assert_eq!(t.inclusion_proof(4, 7).unwrap(), [f, j, k]);
        assert_eq!(t.inclusion_proof(6, 7).unwrap(), [i, k]);

        // hash0 (3 leaves) = H(g, c); hash1 (4 leaves) = k; hash2 (6 leaves) = H(k, i).
        assert_eq!(t.root_at(3).unwrap(), node_hash(&g, &c));
        assert_eq!(t.root_at(4).unwrap(), k);
        assert_eq!(t.root_at(6).unwrap(), node_hash(&k, &i));
        assert_eq!(t.consistency_proof(3, 7).unwrap(), [c, d, g, l]);
        assert_eq!(t.consistency_proof(4, 7).unwrap(), [l]);
        assert_eq!(t.consistency_proof(6, 7).unwrap(), [i, j, k]);
        for old in [3, 4, 6] {
            let proof = t.consistency_proof(old, 7).unwrap();
            verify_consistency(old, 7, &t.root_at(old).unwrap(), &root, &proof).unwrap();
        }
    }

    #[test]
    fn hex_is_strict() {
        let x = leaf_hash(b"x");
        assert_eq!(from_hex(&to_hex(&x)), Ok(x));
        assert_eq!(from_hex(&to_hex(&x).to_uppercase()), Err(ProofError::BadHex));
        assert_eq!(from_hex(&to_hex(&x)[..62]), Err(ProofError::BadHex));
        assert_eq!(from_hex(&format!("{}00", to_hex(&x))), Err(ProofError::BadHex));
        assert_eq!(from_hex(&format!("+{}", &to_hex(&x)[1..])), Err(ProofError::BadHex));
        assert_eq!(from_hex(&"é".repeat(32)), Err(ProofError::BadHex));
    }

    #[test]
    fn node_id_ranges() {
        let n = NodeId { height: 3, index: 5 };
        assert_eq!((n.start(), n.end()), (40, 48));
        let top = NodeId { height: 64, index: 0 };
        assert_eq!((top.start(), top.end()), (0, u64::MAX));
        let far = NodeId { height: 200, index: 7 };
        assert_eq!((far.start(), far.end()), (u64::MAX, u64::MAX));
        let last = NodeId { height: 0, index: u64::MAX };
        assert_eq!((last.start(), last.end()), (u64::MAX, u64::MAX));
    }

    // ---- MemoryTree against the brute-force reference ----

    /// Flips one bit of each proof hash in turn, drops each hash, adds one at
    /// either end: every variant must be refused.
    fn mangled(proof: &[Hash]) -> Vec<Vec<Hash>> {
        let mut out = Vec::new();
        for i in 0..proof.len() {
            let mut p = proof.to_vec();
            p[i][i % 32] ^= 1 << (i % 8);
            out.push(p);
            let mut p = proof.to_vec();
            p.remove(i);
            out.push(p);
        }
        let mut p = proof.to_vec();
        p.push([0xab; 32]);
        out.push(p);
        let mut p = proof.to_vec();
        p.insert(0, [0xcd; 32]);
        out.push(p);
        out
    }

    #[test]
    fn memory_tree_matches_reference() {
        let leaves = synthetic_leaves(70, 0);
        let t = tree_of(&leaves);
        let roots: Vec<Hash> = (0..=70).map(|n| ref_mth(&leaves[..n])).collect();
        for size in 1..=70usize {
            let n = size as u64;
            assert_eq!(t.root_at(n).unwrap(), roots[size]);
            assert_eq!(t.frontier_at(n).unwrap().root(), roots[size]);
            for index in 0..size {
                let i = index as u64;
                let proof = t.inclusion_proof(i, n).unwrap();
                assert_eq!(proof, ref_path(index, &leaves[..size]), "path {index}/{size}");
                verify_inclusion(i, n, &leaves[index], &proof, &roots[size]).unwrap();
                for bad in mangled(&proof) {
                    assert!(verify_inclusion(i, n, &leaves[index], &bad, &roots[size]).is_err());
                }
                let wrong_leaf = leaves[(index + 1) % size];
                if size > 1 {
                    assert!(verify_inclusion(i, n, &wrong_leaf, &proof, &roots[size]).is_err());
                }
                // The sizes are bound by the signed root, not by the proof:
                // claim another size with that size's root.
                for (wi, wn) in [(i + 1, n), (i.wrapping_sub(1), n), (i, n + 1), (i, n - 1)] {
                    let same = t.inclusion_proof(wi, wn).is_ok_and(|p| p == proof);
                    if wn <= 70 && (wi, wn) != (i, n) && !same {
                        assert!(
                            verify_inclusion(wi, wn, &leaves[index], &proof, &roots[wn as usize]).is_err(),
                            "index {wi} size {wn} accepted the proof of {i}/{n}"
                        );
                    }
                }
            }
            for old in 0..=size {
                let m = old as u64;
                let proof = t.consistency_proof(m, n).unwrap();
                let want = if old == 0 { Vec::new() } else { ref_proof(old, &leaves[..size]) };
                assert_eq!(proof, want, "proof {old} -> {size}");
                verify_consistency(m, n, &roots[old], &roots[size], &proof).unwrap();
                for bad in mangled(&proof) {
                    assert!(verify_consistency(m, n, &roots[old], &roots[size], &bad).is_err());
                }
                for (wm, wn) in [(m + 1, n), (m.wrapping_sub(1), n), (m, n + 1), (m, n - 1)] {
                    // Every tree extends the empty one: a wrong new size
                    // cannot be caught when the old size is 0.
                    let same = t.consistency_proof(wm, wn).is_ok_and(|p| p == proof);
                    if wm > 0 && wm <= 70 && wn <= 70 && (wm, wn) != (m, n) && !same {
                        let (r_old, r_new) = (&roots[wm as usize], &roots[wn as usize]);
                        let r = verify_consistency(wm, wn, r_old, r_new, &proof);
                        assert!(r.is_err(), "{wm} -> {wn} accepted the proof of {m} -> {n}");
                    }
                }
                if 0 < old && old < size {
                    assert!(verify_consistency(m, n, &roots[old + 1], &roots[size], &proof).is_err());
                    assert!(verify_consistency(m, n, &roots[old], &roots[size - 1], &proof).is_err());
                }
            }
        }
    }

    #[test]
    fn memory_tree_errors() {
        let t = tree_of(&synthetic_leaves(10, 0));
        assert_eq!(t.inclusion_proof(10, 10), Err(ProofError::IndexOutOfRange { index: 10, size: 10 }));
        assert_eq!(t.inclusion_proof(0, 11), Err(ProofError::SizeBeyondTree { size: 11, have: 10 }));
        assert_eq!(t.consistency_proof(6, 5), Err(ProofError::OldSizeTooLarge { old: 6, size: 5 }));
        assert!(t.root_at(11).is_err());
        assert!(t.frontier_at(11).is_err());
        assert_eq!(t.subtree_root(3, 3), Err(ProofError::EmptyRange { lo: 3, hi: 3 }));
        assert!(t.subtree_root(3, 11).is_err());
        assert_eq!(t.leaf(10), None);
        assert_eq!(t.node(NodeId { height: 1, index: 5 }), None);
        assert!(t.node(NodeId { height: 3, index: 0 }).is_some());
    }

    #[test]
    fn subtree_root_of_any_range() {
        let leaves = synthetic_leaves(40, 1);
        let t = tree_of(&leaves);
        for lo in 0..40 {
            for hi in lo + 1..=40 {
                let got = t.subtree_root(lo as u64, hi as u64).unwrap();
                assert_eq!(got, ref_mth(&leaves[lo..hi]), "{lo}..{hi}");
            }
        }
    }

    #[test]
    fn verify_refuses_bad_arguments() {
        let leaves = synthetic_leaves(8, 0);
        let t = tree_of(&leaves);
        let root = t.root_at(8).unwrap();
        let long = vec![[0u8; 32]; 65];
        assert_eq!(
            verify_inclusion(0, 8, &leaves[0], &long, &root),
            Err(ProofError::ProofTooLong { len: 65, max: 64 })
        );
        assert!(matches!(
            verify_inclusion(0, u64::MAX, &leaves[0], &long, &root),
            Err(ProofError::ProofTooLong { .. })
        ));
        assert_eq!(
            verify_inclusion(8, 8, &leaves[0], &[], &root),
            Err(ProofError::IndexOutOfRange { index: 8, size: 8 })
        );
        assert_eq!(
            verify_inclusion(0, 0, &leaves[0], &[], &root),
            Err(ProofError::IndexOutOfRange { index: 0, size: 0 })
        );
        let long = vec![[0u8; 32]; 66];
        assert!(matches!(verify_consistency(3, 8, &root, &root, &long), Err(ProofError::ProofTooLong { .. })));
        assert_eq!(verify_consistency(9, 8, &root, &root, &[]), Err(ProofError::OldSizeTooLarge { old: 9, size: 8 }));
        // The degenerate cases: equal sizes, and the empty old tree.
        verify_consistency(8, 8, &root, &root, &[]).unwrap();
        assert_eq!(verify_consistency(8, 8, &root, &leaves[0], &[]), Err(ProofError::RootMismatch));
        assert!(verify_consistency(8, 8, &root, &root, &[root]).is_err());
        verify_consistency(0, 8, &empty_root(), &root, &[]).unwrap();
        assert_eq!(verify_consistency(0, 8, &root, &root, &[]), Err(ProofError::OldRootMismatch));
        assert!(verify_consistency(0, 8, &empty_root(), &root, &[root]).is_err());
        verify_consistency(0, 0, &empty_root(), &empty_root(), &[]).unwrap();
    }

    #[test]
    fn extreme_sizes_do_not_panic() {
        let x = leaf_hash(b"x");
        let p64 = vec![x; 64];
        for (i, n) in [(0, u64::MAX), (u64::MAX - 1, u64::MAX), (1 << 63, u64::MAX)] {
            let len = inclusion_proof_len(i, n);
            assert!(len <= MAX_INCLUSION_PROOF_LEN);
            assert!(verify_inclusion(i, n, &x, &p64[..len], &x).is_err());
        }
        // The longest consistency proof: 65 hashes.
        assert_eq!(consistency_proof_len((1 << 63) - 1, (1 << 63) + 1), 65);
        for (m, n) in [(1, u64::MAX), (u64::MAX - 1, u64::MAX), ((1 << 63) - 1, (1 << 63) + 1)] {
            let len = consistency_proof_len(m, n);
            assert!(len <= MAX_CONSISTENCY_PROOF_LEN, "{m} -> {n}: {len}");
            let p = vec![x; len];
            assert!(verify_consistency(m, n, &x, &x, &p).is_err());
        }
    }

    // ---- Frontier ----

    #[test]
    fn frontier_matches_reference() {
        let leaves = synthetic_leaves(300, 2);
        let t = tree_of(&leaves);
        let mut f = Frontier::new();
        assert_eq!(f.root(), empty_root());
        for n in 0..=300usize {
            assert_eq!(f.size(), n as u64);
            assert_eq!(f.root(), ref_mth(&leaves[..n]), "size {n}");
            assert_eq!(f, t.frontier_at(n as u64).unwrap());
            assert_eq!(f.hashes().len(), f.nodes().len());
            for (id, hash) in f.nodes().into_iter().zip(f.hashes()) {
                assert_eq!(t.node(id), Some(*hash));
                assert_eq!(f.get(id), Some(*hash));
            }
            if n < 300 {
                f.push(leaves[n]).unwrap();
            }
        }
    }

    #[test]
    fn frontier_from_last_leaf_proof() {
        let leaves = synthetic_leaves(300, 3);
        let t = tree_of(&leaves);
        for size in 1..=300u64 {
            let proof = t.inclusion_proof(size - 1, size).unwrap();
            let mut f = Frontier::from_last_leaf_proof(size, &proof).unwrap();
            assert_eq!(f, t.frontier_at(size - 1).unwrap());
            f.push(leaves[size as usize - 1]).unwrap();
            assert_eq!(f.root(), t.root_at(size).unwrap());
        }
        assert_eq!(Frontier::from_last_leaf_proof(0, &[]), Err(ProofError::EmptyTree));
        let proof = t.inclusion_proof(5, 6).unwrap();
        assert_eq!(
            Frontier::from_last_leaf_proof(8, &proof),
            Err(ProofError::WrongProofLength { expected: 3, got: 2 })
        );
    }

    #[test]
    fn frontier_parts() {
        let x = leaf_hash(b"x");
        assert!(Frontier::from_parts(5, vec![x, x]).is_ok());
        assert_eq!(Frontier::from_parts(5, vec![x]), Err(ProofError::WrongProofLength { expected: 2, got: 1 }));
        let mut full = Frontier::from_parts(u64::MAX, vec![x; 64]).unwrap();
        assert_eq!(full.nodes().len(), 64);
        assert_eq!(full.push(x), Err(ProofError::TreeFull));
        let mut almost = Frontier::from_parts(u64::MAX - 1, vec![x; 63]).unwrap();
        almost.push(x).unwrap();
        assert_eq!(almost.size(), u64::MAX);
        assert_eq!(almost.hashes().len(), 64);
    }

    // ---- Sparse verification ----

    fn supply(t: &MemoryTree, plan: &[NodeId]) -> HashMap<NodeId, Hash> {
        plan.iter().map(|&id| (id, t.node(id).unwrap())).collect()
    }

    fn own_leaves(t: &MemoryTree, wanted: &BTreeSet<u64>) -> BTreeMap<u64, Hash> {
        wanted.iter().map(|&i| (i, t.leaf(i).unwrap())).collect()
    }

    #[test]
    fn sparse_root_all_sizes() {
        let leaves = synthetic_leaves(70, 4);
        let t = tree_of(&leaves);
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for size in 0..=70u64 {
            let root = t.root_at(size).unwrap();
            for m in 0..=size {
                let old = t.frontier_at(m).unwrap();
                for round in 0..3 {
                    let mut wanted = BTreeSet::new();
                    if size > 0 {
                        for _ in 0..round * 2 {
                            wanted.insert(rng.below(size));
                        }
                    }
                    let plan = plan_nodes(size, &old, &wanted).unwrap();
                    assert!(plan.windows(2).all(|w| w[0] < w[1]), "sorted, deduplicated");
                    for id in &plan {
                        assert!(id.end() <= size);
                        assert!(wanted.range(id.start()..id.end()).next().is_none());
                        assert!(old.get(*id).is_none());
                    }
                    let nodes = supply(&t, &plan);
                    let own = own_leaves(&t, &wanted);
                    assert_eq!(root_from_nodes(size, &old, &own, &nodes), Ok(root));

                    // Tampering: only on the first round, to keep the test quick.
                    if round != 1 {
                        continue;
                    }
                    for id in &plan {
                        let mut bad = nodes.clone();
                        bad.insert(*id, leaf_hash(b"lie"));
                        assert_ne!(root_from_nodes(size, &old, &own, &bad), Ok(root));
                        let mut short = nodes.clone();
                        short.remove(id);
                        assert_eq!(root_from_nodes(size, &old, &own, &short), Err(ProofError::MissingNode(*id)));
                    }
                    for i in &wanted {
                        let mut bad = own.clone();
                        bad.insert(*i, leaf_hash(b"lie"));
                        assert_ne!(root_from_nodes(size, &old, &bad, &nodes), Ok(root));
                    }
                }
            }
        }
    }

    #[test]
    fn sparse_root_detects_forks() {
        let leaves = synthetic_leaves(70, 5);
        let t = tree_of(&leaves);
        let mut rng = Rng(42);
        for size in 1..=70u64 {
            let root = t.root_at(size).unwrap();
            for m in 1..=size {
                // A fork that rewrote one leaf before m.
                let mut forked = leaves[..m as usize].to_vec();
                let j = rng.below(m);
                forked[j as usize] = leaf_hash(b"fork");
                let old = tree_of(&forked).frontier_at(m).unwrap();
                let w = rng.below(size);
                let wanted: BTreeSet<u64> = [w].into();
                let plan = plan_nodes(size, &old, &wanted).unwrap();
                let got = root_from_nodes(size, &old, &own_leaves(&t, &wanted), &supply(&t, &plan));
                let forked_node = old.nodes().into_iter().find(|n| n.start() <= j && j < n.end());
                match forked_node {
                    // The wanted leaf sits under the forked frontier root: it is
                    // recomputed from honest data and refused.
                    Some(node) if node.start() <= w && w < node.end() => {
                        assert_eq!(got, Err(ProofError::FrontierMismatch { node }));
                    }
                    _ => {
                        let r = got.unwrap();
                        assert_ne!(r, root, "fork at old size {m} of {size} not detected");
                    }
                }
            }
        }
    }

    #[test]
    fn sparse_plan_is_minimal() {
        let id = |height, index| NodeId { height, index };
        let t = tree_of(&synthetic_leaves(8, 6));
        let set = |v: &[u64]| v.iter().copied().collect::<BTreeSet<u64>>();

        // Nothing trusted, one leaf: exactly its audit path.
        let plan = plan_nodes(8, &Frontier::new(), &set(&[5])).unwrap();
        assert_eq!(plan, [id(0, 4), id(1, 3), id(2, 0)]);

        // Old tree 6, no leaves: only what the consistency proof adds.
        let old6 = t.frontier_at(6).unwrap();
        assert_eq!(plan_nodes(8, &old6, &set(&[])).unwrap(), [id(1, 3)]);

        // Old tree 3, leaf 4 of 7.
        let old3 = t.frontier_at(3).unwrap();
        assert_eq!(plan_nodes(7, &old3, &set(&[4])).unwrap(), [id(0, 3), id(0, 5), id(0, 6)]);

        // Old tree 4 with leaf 1 inside its only frontier node: that node is
        // expanded and rechecked.
        let old4 = t.frontier_at(4).unwrap();
        assert_eq!(plan_nodes(8, &old4, &set(&[1])).unwrap(), [id(0, 0), id(1, 1), id(2, 1)]);

        // Same size, no leaves: nothing to fetch; wanted old leaf: its path
        // within the frontier node.
        assert_eq!(plan_nodes(8, &t.frontier_at(8).unwrap(), &set(&[])).unwrap(), []);
        assert_eq!(plan_nodes(8, &t.frontier_at(8).unwrap(), &set(&[7])).unwrap(), [id(0, 6), id(1, 2), id(2, 0)]);
        assert_eq!(plan_nodes(0, &Frontier::new(), &set(&[])).unwrap(), []);
    }

    #[test]
    fn sparse_errors() {
        let t = tree_of(&synthetic_leaves(8, 7));
        let old = t.frontier_at(6).unwrap();
        let none = BTreeSet::new();
        assert_eq!(plan_nodes(5, &old, &none), Err(ProofError::OldSizeTooLarge { old: 6, size: 5 }));
        let far: BTreeSet<u64> = [8].into();
        assert_eq!(plan_nodes(8, &old, &far), Err(ProofError::IndexOutOfRange { index: 8, size: 8 }));
        let far_leaves: BTreeMap<u64, Hash> = [(9, [0; 32])].into();
        assert_eq!(
            root_from_nodes(8, &old, &far_leaves, &HashMap::new()),
            Err(ProofError::IndexOutOfRange { index: 9, size: 8 })
        );
        assert_eq!(root_from_nodes(0, &Frontier::new(), &BTreeMap::new(), &HashMap::new()), Ok(empty_root()));
        // A wanted leaf that is itself an old frontier root must match it.
        let old5 = t.frontier_at(5).unwrap();
        let lie: BTreeMap<u64, Hash> = [(4, leaf_hash(b"lie"))].into();
        let plan = plan_nodes(8, &old5, &[4].into()).unwrap();
        assert_eq!(
            root_from_nodes(8, &old5, &lie, &supply(&t, &plan)),
            Err(ProofError::FrontierMismatch { node: NodeId { height: 0, index: 4 } })
        );
        // A lie under an expanded old frontier node.
        let lie: BTreeMap<u64, Hash> = [(1, leaf_hash(b"lie"))].into();
        let plan = plan_nodes(8, &old5, &[1].into()).unwrap();
        assert_eq!(
            root_from_nodes(8, &old5, &lie, &supply(&t, &plan)),
            Err(ProofError::FrontierMismatch { node: NodeId { height: 2, index: 0 } })
        );
    }

    // ---- Property tests on big trees ----

    const BIG: u64 = 1 << 20;

    /// One tree of 2^20 synthetic leaves shared by the property tests; its
    /// prefixes are the trees under test.
    fn big_tree() -> &'static MemoryTree {
        static TREE: OnceLock<MemoryTree> = OnceLock::new();
        TREE.get_or_init(|| {
            let mut t = MemoryTree::new();
            for i in 0..BIG {
                let mut leaf = [0u8; 32];
                leaf[..8].copy_from_slice(&i.to_le_bytes());
                t.push(leaf);
            }
            t
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn prop_inclusion_round_trip(size in 1..=BIG, seed in any::<u64>()) {
            let t = big_tree();
            let index = seed % size;
            let root = t.root_at(size).unwrap();
            prop_assert_eq!(t.frontier_at(size).unwrap().root(), root);
            let proof = t.inclusion_proof(index, size).unwrap();
            let leaf = t.leaf(index).unwrap();
            prop_assert!(verify_inclusion(index, size, &leaf, &proof, &root).is_ok());
            for bad in mangled(&proof) {
                prop_assert!(verify_inclusion(index, size, &leaf, &bad, &root).is_err());
            }
            if size > 1 {
                let other = (index + 1) % size;
                prop_assert!(verify_inclusion(other, size, &leaf, &proof, &root).is_err());
                let other_root = t.root_at(size - 1).unwrap();
                prop_assert!(verify_inclusion(index, size, &leaf, &proof, &other_root).is_err());
            }
        }

        #[test]
        fn prop_consistency_round_trip(a in 0..=BIG, b in 0..=BIG) {
            let (old, size) = (a.min(b), a.max(b));
            let t = big_tree();
            let (old_root, root) = (t.root_at(old).unwrap(), t.root_at(size).unwrap());
            let proof = t.consistency_proof(old, size).unwrap();
            prop_assert!(verify_consistency(old, size, &old_root, &root, &proof).is_ok());
            for bad in mangled(&proof) {
                prop_assert!(verify_consistency(old, size, &old_root, &root, &bad).is_err());
            }
            // Claimed sizes are bound by the signed roots, so lie with the
            // roots of the claimed sizes.
            if 0 < old && old < size {
                let next_root = t.root_at(old + 1).unwrap();
                prop_assert!(verify_consistency(old + 1, size, &next_root, &root, &proof).is_err());
                let prev_root = t.root_at(size - 1).unwrap();
                prop_assert!(verify_consistency(old, size - 1, &old_root, &prev_root, &proof).is_err());
                prop_assert!(verify_consistency(old, size, &old_root, &prev_root, &proof).is_err());
            }
        }

        #[test]
        fn prop_sparse_root(a in 0..=BIG, b in 0..=BIG, picks in prop::collection::vec(any::<u64>(), 0..6)) {
            let (m, size) = (a.min(b), a.max(b));
            let t = big_tree();
            let old = t.frontier_at(m).unwrap();
            let wanted: BTreeSet<u64> = if size == 0 {
                BTreeSet::new()
            } else {
                picks.iter().map(|p| p % size).collect()
            };
            let plan = plan_nodes(size, &old, &wanted).unwrap();
            // O(log n) per wanted leaf, plus the consistency part.
            prop_assert!(plan.len() <= (wanted.len() + 2) * 21);
            let got = root_from_nodes(size, &old, &own_leaves(t, &wanted), &supply(t, &plan));
            prop_assert_eq!(got, Ok(t.root_at(size).unwrap()));
        }

        #[test]
        fn prop_from_last_leaf_proof(size in 1..=BIG) {
            let t = big_tree();
            let proof = t.inclusion_proof(size - 1, size).unwrap();
            let f = Frontier::from_last_leaf_proof(size, &proof).unwrap();
            prop_assert_eq!(f, t.frontier_at(size - 1).unwrap());
        }
    }
}
