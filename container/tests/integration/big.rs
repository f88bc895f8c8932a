//! A container of 70,000 contents, big enough for pages and a level-2 tile:
//! publishing reads only its tail, the seal stays small, the map and its
//! pages find every tile, and `scan` checks the pages.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::support::{T0, TARGETS, frame_at, genesis, key_a, layout, put, put_build, record, scan, trust};
use dare_container::header::{Compression, FileRecord, Header, LeafRef};
use dare_container::map::{Located, TileMap};
use dare_container::tiles;
use dare_container::verify::{Problem, ScanOptions};
use dare_container::{Appender, SealSummary, scan_file};

/// Contents in the first release and in the second.
const FIRST: u64 = 40_000;
const SECOND: u64 = 30_000;

struct Big {
    bytes: Vec<u8>,
    /// The index of each release.
    indexes: Vec<LeafRef>,
    seals: Vec<SealSummary>,
}

fn files(app: &mut Appender, from: u64, to: u64) -> Vec<FileRecord> {
    (from..to)
        .map(|i| {
            let c = i.to_le_bytes();
            let at = put(app, &c, Compression::None).expect("append");
            record(&format!("f/{i:06}"), &c, at, vec![])
        })
        .collect()
}

/// The container, built once for the whole test binary.
fn big() -> &'static Big {
    static BIG: OnceLock<Big> = OnceLock::new();
    BIG.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("big.dare");
        let a = key_a();
        let mut seals = vec![Appender::create(&path, genesis(trust(&[&a], 1)), &[&a], T0).expect("create")];
        let mut indexes = Vec::new();
        for (r, (from, to)) in [(0, FIRST), (FIRST, FIRST + SECOND)].into_iter().enumerate() {
            let mut app = Appender::open(&path).expect("open");
            let list = files(&mut app, from, to);
            indexes.push(app.append_index("stable", TARGETS[r], "1.0.0", &list).expect("index"));
            seals.push(app.seal(&[&a], T0 + 1 + r as u64).expect("seal"));
        }
        Big { bytes: std::fs::read(&path).expect("read"), indexes, seals }
    })
}

/// A copy of the big container in `dir`.
fn copy(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, &big().bytes).expect("write");
    p
}

/// Bytes this thread has read through read(2) and pread(2) so far.
fn thread_reads() -> u64 {
    let io = std::fs::read_to_string("/proc/thread-self/io").expect("Linux per-thread I/O counters");
    io.lines().find_map(|l| l.strip_prefix("rchar: ")).and_then(|n| n.trim().parse().ok()).expect("an rchar line")
}

/// Opens, appends one small build and seals: what a publisher does.
fn publish_small(path: &Path) -> SealSummary {
    let mut app = Appender::open(path).expect("open");
    assert_eq!(app.sealed_len(), big().bytes.len() as u64);
    put_build(&mut app, "stable", TARGETS[2], "1.0.0", "bin/app", b"a small build").expect("append");
    app.seal(&[&key_a()], T0 + 10).expect("seal")
}

#[test]
fn the_container_has_pages_and_scan_checks_them() {
    let b = big();
    let n = b.seals.last().unwrap().size;
    assert_eq!(n, 2 + FIRST + 2 + SECOND + 2);
    let frames = layout(&b.bytes);
    let pages: Vec<_> = frames.iter().filter(|f| f.kind() == "page").collect();
    assert_eq!(pages.len(), 1, "{n} leaves fill one page of level-0 tiles");
    assert!(matches!(pages[0].header, Header::Page(p) if p.level == 0 && p.index == 0));
    assert!(frames.iter().any(|f| matches!(f.header, Header::Tile(t) if t.level == 1 && t.width == 256)));
    assert!(frames.iter().any(|f| matches!(f.header, Header::Tile(t) if t.level == 2)));
    let s = scan(&b.bytes, true).unwrap();
    assert_eq!((s.size(), s.entries.len(), s.indexes.len()), (n, (FIRST + SECOND) as usize, 2));
    // A flipped slot in the page, or the page's offset in the map, is refused.
    let page = pages[0];
    let map = frames.iter().rev().find(|f| f.kind() == "map").unwrap();
    let seal = frames.last().unwrap();
    let frontier = 32 * u64::from((n - 1).count_ones());
    for (what, at, frame) in [
        ("slot 0", page.info.payload_offset + 7, page.index),
        ("slot 1", page.info.payload_offset + 8 + 7, page.index),
        ("slot 255", page.info.payload_offset + 255 * 8 + 6, page.index),
        ("the map's page offset", map.info.payload_offset + frontier + 7, map.index),
    ] {
        let mut bad = b.bytes.clone();
        bad[at as usize] ^= 1;
        let e = scan(&bad, false).expect_err(what);
        assert!(matches!(e.problem, Problem::Map(_)), "{what}: {e}");
        // A bad map is also reported at its seal; `crafted` holds the scanner to the map.
        assert!([frame, seal.index].contains(&e.frame), "{what}: {e}");
        assert_eq!(e.offset, frames[e.frame as usize].info.offset, "{what}: {e}");
    }
}

#[test]
fn every_tile_is_where_the_map_and_its_pages_say() {
    let b = big();
    let s = scan(&b.bytes, false).unwrap();
    let n = s.size();
    let mf = frame_at(&b.bytes, s.last_seal.seal.map.offset);
    let map = TileMap::decode(n, &b.bytes[mf.payload_offset as usize..][..mf.payload_len as usize]).unwrap();
    assert_eq!(map.before, s.tree.frontier_at(n - 1).unwrap());
    let mut paged = 0;
    for t in tiles::tiles_at(n) {
        let want = s.tiles[&(t.level, t.index, t.width)];
        let at = match map.locate(t).unwrap() {
            Located::Tile(at) => at,
            Located::InPage { page, slot } => {
                paged += 1;
                let p = (page + slot * 8) as usize;
                u64::from_be_bytes(b.bytes[p..p + 8].try_into().unwrap())
            }
        };
        assert_eq!(at, want, "{}", t.path());
        let hashes = tiles::tile_hashes(&s.tree, t).unwrap();
        assert_eq!(&b.bytes[at as usize..][..hashes.len() * 32], tiles::tile_bytes(&hashes).as_slice());
    }
    assert_eq!(paged, 256);
    // The map stays small: a frontier, one page offset and a few tile offsets.
    assert!(mf.len() < 1024, "{}", mf.len());
}

#[test]
fn read_index_proves_an_index_through_a_page() {
    let b = big();
    let dir = tempfile::tempdir().unwrap();
    let path = copy(dir.path(), "read.dare");
    let app = Appender::open(&path).unwrap();
    // The first index is leaf 40,002: its tile is listed in the page.
    assert_eq!(b.indexes[0].leaf, 2 + FIRST);
    let (ix, files) = app.read_index(b.indexes[0]).unwrap();
    assert_eq!((ix.target.as_str(), files.len() as u64), (TARGETS[0], FIRST));
    let (_, files2) = app.read_index(b.indexes[1]).unwrap();
    assert_eq!(files2.len() as u64, SECOND);
    assert_eq!(app.entry_bytes(files[123].entry, files[123].sha256, 100).unwrap(), 123u64.to_le_bytes());
    let wrong = LeafRef { leaf: b.indexes[0].leaf - 1, ..b.indexes[0] };
    assert!(matches!(app.read_index(wrong), Err(dare_container::Error::Refused(m)) if m.contains("signed tree")));
}

#[test]
fn publishing_reads_only_the_tail() {
    let b = big();
    let dir = tempfile::tempdir().unwrap();
    let len = b.bytes.len() as u64;
    assert!(len > 15 << 20, "{len}");
    // Counted: open, a small build, seal.
    let path = copy(dir.path(), "counted.dare");
    let before = thread_reads();
    let summary = publish_small(&path);
    let read = thread_reads() - before;
    assert!(read < 64 << 10, "publishing to a {len}-byte container read {read} bytes");
    let published = std::fs::read(&path).unwrap();
    // The seal stays small, and the whole tail is a few KiB.
    let frames = layout(&published);
    assert!(frames.last().unwrap().info.len() < 1024, "a seal of {} bytes", frames.last().unwrap().info.len());
    assert!(summary.appended < 16 << 10, "{} bytes appended", summary.appended);
    assert_eq!(summary.size, b.seals.last().unwrap().size + 3);
    // Zeroed: everything but the genesis and the tail the appender reads.
    let tail =
        frames.iter().filter(|f| f.info.offset < len).rev().take_while(|f| f.kind() != "index").collect::<Vec<_>>();
    let edge = tail
        .iter()
        .filter(|f| matches!(f.header, Header::Tile(t) if t.width < 256))
        .map(|f| f.info.offset)
        .min()
        .unwrap();
    let middle = frames[0].info.end() as usize..edge as usize;
    assert!(middle.len() as u64 > len - (8 << 10), "zeroing {middle:?} of {len}");
    let mut zeroed = b.bytes.clone();
    zeroed[middle.clone()].fill(0);
    let zpath = dir.path().join("zeroed.dare");
    std::fs::write(&zpath, &zeroed).unwrap();
    assert!(scan_file(&zpath, &ScanOptions::default()).is_err(), "the zeroed container does not verify");
    let zsummary = publish_small(&zpath);
    assert_eq!(zsummary, summary);
    // Put the middle back: the same bytes as the counted publish, and they verify, pages included.
    let mut restored = std::fs::read(&zpath).unwrap();
    restored[middle.clone()].copy_from_slice(&b.bytes[middle]);
    assert!(restored == published, "appending to the zeroed copy wrote other bytes");
    let s = scan(&restored, true).unwrap();
    assert_eq!((s.size(), s.seals), (summary.size, 4));
    assert_eq!(s.manifest.releases.len(), 3);
}

/// A publisher asks a witness to cosign the next tree: the consistency
/// proofs from each earlier seal, read from the tiles of the 70,000-leaf
/// container (pages included), verify against the signed roots.
#[test]
fn consistency_proofs_for_witnesses_come_from_the_tiles() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = copy(dir.path(), "cosign.dare");
    let mut app = Appender::open(&path).expect("open");
    put_build(&mut app, "stable", TARGETS[2], "1.0.0", "bin/app", b"a small build").expect("append");
    let seals = big().seals.clone();
    let mut asked = 0;
    let summary = app
        .seal_cosigned(&[&key_a()], T0 + 10, &mut |req| {
            assert_eq!(req.previous_size(), seals.last().unwrap().size);
            for old in &seals {
                let proof = req.consistency_proof(old.size)?;
                let new_root = dare_container::note::Checkpoint::parse(req.note().text()).unwrap().root;
                dare_container::merkle::verify_consistency(old.size, req.size(), &old.root, &new_root, &proof)
                    .expect("the proof verifies");
                asked += 1;
            }
            assert!(req.consistency_proof(req.size() + 1).is_err());
            Ok(Vec::new())
        })
        .expect("seal");
    assert_eq!(asked, seals.len());
    // An entry, an index and the manifest.
    assert_eq!(summary.size, seals.last().unwrap().size + 3);
}
