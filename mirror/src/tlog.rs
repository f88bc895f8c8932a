//! Transparency-log endpoints: `/NAME/checkpoint` and the C2SP tlog-tiles
//! paths `/NAME/tile/L/N[.p/W]`, answered from each container's verified
//! tree, so standard witnesses and monitors can follow a release log.
//!
//! Any tile of the latest signed tree can be asked for, full or partial (of
//! any width up to what the tree has), since every hash is held in memory.
//! Entry bundles (`tile/entries/...`) are not served: a dare leaf is a frame
//! header, fetched from the container itself with a range request.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use dare_container::merkle::MemoryTree;
use dare_container::tiles::{TileId, tile_bytes, tile_hashes};

use crate::overlay::{Overlay, OverlayBody};

/// `Cache-Control` of `/NAME/checkpoint`: it changes with every publish, and
/// tlog-tiles asks that it not be cached beyond a few seconds.
pub const CHECKPOINT_CACHE_CONTROL: &str = "max-age=5";
/// `Cache-Control` of a full tile: its hashes never change (tlog-tiles: long
/// lived).
pub const FULL_TILE_CACHE_CONTROL: &str = "max-age=31536000, immutable";
/// `Cache-Control` of a partial tile: its hashes do not change either, but
/// logs may stop serving it once the full tile exists, so caches keep it
/// briefly.
pub const PARTIAL_TILE_CACHE_CONTROL: &str = "max-age=60";

/// One container's verified log: its latest checkpoint note and its tree.
#[derive(Debug)]
struct Log {
    checkpoint: String,
    tree: Arc<MemoryTree>,
    size: u64,
}

/// The logs of the containers a mirror serves, by URL path (`/app.dare`).
#[derive(Clone, Debug, Default)]
pub struct TlogOverlay {
    logs: Arc<RwLock<HashMap<String, Log>>>,
}

impl TlogOverlay {
    /// An overlay with no logs yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Publishes the verified state of the container at URL path `path`:
    /// its latest signed checkpoint note and the tree of its `size` leaves.
    pub fn set(&self, path: &str, checkpoint: String, tree: Arc<MemoryTree>, size: u64) {
        let mut logs = self.logs.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        logs.insert(path.to_string(), Log { checkpoint, tree, size });
    }

    /// Stops serving the log of `path`.
    pub fn remove(&self, path: &str) {
        let mut logs = self.logs.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        logs.remove(path);
    }
}

impl Overlay for TlogOverlay {
    fn lookup(&self, path: &str) -> Option<OverlayBody> {
        // Only paths under a known container: `/NAME/checkpoint`, `/NAME/tile/...`.
        // Every request comes here first: the lock is taken only for those.
        if let Some(name) = path.strip_suffix("/checkpoint") {
            let logs = self.logs.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            return logs
                .get(name)
                .map(|l| OverlayBody::text(l.checkpoint.clone()).cache_control(CHECKPOINT_CACHE_CONTROL));
        }
        let at = path.find("/tile/")?;
        let (name, rest) = path.split_at(at);
        let logs = self.logs.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let log = logs.get(name)?;
        let tile = TileId::parse_path(&rest[1..]).ok()?;
        let have = log.size >> (8 * u32::from(tile.level));
        let end = tile.index.checked_mul(256)?.checked_add(u64::from(tile.width))?;
        // Any tile whose hashes the tree has: full ones, and partial ones of
        // any width (a client following an older checkpoint asks for those).
        if end > have {
            return None;
        }
        let hashes = tile_hashes(&log.tree, tile).ok()?;
        let cache = if tile.is_full() { FULL_TILE_CACHE_CONTROL } else { PARTIAL_TILE_CACHE_CONTROL };
        Some(OverlayBody::binary(tile_bytes(&hashes)).cache_control(cache))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dare_container::merkle::leaf_hash;

    #[test]
    fn serves_checkpoints_and_tiles_of_known_logs_only() {
        let mut tree = MemoryTree::new();
        for i in 0..300u32 {
            tree.push(leaf_hash(&i.to_be_bytes()));
        }
        let o = TlogOverlay::new();
        o.set("/app.dare", "example.com/app\n300\nAAAA\n\n".into(), Arc::new(tree.clone()), 300);
        assert_eq!(o.lookup("/app.dare/checkpoint").unwrap().bytes, "example.com/app\n300\nAAAA\n\n");
        assert_eq!(o.lookup("/app.dare/checkpoint").unwrap().cache_control, Some("max-age=5"));
        assert!(o.lookup("/other.dare/checkpoint").is_none());
        let full = o.lookup("/app.dare/tile/0/000").unwrap();
        assert_eq!(full.bytes.len(), 256 * 32);
        assert_eq!(&full.bytes[..32], &tree.leaf(0).unwrap()[..]);
        assert_eq!(full.cache_control, Some("max-age=31536000, immutable"));
        assert_eq!(o.lookup("/app.dare/tile/0/001.p/44").unwrap().cache_control, Some("max-age=60"));
        assert_eq!(o.lookup("/app.dare/tile/0/001.p/44").unwrap().bytes.len(), 44 * 32);
        assert_eq!(o.lookup("/app.dare/tile/0/001.p/10").unwrap().bytes.len(), 10 * 32);
        assert!(o.lookup("/app.dare/tile/0/001.p/45").is_none());
        assert!(o.lookup("/app.dare/tile/0/001").is_none());
        assert!(o.lookup("/app.dare/tile/1/000.p/1").is_some());
        assert!(o.lookup("/app.dare/tile/0/x001").is_none());
        assert!(o.lookup("/app.dare/tile/../etc").is_none());
    }
}
