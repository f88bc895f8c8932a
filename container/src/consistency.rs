//! Consistency proofs (RFC 9162 section 2.1.4) from the tiles of a container
//! on disk: what a publisher sends a witness to show that the tree it asks
//! it to cosign extends the one the witness saw.
//!
//! [`consistency_proof`] walks the RFC recursion and asks a node oracle for
//! the O(log n) complete nodes the proof is made of; [`TileNodes`] is that
//! oracle over a container: each node is one span of one tile (read where the
//! map says, with one more 8-byte read for a tile listed in a page), and the
//! roots of the tree's own frontier come from memory.

use std::collections::HashMap;

use crate::client::PlanError;
use crate::frame::ReadAt;
use crate::map::{Located, TileMap};
use crate::merkle::{Frontier, Hash, NodeId, ProofError, node_hash};
use crate::tiles::{TileId, hash_span, node_span};

/// The consistency proof from the tree of `old` leaves to the tree of `size`
/// leaves (`PROOF(old, D[0:size])`), with every node hash from `node`, which
/// is asked only for complete nodes of tree `size`.
///
/// Empty when `old == 0` or `old == size`, as
/// [`MemoryTree::consistency_proof`](crate::merkle::MemoryTree::consistency_proof).
pub fn consistency_proof<E: From<ProofError>>(
    old: u64,
    size: u64,
    node: &mut dyn FnMut(NodeId) -> Result<Hash, E>,
) -> Result<Vec<Hash>, E> {
    if old > size {
        return Err(ProofError::OldSizeTooLarge { old, size }.into());
    }
    if old == 0 || old == size {
        return Ok(Vec::new());
    }
    let (mut lo, mut hi, mut m, mut complete) = (0, size, old, true);
    let mut proof = Vec::new();
    loop {
        if m == hi - lo {
            if !complete {
                proof.push(mth(lo, hi, node)?);
            }
            break;
        }
        let k = split_point(hi - lo);
        if m <= k {
            proof.push(mth(lo + k, hi, node)?);
            hi = lo + k;
        } else {
            proof.push(mth(lo, lo + k, node)?);
            lo += k;
            m -= k;
            complete = false;
        }
    }
    proof.reverse();
    Ok(proof)
}

/// The largest power of two strictly less than `n >= 2`.
fn split_point(n: u64) -> u64 {
    1u64 << (63 - (n - 1).leading_zeros())
}

/// `MTH(D[lo:hi])` for a range of the RFC recursion: a perfect aligned range
/// is one node; any other (only ever `[lo, size)`) splits into a few.
fn mth<E>(lo: u64, hi: u64, node: &mut dyn FnMut(NodeId) -> Result<Hash, E>) -> Result<Hash, E> {
    let len = hi - lo;
    if len.is_power_of_two() && lo.is_multiple_of(len) {
        let height = len.trailing_zeros() as u8;
        return node(NodeId { height, index: lo >> height });
    }
    let mid = lo + split_point(len);
    let left = mth(lo, mid, node)?;
    let right = mth(mid, hi, node)?;
    Ok(node_hash(&left, &right))
}

/// The complete nodes of the tree a [`TileMap`] describes, read from its
/// tiles in `src` (a whole container), with the tree's frontier in memory.
pub struct TileNodes<'a, R: ReadAt + ?Sized> {
    src: &'a R,
    map: &'a TileMap,
    frontier: &'a Frontier,
    /// Tile payload offsets read from page slots.
    slots: HashMap<TileId, u64>,
}

impl<'a, R: ReadAt + ?Sized> TileNodes<'a, R> {
    /// Nodes of the tree of `frontier.size()` leaves whose tiles `map`
    /// locates in `src`. The frontier must be the tree's (e.g. the map's
    /// `before` with the manifest leaf pushed, or an appender's edge).
    pub fn new(src: &'a R, map: &'a TileMap, frontier: &'a Frontier) -> Result<Self, ProofError> {
        if map.size() != frontier.size() {
            return Err(ProofError::SizeBeyondTree { size: map.size(), have: frontier.size() });
        }
        Ok(TileNodes { src, map, frontier, slots: HashMap::new() })
    }

    /// The hash of complete node `id`.
    pub fn node(&mut self, id: NodeId) -> Result<Hash, PlanError> {
        if let Some(h) = self.frontier.get(id) {
            return Ok(h);
        }
        let span = node_span(id, self.frontier.size())?;
        let base = match self.map.locate(span.tile)? {
            Located::Tile(at) => at,
            Located::InPage { page, slot } => match self.slots.get(&span.tile) {
                Some(at) => *at,
                None => {
                    let mut raw = [0u8; 8];
                    self.read(&mut raw, page + slot * 8)?;
                    let at = u64::from_be_bytes(raw);
                    self.slots.insert(span.tile, at);
                    at
                }
            },
        };
        let mut raw = vec![0u8; usize::from(span.count) * 32];
        self.read(&mut raw, base + u64::from(span.first) * 32)?;
        let hashes: Vec<Hash> = raw.chunks_exact(32).map(|c| c.try_into().unwrap_or([0; 32])).collect();
        Ok(hash_span(&hashes)?)
    }

    fn read(&self, buf: &mut [u8], at: u64) -> Result<(), PlanError> {
        self.src.read_exact_at(buf, at).map_err(|e| PlanError::Missing(format!("bytes at {at}: {e}")))
    }

    /// The consistency proof from the tree of `old` leaves to this tree.
    pub fn consistency_proof(&mut self, old: u64) -> Result<Vec<Hash>, PlanError> {
        let size = self.frontier.size();
        consistency_proof(old, size, &mut |id| self.node(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::{LevelMap, PAGE_WIDTH, encode_page, levels};
    use crate::merkle::{MemoryTree, leaf_hash, verify_consistency};
    use crate::tiles::{tile_hashes, tiles_at};
    use proptest::prelude::*;
    use std::sync::OnceLock;

    /// A tree big enough for level-0 pages (65,536 leaves and more).
    fn big_tree() -> &'static MemoryTree {
        static TREE: OnceLock<MemoryTree> = OnceLock::new();
        TREE.get_or_init(|| {
            let mut t = MemoryTree::new();
            for i in 0..70_000u64 {
                t.push(leaf_hash(&i.to_be_bytes()));
            }
            t
        })
    }

    /// The tiles of tree `n` laid out as a publisher lays them out: each
    /// tile's hashes at some offset (with a gap, so offsets matter), full
    /// tiles in pages once 256 of a level are listed, and the map.
    fn tile_source(tree: &MemoryTree, n: u64) -> (Vec<u8>, TileMap, Frontier) {
        let mut bytes = vec![0xAAu8; 7];
        let mut map = TileMap {
            before: tree.frontier_at(n - 1).unwrap(),
            levels: vec![LevelMap::default(); usize::from(levels(n))],
        };
        for t in tiles_at(n) {
            bytes.extend_from_slice(&[0x55; 3]);
            let at = bytes.len() as u64;
            bytes.extend_from_slice(&tile_hashes(tree, t).unwrap().concat());
            let level = &mut map.levels[usize::from(t.level)];
            if t.is_full() {
                level.loose.push(at);
                if level.loose.len() as u64 == PAGE_WIDTH {
                    let page = encode_page(&level.loose);
                    level.pages.push(bytes.len() as u64);
                    bytes.extend_from_slice(&page);
                    level.loose.clear();
                }
            } else {
                level.edge = Some(at);
            }
        }
        // The map must round-trip: the same layout the format defines.
        let map = TileMap::decode(n, &map.encode().unwrap()).unwrap();
        (bytes, map, tree.frontier_at(n).unwrap())
    }

    fn check(n: u64, olds: &[u64]) {
        let tree = big_tree();
        let (bytes, map, frontier) = tile_source(tree, n);
        let mut nodes = TileNodes::new(bytes.as_slice(), &map, &frontier).unwrap();
        for &m in olds {
            let want = tree.consistency_proof(m, n).unwrap();
            let got = nodes.consistency_proof(m).unwrap();
            assert_eq!(got, want, "proof {m} -> {n}");
            if m > 0 {
                verify_consistency(m, n, &tree.root_at(m).unwrap(), &tree.root_at(n).unwrap(), &got).unwrap();
            }
        }
    }

    #[test]
    fn matches_the_reference_at_tile_and_page_edges() {
        for n in [2u64, 3, 255, 256, 257, 511, 512, 513, 65_535, 65_536, 65_537, 65_536 + 256 * 3 + 7, 70_000] {
            let olds: Vec<u64> = [
                1,
                2,
                n / 3,
                n / 2,
                n.saturating_sub(256),
                n.saturating_sub(255),
                n - 2,
                n - 1,
                n,
                256,
                257,
                65_536,
                65_537,
            ]
            .into_iter()
            .filter(|m| *m >= 1 && *m <= n)
            .collect();
            check(n, &olds);
        }
    }

    #[test]
    fn a_node_past_the_tree_is_refused() {
        let tree = big_tree();
        let (bytes, map, frontier) = tile_source(tree, 300);
        let mut nodes = TileNodes::new(bytes.as_slice(), &map, &frontier).unwrap();
        assert!(nodes.node(NodeId { height: 0, index: 300 }).is_err());
        assert!(nodes.node(NodeId { height: 9, index: 0 }).is_err());
        assert!(nodes.consistency_proof(301).is_err());
        // A source missing the tiles fails instead of inventing hashes.
        let short = &bytes[..bytes.len() / 2];
        let mut nodes = TileNodes::new(short, &map, &frontier).unwrap();
        assert!(nodes.consistency_proof(1).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn matches_the_reference(n in 2u64..=70_000, olds in proptest::collection::vec(0u64..=70_000, 1..6)) {
            let olds: Vec<u64> = olds.into_iter().map(|m| m % (n + 1)).collect();
            check(n, &olds);
        }

        #[test]
        fn the_generic_walk_matches_the_reference(n in 1u64..=70_000, m in 0u64..=70_000) {
            let m = m % (n + 1);
            let tree = big_tree();
            let got: Result<Vec<Hash>, ProofError> =
                consistency_proof(m, n, &mut |id| tree.node(id).ok_or(ProofError::MissingNode(id)));
            // MemoryTree's proof is this walk now: check against the verifier instead.
            let proof = got.unwrap();
            if m > 0 && m < n {
                let (old, new) = (tree.root_at(m).unwrap(), tree.root_at(n).unwrap());
                prop_assert!(crate::merkle::verify_consistency(m, n, &old, &new, &proof).is_ok());
            } else {
                prop_assert!(proof.is_empty());
            }
        }
    }
}
