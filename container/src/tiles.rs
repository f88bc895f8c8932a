//! C2SP tlog-tiles arithmetic (<https://c2sp.org/tlog-tiles>) over the
//! [`merkle`](crate::merkle) tree: tile names and paths, which tiles a tree
//! has, and where a complete node's hash can be computed from.
//!
//! Tiles have height 8: a level-`L` tile holds up to 256 consecutive hashes of
//! tree height `8 L` (level 0: leaf hashes; level 1: roots of full level-0
//! tiles; and so on). In a tree of `size` leaves level `L` has
//! `size >> (8 L)` hashes, in full tiles of 256 and at most one partial tile
//! on the right edge.

use std::fmt;

use crate::merkle::{Hash, MemoryTree, NodeId, node_hash};

/// The height of a tile, in tree levels.
pub const TILE_HEIGHT: u8 = 8;

/// The number of hashes in a full tile.
pub const TILE_WIDTH: u64 = 256;

/// The highest tile level of any tree of at most `u64::MAX` leaves.
const MAX_TREE_LEVEL: u8 = 7;

/// The highest level a tile path may name.
const MAX_PATH_LEVEL: u8 = 63;

/// Why a tile path, a tile or a node span was refused.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TileError {
    /// A string is not a canonical tile path.
    #[error("invalid tile path {path:?}: {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A tile's width is not in 1..=256, or it lies beyond any tree of at
    /// most `u64::MAX` leaves.
    #[error("invalid tile {0}")]
    InvalidTile(TileId),
    /// A hash of the tile is not a complete node of the tree.
    #[error("the tree has no hash for {0}")]
    MissingNode(NodeId),
    /// A node is not complete in a tree of `size` leaves.
    #[error("{node} is not complete in a tree of {size} leaves")]
    NodeNotInTree {
        /// The node asked for.
        node: NodeId,
        /// The tree size.
        size: u64,
    },
    /// A span of hashes is not a perfect subtree (its length is not a power
    /// of two).
    #[error("{len} hashes are not a perfect subtree (not a power of two)")]
    NotPowerOfTwo {
        /// The number of hashes given.
        len: usize,
    },
}

/// A tile: level `level`, index `index` among that level's tiles, holding
/// `width` hashes (1..=256; 256 is a full tile).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TileId {
    /// The tile level: its hashes are nodes of tree height `8 * level`.
    pub level: u8,
    /// The tile's position in its level, left to right.
    pub index: u64,
    /// The number of hashes, 1..=256.
    pub width: u16,
}

impl TileId {
    /// Whether the tile holds all 256 hashes.
    pub fn is_full(&self) -> bool {
        u64::from(self.width) == TILE_WIDTH
    }

    /// The tile's C2SP path: `tile/<L>/<N>` or `tile/<L>/<N>.p/<W>` for a
    /// partial tile, with `N` in 3-digit groups, all but the last prefixed
    /// `x` (1234067 is `x001/x234/067`).
    pub fn path(&self) -> String {
        let digits = self.index.to_string();
        let padded = format!("{}{digits}", "0".repeat((3 - digits.len() % 3) % 3));
        let groups: Vec<&str> = padded.as_bytes().chunks(3).filter_map(|g| std::str::from_utf8(g).ok()).collect();
        let mut path = format!("tile/{}/", self.level);
        for (i, g) in groups.iter().enumerate() {
            if i + 1 < groups.len() {
                path.push('x');
                path.push_str(g);
                path.push('/');
            } else {
                path.push_str(g);
            }
        }
        if !self.is_full() {
            path.push_str(&format!(".p/{}", self.width));
        }
        path
    }

    /// Parses a canonical tile path, as [`Self::path`] writes it.
    ///
    /// Refuses anything else: leading zeros, an unneeded `x000` group, a
    /// `.p/` width of 0 or 256, a level above 63, an index beyond `u64`.
    pub fn parse_path(s: &str) -> Result<TileId, TileError> {
        let bad = |reason| TileError::InvalidPath { path: s.to_owned(), reason };
        let rest = s.strip_prefix("tile/").ok_or(bad("no tile/ prefix"))?;
        let (level, rest) = rest.split_once('/').ok_or(bad("no index"))?;
        let level = parse_decimal(level).ok_or(bad("level is not a canonical number"))?;
        let level = u8::try_from(level).ok().filter(|&l| l <= MAX_PATH_LEVEL).ok_or(bad("level above 63"))?;
        let (index, width) = match rest.split_once(".p/") {
            Some((index, width)) => {
                let w = parse_decimal(width).ok_or(bad("width is not a canonical number"))?;
                let w = u16::try_from(w)
                    .ok()
                    .filter(|&w| w > 0 && u64::from(w) < TILE_WIDTH)
                    .ok_or(bad("partial width not in 1..=255"))?;
                (index, w)
            }
            None => (rest, TILE_WIDTH as u16),
        };
        let index = parse_index(index).ok_or(bad("index is not canonical 3-digit groups"))?;
        Ok(TileId { level, index, width })
    }
}

impl fmt::Display for TileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path())
    }
}

/// A decimal number without sign or leading zeros.
fn parse_decimal(s: &str) -> Option<u64> {
    let canonical = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if canonical { s.parse().ok() } else { None }
}

/// `xDDD/.../DDD`: 3-digit groups, all but the last prefixed `x`, no leading
/// `x000` group.
fn parse_index(s: &str) -> Option<u64> {
    let groups: Vec<&str> = s.split('/').collect();
    let (last, init) = groups.split_last()?;
    if init.first() == Some(&"x000") {
        return None;
    }
    let mut value: u64 = 0;
    for (i, g) in groups.iter().enumerate() {
        let digits = if i < init.len() { g.strip_prefix('x')? } else { last };
        if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let group: u64 = digits.parse().ok()?;
        value = value.checked_mul(1000)?.checked_add(group)?;
    }
    Some(value)
}

/// The number of hashes at tile `level` in a tree of `size` leaves.
fn level_hashes(size: u64, level: u8) -> u64 {
    size.checked_shr(u32::from(level) * u32::from(TILE_HEIGHT)).unwrap_or(0)
}

/// All tiles of tree `size`, full and the partial right-edge ones, ordered by
/// level then index.
///
/// There are about `size / 255` of them: meant for trees that fit in memory.
pub fn tiles_at(size: u64) -> Vec<TileId> {
    let mut out = Vec::new();
    for level in 0..=MAX_TREE_LEVEL {
        let n = level_hashes(size, level);
        if n == 0 {
            break;
        }
        out.extend((0..n / TILE_WIDTH).map(|index| TileId { level, index, width: TILE_WIDTH as u16 }));
        out.extend(partial_tile(n, level));
    }
    out
}

fn partial_tile(n: u64, level: u8) -> Option<TileId> {
    let width = (n % TILE_WIDTH) as u16;
    (width > 0).then_some(TileId { level, index: n / TILE_WIDTH, width })
}

/// The partial tiles of tree `size`: at most one per level, lowest level
/// first.
pub fn right_edge(size: u64) -> Vec<TileId> {
    (0..=MAX_TREE_LEVEL).filter_map(|level| partial_tile(level_hashes(size, level), level)).collect()
}

/// The full tiles complete in tree `size` but not in tree `old`, ordered by
/// level then index (empty if `old >= size`).
pub fn new_full_tiles(old: u64, size: u64) -> Vec<TileId> {
    let mut out = Vec::new();
    for level in 0..=MAX_TREE_LEVEL {
        let from = level_hashes(old, level) / TILE_WIDTH;
        let to = level_hashes(size, level) / TILE_WIDTH;
        out.extend((from..to).map(|index| TileId { level, index, width: TILE_WIDTH as u16 }));
    }
    out
}

/// The `width` hashes of `tile`: the nodes of height `8 * level` with indexes
/// `index * 256 ..`, from a tree that holds them all.
pub fn tile_hashes(tree: &MemoryTree, tile: TileId) -> Result<Vec<Hash>, TileError> {
    let invalid = TileError::InvalidTile(tile);
    if tile.width == 0 || u64::from(tile.width) > TILE_WIDTH || tile.level > MAX_TREE_LEVEL {
        return Err(invalid);
    }
    let height = tile.level * TILE_HEIGHT;
    let base = tile.index.checked_mul(TILE_WIDTH).ok_or(invalid.clone())?;
    (0..u64::from(tile.width))
        .map(|i| {
            let index = base.checked_add(i).ok_or(invalid.clone())?;
            let id = NodeId { height, index };
            tree.node(id).ok_or(TileError::MissingNode(id))
        })
        .collect()
}

/// A tile's hashes concatenated: byte-identical to a C2SP tile.
pub fn tile_bytes(hashes: &[Hash]) -> Vec<u8> {
    hashes.concat()
}

/// Where a complete node's hash can be computed from: the tile of tree `size`
/// that holds it, and the contiguous span of that tile's hashes under it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TileSpan {
    /// The tile, with its width in the tree the span was computed for.
    pub tile: TileId,
    /// The first hash of the span within the tile.
    pub first: u16,
    /// The number of hashes in the span (a power of two, at most 128).
    pub count: u16,
}

/// The tile span of `node` in tree `size`: level `h / 8`, hashes
/// `[index << (h % 8), (index + 1) << (h % 8))` of that level. [`hash_span`]
/// over them gives the node's hash.
///
/// Fails if the node is not complete in tree `size`.
pub fn node_span(node: NodeId, size: u64) -> Result<TileSpan, TileError> {
    let not_in_tree = TileError::NodeNotInTree { node, size };
    if node.height >= 64 || (u128::from(node.index) + 1) << node.height > u128::from(size) {
        return Err(not_in_tree);
    }
    let level = node.height / TILE_HEIGHT;
    let shift = node.height % TILE_HEIGHT;
    // Cannot overflow: the node is complete, so (index + 1) << height <= size.
    let first_hash = node.index << shift;
    let tile_index = first_hash / TILE_WIDTH;
    let n = level_hashes(size, level);
    let width = if tile_index < n / TILE_WIDTH { TILE_WIDTH } else { n % TILE_WIDTH };
    Ok(TileSpan {
        tile: TileId { level, index: tile_index, width: width as u16 },
        first: (first_hash % TILE_WIDTH) as u16,
        count: 1 << shift,
    })
}

/// The root of the perfect tree over `hashes` (whose length must be a power
/// of two).
pub fn hash_span(hashes: &[Hash]) -> Result<Hash, TileError> {
    let len = hashes.len();
    if !len.is_power_of_two() {
        return Err(TileError::NotPowerOfTwo { len });
    }
    let mut level = hashes.to_vec();
    while level.len() > 1 {
        level = level.chunks_exact(2).map(|pair| node_hash(&pair[0], &pair[1])).collect();
    }
    level.first().copied().ok_or(TileError::NotPowerOfTwo { len })
}
