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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::leaf_hash;
    use proptest::prelude::*;

    fn tile(level: u8, index: u64, width: u16) -> TileId {
        TileId { level, index, width }
    }

    fn synthetic_tree(n: u64) -> MemoryTree {
        let mut t = MemoryTree::new();
        for i in 0..n {
            let mut leaf = [0u8; 32];
            leaf[..8].copy_from_slice(&i.to_le_bytes());
            t.push(leaf);
        }
        t
    }

    #[test]
    fn paths_from_the_spec() {
        let cases = [
            (tile(0, 1_234_067, 256), "tile/0/x001/x234/067"),
            (tile(0, 1_234_067, 8), "tile/0/x001/x234/067.p/8"),
            (tile(1, 0, 7), "tile/1/000.p/7"),
            (tile(0, 5, 256), "tile/0/005"),
            (tile(2, 1000, 256), "tile/2/x001/000"),
            (tile(3, 999, 255), "tile/3/999.p/255"),
            (tile(63, u64::MAX, 1), "tile/63/x018/x446/x744/x073/x709/x551/615.p/1"),
        ];
        for (t, path) in cases {
            assert_eq!(t.path(), path);
            assert_eq!(t.to_string(), path);
            assert_eq!(TileId::parse_path(path), Ok(t), "{path}");
        }
    }

    #[test]
    fn non_canonical_paths_are_refused() {
        for path in [
            "",
            "tile/",
            "tile/0",
            "tile/0/",
            "tiles/0/005",
            "/tile/0/005",
            "tile/0/5",
            "tile/0/05",
            "tile/0/0005",
            "tile/00/005",
            "tile/01/005",
            "tile/+1/005",
            "tile/-1/005",
            "tile/64/005",
            "tile/256/005",
            "tile/0/x000/005",
            "tile/0/x005",
            "tile/0/001/005",
            "tile/0/x1/005",
            "tile/0/xx01/005",
            "tile/0/x001/x234",
            "tile/0/005/",
            "tile/0/005.p/",
            "tile/0/005.p/0",
            "tile/0/005.p/007",
            "tile/0/005.p/256",
            "tile/0/005.p/1000",
            "tile/0/005.p/8/",
            "tile/0/005.p/8.p/8",
            "tile/0/00a",
            "tile/0/x018/x446/x744/x073/x709/x551/616",
            "tile/0/x001/x018/x446/x744/x073/x709/x551/615",
            "tile/entries/005",
            "tile/0/005 ",
        ] {
            assert!(matches!(TileId::parse_path(path), Err(TileError::InvalidPath { .. })), "accepted {path:?}");
        }
    }

    proptest! {
        #[test]
        fn prop_path_round_trip(level in 0..=63u8, index in any::<u64>(), width in 1..=256u16) {
            let t = tile(level, index, width);
            prop_assert_eq!(TileId::parse_path(&t.path()), Ok(t));
        }

        #[test]
        fn prop_parse_never_panics(s in "tile/[0-9]{1,3}/(x[0-9]{3}/){0,7}[0-9]{1,4}(\\.p/[0-9]{1,4})?") {
            if let Ok(t) = TileId::parse_path(&s) {
                prop_assert_eq!(t.path(), s);
            }
        }
    }

    #[test]
    fn tiles_of_a_hand_sized_tree() {
        let size = 256 * 256 + 3;
        let all = tiles_at(size);
        assert_eq!(all.len(), 256 + 1 + 1 + 1);
        assert!(all[..256].iter().enumerate().all(|(i, t)| *t == tile(0, i as u64, 256)));
        assert_eq!(all[256..], [tile(0, 256, 3), tile(1, 0, 256), tile(2, 0, 1)]);
        assert!(all.windows(2).all(|w| (w[0].level, w[0].index) < (w[1].level, w[1].index)));
        assert_eq!(right_edge(size), [tile(0, 256, 3), tile(2, 0, 1)]);
        assert_eq!(new_full_tiles(256 * 256 - 1, size), [tile(0, 255, 256), tile(1, 0, 256)]);
        assert_eq!(new_full_tiles(size, size), []);
        assert_eq!(new_full_tiles(size, 0), []);
        assert_eq!(new_full_tiles(0, 512).len(), 2);
        assert_eq!(tiles_at(0), []);
        assert_eq!(right_edge(0), []);
        assert_eq!(tiles_at(1), [tile(0, 0, 1)]);
        assert_eq!(tiles_at(256), [tile(0, 0, 256), tile(1, 0, 1)]);
        assert_eq!(right_edge(256), [tile(1, 0, 1)]);
        assert_eq!(
            right_edge(u64::MAX),
            (0..8).map(|l| tile(l, (1 << (56 - 8 * u32::from(l))) - 1, 255)).collect::<Vec<_>>()
        );
        // Every new full tile appears in tiles_at(size) and not in tiles_at(old).
        for (old, size) in [(0, 70_000), (300, 65_536), (65_535, 65_537), (1, 131_072)] {
            let before = tiles_at(old);
            let after = tiles_at(size);
            let fresh: Vec<TileId> = after.into_iter().filter(|t| t.is_full() && !before.contains(t)).collect();
            assert_eq!(new_full_tiles(old, size), fresh, "{old} -> {size}");
        }
    }

    #[test]
    fn tile_contents() {
        let t = synthetic_tree(256 * 3 + 10);
        let hashes = tile_hashes(&t, tile(0, 1, 256)).unwrap();
        assert_eq!(hashes.len(), 256);
        assert_eq!(hashes[0], t.leaf(256).unwrap());
        assert_eq!(tile_bytes(&hashes).len(), 256 * 32);
        assert_eq!(tile_bytes(&hashes)[32..64], hashes[1]);
        let edge = tile_hashes(&t, tile(0, 3, 10)).unwrap();
        assert_eq!(edge[9], t.leaf(256 * 3 + 9).unwrap());
        let level1 = tile_hashes(&t, tile(1, 0, 3)).unwrap();
        assert_eq!(hash_span(&hashes).unwrap(), level1[1]);
        assert_eq!(
            tile_hashes(&t, tile(0, 3, 11)),
            Err(TileError::MissingNode(NodeId { height: 0, index: 256 * 3 + 10 }))
        );
        for bad in [tile(0, 0, 0), tile(0, 0, 257), tile(8, 0, 1), tile(0, u64::MAX, 1)] {
            assert_eq!(tile_hashes(&t, bad), Err(TileError::InvalidTile(bad)));
        }
    }

    #[test]
    fn hash_span_needs_a_power_of_two() {
        let x = leaf_hash(b"x");
        assert_eq!(hash_span(&[x]), Ok(x));
        assert_eq!(hash_span(&[x, x]), Ok(node_hash(&x, &x)));
        for len in [0, 3, 6, 255] {
            assert_eq!(hash_span(&vec![x; len]), Err(TileError::NotPowerOfTwo { len }));
        }
    }

    #[test]
    fn node_spans_rebuild_the_tree() {
        let n = (1 << 17) + 1000;
        let t = synthetic_tree(n);
        let mut seed = 0x1234_5678_9abc_def1u64;
        for size in [n, 70_000, 65_536, 65_535, 300, 256, 1] {
            for height in 0..=17u8 {
                let count = size >> height;
                if count == 0 {
                    continue;
                }
                // The ends of the level and a few in between.
                let mut picks = vec![0, count - 1, count / 2];
                for _ in 0..8 {
                    seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    picks.push((seed >> 11) % count);
                }
                for index in picks {
                    let node = NodeId { height, index };
                    let span = node_span(node, size).unwrap();
                    assert_eq!(span.tile.level, height / 8);
                    assert_eq!(span.count, 1 << (height % 8));
                    assert!(u64::from(span.first) + u64::from(span.count) <= u64::from(span.tile.width));
                    assert!(tiles_at(size).contains(&span.tile));
                    let hashes = tile_hashes(&t, span.tile).unwrap();
                    let first = usize::from(span.first);
                    let got = hash_span(&hashes[first..first + usize::from(span.count)]).unwrap();
                    assert_eq!(Some(got), t.node(node), "{node} in {size}");
                }
                let outside = NodeId { height, index: count };
                assert_eq!(node_span(outside, size), Err(TileError::NodeNotInTree { node: outside, size }));
            }
        }
        let top = NodeId { height: 64, index: 0 };
        assert!(node_span(top, u64::MAX).is_err());
        let last = NodeId { height: 0, index: u64::MAX - 1 };
        let span = node_span(last, u64::MAX).unwrap();
        assert_eq!(span.tile, tile(0, (1 << 56) - 1, 255));
        assert_eq!((span.first, span.count), (254, 1));
        let high = NodeId { height: 63, index: 0 };
        let span = node_span(high, u64::MAX).unwrap();
        assert_eq!(span.tile, tile(7, 0, 255));
        assert_eq!((span.first, span.count), (0, 128));
    }
}
