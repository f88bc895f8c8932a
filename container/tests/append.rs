//! The appender: the log's rules on the way in, crash safety, locking,
//! determinism and key rotation.

mod support;

use std::path::Path;

use dare_container::header::Compression;
use dare_container::verify::{ScanOptions, Tail};
use dare_container::{Appender, Error, pending_path, pending_publish, scan_file, verify_file};
use support::{T0, TARGETS, append, content, genesis, key_a, key_b, key_c, layout, trust};

const LINUX: &str = TARGETS[0];
const MAC: &str = TARGETS[1];

/// A fresh container signed by A alone.
fn fresh() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.dare");
    let a = key_a();
    Appender::create(&path, genesis(trust(&[&a], 1)), &[&a], T0).unwrap();
    (dir, path)
}

fn put(app: &mut Appender, target: &str, version: &str, path: &str) -> Result<(), Error> {
    append(app, target, version, "stable", path, &content(7, 64), Compression::Zstd).map(drop)
}

/// Publishes one file per (target, version) and seals with A at `time`.
fn release(path: &Path, files: &[(&str, &str)], time: u64) {
    let mut app = Appender::open(path, false).unwrap();
    for (target, version) in files {
        put(&mut app, target, version, "bin/app").unwrap();
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
    verify_file(path, &ScanOptions { payloads: true, pins: None }).unwrap()
}

#[test]
fn versions_increase_by_semver_precedence() {
    let (_d, path) = fresh();
    release(&path, &[(LINUX, "1.0.0-rc.1")], T0 + 1);
    release(&path, &[(LINUX, "1.0.0")], T0 + 2);
    let mut app = Appender::open(&path, false).unwrap();
    for v in ["1.0.0", "1.0.0+b2", "1.0.0-rc.2", "0.9.9"] {
        let m = refused(put(&mut app, LINUX, v, "bin/app"));
        assert!(m.contains("not greater than 1.0.0"), "{v}: {m}");
    }
    // A refused entry writes nothing: the appender goes on.
    put(&mut app, LINUX, "1.0.1", "bin/app").unwrap();
    // Another target and another channel have their own order.
    put(&mut app, MAC, "0.1.0", "bin/app").unwrap();
    append(&mut app, LINUX, "0.0.1", "beta", "bin/app", b"beta", Compression::None).unwrap();
    app.seal(&[&key_a()], T0 + 3).unwrap();
    let s = verified(&path);
    assert_eq!(s.manifest.release("stable", LINUX).unwrap().version, "1.0.1");
    assert_eq!(s.manifest.release("beta", LINUX).unwrap().version, "0.0.1");
}

#[test]
fn one_version_per_target_and_channel_in_a_release_and_no_path_twice() {
    let (_d, path) = fresh();
    let mut app = Appender::open(&path, false).unwrap();
    put(&mut app, LINUX, "1.0.0", "bin/app").unwrap();
    let m = refused(put(&mut app, LINUX, "1.0.1", "lib/x"));
    assert!(m.contains("both 1.0.0 and 1.0.1"), "{m}");
    let m = refused(put(&mut app, LINUX, "1.0.0+b1", "lib/x"));
    assert!(m.contains("both"), "{m}");
    let m = refused(put(&mut app, LINUX, "1.0.0", "bin/app"));
    assert!(m.contains("already has a file bin/app"), "{m}");
    // The same path for another target is fine.
    put(&mut app, MAC, "2.0.0", "bin/app").unwrap();
    put(&mut app, LINUX, "1.0.0", "lib/x").unwrap();
    app.seal(&[&key_a()], T0 + 1).unwrap();
    let s = verified(&path);
    assert_eq!(s.manifest.release("stable", LINUX).unwrap().entries.len(), 2);
}

#[test]
fn an_entry_must_carry_a_valid_header_and_the_announced_digest() {
    let (_d, path) = fresh();
    let before = std::fs::read(&path).unwrap();
    let mut app = Appender::open(&path, false).unwrap();
    for (target, version, file) in [("not-a-triple", "1.0.0", "a"), (LINUX, "1.0", "a"), (LINUX, "1.0.0", "../a")] {
        let r = put(&mut app, target, version, file);
        assert!(matches!(r, Err(Error::Header(_))), "{target} {version} {file}: {r:?}");
    }
    // A payload that is not what the header announces.
    let (e, _) = support::entry(LINUX, "1.0.0", "stable", "bin/app", b"announced", Compression::None);
    let mut other = &b"different"[..];
    let m = refused(app.append_entry(e, &mut other));
    assert!(m.contains("hashed to"), "{m}");
    // The file holds the rejected bytes until the append is given up.
    app.abort().unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), before);
    // A payload longer or shorter than announced.
    for body in [&b"announced!"[..], &b"announce"[..]] {
        let mut app = Appender::open(&path, false).unwrap();
        let (e, _) = support::entry(LINUX, "1.0.0", "stable", "bin/app", b"announced", Compression::None);
        let mut r = body;
        assert!(app.append_entry(e, &mut r).is_err(), "{} bytes for 9", body.len());
        app.abort().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }
}

#[test]
fn open_with_payloads_checks_every_payload() {
    let (_d, path) = fresh();
    release(&path, &[(LINUX, "1.0.0")], T0 + 1);
    let s = verified(&path);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[s.entries[0].frame.payload_offset as usize + 3] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    match Appender::open(&path, true) {
        Err(e @ Error::Verify(_)) => assert!(e.is_integrity() && e.to_string().contains("payload"), "{e}"),
        other => panic!("expected Error::Verify, got {other:?}"),
    }
    // A structure-only open does not read payloads.
    Appender::open(&path, false).unwrap().abort().unwrap();
}

#[test]
fn signing_keys_must_be_in_the_trust_root() {
    let (_d, path) = fresh();
    let before = std::fs::read(&path).unwrap();
    let mut app = Appender::open(&path, false).unwrap();
    put(&mut app, LINUX, "1.0.0", "bin/app").unwrap();
    let m = refused(app.seal(&[&key_b()], T0 + 1));
    assert!(m.contains("not in the container's trust root"), "{m}");
    // A refused seal leaves an unsealed tail, never a broken container.
    let s = verified(&path);
    assert_eq!(s.sealed_len, before.len() as u64);
    assert!(matches!(s.tail, Tail::Torn { offset, .. } if offset == before.len() as u64));
    let app = Appender::open(&path, false).unwrap();
    assert!(app.cut_tail().is_some());
    drop(app);
    assert_eq!(std::fs::read(&path).unwrap(), before);
    // No key at all.
    let app = Appender::open(&path, false).unwrap();
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
    let mut app = Appender::open(&path, false).unwrap();
    put(&mut app, LINUX, "1.0.0", "bin/app").unwrap();
    app.seal(&[&c, &b], T0 + 1).unwrap();
    assert_eq!(verified(&path).last_seal.signers, vec![c.verifier(), b.verifier()]);
    // The same key twice is one key.
    let app = Appender::open(&path, false).unwrap();
    refused(app.seal(&[&a, &a], T0 + 2));
    // Pinning a single key cannot meet a threshold of two.
    let pinned = scan_file(&path, &ScanOptions { payloads: false, pins: Some(vec![a.verifier()]) });
    assert!(pinned.is_err());
    let pinned = scan_file(&path, &ScanOptions { payloads: false, pins: Some(vec![a.verifier(), b.verifier()]) });
    let err = support::verify_error(pinned.expect_err("seal 2 is signed by b and c; only b is pinned with a"));
    assert!(matches!(err.problem, dare_container::verify::Problem::Signature(_)), "{err}");
}

#[test]
fn time_never_goes_backward() {
    let (_d, path) = fresh();
    release(&path, &[(LINUX, "1.0.0")], T0 + 100);
    let app = Appender::open(&path, false).unwrap();
    let m = refused(app.seal(&[&key_a()], T0 + 99));
    assert!(m.contains("before the last seal's signed time"), "{m}");
    // The same second is not going backward.
    let app = Appender::open(&path, false).unwrap();
    assert_eq!(app.last_time(), Some(T0 + 100));
    app.seal(&[&key_a()], T0 + 100).unwrap();
    assert_eq!(verified(&path).seals, 3);
}

#[test]
fn open_cuts_a_torn_tail_and_reports_it() {
    let (_d, path) = fresh();
    release(&path, &[(LINUX, "1.0.0")], T0 + 1);
    let sealed = std::fs::read(&path).unwrap();
    // A publisher that dies after two entries: no seal, a pending file.
    let mut app = Appender::open(&path, false).unwrap();
    put(&mut app, LINUX, "1.1.0", "bin/app").unwrap();
    put(&mut app, MAC, "1.1.0", "bin/app").unwrap();
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
            reason: "2 frame(s) after the last seal are not sealed".into()
        }
    );
    let app = Appender::open(&path, false).unwrap();
    let cut = app.cut_tail().expect("a cut tail").clone();
    assert_eq!((cut.offset, cut.len), (sealed.len() as u64, torn - sealed.len() as u64));
    assert_eq!(std::fs::read(&path).unwrap(), sealed);
    assert!(!pending_path(&path).exists());
    assert_eq!(pending_publish(&path), None);
    // The same release can now be published again.
    let mut app = app;
    put(&mut app, LINUX, "1.1.0", "bin/app").unwrap();
    app.seal(&[&key_a()], T0 + 2).unwrap();
    assert_eq!(verified(&path).manifest.release("stable", LINUX).unwrap().version, "1.1.0");
    // A clean container has nothing to cut.
    assert!(Appender::open(&path, false).unwrap().cut_tail().is_none());
}

#[test]
fn abort_restores_the_exact_previous_bytes() {
    let (_d, path) = fresh();
    release(&path, &[(LINUX, "1.0.0"), (MAC, "1.0.0")], T0 + 1);
    let before = std::fs::read(&path).unwrap();
    let mut app = Appender::open(&path, false).unwrap();
    for i in 0..5 {
        put(&mut app, LINUX, "2.0.0", &format!("lib/{i}")).unwrap();
    }
    app.append_keys(trust(&[&key_b()], 1)).unwrap();
    assert!(pending_path(&path).exists());
    app.abort().unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert!(!pending_path(&path).exists());
    // Aborting without writing anything changes nothing either.
    Appender::open(&path, true).unwrap().abort().unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert_eq!(verified(&path).tail, Tail::Clean);
}

#[test]
fn a_second_appender_is_locked_out() {
    let (_d, path) = fresh();
    let first = Appender::open(&path, false).unwrap();
    match Appender::open(&path, false) {
        Err(Error::Locked(p)) => assert_eq!(p, path),
        other => panic!("expected Error::Locked, got {other:?}"),
    }
    drop(first);
    Appender::open(&path, false).unwrap();
}

#[test]
fn a_file_changed_under_the_appender_is_refused() {
    let (_d, path) = fresh();
    let mut app = Appender::open(&path, false).unwrap();
    // Locks are advisory: a careless writer appends anyway.
    use std::io::Write;
    std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"x").unwrap();
    match put(&mut app, LINUX, "1.0.0", "bin/app") {
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
    let app = Appender::open(&path, false).unwrap();
    let summary = app.seal(&[&key_a()], T0 + 500).unwrap();
    let after = std::fs::read(&path).unwrap();
    assert_eq!(&after[..before.len()], &before[..]);
    let frames_after = layout(&after);
    assert_eq!(frames_after.len(), frames_before.len() + 1);
    assert_eq!(frames_after.last().unwrap().kind(), "seal");
    assert_eq!(summary.size, s_before.size());
    assert_eq!(summary.root, s_before.last_seal.checkpoint.root);
    assert_eq!(summary.appended, (after.len() - before.len()) as u64);
    let s = verified(&path);
    assert_eq!((s.size(), s.seals, s.last_seal.seal.time), (s_before.size(), s_before.seals + 1, T0 + 500));
    assert_eq!(s.manifest, s_before.manifest);
}

#[test]
fn the_same_inputs_give_byte_identical_files() {
    let build = |dir: &Path| {
        let path = dir.join("app.dare");
        let a = key_a();
        Appender::create(&path, genesis(trust(&[&a], 1)), &[&a], T0).unwrap();
        release(&path, &[(LINUX, "1.0.0"), (MAC, "1.0.0")], T0 + 1);
        Appender::open(&path, false).unwrap().seal(&[&a], T0 + 2).unwrap();
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
    let mut app = Appender::open(&path, false).unwrap();
    app.append_keys(trust(&[&b], 1)).unwrap();
    refused(app.append_keys(trust(&[&a], 1)));
    assert!(app.seal(&[&a], T0 + 2).is_err(), "the new root did not sign");
    let mut app = Appender::open(&path, false).unwrap();
    assert!(app.cut_tail().is_some());
    app.append_keys(trust(&[&b], 1)).unwrap();
    assert!(app.seal(&[&b], T0 + 2).is_err(), "the old root did not sign");
    let mut app = Appender::open(&path, false).unwrap();
    app.append_keys(trust(&[&b], 1)).unwrap();
    app.seal(&[&a, &b], T0 + 2).unwrap();
    let s = verified(&path);
    assert_eq!(s.trust, trust(&[&b], 1));
    assert_eq!(s.genesis.trust, trust(&[&a], 1));
    // Later seals need only the new key, and the old one is refused.
    let mut app = Appender::open(&path, false).unwrap();
    assert_eq!(app.trust(), &trust(&[&b], 1));
    put(&mut app, LINUX, "1.1.0", "bin/app").unwrap();
    let m = refused(app.seal(&[&a], T0 + 3));
    assert!(m.contains("not in the container's trust root"), "{m}");
    let mut app = Appender::open(&path, false).unwrap();
    put(&mut app, LINUX, "1.1.0", "bin/app").unwrap();
    app.seal(&[&b], T0 + 3).unwrap();
    Appender::open(&path, false).unwrap().seal(&[&b], T0 + 4).unwrap();
    let s = verified(&path);
    assert_eq!((s.seals, s.last_seal.signers.clone()), (5, vec![b.verifier()]));
    // Pinning the genesis key still verifies: the rotation is in the log.
    let pinned = scan_file(&path, &ScanOptions { payloads: false, pins: Some(vec![a.verifier()]) }).unwrap();
    assert_eq!(pinned.size(), s.size());
}

#[test]
fn a_rewritten_last_seal_of_the_same_length_is_a_change() {
    let (_d, path) = fresh();
    let mut app = Appender::open(&path, false).unwrap();
    // Another writer (not holding the lock) rewrites one byte of the last seal in place.
    let bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() - 40;
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &[bytes[at] ^ 1], at as u64).unwrap();
    match put(&mut app, LINUX, "1.0.0", "bin/app") {
        Err(Error::Changed { reason, .. }) => assert!(reason.contains("seal"), "{reason}"),
        other => panic!("expected Error::Changed, got {other:?}"),
    }
}
