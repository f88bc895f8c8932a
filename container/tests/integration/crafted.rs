//! Hand-crafted containers that are well-formed frames, correctly tiled and
//! validly signed, but break the log's rules: the scanner must name the frame
//! that breaks them.

use std::sync::OnceLock;

use crate::support::{
    Forge, ORIGIN, T0, TARGETS, diff, digest, genesis, key_a, key_b, key_c, record, scan, stage, trust,
};
use dare_container::header::{
    Compression, Delta, DeltaRef, Entry, FileRecord, Header, Index, LeafRef, Manifest, Map, Release, listing_bytes,
};
use dare_container::keys::SigningKey;
use dare_container::note::{Note, NoteError};
use dare_container::verify::{Problem, Scan, VerifyError};

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

/// Stores a new content and appends the index of a build of one file holding it.
fn build(f: &mut Forge, target: &str, version: &str, path: &str) -> LeafRef {
    let body = format!("{target} {version} {path} {}", f.tree.size()).into_bytes();
    let e = f.put(&body, Compression::Zstd);
    f.index("stable", target, version, &[record(path, &body, e, vec![])])
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

/// Asserts that `e` names the frame at `offset` of `f`.
fn names(f: &Forge, e: &VerifyError, offset: u64) {
    at(f, e, f.index_of(offset));
}

/// A file record stating exactly what an entry header says.
fn claimed(path: &str, e: &Entry, at: LeafRef) -> FileRecord {
    FileRecord { key: None, path: path.into(), mode: 0o644, size: e.size, sha256: e.sha256, entry: at, deltas: vec![] }
}

#[test]
fn the_forge_writes_containers_that_verify() {
    let mut f = forge();
    let (c1, c2, shared) = (crate::support::content(1, 300), crate::support::content(2, 300), b"shared".to_vec());
    let e1 = f.put(&c1, Compression::Zstd);
    let es = f.put(&shared, Compression::None);
    f.index("stable", LINUX, "1.0.0", &[record("bin/app", &c1, e1, vec![]), record("doc", &shared, es, vec![])]);
    f.index("stable", MAC, "1.0.0", &[record("doc", &shared, es, vec![])]);
    close(&mut f, T0 + 1);
    // A changed file with a delta from its previous version; the shared one is not stored again.
    let e2 = f.put(&c2, Compression::None);
    let d = f.put_delta(&c1, &c2);
    let ix =
        f.index("stable", LINUX, "1.0.1", &[record("bin/app", &c2, e2, vec![d]), record("doc", &shared, es, vec![])]);
    close(&mut f, T0 + 2);
    let s = ok(&f);
    assert_eq!((s.size(), s.seals, s.entries.len(), s.indexes.len()), (11, 3, 4, 3));
    assert_eq!(s.manifest.release("stable", LINUX).unwrap().version, "1.0.1");
    assert_eq!(s.manifest.release("stable", LINUX).unwrap().index, ix);
    assert_eq!(s.index("stable", LINUX, None).unwrap().files[0].deltas, vec![d]);
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
    let mut f = Forge::new(crate::support::ORIGIN);
    f.put(b"content", Compression::Zstd);
    f.leaf(&Header::Genesis(genesis(trust(&[&a], 1))).to_bytes().unwrap(), b"");
    close(&mut f, T0);
    let e = err(&f);
    assert!(matches!(e.problem, Problem::NotGenesis("entry")), "{e}");
    at(&f, &e, 0);
    // A manifest first.
    let mut f = Forge::new(crate::support::ORIGIN);
    f.leaf(&Header::Manifest(Manifest::default()).to_bytes().unwrap(), b"");
    let e = err(&f);
    assert!(matches!(e.problem, Problem::NotGenesis("manifest")), "{e}");
    at(&f, &e, 0);
    // A first header that is not JSON.
    let mut f = Forge::new(crate::support::ORIGIN);
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
        build(&mut f, LINUX, old, "bin/app");
        close(&mut f, T0 + 1);
        build(&mut f, MAC, "9.0.0", "bin/app");
        let r = build(&mut f, LINUX, new, "bin/app");
        close(&mut f, T0 + 2);
        let e = err(&f);
        assert!(matches!(&e.problem, Problem::Index(m) if m.contains("not newer")), "{old} then {new}: {e}");
        names(&f, &e, r.offset);
    }
    // Precedence, not string order: 1.0.0-rc.1 < 1.0.0 < 1.0.1 < 1.10.0.
    let mut f = forge();
    for (i, v) in ["1.0.0-rc.1", "1.0.0-rc.2", "1.0.0", "1.0.1", "1.10.0"].iter().enumerate() {
        build(&mut f, LINUX, v, "bin/app");
        close(&mut f, T0 + 1 + i as u64);
    }
    assert_eq!(ok(&f).manifest.release("stable", LINUX).unwrap().version, "1.10.0");
}

#[test]
fn two_indexes_for_one_channel_and_target_in_one_release_are_refused() {
    for second in ["1.0.1", "1.0.0"] {
        let mut f = forge();
        build(&mut f, LINUX, "1.0.0", "bin/app");
        build(&mut f, MAC, "1.0.0", "bin/app");
        let r = build(&mut f, LINUX, second, "lib/x");
        close(&mut f, T0 + 1);
        let e = err(&f);
        assert!(matches!(&e.problem, Problem::Index(m) if m.contains("two indexes")), "{second}: {e}");
        names(&f, &e, r.offset);
    }
    // The same target on another channel is another build.
    let mut f = forge();
    build(&mut f, LINUX, "1.0.0", "bin/app");
    let body = b"beta build".to_vec();
    let e = f.put(&body, Compression::None);
    f.index("beta", LINUX, "1.0.0", &[record("bin/app", &body, e, vec![])]);
    close(&mut f, T0 + 1);
    assert_eq!(ok(&f).manifest.releases.len(), 2);
}

#[test]
fn previous_must_name_the_index_of_the_build_before() {
    // Release 1: LINUX 1.0.0 and MAC 1.0.0; release 2: LINUX 1.1.0; release 3: LINUX 1.2.0 with `previous` = lie.
    let lying = |lie: &dyn Fn(&mut Index, &[LeafRef])| {
        let mut f = forge();
        let l1 = build(&mut f, LINUX, "1.0.0", "bin/app");
        let m1 = build(&mut f, MAC, "1.0.0", "bin/app");
        close(&mut f, T0 + 1);
        let l2 = build(&mut f, LINUX, "1.1.0", "bin/app");
        close(&mut f, T0 + 2);
        let body = b"1.2.0".to_vec();
        let e = f.put(&body, Compression::None);
        let (mut ix, payload) = f.index_header("stable", LINUX, "1.2.0", &[record("bin/app", &body, e, vec![])], true);
        assert_eq!(ix.previous, Some(l2));
        lie(&mut ix, &[l1, m1, l2]);
        let r = f.index_frame(&ix, &payload);
        close(&mut f, T0 + 3);
        (f, r)
    };
    let (f, _) = lying(&|_, _| {});
    ok(&f);
    type Lie = Box<dyn Fn(&mut Index, &[LeafRef])>;
    let lies: Vec<(&str, Lie)> = vec![
        ("none", Box::new(|ix, _| ix.previous = None)),
        ("the build before that", Box::new(|ix, r| ix.previous = Some(r[0]))),
        ("another target's", Box::new(|ix, r| ix.previous = Some(r[1]))),
        ("a wrong offset", Box::new(|ix, r| ix.previous = Some(LeafRef { offset: r[2].offset + 1, ..r[2] }))),
        ("a wrong length", Box::new(|ix, r| ix.previous = Some(LeafRef { length: r[2].length - 1, ..r[2] }))),
        ("a wrong leaf", Box::new(|ix, r| ix.previous = Some(LeafRef { leaf: r[2].leaf + 1, ..r[2] }))),
    ];
    for (what, lie) in lies {
        let (f, r) = lying(&*lie);
        let e = err(&f);
        assert!(matches!(&e.problem, Problem::Index(m) if m.contains("previous")), "{what}: {e}");
        names(&f, &e, r.offset);
    }
    // A first build names no previous one.
    let mut f = forge();
    let l1 = build(&mut f, LINUX, "1.0.0", "bin/app");
    let body = b"mac".to_vec();
    let e = f.put(&body, Compression::None);
    let (mut ix, payload) = f.index_header("stable", MAC, "1.0.0", &[record("bin/app", &body, e, vec![])], true);
    ix.previous = Some(l1);
    let r = f.index_frame(&ix, &payload);
    close(&mut f, T0 + 1);
    let e = err(&f);
    assert!(matches!(&e.problem, Problem::Index(m) if m.contains("first release")), "{e}");
    names(&f, &e, r.offset);
}

/// Three releases of one LINUX build of 20 files, one file changed each
/// time; the third index's header and payload are `lie(honest)`. Returns the
/// forge and that index.
fn patched(lie: &dyn Fn(&mut Index, &mut Vec<u8>, &Forge)) -> (Forge, LeafRef) {
    let mut f = forge();
    let mut contents: Vec<Vec<u8>> = (0..20).map(|i| crate::support::content(i, 50)).collect();
    let mut files: Vec<FileRecord> = Vec::new();
    for (i, c) in contents.iter().enumerate() {
        let at = f.put(c, Compression::None);
        files.push(record(&format!("lib/{i:02}"), c, at, vec![]));
    }
    f.index("stable", LINUX, "1.0.0", &files);
    close(&mut f, T0 + 1);
    let mut at = LeafRef { leaf: 0, offset: 0, length: 0 };
    for r in 1..=2 {
        contents[r] = crate::support::content(100 + r as u64, 50);
        let e = f.put(&contents[r], Compression::None);
        files[r] = record(&format!("lib/{r:02}"), &contents[r], e, vec![]);
        let (mut ix, mut payload) = f.patched_index_header("stable", LINUX, &format!("1.{r}.0"), &files);
        assert!(ix.patch.is_some(), "a one-file change is a small patch");
        if r == 2 {
            lie(&mut ix, &mut payload, &f);
        }
        at = f.index_frame(&ix, &payload);
        close(&mut f, T0 + 1 + r as u64);
    }
    (f, at)
}

#[test]
fn a_listing_patch_must_make_the_listing_from_the_previous_one() {
    let (f, at) = patched(&|_, _, _| {});
    let s = scan(&f.bytes, false).unwrap();
    let ix = s.index("stable", LINUX, None).unwrap();
    assert_eq!(ix.at(), at);
    let head = s.manifest.release("stable", LINUX).unwrap().head.expect("the manifest says where the patch ends");
    assert_eq!(head, ix.frame.payload_offset - ix.frame.offset + ix.index.patch.unwrap().stored_size);
    // (what, lie): each rewrites the patch and keeps the header's digests true to the bytes.
    type Lie = Box<dyn Fn(&mut Index, &mut Vec<u8>, &Forge)>;
    let lies: Vec<(&str, Lie)> = vec![
        (
            "a base that is not the previous listing",
            Box::new(|ix, _, _| ix.patch.as_mut().unwrap().base = digest(b"x")),
        ),
        (
            "a base that is the listing before the previous one",
            Box::new(|ix, p, f| {
                let s = scan(&f.bytes, false).unwrap();
                let older = listing_bytes(&s.index("stable", LINUX, Some("1.0.0")).unwrap().files).unwrap();
                let stored = &p[ix.patch.unwrap().stored_size as usize..];
                let listing = zstd::decode_all(stored).unwrap();
                swap_patch(ix, p, &crate::support::patch_listing(&older, &listing));
                ix.patch.as_mut().unwrap().base = digest(&older);
            }),
        ),
        (
            "a patch making another listing",
            Box::new(|ix, p, f| {
                let base = &f.newest("stable", LINUX).unwrap().listing;
                let mut other = base.clone();
                other.push(b' ');
                swap_patch(ix, p, &crate::support::patch_listing(base, &other));
            }),
        ),
        (
            "a patch that is not zstd",
            Box::new(|ix, p, _| {
                let n = ix.patch.unwrap().stored_size as usize;
                swap_patch(ix, p, &vec![0x55; n]);
            }),
        ),
        (
            "a patch one byte longer than the header says",
            Box::new(|ix, _, _| ix.patch.as_mut().unwrap().stored_size -= 1),
        ),
        ("a wrong patch digest", Box::new(|ix, _, _| ix.patch.as_mut().unwrap().stored_sha256.0[0] ^= 1)),
    ];
    for (what, lie) in lies {
        let (f, at) = patched(&*lie);
        let e = scan(&f.bytes, false).expect_err(what);
        assert!(matches!(e.problem, Problem::Index(_) | Problem::Payload(_)), "{what}: {e}");
        names(&f, &e, at.offset);
    }
}

/// Replaces the patch at the start of an index payload by `patch`, with its size and digest.
fn swap_patch(ix: &mut Index, payload: &mut Vec<u8>, patch: &[u8]) {
    let p = ix.patch.as_mut().unwrap();
    payload.drain(..p.stored_size as usize);
    payload.splice(0..0, patch.iter().copied());
    p.stored_size = patch.len() as u64;
    p.stored_sha256 = digest(patch);
}

#[test]
fn the_manifest_must_say_where_a_listing_patch_ends() {
    let lied = |lie: &dyn Fn(&mut Manifest)| {
        let (mut f, _) = patched(&|_, _, _| {});
        let c = b"mac".to_vec();
        let e = f.put(&c, Compression::None);
        f.index("stable", MAC, "1.0.0", &[record("bin/app", &c, e, vec![])]);
        let mut m = f.honest_manifest();
        lie(&mut m);
        let r = f.manifest_bytes(&Header::Manifest(m).to_bytes().unwrap());
        f.seal(&[&key_a()], T0 + 10);
        let i = f.index_of(r.offset);
        (f, i)
    };
    ok(&lied(&|_| {}).0);
    type Lie = Box<dyn Fn(&mut Manifest)>;
    let lies: Vec<(&str, Lie)> = vec![
        ("no head for a patched index", Box::new(|m| m.releases[1].head = None)),
        ("a head one byte short", Box::new(|m| *m.releases[1].head.as_mut().unwrap() -= 1)),
        ("a head for an index without a patch", Box::new(|m| m.releases[0].head = Some(100))),
    ];
    for (what, lie) in lies {
        let (f, manifest) = lied(&*lie);
        let e = err(&f);
        assert!(matches!(e.problem, Problem::Manifest(_)), "{what}: {e}");
        at(&f, &e, manifest);
    }
}

/// A sealed container whose second release's manifest is `lie(honest)`,
/// and the frame index of that manifest.
fn lying(lie: impl Fn(&mut Manifest)) -> (Forge, usize) {
    let mut f = forge();
    build(&mut f, LINUX, "1.0.0", "bin/app");
    build(&mut f, MAC, "1.0.0", "bin/app");
    close(&mut f, T0 + 1);
    build(&mut f, LINUX, "1.1.0", "bin/app");
    let mut m = f.honest_manifest();
    lie(&mut m);
    let bytes = Header::Manifest(m).to_bytes().unwrap();
    let r = f.manifest_bytes(&bytes);
    f.seal(&[&key_a()], T0 + 2);
    let index = f.index_of(r.offset);
    (f, index)
}

#[test]
fn a_manifest_that_lies_is_refused() {
    let (f, _) = lying(|_| {});
    let s = ok(&f);
    // Sorted by channel then target: MAC, then LINUX.
    assert_eq!(s.manifest.releases[1].target, LINUX);
    let first_linux = s.index("stable", LINUX, Some("1.0.0")).unwrap().at();
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
        ("the previous index", Box::new(move |m| m.releases[1].index = first_linux)),
        ("another target's index", Box::new(|m| m.releases[1].index = m.releases[0].index)),
        ("a wrong index offset", Box::new(|m| m.releases[1].index.offset += 1)),
        ("a wrong index length", Box::new(|m| m.releases[1].index.length -= 1)),
        ("a wrong index leaf", Box::new(|m| m.releases[1].index.leaf -= 1)),
        ("another channel", Box::new(|m| m.releases[0].channel = "beta".into())),
        ("a keys leaf never written", Box::new(move |m| m.keys = Some(first_linux))),
        (
            "the old release",
            Box::new(move |m| {
                m.releases[1] = Release {
                    channel: "stable".into(),
                    target: LINUX.into(),
                    version: "1.0.0".into(),
                    index: first_linux,
                    head: None,
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
fn the_manifest_must_name_the_latest_keys_leaf() {
    let (a, b) = (key_a(), key_b());
    // Rotated at release 1; `lie` is applied to the manifest of release `when`.
    let rotated = |when: usize, lie: &dyn Fn(&mut Manifest, LeafRef)| {
        let mut f = forge();
        let mut manifest = 0;
        let mut keys = None;
        for r in 1..=2 {
            if r == 1 {
                keys = Some(f.keys(trust(&[&b], 1)));
            }
            build(&mut f, LINUX, &format!("1.{r}.0"), "bin/app");
            let mut m = f.honest_manifest();
            assert_eq!(m.keys, keys);
            if r == when {
                lie(&mut m, keys.unwrap());
            }
            let at = f.manifest_bytes(&Header::Manifest(m).to_bytes().unwrap());
            if r == when {
                manifest = f.index_of(at.offset);
            }
            let signers: &[&SigningKey] = if r == 1 { &[&a, &b] } else { &[&b] };
            f.seal(signers, T0 + r as u64);
        }
        (f, manifest)
    };
    let (f, _) = rotated(0, &|_, _| {});
    assert_eq!(ok(&f).manifest.keys.map(|k| k.leaf), Some(2));
    type Lie = Box<dyn Fn(&mut Manifest, LeafRef)>;
    let lies: Vec<(&str, Lie)> = vec![
        ("no keys leaf", Box::new(|m, _| m.keys = None)),
        ("a wrong offset", Box::new(|m, k| m.keys = Some(LeafRef { offset: k.offset + 1, ..k }))),
        ("an index as the keys leaf", Box::new(|m, _| m.keys = Some(m.releases[0].index))),
    ];
    for when in [1, 2] {
        for (what, lie) in &lies {
            let (f, manifest) = rotated(when, &**lie);
            let e = err(&f);
            assert!(matches!(&e.problem, Problem::Manifest(m) if m.contains("keys")), "release {when}, {what}: {e}");
            at(&f, &e, manifest);
        }
    }
}

#[test]
fn the_manifest_must_be_the_last_leaf_before_a_seal() {
    let mut f = forge();
    let body = b"linux".to_vec();
    let e = f.put(&body, Compression::None);
    f.index("stable", LINUX, "1.0.0", &[record("bin/app", &body, e, vec![])]);
    let m = f.honest_manifest();
    let mframe = f.leaf(&Header::Manifest(m).to_bytes().unwrap(), b"");
    // A build after the manifest, then tiles, a map and a seal over that tree.
    f.index("stable", MAC, "1.0.0", &[record("bin/app", &body, e, vec![])]);
    f.tiles_and_map(&crate::support::honest, &crate::support::honest_page);
    f.manifest = Some(dare_container::header::FrameRef { offset: mframe.offset, length: mframe.length });
    let s = f.seal_header(&[&key_a()], T0 + 1);
    let seal = f.frames.len();
    f.push_seal(&s);
    let e = err(&f);
    assert!(matches!(e.problem, Problem::Seal(_)), "{e}");
    at(&f, &e, seal);
}

#[test]
fn a_payload_of_another_length_than_stored_size_is_refused() {
    // An entry.
    let mut f = forge();
    let (mut e, stored) = stage(b"some content here", Compression::Zstd);
    e.stored_size += 1;
    let r = f.entry(&e, &stored);
    f.index("stable", LINUX, "1.0.0", &[claimed("bin/app", &e, r)]);
    close(&mut f, T0 + 1);
    let x = err(&f);
    assert!(matches!(x.problem, Problem::Payload(_)), "{x}");
    names(&f, &x, r.offset);
    // A delta.
    let mut f = forge();
    let (c1, c2) = (crate::support::content(1, 500), crate::support::content(2, 500));
    let (e1, e2) = (f.put(&c1, Compression::None), f.put(&c2, Compression::None));
    let (mut d, payload) = diff(&c1, &c2);
    d.stored_size -= 1;
    let r = f.delta(&d, &payload);
    f.index(
        "stable",
        LINUX,
        "1.0.0",
        &[record("a", &c1, e1, vec![]), record("b", &c2, e2, vec![crate::support::delta_ref(&c1, r)])],
    );
    close(&mut f, T0 + 1);
    let x = err(&f);
    assert!(matches!(x.problem, Problem::Payload(_)), "{x}");
    names(&f, &x, r.offset);
    // An index.
    let mut f = forge();
    let e = f.put(b"x", Compression::None);
    let (mut ix, payload) = zstd_index(&f, LINUX, "1.0.0", &[record("bin/app", b"x", e, vec![])]);
    ix.stored_size += 1;
    let r = f.index_frame(&ix, &payload);
    close(&mut f, T0 + 1);
    let x = err(&f);
    assert!(matches!(x.problem, Problem::Payload(_)), "{x}");
    names(&f, &x, r.offset);
}

/// An honest index whose listing is always zstd-compressed.
fn zstd_index(f: &Forge, target: &str, version: &str, files: &[FileRecord]) -> (Index, Vec<u8>) {
    let (mut ix, _) = f.index_header("stable", target, version, files, false);
    let listing = listing_bytes(files).unwrap();
    let payload = zstd::bulk::compress(&listing, 3).unwrap();
    ix.compression = Compression::Zstd;
    ix.stored_size = payload.len() as u64;
    ix.stored_sha256 = digest(&payload);
    (ix, payload)
}

#[test]
fn a_seal_whose_time_goes_backward_is_refused() {
    let mut f = forge();
    build(&mut f, LINUX, "1.0.0", "bin/app");
    close(&mut f, T0 + 10);
    build(&mut f, LINUX, "1.0.1", "bin/app");
    f.manifest();
    let seal = f.frames.len();
    f.seal(&[&key_a()], T0 + 9);
    let e = err(&f);
    assert!(matches!(e.problem, Problem::Seal(_)), "{e}");
    at(&f, &e, seal);
}

/// A seal over `f`'s tree at `time` whose checkpoint carries `extensions`.
fn seal_with(f: &mut Forge, time: u64, extensions: Vec<String>) -> usize {
    use dare_container::note::{Checkpoint, Note};
    let mut seal = f.seal_header(&[&key_a()], time);
    let n = f.tree.size();
    let root = f.tree.root_at(n).expect("root");
    let cp = Checkpoint { origin: "example.com/app".into(), size: n, root, time: Some(time), extensions };
    let note = Note::sign(&cp.to_text(), &[&key_a()]).expect("sign");
    seal.checkpoint = String::from_utf8(note.to_bytes()).expect("utf-8");
    let at = f.frames.len();
    f.push_seal(&seal);
    at
}

#[test]
fn a_seal_goes_back_in_time_only_past_a_seal_from_the_future_and_says_so() {
    const DAY: u64 = 86_400;
    let mut base = forge();
    build(&mut base, LINUX, "1.0.0", "bin/app");
    close(&mut base, T0 + 10);
    // A heartbeat ten days ahead of the seals around it: a seal from the future.
    base.seal(&[&key_a()], T0 + 10 * DAY);
    let line = |t: u64| vec![format!("supersedes-time {t}")];

    // Saying so, at a time after the honest seal before: the way out.
    let mut f = base.clone();
    seal_with(&mut f, T0 + 20, line(T0 + 10 * DAY));
    assert_eq!(ok(&f).last_seal.seal.time, T0 + 20);
    // And the log goes on from there.
    f.seal(&[&key_a()], T0 + 30);
    ok(&f);

    for (time, ext, why) in [
        (T0 + 20, vec![], "without the line"),
        (T0 + 20, line(T0 + 10 * DAY + 1), "naming another time"),
        (T0 + 5, line(T0 + 10 * DAY), "going back past the honest seal"),
        (T0 + 10 * DAY - 300, line(T0 + 10 * DAY), "within the skew of the future seal"),
        (T0 + 20, vec!["supersedes-time 01".into()], "not canonical"),
    ] {
        let mut f = base.clone();
        let at_seal = seal_with(&mut f, time, ext);
        let e = err(&f);
        assert!(matches!(e.problem, Problem::Seal(_)), "{why}: {e}");
        at(&f, &e, at_seal);
    }
    // A seal that does not go back names no superseded time.
    let mut f = base.clone();
    let at_seal = seal_with(&mut f, T0 + 11 * DAY, line(T0 + 10 * DAY));
    at(&f, &err(&f), at_seal);
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
    f.keys(trust(&[&b], 1));
    let second = f.frames.len();
    f.keys(trust(&[&a], 1));
    f.manifest();
    f.seal(&[&a, &b], T0 + 1);
    let e = err(&f);
    assert!(matches!(e.problem, Problem::Unexpected(_)), "{e}");
    at(&f, &e, second);
}

#[test]
fn a_rotation_needs_both_roots_and_then_only_the_new_one() {
    let (a, b) = (key_a(), key_b());
    let rotated = |signers: &[&SigningKey]| {
        let mut f = forge();
        f.keys(trust(&[&b], 1));
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
    // After the rotation the old key alone no longer seals a heartbeat.
    let good = f.seal_header(&[&b], T0 + 2);
    let bad = f.seal_header(&[&a], T0 + 2);
    let mut g = f.clone();
    f.push_seal(&good);
    assert_eq!(ok(&f).seals, 3);
    let seal = g.frames.len();
    g.push_seal(&bad);
    let e = err(&g);
    assert!(matches!(e.problem, Problem::Signature(_)), "{e}");
    at(&g, &e, seal);
}

#[test]
fn a_rotation_note_below_either_threshold_or_out_of_chain_is_refused_at_its_keys_leaf() {
    let (a, b, c) = (key_a(), key_b(), key_c());
    // The genesis root is a alone; the new root b and c, 2 of 2.
    let new = trust(&[&b, &c], 2);
    for (what, signers) in [
        ("the old root did not sign", vec![&b, &c]),
        ("one of two new keys", vec![&a, &b]),
        ("nobody of the new root", vec![&a]),
    ] {
        let mut f = forge();
        let keys = f.frames.len();
        f.keys_signed(new.clone(), &signers);
        f.manifest();
        // The seal itself is signed by everyone: only the keys leaf is wrong.
        f.seal(&[&a, &b, &c], T0 + 1);
        let e = err(&f);
        assert!(matches!(e.problem, Problem::Rotation(_)), "{what}: {e}");
        at(&f, &e, keys);
    }
    // A 2-of-3 old root: one old key is below its threshold.
    let g = genesis(trust(&[&a, &b, &c], 2));
    let mut f = Forge::with_genesis(&g);
    f.manifest();
    f.seal(&[&a, &b], T0);
    let keys = f.frames.len();
    f.keys_signed(trust(&[&c], 1), &[&c]);
    f.manifest();
    f.seal(&[&a, &b, &c], T0 + 1);
    let e = err(&f);
    assert!(matches!(&e.problem, Problem::Rotation(m) if m.contains("replaces")), "{e}");
    at(&f, &e, keys);

    // Two rotations: the second must name the first as the one before it.
    let mut f = forge();
    f.keys(trust(&[&b], 1));
    f.manifest();
    f.seal(&[&a, &b], T0 + 1);
    f.keys(trust(&[&c], 1));
    f.manifest();
    f.seal(&[&b, &c], T0 + 2);
    let s = ok(&f);
    assert_eq!(s.trust, trust(&[&c], 1));
    let mut f = forge();
    f.keys(trust(&[&b], 1));
    f.manifest();
    f.seal(&[&a, &b], T0 + 1);
    let skip = f.frames.len();
    let text = dare_container::seal::rotation_text(ORIGIN, &trust(&[&b], 1), &trust(&[&c], 1));
    let note = Note::sign(&text, &[&b, &c]).unwrap();
    let bad = dare_container::header::Keys {
        trust: trust(&[&c], 1),
        previous: None,
        rotation: String::from_utf8(note.to_bytes()).unwrap(),
    };
    f.leaf(&Header::Keys(bad).to_bytes().unwrap(), b"");
    f.manifest();
    f.seal(&[&b, &c], T0 + 2);
    let e = err(&f);
    assert!(matches!(&e.problem, Problem::Rotation(m) if m.contains("before it")), "{e}");
    at(&f, &e, skip);
}

#[test]
fn zstd_payloads_must_decode_to_the_signed_content() {
    // (what the header claims, what the payload decodes to)
    let zeros = vec![0u8; 1 << 20];
    type Lie = Box<dyn Fn(&mut Entry)>;
    let cases: Vec<(&str, Lie, Vec<u8>)> = vec![
        // A bomb: a small signed size, a megabyte of content.
        ("longer than its size", Box::new(|e| e.size = 10), zeros.clone()),
        ("shorter than its size", Box::new(|e| e.size += 1), zeros.clone()),
        ("another digest", Box::new(|e| e.sha256.0[0] ^= 1), b"content".to_vec()),
    ];
    for (what, lie, content) in cases {
        let mut f = forge();
        let (mut e, stored) = stage(&content, Compression::Zstd);
        lie(&mut e);
        let r = f.entry(&e, &stored);
        f.index("stable", LINUX, "1.0.0", &[claimed("bin/app", &e, r)]);
        close(&mut f, T0 + 1);
        let err = err(&f);
        assert!(matches!(err.problem, Problem::Payload(_)), "{what}: {err}");
        names(&f, &err, r.offset);
        // Structure only: the payload is not decoded.
        scan(&f.bytes, false).unwrap_or_else(|e| panic!("{what}: {e}"));
    }
    // Not a zstd stream at all, with digests that match the stored bytes.
    let mut f = forge();
    let (mut e, stored) = stage(b"plain text", Compression::None);
    e.compression = Compression::Zstd;
    let r = f.entry(&e, &stored);
    f.index("stable", LINUX, "1.0.0", &[claimed("bin/app", &e, r)]);
    close(&mut f, T0 + 1);
    let err = err(&f);
    assert!(matches!(&err.problem, Problem::Payload(m) if m.contains("zstd")), "{err}");
    names(&f, &err, r.offset);
}

#[test]
fn an_index_whose_listing_is_not_what_its_header_says_is_refused() {
    // (what, lie on the header, listing bytes to store instead of the honest ones)
    type Lie = Box<dyn Fn(&mut Index)>;
    let cases: Vec<(&str, Lie, Option<Vec<u8>>)> = vec![
        ("a wrong listing digest", Box::new(|ix| ix.sha256.0[0] ^= 1), None),
        ("a longer listing size", Box::new(|ix| ix.size += 1), None),
        ("a shorter listing size", Box::new(|ix| ix.size -= 1), None),
        ("a wrong stored digest", Box::new(|ix| ix.stored_sha256.0[31] ^= 1), None),
        ("one file more", Box::new(|ix| ix.files += 1), None),
        ("one file less", Box::new(|ix| ix.files -= 1), None),
        ("not JSON", Box::new(|_| {}), Some(b"[{\"path\":".to_vec())),
        ("not sorted", Box::new(|_| {}), Some(Vec::new())),
        ("a path out of the tree", Box::new(|_| {}), Some(b"../etc/passwd".to_vec())),
    ];
    for (what, lie, replace) in cases {
        let mut f = forge();
        let (ca, cb) = (b"a".to_vec(), b"b".to_vec());
        let (ea, eb) = (f.put(&ca, Compression::None), f.put(&cb, Compression::None));
        let mut files = vec![record("a", &ca, ea, vec![]), record("b", &cb, eb, vec![])];
        let (mut ix, _) = f.index_header("stable", LINUX, "1.0.0", &files[..1], false);
        let listing = match replace {
            None => listing_bytes(&files).unwrap(),
            Some(b) if b.is_empty() => {
                // Valid records, out of order.
                files.reverse();
                serde_json::to_vec(&files).unwrap()
            }
            Some(b) if b.starts_with(b"../") => {
                files[0].path = String::from_utf8(b).unwrap();
                serde_json::to_vec(&files).unwrap()
            }
            Some(b) => b,
        };
        let payload = zstd::bulk::compress(&listing, 3).unwrap();
        ix.files = 2;
        ix.size = listing.len() as u64;
        ix.sha256 = digest(&listing);
        ix.compression = Compression::Zstd;
        ix.stored_size = payload.len() as u64;
        ix.stored_sha256 = digest(&payload);
        lie(&mut ix);
        let r = f.index_frame(&ix, &payload);
        close(&mut f, T0 + 1);
        // Listings are read even when payloads are not checked.
        let e = scan(&f.bytes, false).expect_err(what);
        assert!(matches!(e.problem, Problem::Payload(_)), "{what}: {e}");
        names(&f, &e, r.offset);
    }
}

/// Release 1 holds `c1` and `c2` (with the delta from `c1`) for LINUX; release 2
/// is a MAC build of one file whose record is `lie(honest record of c2)`.
fn naming(lie: &dyn Fn(&mut FileRecord, &Refs)) -> (Forge, LeafRef) {
    let mut f = forge();
    let (c1, c2, c3) =
        (crate::support::content(1, 400), crate::support::content(2, 400), crate::support::content(3, 400));
    let e1 = f.put(&c1, Compression::None);
    let e2 = f.put(&c2, Compression::Zstd);
    let e3 = f.put(&c3, Compression::Zstd);
    let d = f.put_delta(&c1, &c2);
    let files = [record("a", &c1, e1, vec![]), record("b", &c2, e2, vec![d]), record("c", &c3, e3, vec![])];
    let l1 = f.index("stable", LINUX, "1.0.0", &files);
    close(&mut f, T0 + 1);
    let refs = Refs { e1, e3, d, index: l1, c3 };
    let mut rec = record("b", &c2, e2, vec![d]);
    lie(&mut rec, &refs);
    let r = f.index("stable", MAC, "1.0.0", &[rec]);
    close(&mut f, T0 + 2);
    (f, r)
}

struct Refs {
    e1: LeafRef,
    e3: LeafRef,
    d: DeltaRef,
    index: LeafRef,
    c3: Vec<u8>,
}

#[test]
fn an_index_naming_content_the_container_does_not_hold_there_is_refused() {
    let (f, _) = naming(&|_, _| {});
    let s = ok(&f);
    assert_eq!(
        s.index("stable", MAC, None).unwrap().files[0].entry,
        s.index("stable", LINUX, None).unwrap().files[1].entry
    );
    type Lie = Box<dyn Fn(&mut FileRecord, &Refs)>;
    let lies: Vec<(&str, Lie)> = vec![
        ("a missing leaf", Box::new(|r, _| r.entry.leaf = 999)),
        ("a leaf past the index", Box::new(|r, x| r.entry = LeafRef { leaf: x.index.leaf + 3, ..r.entry })),
        ("the delta leaf", Box::new(|r, x| r.entry = x.d.at())),
        ("the genesis", Box::new(|r, _| r.entry = LeafRef { leaf: 0, offset: 0, length: r.entry.length })),
        ("an index", Box::new(|r, x| r.entry = x.index)),
        ("a wrong offset", Box::new(|r, _| r.entry.offset += 1)),
        ("a wrong length", Box::new(|r, _| r.entry.length += 1)),
        ("an entry with other content", Box::new(|r, x| r.entry = x.e1)),
        ("another size", Box::new(|r, _| r.size += 1)),
        (
            "a delta that is an entry",
            Box::new(|r, x| {
                r.deltas[0] = DeltaRef { leaf: x.e1.leaf, offset: x.e1.offset, length: x.e1.length, ..r.deltas[0] }
            }),
        ),
        ("a delta from another base", Box::new(|r, _| r.deltas[0].base = digest(b"another base"))),
        ("a delta at a wrong offset", Box::new(|r, _| r.deltas[0].offset -= 1)),
        ("a missing delta leaf", Box::new(|r, _| r.deltas[0].leaf = 999)),
        // c3 (at its entry) with the delta from c1 that makes c2.
        ("a delta making other content", Box::new(|r, x| *r = record("b", &x.c3, x.e3, vec![x.d]))),
    ];
    for (what, lie) in lies {
        let (f, r) = naming(&*lie);
        let e = err(&f);
        assert!(matches!(&e.problem, Problem::Index(m) if m.contains("b:")), "{what}: {e}");
        names(&f, &e, r.offset);
    }
}

#[test]
fn a_delta_needs_its_base_and_its_result_stored_whole_before_it() {
    let (c1, c2, c3) =
        (crate::support::content(1, 400), crate::support::content(2, 400), crate::support::content(3, 400));
    let sized = |f: &dyn Fn(&mut Delta)| {
        let (mut d, p) = diff(&c1, &c2);
        f(&mut d);
        (d, p)
    };
    // (what, the delta; entries of c1 and c2 are stored before it, c3 after it)
    let cases: Vec<(&str, (Delta, Vec<u8>))> = vec![
        ("a base never stored", diff(b"never stored", &c2)),
        ("a result stored only after it", diff(&c1, &c3)),
        ("a base that is only a delta's result", diff(&diff(&c1, &c2).1, &c2)),
        ("another base size", sized(&|d| d.base_size += 1)),
        ("another result size", sized(&|d| d.size -= 1)),
        ("a result over the delta limit", sized(&|d| d.size = dare_container::content::MAX_DELTA_SIZE + 1)),
    ];
    for (what, (d, payload)) in cases {
        let mut f = forge();
        let e1 = f.put(&c1, Compression::None);
        let e2 = f.put(&c2, Compression::None);
        let r = f.delta(&d, &payload);
        let e3 = f.put(&c3, Compression::None);
        let files = [record("a", &c1, e1, vec![]), record("b", &c2, e2, vec![]), record("c", &c3, e3, vec![])];
        f.index("stable", LINUX, "1.0.0", &files);
        close(&mut f, T0 + 1);
        let e = scan(&f.bytes, false).expect_err(what);
        assert!(matches!(e.problem, Problem::Entry(_)), "{what}: {e}");
        names(&f, &e, r.offset);
    }
}

#[test]
fn a_delta_that_does_not_make_its_content_fails_the_payload_check() {
    // c2 is c1 with a change; `sibling` is c2 with another change.
    let (c1, c3) = (crate::support::content(1, 4000), crate::support::content(3, 4000));
    let changed = |c: &[u8], at: usize| {
        let mut c = c.to_vec();
        c[at..at + 10].copy_from_slice(b"0123456789");
        c
    };
    let (c2, near) = (changed(&c1, 1000), changed(&c1, 100));
    let sibling = changed(&c2, 2000);
    let longer = [c2.clone(), b"x".to_vec()].concat();
    // (what, the delta header as signed, the payload stored)
    let cases: Vec<(&str, Delta, Vec<u8>)> = vec![
        ("a patch against another base", diff(&c1, &c2).0, diff(&sibling, &c2).1),
        ("not a zstd frame", diff(&c1, &c2).0, b"not zstd at all".to_vec()),
        ("a patch making other content", diff(&c1, &c3).0, diff(&c1, &near).1),
        ("a patch making longer content", diff(&c1, &c2).0, diff(&c1, &longer).1),
        ("a truncated patch", diff(&c1, &c2).0, {
            let p = diff(&c1, &c2).1;
            p[..p.len() - 1].to_vec()
        }),
    ];
    for (what, d, payload) in cases {
        let d = with_payload(d, &payload);
        let mut f = forge();
        let e1 = f.put(&c1, Compression::None);
        let e2 = f.put(&c2, Compression::Zstd);
        let e3 = f.put(&c3, Compression::Zstd);
        let r = f.delta(&d, &payload);
        let (result, er, other, eo) = if d.sha256 == digest(&c2) { (&c2, e2, &c3, e3) } else { (&c3, e3, &c2, e2) };
        let files = [
            record("bin/app", result, er, vec![crate::support::delta_ref(&c1, r)]),
            record("o1", &c1, e1, vec![]),
            record("o2", other, eo, vec![]),
        ];
        f.index("stable", LINUX, "1.0.0", &files);
        close(&mut f, T0 + 1);
        let e = scan(&f.bytes, true).expect_err(what);
        assert!(matches!(&e.problem, Problem::Payload(m) if m.contains("delta")), "{what}: {e}");
        names(&f, &e, r.offset);
        // Without payloads the delta is not applied.
        scan(&f.bytes, false).unwrap_or_else(|e| panic!("{what}: {e}"));
    }
}

/// `d` with the stored size and digest of `payload`.
fn with_payload(mut d: Delta, payload: &[u8]) -> Delta {
    d.stored_size = payload.len() as u64;
    d.stored_sha256 = digest(payload);
    d
}

#[test]
fn an_entry_or_delta_named_by_no_index_of_its_release_is_refused() {
    let (c1, c2) = (crate::support::content(1, 400), crate::support::content(2, 400));
    // An entry no index names.
    let mut f = forge();
    let e1 = f.put(&c1, Compression::None);
    let stray = f.put(&c2, Compression::None);
    f.index("stable", LINUX, "1.0.0", &[record("a", &c1, e1, vec![])]);
    close(&mut f, T0 + 1);
    let e = err(&f);
    assert!(matches!(&e.problem, Problem::Entry(m) if m.contains("no index")), "{e}");
    names(&f, &e, stray.offset);
    // A delta no index names (its result is named, without it).
    let mut f = forge();
    let e1 = f.put(&c1, Compression::None);
    let e2 = f.put(&c2, Compression::None);
    let d = f.put_delta(&c1, &c2);
    f.index("stable", LINUX, "1.0.0", &[record("a", &c1, e1, vec![]), record("b", &c2, e2, vec![])]);
    close(&mut f, T0 + 1);
    let e = err(&f);
    assert!(matches!(&e.problem, Problem::Entry(m) if m.contains("no index")), "{e}");
    names(&f, &e, d.offset);
    // An entry named only by an index of the next release.
    let mut f = forge();
    let e1 = f.put(&c1, Compression::None);
    let early = f.put(&c2, Compression::None);
    f.index("stable", LINUX, "1.0.0", &[record("a", &c1, e1, vec![])]);
    close(&mut f, T0 + 1);
    f.index("stable", LINUX, "1.1.0", &[record("a", &c2, early, vec![])]);
    close(&mut f, T0 + 2);
    let e = err(&f);
    assert!(matches!(&e.problem, Problem::Entry(m) if m.contains("no index")), "{e}");
    names(&f, &e, early.offset);
}

#[test]
fn content_stored_again_is_wasteful_not_wrong() {
    // A file reverted to a version older than the releases a publisher looks
    // back on is stored again, and so is a delta it already made.
    let (c1, c2) = (crate::support::content(1, 400), crate::support::content(2, 400));
    let mut f = forge();
    let e1 = f.put(&c1, Compression::None);
    f.index("stable", LINUX, "1.0.0", &[record("a", &c1, e1, vec![])]);
    close(&mut f, T0 + 1);
    let e2 = f.put(&c2, Compression::None);
    let d12 = f.put_delta(&c1, &c2);
    f.index("stable", LINUX, "1.1.0", &[record("a", &c2, e2, vec![d12])]);
    close(&mut f, T0 + 2);
    let again = f.put(&c1, Compression::Zstd);
    let d21 = f.put_delta(&c2, &c1);
    f.index("stable", LINUX, "1.2.0", &[record("a", &c1, again, vec![d21])]);
    close(&mut f, T0 + 3);
    let e2_again = f.put(&c2, Compression::Zstd);
    let d12_again = f.put_delta(&c1, &c2);
    f.index("stable", LINUX, "1.3.0", &[record("a", &c2, e2_again, vec![d12_again])]);
    close(&mut f, T0 + 4);
    let s = ok(&f);
    assert_eq!(s.index("stable", LINUX, None).unwrap().files[0].entry, e2_again);
}

/// A container of 65,600 one-file contents sealed with a page, its map
/// and pages written by `map_lie` and `page_lie`, and the frame indexes of
/// the map and of the page.
fn paged(map_lie: &dyn Fn(&mut Vec<u8>), page_lie: &dyn Fn(u8, u64, &mut Vec<u8>)) -> (Forge, usize, usize) {
    static BASE: OnceLock<Forge> = OnceLock::new();
    let base = BASE.get_or_init(|| {
        let mut f = forge();
        let files: Vec<FileRecord> = (0..65_600u64)
            .map(|i| {
                let c = i.to_le_bytes();
                let at = f.put(&c, Compression::None);
                record(&format!("f/{i:06}"), &c, at, vec![])
            })
            .collect();
        let (ix, payload) = f.index_header("stable", LINUX, "1.0.0", &files, false);
        f.index_frame(&ix, &payload);
        f
    });
    let mut f = base.clone();
    let mbytes = Header::Manifest(f.honest_manifest()).to_bytes().unwrap();
    f.tail_with(&mbytes, map_lie, page_lie);
    f.seal(&[&key_a()], T0 + 1);
    let page = f.holding(f.pages[0][0]);
    let map = f.index_of(f.map.unwrap().offset);
    (f, map, page)
}

#[test]
fn a_map_that_lies_is_refused_naming_the_map() {
    let (f, _, _) = paged(&crate::support::honest, &crate::support::honest_page);
    let s = scan(&f.bytes, false).unwrap();
    assert_eq!((s.size(), f.pages[0].len(), f.pages[1].len()), (65_604, 1, 0));
    // The map of 65,604 leaves: the frontier of 65,603, then level 0: one
    // page, no loose tile, the edge; level 1: one loose tile; level 2: the edge.
    let frontier = 32 * (65_603u64.count_ones() as usize);
    assert_eq!(crate::support::frame_at(&f.bytes, f.map.unwrap().offset).payload_len, (frontier + 4 * 8) as u64);
    type Lie = Box<dyn Fn(&mut Vec<u8>)>;
    let lies: Vec<(&str, Lie)> = vec![
        ("a wrong frontier", Box::new(|m| m[0] ^= 1)),
        ("a wrong last frontier hash", Box::new(move |m| m[frontier - 1] ^= 1)),
        ("a wrong page offset", Box::new(move |m| m[frontier + 7] ^= 8)),
        (
            "a page offset that is a tile's",
            Box::new(move |m| {
                let loose1 = u64::from_be_bytes(m[frontier + 16..frontier + 24].try_into().unwrap());
                m[frontier..frontier + 8].copy_from_slice(&loose1.to_be_bytes());
            }),
        ),
        ("a wrong edge offset", Box::new(move |m| m[frontier + 15] ^= 1)),
        ("a wrong loose tile offset", Box::new(move |m| m[frontier + 23] ^= 2)),
        (
            "two tiles swapped",
            Box::new(move |m| {
                let (a, b) = (m[frontier + 8..frontier + 16].to_vec(), m[frontier + 16..frontier + 24].to_vec());
                m[frontier + 8..frontier + 16].copy_from_slice(&b);
                m[frontier + 16..frontier + 24].copy_from_slice(&a);
            }),
        ),
        ("one slot short", Box::new(|m| drop(m.split_off(m.len() - 8)))),
    ];
    for (what, lie) in lies {
        let (f, map, _) = paged(&*lie, &crate::support::honest_page);
        let e = scan(&f.bytes, false).expect_err(what);
        assert!(matches!(e.problem, Problem::Map(_)), "{what}: {e}");
        at(&f, &e, map);
    }
}

#[test]
fn a_page_that_lies_is_refused_naming_the_page() {
    type Lie = Box<dyn Fn(u8, u64, &mut Vec<u8>)>;
    let lies: Vec<(&str, Lie)> = vec![
        ("slot 0 off by one", Box::new(|_, _, p| p[7] ^= 1)),
        (
            "slot 255 naming tile 254",
            Box::new(|_, _, p| {
                let t254 = p[254 * 8..255 * 8].to_vec();
                p[255 * 8..].copy_from_slice(&t254);
            }),
        ),
        ("slot 5 off by 4096", Box::new(|_, _, p| p[5 * 8 + 6] ^= 0x10)),
        ("slot 100 zero", Box::new(|_, _, p| p[100 * 8..101 * 8].fill(0))),
    ];
    for (what, lie) in lies {
        let (f, _, page) = paged(&crate::support::honest, &*lie);
        let e = scan(&f.bytes, false).expect_err(what);
        assert!(matches!(&e.problem, Problem::Map(m) if m.contains("page")), "{what}: {e}");
        at(&f, &e, page);
    }
}

#[test]
fn a_seal_must_name_the_latest_map_and_manifest() {
    let mut f = forge();
    build(&mut f, LINUX, "1.0.0", "bin/app");
    close(&mut f, T0 + 1);
    build(&mut f, LINUX, "1.1.0", "bin/app");
    close(&mut f, T0 + 2);
    let s = ok(&f);
    let last = s.last_seal.seal.clone();
    let older_map = f.maps[f.maps.len() - 2];
    let older_manifest = s.indexes[0].at();
    type Lie = Box<dyn Fn(&mut dare_container::header::Seal)>;
    let lies: Vec<(&str, Lie)> = vec![
        ("the map of the release before", Box::new(move |s| s.map = older_map)),
        ("the manifest frame as its map", Box::new(|s| s.map = s.manifest)),
        ("a map of another length", Box::new(|s| s.map.length += 1)),
        (
            "an index as its manifest",
            Box::new(move |s| {
                s.manifest =
                    dare_container::header::FrameRef { offset: older_manifest.offset, length: older_manifest.length }
            }),
        ),
        ("the map as its manifest", Box::new(|s| s.manifest = s.map)),
    ];
    for (what, lie) in lies {
        // A heartbeat.
        let mut g = f.clone();
        let mut seal = g.seal_header(&[&key_a()], T0 + 3);
        assert_eq!((seal.map, seal.manifest), (last.map, last.manifest));
        lie(&mut seal);
        let i = g.frames.len();
        g.push_seal(&seal);
        let e = err(&g);
        assert!(matches!(e.problem, Problem::Map(_) | Problem::Seal(_)), "heartbeat, {what}: {e}");
        at(&g, &e, i);
    }
    // The map frame's own size must be the tree's.
    let mut g = forge();
    build(&mut g, LINUX, "1.0.0", "bin/app");
    g.manifest();
    let n = g.tree.size();
    let h = Header::Map(Map { size: n - 1 }).to_bytes().unwrap();
    let r = g.frame(&h, &vec![0u8; dare_container::map::payload_len(n - 1) as usize]);
    g.map = Some(r);
    let seal = g.frames.len();
    g.seal(&[&key_a()], T0 + 1);
    let e = err(&g);
    assert!(matches!(e.problem, Problem::Map(_) | Problem::Seal(_)), "{e}");
    assert!([g.index_of(r.offset), seal].contains(&(e.frame as usize)), "{e}");
    assert_eq!(e.offset, g.frames[e.frame as usize].offset);
}
