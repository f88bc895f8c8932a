//! Containers written by the appender read back whole: every entry, the
//! manifest, the seals, the tree and its tiles.

mod support;

use std::collections::BTreeMap;

use dare_container::header::{Compression, Header};
use dare_container::merkle::MemoryTree;
use dare_container::tiles;
use dare_container::verify::{ScanOptions, Tail};
use dare_container::{scan_file, verify_file};
use support::{Builder, Forge, T0, genesis, key_a, layout, trust};

#[test]
fn scan_finds_every_entry_with_its_payload() {
    let f = Builder::default().build();
    let bytes = f.bytes();
    let scan = scan_file(&f.path, &ScanOptions { payloads: true, pins: None }).unwrap();
    assert_eq!(scan.entries.len(), f.files.len());
    for (rec, p) in scan.entries.iter().zip(&f.files) {
        let e = &rec.entry;
        assert_eq!((&e.channel, &e.target, &e.version, &e.path), (&p.channel, &p.target, &p.version, &p.path));
        assert_eq!(e.compression, p.compression);
        assert_eq!(rec.leaf, p.at.leaf);
        assert_eq!((rec.frame.offset, rec.frame.len()), (p.at.offset, p.at.length));
        let stored = &bytes[rec.frame.payload_offset as usize..][..rec.frame.payload_len as usize];
        let content = match e.compression {
            Compression::None => stored.to_vec(),
            Compression::Zstd => zstd::decode_all(stored).unwrap(),
        };
        assert_eq!(content, p.content, "{} {}", p.target, p.path);
    }
    // Both compressions are exercised.
    assert!(f.files.iter().any(|p| p.compression == Compression::None));
    assert!(f.files.iter().any(|p| p.compression == Compression::Zstd));
}

#[test]
fn manifest_lists_the_newest_release_of_every_channel_and_target() {
    let b = Builder::default();
    let f = b.build();
    let scan = scan_file(&f.path, &ScanOptions::default()).unwrap();
    let mut newest: BTreeMap<(String, String), (String, Vec<u64>)> = BTreeMap::new();
    for p in &f.files {
        let slot = newest.entry((p.channel.clone(), p.target.clone())).or_default();
        if slot.0 != p.version {
            *slot = (p.version.clone(), Vec::new());
        }
        slot.1.push(p.at.leaf);
    }
    let listed: BTreeMap<_, _> = scan
        .manifest
        .releases
        .iter()
        .map(|r| {
            ((r.channel.clone(), r.target.clone()), (r.version.clone(), r.entries.iter().map(|e| e.leaf).collect()))
        })
        .collect();
    assert_eq!(listed, newest);
    assert_eq!(scan.manifest.release("stable", support::TARGETS[2]).unwrap().version, "1.2.0");
    assert_eq!(scan.manifest.release("beta", support::TARGETS[0]).unwrap().version, "2.2.0-beta");
    assert_eq!(scan.manifest.releases.len(), b.targets + 1);
    // The manifest is the last leaf.
    assert_eq!(scan.manifest_frame.offset, scan.last_seal.seal.manifest.offset);
}

#[test]
fn seals_tree_size_and_tail_add_up() {
    let b = Builder::default();
    let f = b.build();
    let scan = scan_file(&f.path, &ScanOptions::default()).unwrap();
    let per_release = (b.targets + usize::from(b.beta)) * b.files + 1;
    let size = 2 + b.releases * per_release;
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
    assert_eq!(scan.frames, layout(&f.bytes()).len() as u64);
    // Every SealSummary names a seal frame ending where it says.
    let frames = layout(&f.bytes());
    for s in &f.seals {
        let seal = frames.iter().find(|fr| fr.info.end() == s.len).expect("a frame ends at every seal");
        assert_eq!(seal.kind(), "seal");
        let Header::Seal(h) = &seal.header else { unreachable!() };
        assert_eq!(h.checkpoint, s.checkpoint);
        assert_eq!(h.time, s.time);
    }
}

#[test]
fn verify_file_walks_backward_and_agrees_with_the_forward_scan() {
    let f = Builder::default().build();
    let fwd = scan_file(&f.path, &ScanOptions { payloads: true, pins: None }).unwrap();
    let both = verify_file(&f.path, &ScanOptions { payloads: true, pins: None }).unwrap();
    assert!(!fwd.walked_backward);
    assert!(both.walked_backward);
    assert_eq!(
        (both.size(), both.frames, both.sealed_len, both.seals),
        (fwd.size(), fwd.frames, fwd.sealed_len, fwd.seals)
    );
    assert_eq!(both.manifest, fwd.manifest);
}

#[test]
fn a_tree_of_600_leaves_has_every_tile_of_every_level() {
    // 3 releases of 198 tiny entries: 599 leaves, two full level-0 tiles.
    let b = Builder { releases: 3, targets: 3, files: 66, size: 4, beta: false };
    let f = b.build();
    let bytes = f.bytes();
    let scan = verify_file(&f.path, &ScanOptions { payloads: true, pins: None }).unwrap();
    let size = scan.size();
    assert_eq!(size, 599);
    let want = tiles::tiles_at(size);
    assert!(want.iter().any(|t| t.level == 1), "{want:?}");
    assert_eq!(want.iter().filter(|t| t.level == 0 && t.is_full()).count(), 2);
    for t in &want {
        let at = *scan.tiles.get(&(t.level, t.index, t.width)).unwrap_or_else(|| panic!("no tile {}", t.path()));
        let hashes = tiles::tile_hashes(&scan.tree, *t).unwrap();
        assert_eq!(&bytes[at as usize..][..hashes.len() * 32], tiles::tile_bytes(&hashes).as_slice(), "{}", t.path());
    }
    // The seal lists them level by level.
    let listed: Vec<u64> = scan.last_seal.seal.tiles.iter().flatten().copied().collect();
    let expected: Vec<u64> = want.iter().map(|t| scan.tiles[&(t.level, t.index, t.width)]).collect();
    assert_eq!(listed, expected);
    // Full tiles are written once, when they fill.
    let frames = layout(&bytes);
    let full0: Vec<_> = frames
        .iter()
        .filter(|fr| matches!(&fr.header, Header::Tile(t) if t.level == 0 && t.width == 256))
        .map(|fr| match &fr.header {
            Header::Tile(t) => t.index,
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(full0, vec![0, 1]);
}

#[test]
fn the_tree_is_the_leaves_in_file_order() {
    let f = Builder::default().build();
    let bytes = f.bytes();
    let mut tree = MemoryTree::new();
    for fr in layout(&bytes) {
        if fr.header.is_leaf() {
            let h = dare_container::frame::read_header(bytes.as_slice(), &fr.info).unwrap();
            tree.push(dare_container::merkle::leaf_hash(&h));
        }
    }
    let scan = scan_file(&f.path, &ScanOptions::default()).unwrap();
    assert_eq!(tree.size(), scan.size());
    assert_eq!(tree.root_at(tree.size()).unwrap(), scan.last_seal.checkpoint.root);
}

#[test]
fn same_inputs_keys_and_times_give_identical_bytes() {
    let b = Builder { releases: 2, ..Builder::default() };
    assert_eq!(b.build().bytes(), b.build().bytes());
}

#[test]
fn an_independent_writer_produces_the_appenders_bytes() {
    let b = Builder { releases: 2, targets: 2, files: 3, size: 300, beta: true };
    let f = b.build();
    let a = key_a();
    let mut forge = Forge::with_genesis(&genesis(trust(&[&a], 1)));
    forge.manifest();
    forge.seal(&[&a], T0);
    for r in 0..b.releases {
        for p in f.files.iter().filter(|p| p.version.contains(&format!(".{r}.0"))) {
            let (e, stored) = support::entry(&p.target, &p.version, &p.channel, &p.path, &p.content, p.compression);
            let at = forge.entry(&e, &stored);
            assert_eq!(at, p.at);
        }
        forge.manifest();
        forge.seal(&[&a], T0 + 1000 * (r as u64 + 1));
    }
    assert_eq!(forge.bytes, f.bytes());
}

#[test]
fn large_and_empty_payloads_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.dare");
    let a = key_a();
    dare_container::Appender::create(&path, genesis(trust(&[&a], 1)), &[&a], T0).unwrap();
    let big = support::content(42, 2_500_000);
    let mut app = dare_container::Appender::open(&path, false).unwrap();
    let t = support::TARGETS[0];
    support::append(&mut app, t, "1.0.0", "stable", "big.bin", &big, Compression::None).unwrap();
    support::append(&mut app, t, "1.0.0", "stable", "big.zst", &big, Compression::Zstd).unwrap();
    support::append(&mut app, t, "1.0.0", "stable", "empty", b"", Compression::None).unwrap();
    support::append(&mut app, t, "1.0.0", "stable", "empty.zst", b"", Compression::Zstd).unwrap();
    app.seal(&[&a], T0 + 1).unwrap();
    let scan = verify_file(&path, &ScanOptions { payloads: true, pins: None }).unwrap();
    let sizes: Vec<(u64, u64)> = scan.entries.iter().map(|e| (e.entry.size, e.frame.payload_len)).collect();
    assert_eq!(sizes[0], (2_500_000, 2_500_000));
    assert_eq!(sizes[1].0, 2_500_000);
    assert_eq!(sizes[2], (0, 0));
    assert_eq!(sizes[3].0, 0);
    // A flipped byte past the first megabyte of each big payload is found.
    let bytes = std::fs::read(&path).unwrap();
    for e in &scan.entries[..2] {
        let mut bad = bytes.clone();
        bad[(e.frame.payload_offset + e.frame.payload_len - 10) as usize] ^= 1;
        let err = support::scan(&bad, true).unwrap_err();
        assert!(matches!(err.problem, dare_container::verify::Problem::Payload(_)), "{err}");
        assert_eq!(err.offset, e.frame.offset);
    }
}
