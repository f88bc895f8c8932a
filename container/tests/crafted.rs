//! Hand-crafted containers that are well-formed frames, correctly tiled and
//! validly signed, but break the log's rules: the scanner must name the frame
//! that breaks them.

mod support;

use dare_container::header::{Compression, EntryRef, Header, Keys, Manifest, Release};
use dare_container::note::NoteError;
use dare_container::verify::{Problem, Scan, VerifyError};
use support::{Forge, T0, TARGETS, entry, genesis, key_a, key_b, scan, trust};

const LINUX: &str = TARGETS[0];
const MAC: &str = TARGETS[1];

/// A forge with the genesis (trust root {A}), an empty manifest and a seal.
fn forge() -> Forge {
    let a = key_a();
    let mut f = Forge::with_genesis(&genesis(trust(&[&a], 1)));
    f.manifest();
    f.seal(&[&a], T0);
    f
}

fn put(f: &mut Forge, target: &str, version: &str, path: &str) -> EntryRef {
    let (e, stored) =
        entry(target, version, "stable", path, format!("{target} {version} {path}").as_bytes(), Compression::Zstd);
    f.entry(&e, &stored)
}

/// Appends the honest manifest and a seal by A.
fn close(f: &mut Forge, time: u64) {
    f.manifest();
    f.seal(&[&key_a()], time);
}

fn ok(f: &Forge) -> Scan {
    scan(&f.bytes, true).unwrap_or_else(|e| panic!("{e}"))
}

fn err(f: &Forge) -> VerifyError {
    match scan(&f.bytes, true) {
        Ok(s) => panic!("scan passed with tree size {}", s.size()),
        Err(e) => e,
    }
}

/// Asserts that `e` names frame `index` of `f`.
fn at(f: &Forge, e: &VerifyError, index: usize) {
    assert_eq!((e.frame, e.offset), (index as u64, f.frames[index].offset), "{e}");
}

fn index_of(f: &Forge, r: EntryRef) -> usize {
    f.frames.iter().position(|fr| fr.offset == r.offset).unwrap()
}

#[test]
fn the_forge_writes_containers_that_verify() {
    let mut f = forge();
    put(&mut f, LINUX, "1.0.0", "bin/app");
    put(&mut f, MAC, "1.0.0", "bin/app");
    close(&mut f, T0 + 1);
    put(&mut f, LINUX, "1.0.1", "bin/app");
    close(&mut f, T0 + 2);
    let s = ok(&f);
    assert_eq!((s.size(), s.seals), (7, 3));
    assert_eq!(s.manifest.release("stable", LINUX).unwrap().version, "1.0.1");
}

#[test]
fn an_empty_file_or_a_genesis_alone_has_no_seal() {
    let e = scan(b"", false).unwrap_err();
    assert!(matches!(e.problem, Problem::NoSeal), "{e}");
    assert_eq!((e.frame, e.offset), (0, 0));
    let g = Forge::with_genesis(&genesis(trust(&[&key_a()], 1)));
    let e = scan(&g.bytes, false).unwrap_err();
    assert!(matches!(e.problem, Problem::NoSeal), "{e}");
    assert_eq!(e.offset, g.bytes.len() as u64);
}

#[test]
fn the_first_frame_must_be_a_genesis() {
    let a = key_a();
    // An entry, then everything a container needs.
    let mut f = Forge::new(support::ORIGIN);
    put(&mut f, LINUX, "1.0.0", "bin/app");
    f.leaf(&Header::Genesis(genesis(trust(&[&a], 1))).to_bytes().unwrap(), b"");
    close(&mut f, T0);
    let e = err(&f);
    assert!(matches!(e.problem, Problem::NotGenesis("entry")), "{e}");
    at(&f, &e, 0);
    // A manifest first.
    let mut f = Forge::new(support::ORIGIN);
    f.leaf(&Header::Manifest(Manifest::default()).to_bytes().unwrap(), b"");
    let e = err(&f);
    assert!(matches!(e.problem, Problem::NotGenesis("manifest")), "{e}");
    at(&f, &e, 0);
    // A first header that is not JSON.
    let mut f = Forge::new(support::ORIGIN);
    f.leaf(b"{\"kind\":\"genesis\"", b"");
    let e = err(&f);
    assert!(matches!(e.problem, Problem::Header(_)), "{e}");
    at(&f, &e, 0);
}

#[test]
fn a_second_genesis_is_refused() {
    let a = key_a();
    let mut f = forge();
    let second = f.frames.len();
    f.leaf(&Header::Genesis(genesis(trust(&[&a], 1))).to_bytes().unwrap(), b"");
    close(&mut f, T0 + 1);
    let e = err(&f);
    assert!(matches!(e.problem, Problem::ExtraGenesis), "{e}");
    at(&f, &e, second);
}

#[test]
fn a_version_that_is_not_newer_is_refused() {
    for (old, new) in [
        ("1.0.0", "1.0.0"),
        ("1.0.0", "0.9.9"),
        ("1.0.0", "1.0.0+b2"),
        ("1.0.0", "1.0.0-rc.1"),
        ("1.0.0+b1", "1.0.0+b2"),
    ] {
        let mut f = forge();
        put(&mut f, LINUX, old, "bin/app");
        close(&mut f, T0 + 1);
        put(&mut f, MAC, "9.0.0", "bin/app");
        let r = put(&mut f, LINUX, new, "bin/app");
        close(&mut f, T0 + 2);
        let e = err(&f);
        assert!(matches!(e.problem, Problem::Entry(_)), "{old} then {new}: {e}");
        at(&f, &e, index_of(&f, r));
    }
    // Precedence, not string order: 1.0.0-rc.1 < 1.0.0 < 1.0.1 < 1.10.0.
    let mut f = forge();
    for (i, v) in ["1.0.0-rc.1", "1.0.0-rc.2", "1.0.0", "1.0.1", "1.10.0"].iter().enumerate() {
        put(&mut f, LINUX, v, "bin/app");
        close(&mut f, T0 + 1 + i as u64);
    }
    assert_eq!(ok(&f).manifest.release("stable", LINUX).unwrap().version, "1.10.0");
}

#[test]
fn one_version_per_target_in_a_release_and_no_path_twice() {
    let mut f = forge();
    put(&mut f, LINUX, "1.0.0", "bin/app");
    let r = put(&mut f, LINUX, "1.0.1", "lib/x");
    close(&mut f, T0 + 1);
    let e = err(&f);
    assert!(matches!(e.problem, Problem::Entry(_)), "{e}");
    at(&f, &e, index_of(&f, r));

    let mut f = forge();
    put(&mut f, LINUX, "1.0.0", "bin/app");
    put(&mut f, MAC, "1.0.0", "bin/app");
    let r = put(&mut f, LINUX, "1.0.0", "bin/app");
    close(&mut f, T0 + 1);
    let e = err(&f);
    assert!(matches!(e.problem, Problem::Entry(_)), "{e}");
    at(&f, &e, index_of(&f, r));
}

/// A sealed container whose second release's manifest is `lie(honest)`.
fn lying(lie: impl Fn(&mut Manifest)) -> (Forge, usize) {
    let mut f = forge();
    put(&mut f, LINUX, "1.0.0", "bin/app");
    put(&mut f, MAC, "1.0.0", "bin/app");
    close(&mut f, T0 + 1);
    put(&mut f, LINUX, "1.1.0", "bin/app");
    put(&mut f, LINUX, "1.1.0", "lib/x");
    let mut m = f.honest_manifest();
    lie(&mut m);
    let bytes = Header::Manifest(m).to_bytes().unwrap();
    let index = f.manifest_bytes(&bytes);
    f.seal(&[&key_a()], T0 + 2);
    let index = f.frames.iter().position(|fr| *fr == index).unwrap();
    (f, index)
}

#[test]
fn a_manifest_that_lies_is_refused() {
    let (f, _) = lying(|_| {});
    ok(&f);
    type Lie = Box<dyn Fn(&mut Manifest)>;
    let lies: Vec<(&str, Lie)> = vec![
        ("an older version", Box::new(|m| m.releases[1].version = "1.0.0".into())),
        ("a newer version", Box::new(|m| m.releases[1].version = "1.2.0".into())),
        ("a missing target", Box::new(|m| drop(m.releases.remove(0)))),
        ("no releases", Box::new(|m| m.releases.clear())),
        (
            "a target never published",
            Box::new(|m| {
                let mut r = m.releases[1].clone();
                r.target = "riscv64gc-unknown-linux-gnu".into();
                m.releases.insert(1, r);
            }),
        ),
        ("a missing entry", Box::new(|m| m.releases[1].entries.truncate(1))),
        ("a wrong offset", Box::new(|m| m.releases[1].entries[0].offset += 1)),
        ("a wrong length", Box::new(|m| m.releases[1].entries[1].length -= 1)),
        ("a wrong leaf", Box::new(|m| m.releases[0].entries[0].leaf = 2)),
        ("another channel", Box::new(|m| m.releases[0].channel = "beta".into())),
        (
            "the old entries",
            Box::new(|m| {
                m.releases[1] = Release {
                    channel: "stable".into(),
                    target: LINUX.into(),
                    version: "1.1.0".into(),
                    entries: vec![EntryRef { leaf: 2, offset: 0, length: 0 }],
                }
            }),
        ),
    ];
    for (what, lie) in lies {
        let (f, manifest) = lying(lie);
        let e = err(&f);
        assert!(matches!(e.problem, Problem::Manifest(_)), "{what}: {e}");
        at(&f, &e, manifest);
    }
}

#[test]
fn the_manifest_must_be_the_last_leaf_before_a_seal() {
    let mut f = forge();
    put(&mut f, LINUX, "1.0.0", "bin/app");
    f.manifest();
    put(&mut f, MAC, "1.0.0", "bin/app");
    // Tiles and a seal over the tree with the entry after the manifest.
    f.tiles();
    let s = f.seal_header(&[&key_a()], T0 + 1);
    let seal = f.frames.len();
    f.push_seal(&s);
    let e = err(&f);
    assert!(matches!(e.problem, Problem::Seal(_)), "{e}");
    at(&f, &e, seal);
}

#[test]
fn a_payload_of_another_length_than_stored_size_is_refused() {
    let mut f = forge();
    let (mut e, stored) = entry(LINUX, "1.0.0", "stable", "bin/app", b"some content here", Compression::Zstd);
    e.stored_size += 1;
    let r = f.entry(&e, &stored);
    close(&mut f, T0 + 1);
    let err = err(&f);
    assert!(matches!(err.problem, Problem::Payload(_)), "{err}");
    at(&f, &err, index_of(&f, r));
}

#[test]
fn a_seal_whose_time_goes_backward_is_refused() {
    let mut f = forge();
    put(&mut f, LINUX, "1.0.0", "bin/app");
    close(&mut f, T0 + 10);
    put(&mut f, LINUX, "1.0.1", "bin/app");
    f.manifest();
    let seal = f.frames.len();
    f.seal(&[&key_a()], T0 + 9);
    let e = err(&f);
    assert!(matches!(e.problem, Problem::Seal(_)), "{e}");
    at(&f, &e, seal);
}

#[test]
fn a_proof_frame_or_a_second_keys_frame_is_unexpected() {
    let mut f = forge();
    let proof = f.frames.len();
    f.frame(br#"{"kind":"proof","size":3,"leaves":[],"nodes":[]}"#, b"");
    close(&mut f, T0 + 1);
    let e = err(&f);
    assert!(matches!(e.problem, Problem::Unexpected(_)), "{e}");
    at(&f, &e, proof);

    let (a, b) = (key_a(), key_b());
    let mut f = forge();
    f.leaf(&Header::Keys(Keys { trust: trust(&[&b], 1) }).to_bytes().unwrap(), b"");
    let second = f.frames.len();
    f.leaf(&Header::Keys(Keys { trust: trust(&[&a], 1) }).to_bytes().unwrap(), b"");
    f.manifest();
    f.seal(&[&a, &b], T0 + 1);
    let e = err(&f);
    assert!(matches!(e.problem, Problem::Unexpected(_)), "{e}");
    at(&f, &e, second);
}

#[test]
fn a_rotation_needs_both_roots_and_then_only_the_new_one() {
    let (a, b) = (key_a(), key_b());
    let rotated = |signers: &[&dare_container::keys::SigningKey]| {
        let mut f = forge();
        f.leaf(&Header::Keys(Keys { trust: trust(&[&b], 1) }).to_bytes().unwrap(), b"");
        f.manifest();
        let seal = f.frames.len();
        f.seal(signers, T0 + 1);
        (f, seal)
    };
    for signers in [&[&b][..], &[&a][..]] {
        let (f, seal) = rotated(signers);
        let e = err(&f);
        assert!(matches!(e.problem, Problem::Signature(NoteError::BelowThreshold { .. })), "{e}");
        at(&f, &e, seal);
    }
    let (mut f, _) = rotated(&[&a, &b]);
    let s = ok(&f);
    assert_eq!(s.trust, trust(&[&b], 1));
    assert_eq!(s.last_seal.signers.len(), 2);
    // After the rotation the old key alone no longer seals.
    let good = f.seal_header(&[&b], T0 + 2);
    let bad = f.seal_header(&[&a], T0 + 2);
    let mut g = Forge::new(support::ORIGIN);
    g.bytes = f.bytes.clone();
    f.push_seal(&good);
    assert_eq!(ok(&f).seals, 3);
    let mut bytes = g.bytes.clone();
    let offset = bytes.len() as u64;
    bytes.extend(dare_container::frame::encode_frame(&Header::Seal(bad).to_bytes().unwrap(), b"").unwrap());
    let e = scan(&bytes, true).unwrap_err();
    assert!(matches!(e.problem, Problem::Signature(_)), "{e}");
    assert_eq!(e.offset, offset);
}

#[test]
fn zstd_payloads_must_decode_to_the_signed_content() {
    // (what the header claims, what the payload decodes to)
    let zeros = vec![0u8; 1 << 20];
    type Lie = Box<dyn Fn(&mut dare_container::header::Entry)>;
    let cases: Vec<(&str, Lie, Vec<u8>)> = vec![
        // A bomb: a small signed size, a megabyte of content.
        ("longer than its size", Box::new(|e| e.size = 10), zeros.clone()),
        ("shorter than its size", Box::new(|e| e.size += 1), zeros.clone()),
        ("another digest", Box::new(|e| e.sha256.0[0] ^= 1), b"content".to_vec()),
    ];
    for (what, lie, content) in cases {
        let mut f = forge();
        let (mut e, stored) = entry(LINUX, "1.0.0", "stable", "bin/app", &content, Compression::Zstd);
        lie(&mut e);
        let r = f.entry(&e, &stored);
        close(&mut f, T0 + 1);
        let err = err(&f);
        assert!(matches!(err.problem, Problem::Payload(_)), "{what}: {err}");
        at(&f, &err, index_of(&f, r));
        // Structure only: the payload is not decoded.
        scan(&f.bytes, false).unwrap_or_else(|e| panic!("{what}: {e}"));
    }
    // Not a zstd stream at all, with digests that match the stored bytes.
    let mut f = forge();
    let (mut e, stored) = entry(LINUX, "1.0.0", "stable", "bin/app", b"plain text", Compression::None);
    e.compression = Compression::Zstd;
    let r = f.entry(&e, &stored);
    close(&mut f, T0 + 1);
    let err = err(&f);
    assert!(matches!(&err.problem, Problem::Payload(m) if m.contains("zstd")), "{err}");
    at(&f, &err, index_of(&f, r));
}
