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
        if old > size {
            return Err(ProofError::OldSizeTooLarge { old, size });
        }
        if old == 0 || old == size {
            return Ok(Vec::new());
        }
        // SUBPROOF(m, D[lo:hi], b), walked from the root down; the RFC lists
        // the terminal hash first, then the others bottom-up.
        let (mut lo, mut hi, mut m, mut complete) = (0, size, old, true);
        let mut proof = Vec::new();
        loop {
            if m == hi - lo {
                if !complete {
                    proof.push(self.mth(lo, hi)?);
                }
                break;
            }
            let k = split_point(hi - lo);
            if m <= k {
                proof.push(self.mth(lo + k, hi)?);
                hi = lo + k;
            } else {
                proof.push(self.mth(lo, lo + k)?);
                lo += k;
                m -= k;
                complete = false;
            }
        }
        proof.reverse();
        Ok(proof)
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
