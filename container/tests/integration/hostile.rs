//! Hostile containers: flipped bytes, truncation, garbage, wrong keys and
//! hand-crafted frames that break the log's rules. Each test names the exact
//! problem and the frame (index and byte offset) the scanner must report,
//! computed from the container's frame layout.

use std::ops::Range;

use crate::support::{Builder, Fixture, Framed, T0, key_a, key_b, layout, problem_kind, scan};
use dare_container::frame::read_header;
use dare_container::header::{Compression, Header, Seal};
use dare_container::merkle::{MemoryTree, leaf_hash};
use dare_container::note::{Checkpoint, Note, NoteError};
use dare_container::verify::{Problem, ScanOptions, Tail, VerifyError, walk_backward};
use dare_container::{scan_file, verify_file};

/// Three releases of three targets (plus beta) with two files each, changed
/// files getting deltas.
fn fixture() -> Fixture {
    Builder { releases: 3, targets: 3, files: 2, size: 40, beta: true, deltas: true }.build()
}

fn flipped(bytes: &[u8], at: u64, mask: u8) -> Vec<u8> {
    let mut b = bytes.to_vec();
    b[at as usize] ^= mask;
    b
}

fn header_range(f: &Framed) -> Range<u64> {
    f.info.header_offset..f.info.header_offset + f.info.header_len
}

fn payload_range(f: &Framed) -> Range<u64> {
    f.info.payload_offset..f.info.payload_offset + f.info.payload_len
}

/// Frame index of the first seal at or after `index`.
fn next_seal(frames: &[Framed], index: u64) -> u64 {
    frames.iter().find(|f| f.index >= index && f.kind() == "seal").expect("a seal follows").index
}

/// The frames of release `r` (0 = the create), by kind.
struct Release<'a> {
    frames: &'a [Framed],
}

impl<'a> Release<'a> {
    fn of_kind(&self, kind: &str) -> Vec<&'a Framed> {
        self.frames.iter().filter(|f| f.kind() == kind).collect()
    }

    fn entry(&self, compression: Compression) -> &'a Framed {
        self.frames
            .iter()
            .find(|f| matches!(&f.header, Header::Entry(e) if e.compression == compression))
            .expect("an entry with that compression")
    }

    /// The index with the most files and deltas.
    fn index(&self) -> &'a Framed {
        self.of_kind("index").into_iter().max_by_key(|f| f.info.payload_len).expect("an index")
    }
}

fn release(frames: &[Framed], r: usize) -> Release<'_> {
    let seals: Vec<usize> = frames.iter().filter(|f| f.kind() == "seal").map(|f| f.index as usize).collect();
    let start = if r == 0 { 0 } else { seals[r - 1] + 1 };
    Release { frames: &frames[start..=seals[r]] }
}

fn assert_names(err: &VerifyError, frames: &[Framed], index: u64, what: &str) {
    assert_eq!(err.frame, index, "{what}: {err}");
    assert_eq!(err.offset, frames[index as usize].info.offset, "{what}: {err}");
}

/// Flips every byte of `frame`'s header with every mask: the scan must fail,
/// naming a frame between the flipped one and the seal that covers it (its
/// index and offset agreeing with the layout), and never panic. Returns the
/// flips whose error names another frame than the flipped one.
fn every_header_flip_fails_within_its_release(
    bytes: &[u8],
    frames: &[Framed],
    frame: &Framed,
    masks: &[u8],
    payloads: bool,
) -> Vec<String> {
    let seal = next_seal(frames, frame.index);
    let mut imprecise = Vec::new();
    for at in header_range(frame) {
        for &mask in masks {
            let bad = flipped(bytes, at, mask);
            let err = match scan(&bad, payloads) {
                Ok(s) => panic!(
                    "flipping byte {at} ({:?}) with {mask:#04x} in frame {} passed: size {}, tail {:?}",
                    bytes[at as usize] as char,
                    frame.index,
                    s.size(),
                    s.tail
                ),
                Err(e) => e,
            };
            assert!(
                (frame.index..=seal).contains(&err.frame),
                "byte {at} mask {mask:#04x}: error names frame {} outside {}..={seal}: {err}",
                err.frame,
                frame.index
            );
            assert_eq!(err.offset, frames[err.frame as usize].info.offset, "{err}");
            if err.frame != frame.index {
                imprecise.push(format!(
                    "byte {} ({:?}^{mask:#04x}) -> frame {} {}: {err}",
                    at - frame.info.header_offset,
                    bytes[at as usize] as char,
                    err.frame,
                    problem_kind(&err.problem)
                ));
            }
        }
    }
    imprecise
}

#[test]
fn every_flip_in_a_genesis_or_entry_header_fails_within_its_release() {
    let f = fixture();
    let bytes = f.bytes();
    let frames = layout(&bytes);
    let r1 = release(&frames, 1);
    for frame in [&frames[0], r1.entry(Compression::None), r1.entry(Compression::Zstd)] {
        every_header_flip_fails_within_its_release(&bytes, &frames, frame, &[0x01, 0x80], false);
    }
    // Checking payloads too changes which check fires first for a zstd entry.
    every_header_flip_fails_within_its_release(&bytes, &frames, r1.entry(Compression::Zstd), &[0x01], true);
}

#[test]
fn every_flip_in_a_manifest_header_names_the_manifest() {
    let f = fixture();
    let bytes = f.bytes();
    let frames = layout(&bytes);
    for (r, masks) in [(1, &[0x01, 0x80][..]), (3, &[0x01][..])] {
        let m = release(&frames, r).of_kind("manifest")[0];
        let imprecise = every_header_flip_fails_within_its_release(&bytes, &frames, m, masks, false);
        assert!(imprecise.is_empty(), "release {r}:\n{}", imprecise.join("\n"));
    }
}

#[test]
fn every_flip_in_an_entry_header_names_the_entry() {
    let f = fixture();
    let bytes = f.bytes();
    let frames = layout(&bytes);
    let r1 = release(&frames, 1);
    for e in [r1.entry(Compression::None), r1.entry(Compression::Zstd)] {
        let imprecise = every_header_flip_fails_within_its_release(&bytes, &frames, e, &[0x01], false);
        assert!(imprecise.is_empty(), "entry frame {}:\n{}", e.index, imprecise.join("\n"));
    }
}

#[test]
fn every_flip_in_an_index_header_names_the_index() {
    let f = fixture();
    let bytes = f.bytes();
    let frames = layout(&bytes);
    for r in [1, 2] {
        let ix = release(&frames, r).index();
        let Header::Index(h) = &ix.header else { unreachable!() };
        assert_eq!(h.previous.is_some(), r > 1);
        let imprecise = every_header_flip_fails_within_its_release(&bytes, &frames, ix, &[0x01], false);
        assert!(imprecise.is_empty(), "release {r}, index frame {}:\n{}", ix.index, imprecise.join("\n"));
    }
}

#[test]
fn every_flip_in_a_delta_header_names_the_delta() {
    let f = fixture();
    let bytes = f.bytes();
    let frames = layout(&bytes);
    let d = release(&frames, 2).of_kind("delta")[0];
    for payloads in [false, true] {
        let imprecise = every_header_flip_fails_within_its_release(&bytes, &frames, d, &[0x01], payloads);
        assert!(imprecise.is_empty(), "delta frame {}:\n{}", d.index, imprecise.join("\n"));
    }
}

#[test]
fn every_flip_in_the_genesis_header_names_frame_0() {
    let f = fixture();
    let bytes = f.bytes();
    let frames = layout(&bytes);
    let imprecise = every_header_flip_fails_within_its_release(&bytes, &frames, &frames[0], &[0x01], false);
    assert!(imprecise.is_empty(), "{}", imprecise.join("\n"));
}

#[test]
fn payload_flips_fail_the_payload_check_and_pass_a_structure_only_scan() {
    let f = fixture();
    let bytes = f.bytes();
    let frames = layout(&bytes);
    let r2 = release(&frames, 2);
    for e in [r2.entry(Compression::None), r2.entry(Compression::Zstd), r2.of_kind("delta")[0]] {
        assert!(e.info.payload_len > 0);
        for at in payload_range(e) {
            let bad = flipped(&bytes, at, 0x01);
            let err = scan(&bad, true).expect_err("a flipped payload byte fails the payload check");
            assert!(matches!(err.problem, Problem::Payload(_)), "byte {at}: {err}");
            assert_names(&err, &frames, e.index, "payload");
            // Documented: without payloads the scan checks structure, headers,
            // tree and seals only, and the payload is not read.
            let s = scan(&bad, false).expect("a structure-only scan does not read payloads");
            assert_eq!((s.size(), s.tail.clone()), (f.seals.last().unwrap().size, Tail::Clean));
        }
    }
}

#[test]
fn index_payload_flips_fail_even_a_structure_only_scan_naming_the_index() {
    let f = fixture();
    let bytes = f.bytes();
    let frames = layout(&bytes);
    let ix = release(&frames, 2).index();
    let Header::Index(h) = &ix.header else { unreachable!() };
    assert_eq!(h.compression, Compression::Zstd);
    for at in payload_range(ix) {
        let err = scan(&flipped(&bytes, at, 0x01), false).expect_err("a flipped listing byte fails");
        assert!(matches!(err.problem, Problem::Payload(_)), "byte {at}: {err}");
        assert_names(&err, &frames, ix.index, "listing");
    }
}

#[test]
fn map_flips_fail_at_the_map_or_its_seal() {
    let f = fixture();
    let bytes = f.bytes();
    let frames = layout(&bytes);
    for r in [1, 3] {
        let map = release(&frames, r).of_kind("map")[0];
        let seal = release(&frames, r).of_kind("seal")[0];
        for at in payload_range(map) {
            let err = scan(&flipped(&bytes, at, 0x01), false).expect_err("a flipped map byte fails");
            assert!(matches!(err.problem, Problem::Map(_)), "byte {at}: {err}");
            // The map is the bad frame; `crafted` holds the scanner to naming it.
            assert!([map.index, seal.index].contains(&err.frame), "byte {at}: {err}");
            assert_eq!(err.offset, frames[err.frame as usize].info.offset);
        }
    }
}

#[test]
fn tile_flips_fail_naming_the_tile_or_the_leaf_it_disagrees_with() {
    let f = fixture();
    let bytes = f.bytes();
    let frames = layout(&bytes);
    let tile = release(&frames, 2).of_kind("tile")[0];
    let Header::Tile(t) = tile.header else { unreachable!() };
    assert_eq!(t.level, 0);
    for at in payload_range(tile) {
        let err = scan(&flipped(&bytes, at, 0x01), false).expect_err("a flipped tile hash fails");
        match &err.problem {
            Problem::LeafHash { leaf, tile: path } => {
                let leaf_index = t.index * 256 + (at - tile.info.payload_offset) / 32;
                assert_eq!(*leaf, leaf_index, "{err}");
                assert_eq!(path, &format!("tile/0/000.p/{}", t.width));
                let leaf_frame = frames.iter().filter(|f| f.header.is_leaf()).nth(leaf_index as usize).unwrap();
                assert_names(&err, &frames, leaf_frame.index, "tile");
            }
            Problem::Tile(_) => assert_names(&err, &frames, tile.index, "tile"),
            _ => panic!("byte {at}: {err}"),
        }
    }
}

/// The byte range of the base64 signature in a seal's header.
fn signature_range(bytes: &[u8], seal: &Framed) -> Range<u64> {
    let header = read_header(bytes, &seal.info).unwrap();
    let text = std::str::from_utf8(&header).unwrap();
    let line = text.rfind("\u{2014} publisher-a ").expect("a signature line") + "\u{2014} publisher-a ".len();
    let end = line + text[line..].find("\\n").expect("the line ends");
    seal.info.header_offset + line as u64..seal.info.header_offset + end as u64
}

#[test]
fn seal_signature_flips_fail_the_signature_check_at_that_seal() {
    let f = fixture();
    let bytes = f.bytes();
    let frames = layout(&bytes);
    for r in [1, 3] {
        let seal = release(&frames, r).of_kind("seal")[0];
        let sig = signature_range(&bytes, seal);
        assert!(sig.end - sig.start >= 90, "{sig:?}");
        for at in sig {
            // These masks keep a base64 character printable and never make it
            // a quote or a backslash, so the JSON still parses.
            for mask in [0x01, 0x02] {
                let err = scan(&flipped(&bytes, at, mask), false).expect_err("a flipped signature fails");
                assert!(matches!(err.problem, Problem::Signature(_)), "byte {at}: {err}");
                assert_names(&err, &frames, seal.index, "signature");
            }
        }
    }
}

#[test]
fn every_flip_in_a_sealed_seal_header_fails_at_that_seal() {
    let f = fixture();
    let bytes = f.bytes();
    let frames = layout(&bytes);
    let seal = release(&frames, 1).of_kind("seal")[0];
    for at in header_range(seal) {
        let err = match scan(&flipped(&bytes, at, 0x01), false) {
            Ok(_) => panic!("flipping byte {at} ({:?}) of the seal passed", bytes[at as usize] as char),
            Err(e) => e,
        };
        assert!(
            matches!(err.problem, Problem::Header(_) | Problem::Seal(_) | Problem::Map(_) | Problem::Signature(_)),
            "byte {at}: {err}"
        );
        assert_names(&err, &frames, seal.index, "seal");
    }
}

#[test]
fn changing_the_seals_time_manifest_or_map_offsets_fails_at_the_seal() {
    let f = fixture();
    let bytes = f.bytes();
    let frames = layout(&bytes);
    let seal = release(&frames, 2).of_kind("seal")[0];
    let header = read_header(bytes.as_slice(), &seal.info).unwrap();
    let text = String::from_utf8(header).unwrap();
    for (object, field) in [
        ("", "\"time\":"),
        ("\"manifest\":", "\"offset\":"),
        ("\"manifest\":", "\"length\":"),
        ("\"map\":", "\"offset\":"),
        ("\"map\":", "\"length\":"),
    ] {
        let prefix = &format!("{object}{field}");
        // The second digit of the number, so the JSON stays valid.
        let o = text.find(object).unwrap();
        let at = seal.info.header_offset + (o + text[o..].find(field).unwrap() + field.len() + 1) as u64;
        let err = scan(&flipped(&bytes, at, 0x01), false).expect_err(prefix);
        assert!(matches!(err.problem, Problem::Seal(_) | Problem::Map(_)), "{prefix}: {err}");
        assert_names(&err, &frames, seal.index, prefix);
    }
}

/// A smaller container for the byte-by-byte truncation tests.
fn small() -> Fixture {
    Builder { releases: 3, targets: 2, files: 2, size: 30, beta: false, deltas: true }.build()
}

#[test]
fn truncating_the_last_release_anywhere_leaves_the_previous_release() {
    let f = Builder { releases: 2, targets: 1, files: 2, size: 30, beta: false, deltas: true }.build();
    let bytes = f.bytes();
    let prev = &f.seals[f.seals.len() - 2];
    let path = f.dir.path().join("cut.dare");
    for cut in prev.len..bytes.len() as u64 {
        let short = &bytes[..cut as usize];
        let s = scan(short, false).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        assert_eq!(s.size(), prev.size, "cut at {cut}");
        assert_eq!(s.sealed_len, prev.len);
        assert_eq!(s.last_seal.checkpoint.root, prev.root);
        if cut == prev.len {
            assert_eq!(s.tail, Tail::Clean);
        } else {
            match &s.tail {
                Tail::Torn { offset, len, .. } => assert_eq!((*offset, *len), (prev.len, cut - prev.len), "cut {cut}"),
                other => panic!("cut at {cut} reported {other:?}"),
            }
        }
        walk_backward(short, &s).unwrap_or_else(|e| panic!("cut at {cut}: backward: {e}"));
        if cut % 64 == 0 || cut + 1 == bytes.len() as u64 {
            std::fs::write(&path, short).unwrap();
            let v = verify_file(&path, &ScanOptions::full()).unwrap();
            assert_eq!((v.size(), v.sealed_len), (prev.size, prev.len));
            assert!(v.walked_backward);
        }
    }
}

#[test]
fn truncating_anywhere_never_claims_more_than_the_last_intact_seal() {
    let f = small();
    let bytes = f.bytes();
    let first_seal_end = f.seals[0].len;
    let frames = layout(&bytes);
    let near_boundary =
        |cut: u64| frames.iter().any(|f| f.info.offset.abs_diff(cut) <= 1 || f.info.end().abs_diff(cut) <= 1);
    for cut in (0..bytes.len() as u64).filter(|c| c % 3 == 0 || near_boundary(*c)) {
        let short = &bytes[..cut as usize];
        let intact = f.seals.iter().rev().find(|s| s.len <= cut);
        match (scan(short, false), intact) {
            (Ok(s), Some(seal)) => {
                assert_eq!((s.size(), s.sealed_len), (seal.size, seal.len), "cut at {cut}");
                assert_eq!(s.tail == Tail::Clean, seal.len == cut, "cut at {cut}");
            }
            (Err(e), None) => assert!(cut < first_seal_end, "cut at {cut}: {e}"),
            (Ok(s), None) => panic!("cut at {cut} before the first seal passed with size {}", s.size()),
            (Err(e), Some(_)) => panic!("cut at {cut} after an intact seal failed: {e}"),
        }
    }
}

#[test]
fn garbage_after_the_last_seal_is_a_torn_tail() {
    let f = small();
    let bytes = f.bytes();
    let last = f.seals.last().unwrap();
    let frames = layout(&bytes);
    let entry_frame = &bytes[frames[1].info.offset as usize..frames[1].info.end() as usize];
    let garbage: Vec<Vec<u8>> = vec![
        b"garbage".to_vec(),
        vec![0; 100],
        vec![0xF4],
        vec![0xF4, 0x00, 0x00, 0xF4],
        entry_frame[..entry_frame.len() / 2].to_vec(),
        entry_frame.to_vec(),
    ];
    for g in garbage {
        let mut b = bytes.clone();
        b.extend_from_slice(&g);
        let s = scan(&b, true).unwrap_or_else(|e| panic!("{} garbage bytes: {e}", g.len()));
        match &s.tail {
            Tail::Torn { offset, len, .. } => assert_eq!((*offset, *len), (last.len, g.len() as u64)),
            other => panic!("garbage reported as {other:?}"),
        }
        assert_eq!(s.size(), last.size);
        let path = crate::support::write_beside(f.dir.path(), "garbage.dare", &b);
        assert_eq!(verify_file(&path, &ScanOptions::default()).unwrap().sealed_len, last.len);
    }
}

/// The leaves of container bytes, hashed into a tree.
fn tree_of(bytes: &[u8]) -> MemoryTree {
    let mut tree = MemoryTree::new();
    for f in layout(bytes).iter().filter(|f| f.header.is_leaf()) {
        tree.push(leaf_hash(&read_header(bytes, &f.info).unwrap()));
    }
    tree
}

fn last_seal(bytes: &[u8]) -> (Framed, Seal) {
    let frames = layout(bytes);
    let last = frames.last().unwrap().clone();
    let Header::Seal(s) = &last.header else { panic!("the last frame is a {}", last.kind()) };
    let s = s.clone();
    (last, s)
}

#[test]
fn a_heartbeat_signed_by_a_key_outside_the_trust_root_is_refused() {
    let f = small();
    let mut bytes = f.bytes();
    let (_, prev) = last_seal(&bytes);
    let tree = tree_of(&bytes);
    let n = tree.size();
    let root = tree.root_at(n).unwrap();
    assert_eq!(root, f.seals.last().unwrap().root);
    let cp =
        Checkpoint { origin: crate::support::ORIGIN.into(), size: n, root, time: Some(T0 + 9000), extensions: vec![] };
    let forged = |keys: &[&dare_container::keys::SigningKey]| Seal {
        checkpoint: String::from_utf8(Note::sign(&cp.to_text(), keys).unwrap().to_bytes()).unwrap(),
        time: T0 + 9000,
        ..prev.clone()
    };
    let offset = bytes.len() as u64;
    let index = layout(&bytes).len() as u64;
    let good = dare_container::frame::encode_frame(&Header::Seal(forged(&[&key_a()])).to_bytes().unwrap(), b"");
    let bad = dare_container::frame::encode_frame(&Header::Seal(forged(&[&key_b()])).to_bytes().unwrap(), b"");
    // The same seal signed by the trusted key is a valid heartbeat.
    let mut ok = bytes.clone();
    ok.extend_from_slice(&good.unwrap());
    assert_eq!(scan(&ok, true).unwrap().last_seal.seal.time, T0 + 9000);
    bytes.extend_from_slice(&bad.unwrap());
    let err = scan(&bytes, true).expect_err("signed by an untrusted key");
    assert!(matches!(err.problem, Problem::Signature(NoteError::BelowThreshold { valid: 0, threshold: 1 })), "{err}");
    assert_eq!((err.frame, err.offset), (index, offset));
}

#[test]
fn a_release_resigned_by_a_key_outside_the_trust_root_is_refused() {
    let f = small();
    let bytes = f.bytes();
    let (seal_frame, seal) = last_seal(&bytes);
    let note = Note::parse(seal.checkpoint.as_bytes()).unwrap();
    let resign = |keys: &[&dare_container::keys::SigningKey]| {
        let s = Seal {
            checkpoint: String::from_utf8(Note::sign(note.text(), keys).unwrap().to_bytes()).unwrap(),
            ..seal.clone()
        };
        let mut b = bytes[..seal_frame.info.offset as usize].to_vec();
        b.extend(dare_container::frame::encode_frame(&Header::Seal(s).to_bytes().unwrap(), b"").unwrap());
        b
    };
    let err = scan(&resign(&[&key_b()]), false).expect_err("signed by B only");
    assert!(matches!(err.problem, Problem::Signature(NoteError::BelowThreshold { .. })), "{err}");
    assert_eq!((err.frame, err.offset), (seal_frame.index, seal_frame.info.offset));
    // A cosignature by an unknown key is ignored.
    let s = scan(&resign(&[&key_a(), &key_b()]), false).unwrap();
    assert_eq!(s.last_seal.signers, vec![key_a().verifier()]);
}

#[test]
fn pinned_keys_must_be_in_the_trust_root() {
    let f = small();
    let frames = layout(&f.bytes());
    let first_seal = frames.iter().find(|f| f.kind() == "seal").unwrap();
    let pinned = |keys: Vec<dare_container::keys::VerifierKey>| {
        scan_file(&f.path, &ScanOptions::default().with_pins(Some(keys)))
    };
    let err = crate::support::verify_error(pinned(vec![key_b().verifier()]).expect_err("B is not in the trust root"));
    assert!(matches!(err.problem, Problem::Signature(_)), "{err}");
    assert_names(&err, &frames, first_seal.index, "pins");
    assert_eq!(pinned(vec![key_a().verifier()]).unwrap().size(), f.seals.last().unwrap().size);
    assert_eq!(pinned(vec![key_b().verifier(), key_a().verifier()]).unwrap().seals, f.seals.len() as u64);
}

#[test]
fn a_flipped_tile_hash_names_the_tile_when_the_leaves_match_the_signed_root() {
    let f = fixture();
    let bytes = f.bytes();
    let frames = layout(&bytes);
    let tile = release(&frames, 2).of_kind("tile")[0];
    // Hash 0 of the tile is leaf 0's, the genesis: the genesis is intact
    // and the signed checkpoint root is the root of the intact leaves.
    let err = scan(&flipped(&bytes, tile.info.payload_offset, 0x01), false).unwrap_err();
    assert!(matches!(err.problem, Problem::Tile(_)), "{err}");
    assert_names(&err, &frames, tile.index, "tile");
}
