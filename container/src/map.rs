//! The map: where every tile of a tree is, in a payload whose layout is a
//! function of the tree size alone, and the right edge of a growing tree.
//!
//! A seal points at one `map` frame. Its payload is the frontier of the tree
//! before the manifest (the manifest's inclusion proof), then, level by
//! level, the byte offsets of the tiles: full tiles are listed 256 to a
//! `page` frame once a page fills, so the map stays small (at most 255 loose
//! offsets, one page offset per 65,536 hashes and one right-edge offset per
//! level) however long the log grows, and a publisher rewrites only that.
//! A client that has the map finds any tile with at most one more 8-byte read.

use crate::merkle::{Frontier, Hash, ProofError};
use crate::tiles::{TILE_WIDTH, TileId, hash_span};

/// Tile offsets per page.
pub const PAGE_WIDTH: u64 = 256;

/// How many tile levels a tree of `size` leaves has (levels with at least one hash).
pub fn levels(size: u64) -> u8 {
    (0..8u8).take_while(|l| size >> (8 * u32::from(*l)) > 0).count() as u8
}

/// The counts of one level's part of a map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LevelCounts {
    /// Full pages (each listing 256 full tiles).
    pub pages: u64,
    /// Full tiles listed one by one (not yet in a page): 0 to 255.
    pub loose: u64,
    /// Whether the level has a partial right-edge tile.
    pub edge: bool,
}

/// The counts of level `level` in a tree of `size` leaves.
pub fn level_counts(size: u64, level: u8) -> LevelCounts {
    let hashes = size.checked_shr(8 * u32::from(level)).unwrap_or(0);
    let full = hashes / TILE_WIDTH;
    LevelCounts { pages: full / PAGE_WIDTH, loose: full % PAGE_WIDTH, edge: !hashes.is_multiple_of(TILE_WIDTH) }
}

/// The length of a map's payload for a tree of `size` leaves (`size >= 1`).
pub fn payload_len(size: u64) -> u64 {
    let frontier = u64::from(size.saturating_sub(1).count_ones()) * 32;
    let slots: u64 = (0..levels(size))
        .map(|l| {
            let c = level_counts(size, l);
            c.pages + c.loose + u64::from(c.edge)
        })
        .sum();
    frontier + slots * 8
}

/// Where a tile's payload offset is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Located {
    /// The map holds the tile's payload offset.
    Tile(u64),
    /// A page frame holds it: the page's payload offset, and the slot in it.
    InPage {
        /// Payload offset of the page frame.
        page: u64,
        /// Position of the tile's offset in the page (0..256).
        slot: u64,
    },
}

/// Why a map cannot be read or used.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MapError {
    /// The payload has the wrong length for its tree size.
    #[error("a map of a tree of {size} leaves is {want} bytes, not {got}")]
    Length {
        /// Tree size.
        size: u64,
        /// Expected payload length.
        want: u64,
        /// Actual length.
        got: u64,
    },
    /// The tree has no such tile.
    #[error("a tree of {size} leaves has no tile {tile}")]
    NoTile {
        /// Tree size.
        size: u64,
        /// The tile asked for.
        tile: TileId,
    },
    /// The frontier is malformed.
    #[error(transparent)]
    Proof(#[from] ProofError),
}

/// One level of a map: page offsets, loose full-tile offsets, the right-edge
/// tile's offset (all payload offsets, i.e. of the first byte after the header).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LevelMap {
    /// Payload offsets of the level's full page frames, page 0 first.
    pub pages: Vec<u64>,
    /// Payload offsets of the full tiles after the last full page.
    pub loose: Vec<u64>,
    /// Payload offset of the partial right-edge tile.
    pub edge: Option<u64>,
}

/// A decoded map: the frontier before the manifest and every tile's location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TileMap {
    /// The frontier of the tree of `size - 1` leaves (before the manifest).
    pub before: Frontier,
    /// Per level, lowest first.
    pub levels: Vec<LevelMap>,
}

impl TileMap {
    /// The tree size this map describes.
    pub fn size(&self) -> u64 {
        self.before.size() + 1
    }

    /// Reads a map payload for a tree of `size` leaves.
    pub fn decode(size: u64, bytes: &[u8]) -> Result<TileMap, MapError> {
        let want = payload_len(size);
        if bytes.len() as u64 != want || size == 0 {
            return Err(MapError::Length { size, want, got: bytes.len() as u64 });
        }
        let nf = (size - 1).count_ones() as usize;
        let (front, mut rest) = bytes.split_at(nf * 32);
        let hashes: Vec<Hash> = front.chunks_exact(32).map(to_hash).collect();
        let before = Frontier::from_parts(size - 1, hashes)?;
        let mut take = |n: u64| -> Vec<u64> {
            let (a, b) = rest.split_at(n as usize * 8);
            rest = b;
            a.chunks_exact(8).map(|c| u64::from_be_bytes(c.try_into().unwrap_or([0; 8]))).collect()
        };
        let levels = (0..levels(size))
            .map(|l| {
                let c = level_counts(size, l);
                LevelMap { pages: take(c.pages), loose: take(c.loose), edge: take(u64::from(c.edge)).first().copied() }
            })
            .collect();
        Ok(TileMap { before, levels })
    }

    /// The payload bytes. Fails if the parts do not fit the tree size.
    pub fn encode(&self) -> Result<Vec<u8>, MapError> {
        let size = self.size();
        let mut out = Vec::with_capacity(payload_len(size) as usize);
        for h in self.before.hashes() {
            out.extend_from_slice(h);
        }
        for (l, level) in self.levels.iter().enumerate() {
            let c = level_counts(size, l as u8);
            if level.pages.len() as u64 != c.pages
                || level.loose.len() as u64 != c.loose
                || level.edge.is_some() != c.edge
            {
                return Err(MapError::Length { size, want: payload_len(size), got: 0 });
            }
            for o in level.pages.iter().chain(&level.loose).chain(&level.edge) {
                out.extend_from_slice(&o.to_be_bytes());
            }
        }
        if out.len() as u64 != payload_len(size) {
            return Err(MapError::Length { size, want: payload_len(size), got: out.len() as u64 });
        }
        Ok(out)
    }

    /// Where tile `tile` of this tree is listed.
    pub fn locate(&self, tile: TileId) -> Result<Located, MapError> {
        let size = self.size();
        let none = MapError::NoTile { size, tile };
        let level = self.levels.get(usize::from(tile.level)).ok_or(none.clone())?;
        if !tile.is_full() {
            let c = level_counts(size, tile.level);
            let full = c.pages * PAGE_WIDTH + c.loose;
            return match level.edge {
                Some(at) if tile.index == full => Ok(Located::Tile(at)),
                _ => Err(none),
            };
        }
        let page = tile.index / PAGE_WIDTH;
        match level.pages.get(usize::try_from(page).map_err(|_| none.clone())?) {
            Some(at) => Ok(Located::InPage { page: *at, slot: tile.index % PAGE_WIDTH }),
            None if page == level.pages.len() as u64 => {
                level.loose.get((tile.index % PAGE_WIDTH) as usize).map(|at| Located::Tile(*at)).ok_or(none)
            }
            None => Err(none),
        }
    }
}

fn to_hash(c: &[u8]) -> Hash {
    let mut h = [0u8; 32];
    h.copy_from_slice(c);
    h
}

/// Decodes a page payload: 256 big-endian `u64` tile payload offsets.
pub fn decode_page(bytes: &[u8]) -> Option<Vec<u64>> {
    if bytes.len() as u64 != PAGE_WIDTH * 8 {
        return None;
    }
    Some(bytes.chunks_exact(8).map(|c| u64::from_be_bytes(c.try_into().unwrap_or([0; 8]))).collect())
}

/// Encodes a page payload.
pub fn encode_page(offsets: &[u64]) -> Vec<u8> {
    offsets.iter().flat_map(|o| o.to_be_bytes()).collect()
}

/// The right edge of a growing tree: each level's partial tile. That is all
/// a writer needs to append leaves, write the tiles they complete, and
/// compute the frontier and the root: a publisher keeps this, not the tree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Edge {
    size: u64,
    levels: Vec<Vec<Hash>>,
}

impl Edge {
    /// The edge of the empty tree.
    pub fn new() -> Edge {
        Edge::default()
    }

    /// An edge from the right-edge tiles of a tree of `size` leaves, lowest
    /// level first (a level without a partial tile is an empty list).
    pub fn from_partials(size: u64, partials: Vec<Vec<Hash>>) -> Result<Edge, ProofError> {
        let n = levels(size) as usize;
        if partials.len() != n {
            return Err(ProofError::WrongProofLength { expected: n, got: partials.len() });
        }
        for (l, p) in partials.iter().enumerate() {
            let w = (size >> (8 * l)) % TILE_WIDTH;
            if p.len() as u64 != w {
                return Err(ProofError::WrongProofLength { expected: w as usize, got: p.len() });
            }
        }
        Ok(Edge { size, levels: partials })
    }

    /// The tree size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash; returns the full tiles it completed (lowest
    /// level first) with their hashes.
    pub fn push(&mut self, leaf: Hash) -> Vec<(TileId, Vec<Hash>)> {
        let mut done = Vec::new();
        self.size += 1;
        let mut carry = leaf;
        let mut level = 0usize;
        loop {
            if self.levels.len() <= level {
                self.levels.push(Vec::new());
            }
            self.levels[level].push(carry);
            if self.levels[level].len() as u64 != TILE_WIDTH {
                break;
            }
            let hashes = std::mem::take(&mut self.levels[level]);
            // A full tile of 256 hashes is a perfect subtree.
            carry = hash_span(&hashes).unwrap_or([0; 32]);
            let index = (self.size >> (8 * level)) / TILE_WIDTH - 1;
            done.push((TileId { level: level as u8, index, width: TILE_WIDTH as u16 }, hashes));
            level += 1;
        }
        while self.levels.last().is_some_and(|l| l.is_empty()) && self.levels.len() > levels(self.size) as usize {
            self.levels.pop();
        }
        done
    }

    /// The partial tiles, lowest level first, with their hashes.
    pub fn partials(&self) -> Vec<(TileId, &[Hash])> {
        self.levels
            .iter()
            .enumerate()
            .filter(|(_, h)| !h.is_empty())
            .map(|(l, h)| {
                let index = (self.size >> (8 * l)) / TILE_WIDTH;
                (TileId { level: l as u8, index, width: h.len() as u16 }, h.as_slice())
            })
            .collect()
    }

    /// The frontier: the perfect subtrees of the tree, largest first.
    pub fn frontier(&self) -> Frontier {
        let mut hashes = Vec::new();
        for level in self.levels.iter().rev() {
            let w = level.len();
            let mut start = 0usize;
            for s in (0..8u32).rev() {
                let span = 1usize << s;
                if w & span != 0 {
                    hashes.push(hash_span(&level[start..start + span]).unwrap_or([0; 32]));
                    start += span;
                }
            }
        }
        // Built from the edge's own levels, whose widths are the bits of `size`.
        Frontier::from_parts(self.size, hashes).unwrap_or_default()
    }

    /// The root.
    pub fn root(&self) -> Hash {
        self.frontier().root()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::MemoryTree;
    use crate::tiles::{new_full_tiles, right_edge, tile_hashes};
    use proptest::prelude::*;

    fn leaf(i: u64) -> Hash {
        crate::merkle::leaf_hash(&i.to_le_bytes())
    }

    #[test]
    fn the_edge_matches_a_full_tree_and_writes_every_full_tile_once() {
        let mut tree = MemoryTree::new();
        let mut edge = Edge::new();
        let mut written = Vec::new();
        for i in 0..70_000u64 {
            tree.push(leaf(i));
            for (t, hashes) in edge.push(leaf(i)) {
                assert_eq!(tile_hashes(&tree, t).unwrap(), hashes, "{t}");
                written.push(t);
            }
            if i % 4999 == 0 || i == 69_999 {
                let n = i + 1;
                assert_eq!(edge.frontier(), tree.frontier_at(n).unwrap(), "size {n}");
                let partials: Vec<TileId> = edge.partials().iter().map(|(t, _)| *t).collect();
                assert_eq!(partials, right_edge(n));
                for (t, h) in edge.partials() {
                    assert_eq!(tile_hashes(&tree, t).unwrap(), h);
                }
            }
        }
        assert_eq!(written, {
            let mut all = new_full_tiles(0, 70_000);
            all.sort_by_key(|t| (t.index + 1) << (8 * t.level));
            all
        });
        let rebuilt =
            Edge::from_partials(70_000, (0..levels(70_000)).map(|l| edge.levels[l as usize].clone()).collect())
                .unwrap();
        assert_eq!(rebuilt.root(), tree.root_at(70_000).unwrap());
    }

    proptest! {
        #[test]
        fn maps_round_trip_and_locate_every_tile(size in 1u64..(1 << 26)) {
            let mut levels_map = Vec::new();
            let mut next = 1000u64;
            for l in 0..levels(size) {
                let c = level_counts(size, l);
                let mut take = |n: u64| (0..n).map(|_| { next += 8; next }).collect::<Vec<_>>();
                levels_map.push(LevelMap { pages: take(c.pages), loose: take(c.loose), edge: take(u64::from(c.edge)).first().copied() });
            }
            let before = Frontier::from_parts(size - 1, vec![[7u8; 32]; (size - 1).count_ones() as usize]).unwrap();
            let map = TileMap { before, levels: levels_map };
            let bytes = map.encode().unwrap();
            prop_assert_eq!(bytes.len() as u64, payload_len(size));
            let back = TileMap::decode(size, &bytes).unwrap();
            prop_assert_eq!(&back, &map);
            for t in crate::tiles::right_edge(size) {
                prop_assert!(matches!(map.locate(t), Ok(Located::Tile(_))));
            }
            let last_full = crate::tiles::new_full_tiles(0, size);
            for t in last_full.iter().rev().take(300) {
                prop_assert!(map.locate(*t).is_ok(), "{}", t);
            }
            prop_assert!(TileMap::decode(size, &bytes[1..]).is_err());
        }
    }
}
