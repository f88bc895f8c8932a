//! The appender: the log's rules on the way in, reading only the tail,
//! crash safety, locking, determinism and key rotation.

use std::path::{Path, PathBuf};

use crate::support::{
    Builder, T0, TARGETS, digest, genesis, key_a, key_b, key_c, layout, put, put_build, put_delta, record, trust,
};
use dare_container::header::{Compression, DeltaRef, FileRecord, Header, LeafRef};
use dare_container::verify::{Problem, ScanOptions, Tail};
use dare_container::{Appender, Error, pending_path, pending_publish, scan_file, verify_file};

const LINUX: &str = TARGETS[0];
const MAC: &str = TARGETS[1];

/// A fresh container signed by A alone.
fn fresh() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.dare");
    let a = key_a();
    Appender::create(&path, genesis(trust(&[&a], 1)), &[&a], T0).unwrap();
    (dir, path)
}

/// The content of `path` in a build.
fn body(target: &str, version: &str, path: &str) -> Vec<u8> {
    format!("{target} {version} {path}").into_bytes()
}

/// Appends a build of one file on `stable`.
fn build(app: &mut Appender, target: &str, version: &str, path: &str) -> Result<LeafRef, Error> {
    put_build(app, "stable", target, version, path, &body(target, version, path))
}

/// Publishes one build of `bin/app` per (target, version) and seals with A at `time`.
fn release(path: &Path, builds: &[(&str, &str)], time: u64) {
    let mut app = Appender::open(path).unwrap();
    for (target, version) in builds {
        build(&mut app, target, version, "bin/app").unwrap();
    }
    app.seal(&[&key_a()], time).unwrap();
}

fn refused(r: Result<impl std::fmt::Debug, Error>) -> String {
    match r {
        Err(Error::Refused(m)) => m,
        other => panic!("expected Error::Refused, got {other:?}"),
    }
}

fn verified(path: &Path) -> dare_container::verify::Scan {
    verify_file(path, &ScanOptions::full()).unwrap()
}

#[test]
fn versions_increase_by_semver_precedence() {
    let (_d, path) = fresh();
    release(&path, &[(LINUX, "1.0.0-rc.1")], T0 + 1);
    release(&path, &[(LINUX, "1.0.0")], T0 + 2);
    let mut app = Appender::open(&path).unwrap();
    let c = body(LINUX, "1.0.1", "bin/app");
    let at = put(&mut app, &c, Compression::Zstd).unwrap();
    let files = [record("bin/app", &c, at, vec![])];
    for v in ["1.0.0", "1.0.0+b2", "1.0.0-rc.2", "0.9.9"] {
        let m = refused(app.append_index("stable", LINUX, v, &files));
        assert!(m.contains("not greater than 1.0.0"), "{v}: {m}");
        assert_eq!(refused(app.check_release("stable", LINUX, v)), m);
    }
    // A refused index writes nothing: the appender goes on.
    app.check_release("stable", LINUX, "1.0.1").unwrap();
    app.append_index("stable", LINUX, "1.0.1", &files).unwrap();
    // Another target and another channel have their own order.
    build(&mut app, MAC, "0.1.0", "bin/app").unwrap();
    put_build(&mut app, "beta", LINUX, "0.0.1", "bin/app", b"beta").unwrap();
    app.seal(&[&key_a()], T0 + 3).unwrap();
    let s = verified(&path);
    assert_eq!(s.manifest.release("stable", LINUX).unwrap().version, "1.0.1");
    assert_eq!(s.manifest.release("beta", LINUX).unwrap().version, "0.0.1");
}

#[test]
fn one_build_per_target_and_channel_in_a_release_and_a_listing_without_repeats() {
    let (_d, path) = fresh();
    let mut app = Appender::open(&path).unwrap();
    let c = body(LINUX, "1.0.0", "bin/app");
    let at = put(&mut app, &c, Compression::None).unwrap();
    let rec = |p: &str| record(p, &c, at, vec![]);
    app.append_index("stable", LINUX, "1.0.0", &[rec("bin/app")]).unwrap();
    for v in ["1.0.1", "1.0.0+b1", "1.0.0"] {
        let m = refused(app.append_index("stable", LINUX, v, &[rec("lib/x")]));
        assert!(m.contains("two builds in one release"), "{v}: {m}");
    }
    // Listings are sorted by path, without repeats, and a file is not a directory.
    for files in [vec![rec("a"), rec("a")], vec![rec("b"), rec("a")], vec![rec("a"), rec("a/b")]] {
        let r = app.append_index("stable", MAC, "2.0.0", &files);
        assert!(matches!(&r, Err(Error::Header(e)) if e.to_string().contains("path")), "{files:?}: {r:?}");
    }
    // The same content for another target and another channel is one entry.
    app.append_index("stable", MAC, "2.0.0", &[rec("bin/app"), rec("lib/x")]).unwrap();
    app.append_index("beta", LINUX, "1.0.0", &[rec("bin/app")]).unwrap();
    app.seal(&[&key_a()], T0 + 1).unwrap();
    let s = verified(&path);
    assert_eq!(s.entries.len(), 1);
    assert_eq!(s.index("stable", MAC, None).unwrap().files.len(), 2);
    assert_eq!(s.manifest.releases.len(), 3);
}

#[test]
fn entries_and_indexes_must_carry_valid_headers_and_the_announced_digests() {
    let (_d, path) = fresh();
    let before = std::fs::read(&path).unwrap();
    let mut app = Appender::open(&path).unwrap();
    let c = b"announced".to_vec();
    let at = put(&mut app, &c, Compression::None).unwrap();
    let files = [record("bin/app", &c, at, vec![])];
    for (channel, target, version) in [
        ("stable", "not-a-triple", "1.0.0"),
        ("stable", "riscv128-unknown-linux-gnu", "1.0.0"),
        ("stable", LINUX, "1.0"),
        ("Stable", LINUX, "1.0.0"),
    ] {
        let r = app.append_index(channel, target, version, &files);
        assert!(matches!(r, Err(Error::Header(_))), "{channel} {target} {version}: {r:?}");
    }
    let r = app.append_index("stable", LINUX, "1.0.0", &[record("../a", &c, at, vec![])]);
    assert!(matches!(r, Err(Error::Header(_))), "{r:?}");
    // An entry header that breaks the format.
    let (mut e, stored) = crate::support::stage(&c, Compression::None);
    e.stored_size += 1;
    let r = app.append_entry(e, &mut stored.as_slice());
    assert!(matches!(r, Err(Error::Header(_))), "{r:?}");
    // A payload that is not what the header announces.
    let (e, _) = crate::support::stage(b"announced!", Compression::None);
    let mut other = &b"different!"[..];
    let m = refused(app.append_entry(e, &mut other));
    assert!(m.contains("hashed to"), "{m}");
    // The file holds the rejected bytes until the append is given up.
    app.abort().unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), before);
    // A delta payload that is not what its header announces.
    let mut app = Appender::open(&path).unwrap();
    put(&mut app, &c, Compression::None).unwrap();
    put(&mut app, b"announced twice", Compression::None).unwrap();
    let (mut d, payload) = crate::support::diff(&c, b"announced twice");
    d.stored_sha256.0[0] ^= 1;
    let m = refused(app.append_delta(d, &mut payload.as_slice()));
    assert!(m.contains("hashed to"), "{m}");
    app.abort().unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), before);
    // A payload longer or shorter than announced.
    for stored in [&b"announced!"[..], &b"announce"[..]] {
        let mut app = Appender::open(&path).unwrap();
        let (e, _) = crate::support::stage(b"announced", Compression::None);
        let mut r = stored;
        assert!(app.append_entry(e, &mut r).is_err(), "{} bytes for 9", stored.len());
        app.abort().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }
}

#[test]
fn an_index_names_only_what_this_release_appended_as_it_was_appended() {
    let (_d, path) = fresh();
    let mut app = Appender::open(&path).unwrap();
    let (c1, c2) = (crate::support::content(1, 300), crate::support::content(2, 300));
    let e1 = put(&mut app, &c1, Compression::None).unwrap();
    let e2 = put(&mut app, &c2, Compression::Zstd).unwrap();
    let d = put_delta(&mut app, &c1, &c2).unwrap();
    type Lie = Box<dyn Fn(&mut FileRecord)>;
    let lies: Vec<(&str, Lie)> = vec![
        ("a leaf never appended", Box::new(|r| r.entry.leaf += 10)),
        ("a wrong offset", Box::new(|r| r.entry.offset += 1)),
        ("a wrong length", Box::new(|r| r.entry.length -= 1)),
        ("an entry of other content", Box::new(move |r| r.entry = e1)),
        ("the delta as its entry", Box::new(move |r| r.entry = d.at())),
        (
            "an entry as its delta",
            Box::new(move |r| {
                r.deltas[0] = DeltaRef { leaf: e1.leaf, offset: e1.offset, length: e1.length, ..r.deltas[0] }
            }),
        ),
        ("a delta from another base", Box::new(|r| r.deltas[0].base = digest(b"x"))),
    ];
    for (what, lie) in lies {
        let mut rec = record("b", &c2, e2, vec![d]);
        lie(&mut rec);
        let m = refused(app.append_index("stable", LINUX, "1.0.0", &[record("a", &c1, e1, vec![]), rec]));
        assert!(m.contains("b: no such entry"), "{what}: {m}");
    }
    app.append_index("stable", LINUX, "1.0.0", &[record("a", &c1, e1, vec![]), record("b", &c2, e2, vec![d])]).unwrap();
    app.seal(&[&key_a()], T0 + 1).unwrap();
    let s = verified(&path);
    assert_eq!((s.entries.len(), s.indexes.len()), (3, 1));
}

#[test]
fn a_seal_refuses_content_no_index_of_the_release_names() {
    let (_d, path) = fresh();
    let before = std::fs::read(&path).unwrap();
    let (c1, c2) = (crate::support::content(1, 300), crate::support::content(2, 300));
    // An entry, and a delta whose result the index names without it.
    for with_delta in [false, true] {
        let mut app = Appender::open(&path).unwrap();
        let e1 = put(&mut app, &c1, Compression::None).unwrap();
        let e2 = put(&mut app, &c2, Compression::None).unwrap();
        let stray = if with_delta { put_delta(&mut app, &c1, &c2).unwrap().leaf } else { e2.leaf };
        let mut files = vec![record("a", &c1, e1, vec![])];
        if with_delta {
            files.push(record("b", &c2, e2, vec![]));
        }
        app.append_index("stable", LINUX, "1.0.0", &files).unwrap();
        let m = refused(app.seal(&[&key_a()], T0 + 1));
        assert!(m.contains(&format!("leaf {stray} is named by no index")), "{m}");
        // The refused seal left an unsealed tail that the next open cuts off.
        let app = Appender::open(&path).unwrap();
        assert!(app.cut_tail().is_some());
        drop(app);
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }
}

#[test]
fn a_later_release_names_sealed_content_without_storing_it_again() {
    let (_d, path) = fresh();
    let shared = b"shared".to_vec();
    let mut app = Appender::open(&path).unwrap();
    let at = put(&mut app, &shared, Compression::None).unwrap();
    app.append_index("stable", LINUX, "1.0.0", &[record("doc", &shared, at, vec![])]).unwrap();
    app.seal(&[&key_a()], T0 + 1).unwrap();
    let mut app = Appender::open(&path).unwrap();
    // What a publisher does: read the live index, and name its entries.
    let live = app.manifest().release("stable", LINUX).unwrap().index;
    let (ix, mut files) = app.read_index(live).unwrap();
    assert_eq!((ix.version.as_str(), files.len()), ("1.0.0", 1));
    assert_eq!(app.entry_header(files[0].entry, files[0].sha256).unwrap().size, shared.len() as u64);
    app.append_index("stable", MAC, "1.1.0", &files).unwrap();
    files.push(record("doc2", &shared, at, vec![]));
    app.append_index("stable", LINUX, "1.1.0", &files).unwrap();
    app.seal(&[&key_a()], T0 + 2).unwrap();
    let s = verified(&path);
    assert_eq!(s.entries.len(), 1);
    let newest = s.index("stable", LINUX, None).unwrap();
    assert_eq!((newest.index.previous, &newest.files), (Some(live), &files));
    assert_eq!(s.index("stable", MAC, None).unwrap().index.previous, None);
}

#[test]
fn an_index_carries_a_patch_against_the_previous_listing_when_that_is_smaller() {
    let (_d, path) = fresh();
    let contents: Vec<Vec<u8>> = (0..30).map(|i| crate::support::content(i, 40)).collect();
    let mut app = Appender::open(&path).unwrap();
    let mut files: Vec<FileRecord> = contents
        .iter()
        .enumerate()
        .map(|(i, c)| record(&format!("lib/{i:02}"), c, put(&mut app, c, Compression::None).unwrap(), vec![]))
        .collect();
    let first = app.append_index("stable", LINUX, "1.0.0", &files).unwrap();
    app.seal(&[&key_a()], T0 + 1).unwrap();
    // One file changed: the listing is a small patch against the previous one.
    let mut app = Appender::open(&path).unwrap();
    let c = crate::support::content(99, 40);
    files[7] = record("lib/07", &c, put(&mut app, &c, Compression::None).unwrap(), vec![]);
    let second = app.append_index("stable", LINUX, "1.1.0", &files).unwrap();
    app.seal(&[&key_a()], T0 + 2).unwrap();
    let s = verified(&path);
    let bytes = std::fs::read(&path).unwrap();
    let (a, b) = (s.index("stable", LINUX, Some("1.0.0")).unwrap(), s.index("stable", LINUX, None).unwrap());
    assert_eq!((a.at(), b.at()), (first, second));
    assert!(a.index.patch.is_none(), "a first build has nothing to patch against");
    let patch = b.index.patch.expect("a patch");
    assert!(patch.stored_size < b.index.stored_size, "{patch:?}");
    assert_eq!(patch.base, a.index.sha256);
    let base = dare_container::header::listing_bytes(&a.files).unwrap();
    let listing =
        dare_container::content::listing_from_patch(bytes.as_slice(), b.frame.payload_offset, &b.index, &base).unwrap();
    assert_eq!(listing, dare_container::header::listing_bytes(&files).unwrap());
    let head = s.manifest.release("stable", LINUX).unwrap().head.expect("the manifest says where the patch ends");
    assert_eq!(head, b.frame.payload_offset - b.frame.offset + patch.stored_size);
    // The same files again under a new version: nothing to patch, and nothing refused.
    let mut app = Appender::open(&path).unwrap();
    app.append_index("stable", LINUX, "1.2.0", &files).unwrap();
    app.seal(&[&key_a()], T0 + 3).unwrap();
    let s = verified(&path);
    assert_eq!(s.index("stable", LINUX, None).unwrap().files, files);
}

#[test]
fn read_index_proves_an_index_and_entries_are_read_by_their_digest() {
    let f = Builder::default().build();
    let app = Appender::open(&f.path).unwrap();
    for b in &f.builds {
        let (ix, files) = app.read_index(b.index).unwrap();
        assert_eq!((&ix.channel, &ix.target, &ix.version, &files), (&b.channel, &b.target, &b.version, &b.files));
        for rec in &files {
            let c = &b.contents[&rec.path];
            assert_eq!(app.entry_header(rec.entry, rec.sha256).unwrap().sha256, rec.sha256);
            assert_eq!(&app.entry_bytes(rec.entry, rec.sha256, 1 << 20).unwrap(), c);
            if !c.is_empty() {
                refused(app.entry_bytes(rec.entry, rec.sha256, c.len() as u64 - 1));
            }
            refused(app.entry_header(rec.entry, digest(b"other")));
            refused(app.entry_bytes(rec.entry, digest(b"other"), 1 << 20));
        }
    }
    let at = f.builds[1].index;
    let entry = f.builds[1].files[0].entry;
    let len = f.seals.last().unwrap().len;
    for (what, r, says) in [
        ("a wrong offset", LeafRef { offset: at.offset + 1, ..at }, "byte"),
        ("a wrong length", LeafRef { length: at.length + 1, ..at }, "length"),
        ("a wrong leaf", LeafRef { leaf: at.leaf + 1, ..at }, "signed tree"),
        ("an entry", entry, "not an index"),
        ("past the seal", LeafRef { offset: len, length: 10, ..at }, "sealed log"),
        ("a leaf past the tree", LeafRef { leaf: 1 << 40, ..at }, "sealed log"),
    ] {
        let m = refused(app.read_index(r));
        assert!(m.contains(says), "{what}: {m}");
    }
}

#[test]
fn open_reads_the_tail_and_leaves_the_log_to_verify() {
    let f = Builder { releases: 2, ..Builder::default() }.build();
    let bytes = f.bytes();
    let frames = layout(&bytes);
    let scan = verified(&f.path);
    // A flipped payload byte and a flipped index header byte in the sealed log:
    // open does not read them (verify does).
    let entry = &scan.entries[0].frame;
    let entry_index = frames.iter().position(|fr| fr.info.offset == entry.offset).unwrap() as u64;
    let index = frames.iter().find(|fr| fr.kind() == "index").unwrap();
    for (at, frame) in [(entry.payload_offset + 1, entry_index), (index.info.header_offset + 20, index.index)] {
        let mut bad = bytes.clone();
        bad[at as usize] ^= 1;
        std::fs::write(&f.path, &bad).unwrap();
        Appender::open(&f.path).unwrap().abort().unwrap();
        let e = crate::support::verify_error(verify_file(&f.path, &ScanOptions::full()).unwrap_err());
        assert_eq!(e.frame, frame, "{e}");
    }
    // A damaged tail is refused: the last seal, its map, its manifest, a right-edge tile.
    let last = frames.len() - 1;
    let tile = frames.iter().rev().find(|fr| fr.kind() == "tile").unwrap();
    let signature = bytes.len() - 120;
    for (what, at) in [
        ("the seal's signature", signature as u64),
        ("the map's frontier", frames[last - 2].info.payload_offset),
        ("the manifest", frames[last - 1].info.header_offset + 30),
        ("a right-edge tile", tile.info.payload_offset + 5),
    ] {
        let mut bad = bytes.clone();
        bad[at as usize] ^= 1;
        std::fs::write(&f.path, &bad).unwrap();
        let r = Appender::open(&f.path);
        assert!(matches!(r, Err(Error::Refused(_))), "{what}: {r:?}");
        assert_eq!(std::fs::read(&f.path).unwrap(), bad, "{what}: a refused open changes nothing");
    }
}

#[test]
fn signing_keys_must_be_in_the_trust_root() {
    let (_d, path) = fresh();
    let before = std::fs::read(&path).unwrap();
    let mut app = Appender::open(&path).unwrap();
    build(&mut app, LINUX, "1.0.0", "bin/app").unwrap();
    let m = refused(app.seal(&[&key_b()], T0 + 1));
    assert!(m.contains("not in the container's trust root"), "{m}");
    // A refused seal leaves an unsealed tail, never a broken container.
    let s = verified(&path);
    assert_eq!(s.sealed_len, before.len() as u64);
    assert!(matches!(s.tail, Tail::Torn { offset, .. } if offset == before.len() as u64));
    let app = Appender::open(&path).unwrap();
    assert!(app.cut_tail().is_some());
    drop(app);
    assert_eq!(std::fs::read(&path).unwrap(), before);
    // No key at all.
    let app = Appender::open(&path).unwrap();
    refused(app.seal(&[], T0 + 1));
    // Creating a container whose genesis does not trust the signer.
    let other = path.with_file_name("other.dare");
    let m = refused(Appender::create(&other, genesis(trust(&[&key_a()], 1)), &[&key_b()], T0));
    assert!(m.contains("not in the container's trust root"), "{m}");
    assert!(!other.exists());
}

#[test]
fn a_two_of_three_root_needs_two_distinct_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.dare");
    let (a, b, c) = (key_a(), key_b(), key_c());
    let g = genesis(trust(&[&a, &b, &c], 2));
    let m = refused(Appender::create(&path, g.clone(), &[&a], T0));
    assert!(m.contains("needs 2 distinct signing keys; 1 given"), "{m}");
    assert!(!path.exists(), "a refused create leaves no file");
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "no temporary file is left");
    Appender::create(&path, g, &[&a, &b], T0).unwrap();
    assert_eq!(verified(&path).last_seal.signers, vec![a.verifier(), b.verifier()]);
    let mut app = Appender::open(&path).unwrap();
    build(&mut app, LINUX, "1.0.0", "bin/app").unwrap();
    app.seal(&[&c, &b], T0 + 1).unwrap();
    assert_eq!(verified(&path).last_seal.signers, vec![c.verifier(), b.verifier()]);
    // The same key twice is one key.
    let app = Appender::open(&path).unwrap();
    refused(app.seal(&[&a, &a], T0 + 2));
    // Pinning a single key cannot meet a threshold of two.
    let pinned = scan_file(&path, &ScanOptions::default().with_pins(Some(vec![a.verifier()])));
    assert!(pinned.is_err());
    let pinned = scan_file(&path, &ScanOptions::default().with_pins(Some(vec![a.verifier(), b.verifier()])));
    let err = crate::support::verify_error(pinned.expect_err("seal 2 is signed by b and c; only b is pinned with a"));
    assert!(matches!(err.problem, Problem::Signature(_)), "{err}");
}

#[test]
fn time_never_goes_backward() {
    let (_d, path) = fresh();
    release(&path, &[(LINUX, "1.0.0")], T0 + 100);
    let app = Appender::open(&path).unwrap();
    let m = refused(app.seal(&[&key_a()], T0 + 99));
    assert!(m.contains("is before the previous seal's"), "{m}");
    // The same second is not going backward.
    let app = Appender::open(&path).unwrap();
    assert_eq!(app.last_time(), Some(T0 + 100));
    app.seal(&[&key_a()], T0 + 100).unwrap();
    assert_eq!(verified(&path).seals, 3);
}

#[test]
fn open_cuts_a_torn_tail_and_reports_it() {
    let (_d, path) = fresh();
    release(&path, &[(LINUX, "1.0.0")], T0 + 1);
    let sealed = std::fs::read(&path).unwrap();
    // A publisher that dies after two builds: no seal, a pending file.
    let mut app = Appender::open(&path).unwrap();
    build(&mut app, LINUX, "1.1.0", "bin/app").unwrap();
    build(&mut app, MAC, "1.1.0", "bin/app").unwrap();
    drop(app);
    let torn = std::fs::metadata(&path).unwrap().len();
    assert!(torn > sealed.len() as u64);
    assert_eq!(pending_publish(&path), Some(sealed.len() as u64));
    let s = verified(&path);
    assert_eq!(
        s.tail,
        Tail::Torn {
            offset: sealed.len() as u64,
            len: torn - sealed.len() as u64,
            reason: "4 frame(s) after the last seal are not sealed".into()
        }
    );
    let app = Appender::open(&path).unwrap();
    let cut = app.cut_tail().expect("a cut tail").clone();
    assert_eq!((cut.offset, cut.len), (sealed.len() as u64, torn - sealed.len() as u64));
    assert_eq!(std::fs::read(&path).unwrap(), sealed);
    assert!(!pending_path(&path).exists());
    assert_eq!(pending_publish(&path), None);
    // The same release can now be published again.
    let mut app = app;
    build(&mut app, LINUX, "1.1.0", "bin/app").unwrap();
    app.seal(&[&key_a()], T0 + 2).unwrap();
    assert_eq!(verified(&path).manifest.release("stable", LINUX).unwrap().version, "1.1.0");
    // A clean container has nothing to cut.
    assert!(Appender::open(&path).unwrap().cut_tail().is_none());
}

#[test]
fn open_refuses_bytes_after_the_last_seal_that_no_pending_file_explains() {
    let (_d, path) = fresh();
    release(&path, &[(LINUX, "1.0.0")], T0 + 1);
    let sealed = std::fs::read(&path).unwrap();
    let mut app = Appender::open(&path).unwrap();
    build(&mut app, LINUX, "1.1.0", "bin/app").unwrap();
    drop(app);
    let torn = std::fs::read(&path).unwrap();
    // No pending file, or one that names no seal's end.
    for pending in [None, Some(sealed.len() as u64 - 1), Some(torn.len() as u64), Some(10)] {
        std::fs::write(&path, &torn).unwrap();
        match pending {
            None => std::fs::remove_file(pending_path(&path)).unwrap_or(()),
            Some(n) => std::fs::write(pending_path(&path), format!("{{\"sealed_len\":{n}}}\n")).unwrap(),
        }
        let m = refused(Appender::open(&path));
        assert!(m.contains("does not end with a seal"), "{pending:?}: {m}");
        assert_eq!(std::fs::read(&path).unwrap(), torn, "{pending:?}: nothing is cut");
    }
    // Garbage after the seal.
    let mut garbage = sealed.clone();
    garbage.extend_from_slice(b"garbage");
    std::fs::write(&path, &garbage).unwrap();
    let _ = std::fs::remove_file(pending_path(&path));
    refused(Appender::open(&path));
    assert_eq!(std::fs::read(&path).unwrap(), garbage);
}

#[test]
fn a_publish_interrupted_at_any_byte_is_cut_and_can_be_done_again() {
    let (dir, path) = fresh();
    release(&path, &[(LINUX, "1.0.0")], T0 + 1);
    let sealed = std::fs::read(&path).unwrap();
    // The next release, done cleanly once: entries, a delta, indexes, keys, tiles, map, manifest, seal.
    let publish = |path: &Path| {
        let mut app = Appender::open(path).unwrap();
        let old = body(LINUX, "1.0.0", "bin/app");
        let new = body(LINUX, "1.1.0", "bin/app");
        let e = put(&mut app, &new, Compression::None).unwrap();
        let d = put_delta(&mut app, &old, &new).unwrap();
        app.append_index("stable", LINUX, "1.1.0", &[record("bin/app", &new, e, vec![d])]).unwrap();
        build(&mut app, MAC, "1.1.0", "bin/app").unwrap();
        app.append_keys(trust(&[&key_a(), &key_b()], 1), &[&key_a()]).unwrap();
        app
    };
    publish(&path).seal(&[&key_a()], T0 + 2).unwrap();
    let done = std::fs::read(&path).unwrap();
    let boundaries: Vec<u64> = layout(&done).iter().map(|f| f.info.offset).collect();
    let copy = dir.path().join("copy.dare");
    for cut in sealed.len() as u64..done.len() as u64 {
        if cut % 5 != 0 && !boundaries.iter().any(|b| b.abs_diff(cut) <= 1) {
            continue;
        }
        std::fs::write(&copy, &done[..cut as usize]).unwrap();
        std::fs::write(pending_path(&copy), format!("{{\"sealed_len\":{}}}\n", sealed.len())).unwrap();
        let app = Appender::open(&copy).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        let torn = cut - sealed.len() as u64;
        assert_eq!(
            app.cut_tail().map(|c| (c.offset, c.len)),
            (torn > 0).then_some((sealed.len() as u64, torn)),
            "cut at {cut}"
        );
        assert_eq!(app.sealed_len(), sealed.len() as u64);
        drop(app);
        assert_eq!(std::fs::read(&copy).unwrap(), sealed, "cut at {cut}");
        assert!(!pending_path(&copy).exists());
        if cut % 97 == 0 || boundaries.contains(&cut) {
            publish(&copy).seal(&[&key_a()], T0 + 2).unwrap();
            assert_eq!(std::fs::read(&copy).unwrap(), done, "cut at {cut}, published again");
        }
    }
}

#[test]
fn abort_restores_the_exact_previous_bytes() {
    let (_d, path) = fresh();
    release(&path, &[(LINUX, "1.0.0"), (MAC, "1.0.0")], T0 + 1);
    let before = std::fs::read(&path).unwrap();
    let mut app = Appender::open(&path).unwrap();
    for i in 0..5 {
        put(&mut app, format!("lib/{i}").as_bytes(), Compression::Zstd).unwrap();
    }
    build(&mut app, LINUX, "2.0.0", "bin/app").unwrap();
    app.append_keys(trust(&[&key_b()], 1), &[&key_a(), &key_b()]).unwrap();
    assert!(pending_path(&path).exists());
    app.abort().unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert!(!pending_path(&path).exists());
    // Aborting without writing anything changes nothing either.
    Appender::open(&path).unwrap().abort().unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert_eq!(verified(&path).tail, Tail::Clean);
}

#[test]
fn a_second_appender_is_locked_out() {
    let (_d, path) = fresh();
    let first = Appender::open(&path).unwrap();
    match Appender::open(&path) {
        Err(Error::Locked(p)) => assert_eq!(p, path),
        other => panic!("expected Error::Locked, got {other:?}"),
    }
    drop(first);
    Appender::open(&path).unwrap();
}

#[test]
fn a_file_changed_under_the_appender_is_refused() {
    let (_d, path) = fresh();
    let mut app = Appender::open(&path).unwrap();
    // Locks are advisory: a careless writer appends anyway.
    use std::io::Write;
    std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"x").unwrap();
    match build(&mut app, LINUX, "1.0.0", "bin/app") {
        Err(Error::Changed { .. }) => {}
        other => panic!("expected Error::Changed, got {other:?}"),
    }
}

#[test]
fn a_heartbeat_adds_exactly_one_seal_frame() {
    let (_d, path) = fresh();
    release(&path, &[(LINUX, "1.0.0")], T0 + 1);
    let before = std::fs::read(&path).unwrap();
    let frames_before = layout(&before);
    let s_before = verified(&path);
    let app = Appender::open(&path).unwrap();
    let summary = app.seal(&[&key_a()], T0 + 500).unwrap();
    let after = std::fs::read(&path).unwrap();
    assert_eq!(&after[..before.len()], &before[..]);
    let frames_after = layout(&after);
    assert_eq!(frames_after.len(), frames_before.len() + 1);
    let Header::Seal(seal) = &frames_after.last().unwrap().header else { panic!("not a seal") };
    // It repeats the manifest and map of the seal before it.
    assert_eq!((seal.manifest, seal.map), (s_before.last_seal.seal.manifest, s_before.last_seal.seal.map));
    assert!(frames_after.last().unwrap().info.len() < 1024);
    assert_eq!(summary.size, s_before.size());
    assert_eq!(summary.root, s_before.last_seal.checkpoint.root);
    assert_eq!(summary.appended, (after.len() - before.len()) as u64);
    let s = verified(&path);
    assert_eq!((s.size(), s.seals, s.last_seal.seal.time), (s_before.size(), s_before.seals + 1, T0 + 500));
    assert_eq!(s.manifest, s_before.manifest);
    // A release after a heartbeat.
    release(&path, &[(LINUX, "1.1.0")], T0 + 501);
    assert_eq!(verified(&path).seals, s_before.seals + 2);
}

#[test]
fn the_same_inputs_give_byte_identical_files() {
    let build = |dir: &Path| {
        let path = dir.join("app.dare");
        let a = key_a();
        Appender::create(&path, genesis(trust(&[&a], 1)), &[&a], T0).unwrap();
        release(&path, &[(LINUX, "1.0.0"), (MAC, "1.0.0")], T0 + 1);
        Appender::open(&path).unwrap().seal(&[&a], T0 + 2).unwrap();
        std::fs::read(path).unwrap()
    };
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    assert_eq!(build(d1.path()), build(d2.path()));
}

#[test]
fn create_refuses_an_existing_path() {
    let (_d, path) = fresh();
    let before = std::fs::read(&path).unwrap();
    let a = key_a();
    match Appender::create(&path, genesis(trust(&[&a], 1)), &[&a], T0 + 1) {
        Err(Error::Exists(p)) => assert_eq!(p, path),
        other => panic!("expected Error::Exists, got {other:?}"),
    }
    assert_eq!(std::fs::read(&path).unwrap(), before);
    // Not even an empty file is replaced.
    let empty = path.with_file_name("empty.dare");
    std::fs::write(&empty, b"").unwrap();
    assert!(matches!(Appender::create(&empty, genesis(trust(&[&a], 1)), &[&a], T0), Err(Error::Exists(_))));
}

#[test]
fn key_rotation_hands_over_from_the_old_root_to_the_new_one() {
    let (_d, path) = fresh();
    let (a, b) = (key_a(), key_b());
    release(&path, &[(LINUX, "1.0.0")], T0 + 1);
    // The rotation seal needs the old root and the new one.
    let mut app = Appender::open(&path).unwrap();
    app.append_keys(trust(&[&b], 1), &[&a, &b]).unwrap();
    refused(app.append_keys(trust(&[&a], 1), &[&a, &b]));
    assert!(app.seal(&[&a], T0 + 2).is_err(), "the new root did not sign");
    let mut app = Appender::open(&path).unwrap();
    assert!(app.cut_tail().is_some());
    app.append_keys(trust(&[&b], 1), &[&a, &b]).unwrap();
    assert!(app.seal(&[&b], T0 + 2).is_err(), "the old root did not sign");
    let mut app = Appender::open(&path).unwrap();
    app.append_keys(trust(&[&b], 1), &[&a, &b]).unwrap();
    app.seal(&[&a, &b], T0 + 2).unwrap();
    let s = verified(&path);
    assert_eq!(s.trust, trust(&[&b], 1));
    assert_eq!(s.genesis.trust, trust(&[&a], 1));
    // The manifest names the keys leaf, and open takes the root in effect from it.
    let keys = s.manifest.keys.expect("the manifest names the keys leaf");
    assert!(layout(&std::fs::read(&path).unwrap()).iter().any(|f| f.info.offset == keys.offset && f.kind() == "keys"));
    // Later seals need only the new key, and the old one is refused.
    let mut app = Appender::open(&path).unwrap();
    assert_eq!(app.trust(), &trust(&[&b], 1));
    build(&mut app, LINUX, "1.1.0", "bin/app").unwrap();
    let m = refused(app.seal(&[&a], T0 + 3));
    assert!(m.contains("not in the container's trust root"), "{m}");
    let mut app = Appender::open(&path).unwrap();
    build(&mut app, LINUX, "1.1.0", "bin/app").unwrap();
    app.seal(&[&b], T0 + 3).unwrap();
    Appender::open(&path).unwrap().seal(&[&b], T0 + 4).unwrap();
    let s = verified(&path);
    assert_eq!((s.seals, s.last_seal.signers.clone()), (5, vec![b.verifier()]));
    assert_eq!(s.manifest.keys, Some(keys), "later manifests still name the latest keys leaf");
    // Pinning the genesis key still verifies: the rotation is in the log.
    let pinned = scan_file(&path, &ScanOptions::default().with_pins(Some(vec![a.verifier()]))).unwrap();
    assert_eq!(pinned.size(), s.size());
}

#[test]
fn a_rewritten_last_seal_of_the_same_length_is_a_change() {
    let (_d, path) = fresh();
    let mut app = Appender::open(&path).unwrap();
    // Another writer (not holding the lock) rewrites one byte of the last seal in place.
    let bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() - 40;
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    dare_container::fsys::write_all_at(&f, &[bytes[at] ^ 1], at as u64).unwrap();
    match build(&mut app, LINUX, "1.0.0", "bin/app") {
        Err(Error::Changed { reason, .. }) => assert!(reason.contains("seal"), "{reason}"),
        other => panic!("expected Error::Changed, got {other:?}"),
    }
}

#[test]
fn an_index_whose_names_collide_on_macos_and_windows_is_refused() {
    let (_d, path) = fresh();
    let mut app = Appender::open(&path).unwrap();
    let (one, two) = (b"one".to_vec(), b"two".to_vec());
    let a = put(&mut app, &one, Compression::Zstd).unwrap();
    let b = put(&mut app, &two, Compression::Zstd).unwrap();
    for (x, y) in [("bin/App", "bin/app"), ("caf\u{65}\u{301}", "caf\u{e9}"), ("Lib", "lib/x.so")] {
        let mut files = [record(x, &one, a, vec![]), record(y, &two, b, vec![])];
        files.sort_by(|p, q| p.path.cmp(&q.path));
        let m = refused(app.append_index("stable", LINUX, "1.0.0", &files));
        assert!(m.contains(x) && m.contains(y) && m.contains("macOS and Windows"), "{m}");
    }
    // Names that differ otherwise are fine.
    let files = [record("bin/app", &one, a, vec![]), record("bin/app2", &two, b, vec![])];
    app.append_index("stable", LINUX, "1.0.0", &files).unwrap();
    app.seal(&[&key_a()], T0 + 1).unwrap();
    verified(&path);
}
