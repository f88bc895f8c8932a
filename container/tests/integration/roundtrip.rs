//! Containers written by the appender read back whole: every content once,
//! every delta, every build's index and listing, the manifest, the seals,
//! the tree, its tiles and the map that finds them.

use std::collections::{BTreeMap, HashSet};

use crate::support::{Builder, Forge, Op, T0, digest, frame_at, genesis, key_a, layout, trust};
use dare_container::content;
use dare_container::header::{Compression, Header};
use dare_container::map::{Located, TileMap};
use dare_container::merkle::MemoryTree;
use dare_container::tiles;
use dare_container::verify::{ScanOptions, Stored, Tail};
use dare_container::{Appender, scan_file, verify_file};

fn payloads() -> ScanOptions {
    ScanOptions { payloads: true, pins: None }
}

#[test]
fn scan_finds_every_content_and_delta_with_its_payload() {
    let f = Builder::default().build();
    let bytes = f.bytes();
    let scan = scan_file(&f.path, &payloads()).unwrap();
    let stored: Vec<&Op> = f.ops.iter().filter(|o| matches!(o, Op::Entry { .. } | Op::Delta { .. })).collect();
    assert_eq!(scan.entries.len(), stored.len());
    for (rec, op) in scan.entries.iter().zip(stored) {
        match (op, &rec.stored) {
            (Op::Entry { content: c, compression, at }, Stored::Entry(e)) => {
                assert_eq!((rec.leaf, rec.frame.offset, rec.frame.len()), (at.leaf, at.offset, at.length));
                assert_eq!(e.compression, *compression);
                assert_eq!(content::entry_content(bytes.as_slice(), &rec.frame, e, Vec::new()).unwrap(), *c);
            }
            (Op::Delta { base, content: c, at }, Stored::Delta(d)) => {
                assert_eq!((rec.leaf, rec.frame.offset, rec.frame.len()), (at.leaf, at.offset, at.length));
                assert_eq!((d.base, d.sha256), (digest(base), digest(c)));
                let out = content::delta_content(bytes.as_slice(), &rec.frame, d, base, Vec::new()).unwrap();
                assert_eq!(out, *c);
            }
            (op, s) => panic!("leaf {}: appended {op:?}, scanned {s:?}", rec.leaf),
        }
    }
    // Both compressions, deltas, and content shared between builds are exercised.
    let compressions: HashSet<Compression> = f
        .ops
        .iter()
        .filter_map(|o| match o {
            Op::Entry { compression, .. } => Some(*compression),
            _ => None,
        })
        .collect();
    assert_eq!(compressions.len(), 2);
    assert!(f.deltas() > 0);
    let files: usize = f.builds.iter().map(|b| b.files.len()).sum();
    assert!(f.entries() < files, "{} entries for {files} files", f.entries());
}

#[test]
fn every_build_has_an_index_listing_its_files_and_each_content_is_stored_once() {
    let f = Builder::default().build();
    let bytes = f.bytes();
    let scan = scan_file(&f.path, &ScanOptions::default()).unwrap();
    assert_eq!(scan.indexes.len(), f.builds.len());
    for (ix, b) in scan.indexes.iter().zip(&f.builds) {
        assert_eq!(ix.at(), b.index);
        assert_eq!((&ix.index.channel, &ix.index.target, &ix.index.version), (&b.channel, &b.target, &b.version));
        assert_eq!(ix.index.files, b.files.len() as u64);
        assert_eq!(ix.files, b.files);
        // `previous` names the build before it on the same channel and target.
        let prev = f
            .builds
            .iter()
            .take_while(|p| p.index != b.index)
            .filter(|p| (&p.channel, &p.target) == (&b.channel, &b.target))
            .last();
        assert_eq!(ix.index.previous, prev.map(|p| p.index));
        // Each file's content comes out of its entry, and each delta makes it from its base.
        for rec in &ix.files {
            let e = scan.entry(rec.entry.leaf).expect("the entry is in the scan");
            let Stored::Entry(h) = &e.stored else { panic!("{} names a delta as its entry", rec.path) };
            let c = content::entry_content(bytes.as_slice(), &e.frame, h, Vec::new()).unwrap();
            assert_eq!((digest(&c), c.len() as u64), (rec.sha256, rec.size));
            assert_eq!(&c, &b.contents[&rec.path]);
        }
    }
    // One entry per distinct content.
    let distinct: HashSet<_> = f.builds.iter().flat_map(|b| b.files.iter().map(|r| r.sha256)).collect();
    assert_eq!(f.entries(), distinct.len());
    let stored: Vec<_> =
        scan.entries.iter().filter(|e| matches!(e.stored, Stored::Entry(_))).map(|e| e.stored.sha256()).collect();
    assert_eq!(stored.len(), distinct.len());
    // The shared file of a release is one entry for every build of it.
    let r1: HashSet<_> = f
        .builds
        .iter()
        .filter(|b| b.release == 1)
        .map(|b| b.files.iter().find(|r| r.path == "share/doc/README").unwrap().entry)
        .collect();
    assert_eq!(r1.len(), 1);
}

#[test]
fn manifest_names_the_newest_build_of_every_channel_and_target() {
    let b = Builder::default();
    let f = b.build();
    let scan = scan_file(&f.path, &ScanOptions::default()).unwrap();
    let mut newest: BTreeMap<(String, String), (String, dare_container::header::LeafRef)> = BTreeMap::new();
    for build in &f.builds {
        newest.insert((build.channel.clone(), build.target.clone()), (build.version.clone(), build.index));
    }
    let listed: BTreeMap<_, _> = scan
        .manifest
        .releases
        .iter()
        .map(|r| ((r.channel.clone(), r.target.clone()), (r.version.clone(), r.index)))
        .collect();
    assert_eq!(listed, newest);
    assert_eq!(scan.manifest.release("stable", crate::support::TARGETS[2]).unwrap().version, "1.2.0");
    assert_eq!(scan.manifest.release("beta", crate::support::TARGETS[0]).unwrap().version, "2.2.0-beta");
    assert_eq!(scan.manifest.releases.len(), b.targets + 1);
    assert_eq!(scan.manifest.keys, None);
    // Scan::index finds the newest build or a given version.
    let linux = crate::support::TARGETS[0];
    assert_eq!(scan.index("stable", linux, None).unwrap().index.version, "1.2.0");
    assert_eq!(scan.index("stable", linux, Some("1.1.0")).unwrap().index.version, "1.1.0");
    assert!(scan.index("stable", linux, Some("9.9.9")).is_none());
    assert!(scan.index("nightly", linux, None).is_none());
    // The manifest is the last leaf, named by the last seal.
    assert_eq!(scan.manifest_frame.offset, scan.last_seal.seal.manifest.offset);
}

#[test]
fn seals_tree_size_and_tail_add_up() {
    let b = Builder::default();
    let f = b.build();
    let scan = scan_file(&f.path, &ScanOptions::default()).unwrap();
    let leaves = f.ops.iter().filter(|o| !matches!(o, Op::Seal { .. })).count();
    let size = 2 + leaves + b.releases;
    assert_eq!(scan.size(), size as u64);
    assert_eq!(scan.seals, b.releases as u64 + 1);
    let last = f.seals.last().unwrap();
    assert_eq!((last.size, last.len), (size as u64, f.bytes().len() as u64));
    assert_eq!(scan.last_seal.checkpoint.root, last.root);
    assert_eq!(scan.last_seal.checkpoint.size, last.size);
    assert_eq!(scan.last_seal.seal.time, T0 + 1000 * b.releases as u64);
    assert_eq!(scan.last_seal.signers, vec![key_a().verifier()]);
    assert_eq!((scan.sealed_len, scan.file_len), (last.len, last.len));
    assert_eq!(scan.tail, Tail::Clean);
    let frames = layout(&f.bytes());
    assert_eq!(scan.frames, frames.len() as u64);
    // Every SealSummary names a seal frame ending where it says, whose map
    // is for its tree and whose manifest is the frame before it.
    for s in &f.seals {
        let i = frames.iter().position(|fr| fr.info.end() == s.len).expect("a frame ends at every seal");
        let Header::Seal(h) = &frames[i].header else { panic!("frame {i} is a {}", frames[i].kind()) };
        assert_eq!((&h.checkpoint, h.time), (&s.checkpoint, s.time));
        let m = &frames[i - 1];
        assert_eq!((m.kind(), m.info.offset, m.info.len()), ("manifest", h.manifest.offset, h.manifest.length));
        let map = &frames[i - 2];
        assert!(matches!(map.header, Header::Map(m) if m.size == s.size), "{map:?}");
        assert_eq!((map.info.offset, map.info.len()), (h.map.offset, h.map.length));
    }
}

#[test]
fn verify_file_walks_backward_and_agrees_with_the_forward_scan() {
    let f = Builder::default().build();
    let fwd = scan_file(&f.path, &payloads()).unwrap();
    let both = verify_file(&f.path, &payloads()).unwrap();
    assert!(!fwd.walked_backward);
    assert!(both.walked_backward);
    assert_eq!(
        (both.size(), both.frames, both.sealed_len, both.seals),
        (fwd.size(), fwd.frames, fwd.sealed_len, fwd.seals)
    );
    assert_eq!(both.manifest, fwd.manifest);
}

#[test]
fn a_tree_of_600_leaves_has_every_tile_of_every_level_and_the_map_finds_them() {
    // 3 releases of 3 builds of 66 tiny files: some 600 leaves, two full level-0 tiles.
    let b = Builder { releases: 3, targets: 3, files: 66, size: 4, beta: false, deltas: false };
    let f = b.build();
    let bytes = f.bytes();
    let scan = verify_file(&f.path, &payloads()).unwrap();
    let size = scan.size();
    assert!((512..768).contains(&size), "{size}");
    let want = tiles::tiles_at(size);
    assert!(want.iter().any(|t| t.level == 1), "{want:?}");
    assert_eq!(want.iter().filter(|t| t.level == 0 && t.is_full()).count(), 2);
    for t in &want {
        let at = *scan.tiles.get(&(t.level, t.index, t.width)).unwrap_or_else(|| panic!("no tile {}", t.path()));
        let hashes = tiles::tile_hashes(&scan.tree, *t).unwrap();
        assert_eq!(&bytes[at as usize..][..hashes.len() * 32], tiles::tile_bytes(&hashes).as_slice(), "{}", t.path());
    }
    // The last seal's map holds the frontier before the manifest and every tile's place.
    let seal = &scan.last_seal.seal;
    let mf = frame_at(&bytes, seal.map.offset);
    let map = TileMap::decode(size, &bytes[mf.payload_offset as usize..][..mf.payload_len as usize]).unwrap();
    assert_eq!(map.before, scan.tree.frontier_at(size - 1).unwrap());
    for t in &want {
        assert_eq!(map.locate(*t).unwrap(), Located::Tile(scan.tiles[&(t.level, t.index, t.width)]), "{}", t.path());
    }
    // Full tiles are written once, when they fill.
    let full0: Vec<u64> = layout(&bytes)
        .iter()
        .filter_map(|fr| match &fr.header {
            Header::Tile(t) if t.level == 0 && t.width == 256 => Some(t.index),
            _ => None,
        })
        .collect();
    assert_eq!(full0, vec![0, 1]);
}

#[test]
fn the_tree_is_the_leaves_in_file_order() {
    let f = Builder::default().build();
    let bytes = f.bytes();
    let mut tree = MemoryTree::new();
    let mut kinds = BTreeMap::new();
    for fr in layout(&bytes) {
        if fr.header.is_leaf() {
            let h = dare_container::frame::read_header(bytes.as_slice(), &fr.info).unwrap();
            tree.push(dare_container::merkle::leaf_hash(&h));
            *kinds.entry(fr.kind()).or_insert(0) += 1;
        }
    }
    let scan = scan_file(&f.path, &ScanOptions::default()).unwrap();
    assert_eq!(tree.size(), scan.size());
    assert_eq!(tree.root_at(tree.size()).unwrap(), scan.last_seal.checkpoint.root);
    assert_eq!(
        kinds,
        BTreeMap::from([
            ("delta", f.deltas()),
            ("entry", f.entries()),
            ("genesis", 1),
            ("index", f.builds.len()),
            ("manifest", f.seals.len())
        ])
    );
}

#[test]
fn same_inputs_keys_and_times_give_identical_bytes() {
    let b = Builder { releases: 2, ..Builder::default() };
    assert_eq!(b.build().bytes(), b.build().bytes());
}

#[test]
fn an_independent_writer_produces_the_appenders_bytes() {
    let b = Builder { releases: 3, targets: 2, files: 3, size: 300, beta: true, deltas: true };
    let f = b.build();
    let a = key_a();
    let mut forge = Forge::with_genesis(&genesis(trust(&[&a], 1)));
    forge.manifest();
    forge.seal(&[&a], T0);
    for op in &f.ops {
        match op {
            Op::Entry { content, compression, at } => assert_eq!(forge.put(content, *compression), *at),
            Op::Delta { base, content, at } => assert_eq!(forge.put_delta(base, content).at(), *at),
            Op::Index { channel, target, version, files, at } => {
                assert_eq!(forge.index(channel, target, version, files), *at)
            }
            Op::Seal { time } => {
                forge.manifest();
                forge.seal(&[&a], *time);
            }
        }
    }
    assert!(f.deltas() > 0);
    assert_eq!(forge.bytes, f.bytes());
}

#[test]
fn large_and_empty_payloads_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.dare");
    let a = key_a();
    Appender::create(&path, genesis(trust(&[&a], 1)), &[&a], T0).unwrap();
    let big = crate::support::content(42, 2_500_000);
    let mut big2 = big.clone();
    big2[2_000_000..2_000_010].copy_from_slice(b"0123456789");
    let mut app = Appender::open(&path).unwrap();
    let t = crate::support::TARGETS[0];
    let e1 = crate::support::put(&mut app, &big, Compression::None).unwrap();
    let e2 = crate::support::put(&mut app, &big2, Compression::Zstd).unwrap();
    let e3 = crate::support::put(&mut app, b"", Compression::None).unwrap();
    let d = crate::support::put_delta(&mut app, &big, &big2).unwrap();
    let files = vec![
        crate::support::record("big.bin", &big, e1, vec![]),
        crate::support::record("big.zst", &big2, e2, vec![d]),
        crate::support::record("empty", b"", e3, vec![]),
    ];
    app.append_index("stable", t, "1.0.0", &files).unwrap();
    app.seal(&[&a], T0 + 1).unwrap();
    let scan = verify_file(&path, &payloads()).unwrap();
    let sizes: Vec<(u64, u64)> = scan
        .entries
        .iter()
        .map(|e| match &e.stored {
            Stored::Entry(h) => (h.size, e.frame.payload_len),
            Stored::Delta(h) => (h.size, e.frame.payload_len),
        })
        .collect();
    assert_eq!(sizes[0], (2_500_000, 2_500_000));
    assert_eq!(sizes[1].0, 2_500_000);
    assert!(sizes[1].1 < 2_500_000);
    assert_eq!(sizes[2], (0, 0));
    assert_eq!(sizes[3].0, 2_500_000);
    assert!(sizes[3].1 < 1000, "a 10-byte change is a small delta: {}", sizes[3].1);
    // A flipped byte near the end of each big payload is found, naming its frame.
    let bytes = std::fs::read(&path).unwrap();
    for e in [&scan.entries[0], &scan.entries[1], &scan.entries[3]] {
        let mut bad = bytes.clone();
        bad[(e.frame.payload_offset + e.frame.payload_len - 10) as usize] ^= 1;
        let err = crate::support::scan(&bad, true).unwrap_err();
        assert!(matches!(err.problem, dare_container::verify::Problem::Payload(_)), "{err}");
        assert_eq!(err.offset, e.frame.offset);
    }
    // An empty content stored compressed.
    let path = dir.path().join("empty.dare");
    Appender::create(&path, genesis(trust(&[&a], 1)), &[&a], T0).unwrap();
    let mut app = Appender::open(&path).unwrap();
    crate::support::put_build(&mut app, "stable", t, "1.0.0", "empty.zst", b"").unwrap();
    app.seal(&[&a], T0 + 1).unwrap();
    let scan = verify_file(&path, &payloads()).unwrap();
    assert!(matches!(&scan.entries[0].stored, Stored::Entry(e) if e.size == 0 && e.compression == Compression::Zstd));
}
