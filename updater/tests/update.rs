//! The updater end to end on loopback: containers built with the publisher,
//! served from memory (with faults), from files, from a range server of our
//! own and from nginx; every attack of DESIGN.md section 4 refused with its
//! own error and nothing installed.

mod support;

use std::collections::BTreeSet;
use std::fs;
use std::sync::Arc;

use dare_container::merkle::Frontier;
use dare_container::verify::ScanOptions;
use dare_updater::state::{Installed, replica_path};
use dare_updater::transport::{FileTransport, MemoryTransport, Transport};
use dare_updater::{Status, UpdateError};
use support::server::{Knobs, TestServer};
use support::*;

fn mem(p: &Publisher) -> Arc<MemoryTransport> {
    Arc::new(MemoryTransport::new("memory", p.bytes()))
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// What a client fetches beyond its entries on a first install: an 8 KiB tail, the genesis and a few hashes.
const FIRST_OVERHEAD: u64 = 12 * 1024;

#[track_caller]
fn assert_untouched(c: &Client, before: &(Snapshot, Snapshot)) {
    let after = c.snapshot();
    assert_eq!(before.0, after.0, "the install directory changed");
    assert_eq!(before.1, after.1, "the state changed");
    assert!(!c.state.join("staging").exists(), "a staging directory was left behind");
}

// ---------------------------------------------------------------------------------------------------------
// The main flow

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_install_up_to_date_and_next_release() {
    let dir = tempdir();
    let p = Publisher::small(dir.path());
    p.publish("1.0.0", T0 + 60);
    let m = mem(&p);
    let c = Client::new(dir.path(), "client", LINUX, p.verifiers());

    let o = c.update(&m).await.unwrap();
    println!("first install: {o:?}");
    assert_eq!(o.status, Status::Updated);
    assert_eq!((o.target.as_str(), o.channel.as_str(), o.version.as_str()), (LINUX, "stable", "1.0.0"));
    assert_eq!(o.previous, None);
    assert!(o.requests <= 3, "{} requests", o.requests);
    assert!(o.payload_bytes > p.app_size as u64, "payload {}", o.payload_bytes);
    assert!(o.bytes_fetched >= o.payload_bytes);
    assert!(
        o.bytes_fetched - o.payload_bytes <= FIRST_OVERHEAD,
        "{} bytes beyond the payload",
        o.bytes_fetched - o.payload_bytes
    );
    assert_eq!(o.install_path, Some(c.install.join("versions/1.0.0")));
    assert_eq!(o.tree_size, p.scan().size());
    assert_eq!(o.signed_time, T0 + 60);
    assert_installed(&c.install, LINUX, "1.0.0", p.app_size);
    assert_eq!(versions(&c.install), ["1.0.0"]);
    let s = c.state().unwrap();
    assert_eq!(
        s.installed,
        Some(Installed { target: LINUX.into(), channel: "stable".into(), version: "1.0.0".into() })
    );
    assert_eq!((s.size, s.time, s.origin.as_str()), (o.tree_size, T0 + 60, ORIGIN));
    assert!(!c.state.join("staging").exists());

    // Nothing new: one request, nothing changes.
    let before = c.snapshot();
    let o = c.update(&m).await.unwrap();
    assert_eq!(o.status, Status::UpToDate);
    assert_eq!(o.requests, 1);
    assert_eq!((o.version.as_str(), o.previous.as_deref(), o.payload_bytes), ("1.0.0", Some("1.0.0"), 0));
    assert_eq!(o.install_path, None);
    assert_untouched(&c, &before);

    // The next release: installed, the previous one kept.
    p.publish("1.1.0", T0 + 120);
    m.set_content(p.bytes());
    let o = c.update(&m).await.unwrap();
    println!("next release: {o:?}");
    assert_eq!((o.status, o.version.as_str(), o.previous.as_deref()), (Status::Updated, "1.1.0", Some("1.0.0")));
    assert!(o.requests <= 3, "{} requests", o.requests);
    assert_installed(&c.install, LINUX, "1.1.0", p.app_size);
    assert_eq!(versions(&c.install), ["1.0.0", "1.1.0"]);
    // The previous build is still intact.
    assert_eq!(fs::read(c.install.join("versions/1.0.0/bin/app")).unwrap(), app_bytes(LINUX, "1.0.0", p.app_size));

    // The one after prunes the oldest. (A new state directory on the same install directory: a third
    // update on one state directory hits the replica bug, see `a_third_release_prunes_the_oldest`.)
    p.publish("1.2.0", T0 + 180);
    m.set_content(p.bytes());
    let mut again = Client::new(dir.path(), "again", LINUX, p.verifiers());
    again.install = c.install.clone();
    let o = again.update(&m).await.unwrap();
    assert_eq!((o.status, o.version.as_str(), o.previous.as_deref()), (Status::Updated, "1.2.0", None));
    assert_installed(&c.install, LINUX, "1.2.0", p.app_size);
    assert_eq!(versions(&c.install), ["1.1.0", "1.2.0"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_release_prunes_the_oldest() {
    let dir = tempdir();
    let p = Publisher::small(dir.path());
    p.publish("1.0.0", T0 + 60);
    let m = mem(&p);
    let c = Client::new(dir.path(), "client", LINUX, p.verifiers());
    c.update(&m).await.unwrap();
    p.publish("1.1.0", T0 + 120);
    m.set_content(p.bytes());
    c.update(&m).await.unwrap();
    assert_eq!(versions(&c.install), ["1.0.0", "1.1.0"]);

    p.publish("1.2.0", T0 + 180);
    m.set_content(p.bytes());
    let o = c.update(&m).await.unwrap();
    assert_eq!((o.status, o.version.as_str(), o.previous.as_deref()), (Status::Updated, "1.2.0", Some("1.1.0")));
    assert_installed(&c.install, LINUX, "1.2.0", p.app_size);
    assert_eq!(versions(&c.install), ["1.1.0", "1.2.0"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_without_installing_or_recording() {
    let dir = tempdir();
    let p = Publisher::small(dir.path());
    p.publish("1.0.0", T0 + 60);
    let m = mem(&p);

    // A new client: nothing installed, nothing recorded.
    let fresh = Client::new(dir.path(), "fresh", LINUX, p.verifiers());
    let o = fresh.via(m.clone()).check().await.unwrap();
    assert_eq!((o.status, o.version.as_str(), o.previous.as_deref()), (Status::Available, "1.0.0", None));
    assert_eq!((o.requests, o.payload_bytes, o.install_path.clone()), (1, 0, None));
    assert!(!fresh.install.exists());
    assert!(!fresh.state.join("state.json").exists());
    assert!(!replica_path(&fresh.state).exists());

    // An installed client: a newer build is reported, not installed.
    let c = Client::new(dir.path(), "client", LINUX, p.verifiers());
    c.update(&m).await.unwrap();
    let o = c.via(m.clone()).check().await.unwrap();
    assert_eq!((o.status, o.requests), (Status::UpToDate, 1));
    p.publish("1.1.0", T0 + 120);
    m.set_content(p.bytes());
    let before = c.snapshot();
    let o = c.via(m.clone()).check().await.unwrap();
    assert_eq!((o.status, o.version.as_str(), o.previous.as_deref()), (Status::Available, "1.1.0", Some("1.0.0")));
    assert_eq!(o.requests, 1);
    assert_untouched(&c, &before);
    assert_installed(&c.install, LINUX, "1.0.0", p.app_size);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_and_file_url_mirrors() {
    let dir = tempdir();
    let p = Publisher::small(dir.path());
    p.publish("1.0.0", T0 + 60);
    let c = Client::new(dir.path(), "client", ARM, p.verifiers());
    let o = c.at(p.container.to_str().unwrap()).update().await.unwrap();
    assert_eq!((o.status, o.version.as_str()), (Status::Updated, "1.0.0"));
    assert!(o.requests <= 3);
    assert_installed(&c.install, ARM, "1.0.0", p.app_size);

    p.publish("1.1.0", T0 + 120);
    let url = format!("file://{}", p.container.display());
    let o = c.at(&url).update().await.unwrap();
    assert_eq!((o.status, o.version.as_str(), o.previous.as_deref()), (Status::Updated, "1.1.0", Some("1.0.0")));
    assert_installed(&c.install, ARM, "1.1.0", p.app_size);
    let o = c.at(&url).update().await.unwrap();
    assert_eq!((o.status, o.requests), (Status::UpToDate, 1));
}

// ---------------------------------------------------------------------------------------------------------
// Damaged bytes

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_to_another_targets_entry_does_not_matter() {
    let dir = tempdir();
    let p = Publisher::small(dir.path());
    p.publish("1.0.0", T0 + 60);
    let scan = p.scan();
    let other = entry_of(&scan, ARM, "1.0.0", "bin/app");
    let m = Arc::new(MemoryTransport::new("memory", p.bytes()).corrupt(other.frame.payload_offset + 100));
    let c = Client::new(dir.path(), "client", LINUX, p.verifiers());
    let o = c.update(&m).await.unwrap();
    assert_eq!((o.status, o.version.as_str()), (Status::Updated, "1.0.0"));
    assert_installed(&c.install, LINUX, "1.0.0", p.app_size);

    // The same on an update, with the other target's header damaged this time.
    p.publish("1.1.0", T0 + 120);
    let other = entry_of(&p.scan(), MAC, "1.1.0", "share/readme.txt");
    m.set_content(p.bytes());
    m.update_faults(|f| f.corrupt_at = Some(other.frame.header_offset + 10));
    let o = c.update(&m).await.unwrap();
    assert_eq!((o.status, o.version.as_str()), (Status::Updated, "1.1.0"));
    assert_installed(&c.install, LINUX, "1.1.0", p.app_size);
}

/// Fetches through a transport that corrupts the byte at `at`, expecting `check`; then the install
/// directory and the state must be as they were.
async fn refused_with_corruption(c: &Client, bytes: Vec<u8>, at: u64) -> UpdateError {
    let m = Arc::new(MemoryTransport::new("memory", bytes).corrupt(at));
    let before = c.snapshot();
    let e = c.update(&m).await.unwrap_err();
    assert_untouched(c, &before);
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_to_this_targets_payload_is_a_bad_digest() {
    let dir = tempdir();
    let p = Publisher::small(dir.path());
    p.publish("1.0.0", T0 + 60);
    let app = entry_of(&p.scan(), LINUX, "1.0.0", "bin/app");
    let readme = entry_of(&p.scan(), LINUX, "1.0.0", "share/readme.txt");
    let fresh = Client::new(dir.path(), "fresh", LINUX, p.verifiers());
    // A stored (uncompressed) payload and a zstd one, at the start, middle and end.
    for at in [
        app.frame.payload_offset,
        app.frame.payload_offset + app.frame.payload_len / 2,
        app.frame.payload_offset + app.frame.payload_len - 1,
        readme.frame.payload_offset + readme.frame.payload_len / 2,
    ] {
        let e = refused_with_corruption(&fresh, p.bytes(), at).await;
        assert!(matches!(e, UpdateError::BadDigest(_)), "byte {at}: {e:?}");
        assert!(!fresh.install.exists());
    }

    // An installed client keeps its build.
    let c = Client::new(dir.path(), "client", LINUX, p.verifiers());
    c.update(&mem(&p)).await.unwrap();
    p.publish("1.1.0", T0 + 120);
    let app = entry_of(&p.scan(), LINUX, "1.1.0", "bin/app");
    let e = refused_with_corruption(&c, p.bytes(), app.frame.payload_offset + 7).await;
    assert!(matches!(e, UpdateError::BadDigest(_)), "{e:?}");
    println!("payload damaged: {e}");
    assert_installed(&c.install, LINUX, "1.0.0", p.app_size);
    // A clean mirror afterwards works.
    let o = c.update(&mem(&p)).await.unwrap();
    assert_eq!((o.status, o.version.as_str()), (Status::Updated, "1.1.0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_to_this_targets_entry_header_is_a_bad_digest() {
    let dir = tempdir();
    let p = Publisher::small(dir.path());
    p.publish("1.0.0", T0 + 60);
    let scan = p.scan();
    let fresh = Client::new(dir.path(), "fresh", LINUX, p.verifiers());
    for e in [entry_of(&scan, LINUX, "1.0.0", "bin/app"), entry_of(&scan, LINUX, "1.0.0", "share/readme.txt")] {
        // Inside the JSON, on the frame's leading tag and length, and on its trailing length.
        for at in [e.frame.header_offset + 20, e.frame.offset, e.frame.offset + 1, e.frame.offset + e.frame.len() - 2] {
            let err = refused_with_corruption(&fresh, p.bytes(), at).await;
            assert!(matches!(err, UpdateError::BadDigest(_)), "{} byte {at}: {err:?}", e.entry.path);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_to_a_tile_hash() {
    let dir = tempdir();
    let p = Publisher::small(dir.path());
    p.publish("1.0.0", T0 + 60);
    let trust = p.verifiers();
    // ARM's entries of 1.1.0 (leaves 11 and 12 of 16) need, from a stored tree of 9 leaves, both hashes
    // the consistency proof needs and hashes only their inclusion needs.
    let c = Client::new(dir.path(), "client", ARM, trust.clone());
    c.update(&mem(&p)).await.unwrap();
    let old = c.state().unwrap().frontier;
    p.publish("1.1.0", T0 + 120);
    let bytes = p.bytes();
    let tail = signed_tail(&bytes, &trust);
    let leaves: Vec<u64> = p
        .scan()
        .entries
        .iter()
        .filter(|e| e.entry.target == ARM && e.entry.version == "1.1.0")
        .map(|e| e.leaf)
        .collect();

    // A first install has no stored tree: any bad hash on the proof is a bad digest.
    let with_genesis: Vec<u64> = leaves.iter().copied().chain([0]).collect();
    let ranges = proof_ranges(&tail, &Frontier::new(), &with_genesis);
    assert!(!ranges.is_empty(), "the proof needs tile hashes");
    let fresh = Client::new(dir.path(), "fresh", ARM, trust.clone());
    for (s, e) in &ranges {
        for at in [*s, e - 1] {
            let err = refused_with_corruption(&fresh, bytes.clone(), at).await;
            assert!(matches!(err, UpdateError::BadDigest(_)), "byte {at}: {err:?}");
        }
    }

    // A client with a stored tree: a hash the consistency proof needs is classified as a fork (the
    // bytes cannot show that the signed tree extends the stored one, whether the log forked or the
    // mirror lies about the tiles); a hash only the new entries' inclusion needs is a bad digest.
    let all = proof_ranges(&tail, &old, &leaves);
    let consistency = proof_ranges(&tail, &old, &[]);
    let bytes_of = |r: &[(u64, u64)]| -> BTreeSet<u64> { r.iter().flat_map(|(s, e)| *s..*e).collect() };
    let (all_b, cons_b) = (bytes_of(&all), bytes_of(&consistency));
    let both: Vec<u64> = all_b.intersection(&cons_b).copied().collect();
    let inclusion_only: Vec<u64> = all_b.difference(&cons_b).copied().collect();
    println!("tree {} -> {}: proof ranges {all:?}, consistency {consistency:?}", old.size(), tail.size());
    assert!(!both.is_empty() && !inclusion_only.is_empty(), "the fixture needs both kinds of hashes");
    for at in [both[0], both[both.len() - 1]] {
        let err = refused_with_corruption(&c, bytes.clone(), at).await;
        assert!(matches!(err, UpdateError::Fork(_)), "consistency byte {at}: {err:?}");
        println!("consistency hash damaged: {err}");
    }
    for at in [inclusion_only[0], inclusion_only[inclusion_only.len() - 1]] {
        let err = refused_with_corruption(&c, bytes.clone(), at).await;
        assert!(matches!(err, UpdateError::BadDigest(_)), "inclusion byte {at}: {err:?}");
        println!("inclusion hash damaged: {err}");
    }
    assert_installed(&c.install, ARM, "1.0.0", p.app_size);
    let o = c.update(&mem(&p)).await.unwrap();
    assert_eq!((o.status, o.version.as_str()), (Status::Updated, "1.1.0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_to_the_tail_is_a_bad_signature_or_unsealed() {
    let dir = tempdir();
    let p = Publisher::small(dir.path());
    p.publish("1.0.0", T0 + 60);
    let scan = p.scan();
    let fresh = Client::new(dir.path(), "fresh", LINUX, p.verifiers());
    let m = scan.manifest_frame;
    let seal = scan.last_seal.frame;
    for at in [m.header_offset + 30, seal.header_offset + 40] {
        let err = refused_with_corruption(&fresh, p.bytes(), at).await;
        assert!(matches!(err, UpdateError::BadSignature(_)), "byte {at}: {err:?}");
    }
    // A file that does not end with a whole frame reads like a publish in progress.
    let err = refused_with_corruption(&fresh, p.bytes(), seal.offset + seal.len() - 1).await;
    assert!(matches!(err, UpdateError::Unsealed(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_caught_mid_publish_is_unsealed_not_an_attack() {
    let dir = tempdir();
    let p = Publisher::small(dir.path());
    p.publish("1.0.0", T0 + 60);
    let sealed = p.bytes();
    p.publish("1.1.0", T0 + 120);
    let full = p.bytes();
    let fresh = Client::new(dir.path(), "fresh", LINUX, p.verifiers());
    // Whole frames after the last seal, and a frame cut in half.
    let entries_end = sealed.len() + (full.len() - sealed.len()) / 2;
    for cut in [entries_end, sealed.len() + 100] {
        let m = Arc::new(MemoryTransport::new("mid-publish", full[..cut].to_vec()));
        let e = fresh.builder().transport(m).build().unwrap().update().await.unwrap_err();
        assert!(matches!(e, UpdateError::Unsealed(_)), "cut at {cut}: {e:?}");
        assert_eq!(e.kind(), "unsealed");
        assert!(!fresh.install.exists());
    }
}

// ---------------------------------------------------------------------------------------------------------
// Rollback, fork, freeze

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_container_is_a_rollback() {
    let dir = tempdir();
    let p = Publisher::small(dir.path());
    p.publish("1.0.0", T0 + 60);
    let release1 = p.bytes();
    p.publish("1.1.0", T0 + 120);
    let release2 = p.bytes();
    let c = Client::new(dir.path(), "client", LINUX, p.verifiers());
    let m = Arc::new(MemoryTransport::new("memory", release1.clone()));
    c.update(&m).await.unwrap();
    m.set_content(release2.clone());
    let o = c.update(&m).await.unwrap();
    assert_eq!(o.version, "1.1.0");

    m.set_content(release1);
    let before = c.snapshot();
    let e = c.update(&m).await.unwrap_err();
    assert!(matches!(e, UpdateError::Rollback(_)), "{e:?}");
    println!("rollback: {e}");
    assert_untouched(&c, &before);
    let e = c.via(m.clone()).check().await.unwrap_err();
    assert!(matches!(e, UpdateError::Rollback(_)), "{e:?}");
    assert_installed(&c.install, LINUX, "1.1.0", p.app_size);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seal_older_than_the_stored_one_is_a_rollback() {
    // The same tree under an older seal (from before a heartbeat) is a rollback of the signed time.
    let dir = tempdir();
    let p = Publisher::small(dir.path());
    p.publish("1.0.0", T0 + 60);
    let before_heartbeat = p.bytes();
    p.heartbeat(T0 + 600);
    let m = mem(&p);
    let c = Client::new(dir.path(), "client", LINUX, p.verifiers());
    let o = c.update(&m).await.unwrap();
    assert_eq!((o.status, o.signed_time), (Status::Updated, T0 + 600));
    assert_eq!(c.state().unwrap().time, T0 + 600);
    m.set_content(before_heartbeat);
    let before = c.snapshot();
    let e = c.update(&m).await.unwrap_err();
    assert!(matches!(e, UpdateError::Rollback(_)), "{e:?}");
    assert_untouched(&c, &before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_of_the_same_size_or_longer_is_refused() {
    let dir = tempdir();
    let a = Publisher::small(dir.path());
    // Same genesis (key, origin, time): a copy of the new container.
    let b = a.copy("fork.dare");
    let c2 = a.copy("fork2.dare");
    a.publish("1.0.0", T0 + 60);
    b.publish_salted("1.0.0", T0 + 60, &TARGETS, "-evil");
    c2.publish_salted("1.0.0", T0 + 60, &TARGETS, "-evil");
    c2.publish_salted("1.1.0", T0 + 120, &TARGETS, "-evil");
    assert_eq!(a.scan().size(), b.scan().size());
    assert_ne!(a.scan().last_seal.checkpoint.root, b.scan().last_seal.checkpoint.root);

    let c = Client::new(dir.path(), "client", LINUX, a.verifiers());
    c.update(&mem(&a)).await.unwrap();
    let before = c.snapshot();
    let e = c.update(&mem(&b)).await.unwrap_err();
    assert!(matches!(e, UpdateError::Fork(_)), "same size: {e:?}");
    println!("same-size fork: {e}");
    assert_untouched(&c, &before);
    let e = c.update(&mem(&c2)).await.unwrap_err();
    assert!(matches!(e, UpdateError::Fork(_)), "longer: {e:?}");
    println!("longer fork: {e}");
    assert_untouched(&c, &before);

    // A fork after a shared history: both logs hold the same 1.0.0, then differ.
    let shared = a.copy("shared.dare");
    a.publish("1.1.0", T0 + 120);
    shared.publish_salted("1.1.0", T0 + 120, &TARGETS, "-evil");
    shared.publish_salted("1.2.0", T0 + 180, &TARGETS, "-evil");
    let o = c.update(&mem(&a)).await.unwrap();
    assert_eq!(o.version, "1.1.0");
    let before = c.snapshot();
    let e = c.update(&mem(&shared)).await.unwrap_err();
    assert!(matches!(e, UpdateError::Fork(_)), "after a shared history: {e:?}");
    assert_untouched(&c, &before);
    assert_installed(&c.install, LINUX, "1.1.0", a.app_size);
}

fn late() -> u64 {
    T0 + 30 * DAY
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_seal_is_a_freeze_until_a_heartbeat() {
    let dir = tempdir();
    let p = Publisher::small(dir.path());
    p.publish("1.0.0", T0 + 60);
    let m = mem(&p);

    // A client installed in time, then a month passes without a seal.
    let mut c = Client::new(dir.path(), "client", LINUX, p.verifiers());
    c.update(&m).await.unwrap();
    c.clock = late;
    let before = c.snapshot();
    let e = c.update(&m).await.unwrap_err();
    match e {
        UpdateError::Freeze { age_secs, max_age_secs } => {
            assert_eq!((age_secs, max_age_secs), (30 * DAY - 60, 14 * DAY));
        }
        e => panic!("{e:?}"),
    }
    assert_untouched(&c, &before);
    // A new client is refused too, and installs nothing.
    let mut fresh = Client::new(dir.path(), "fresh", LINUX, p.verifiers());
    fresh.clock = late;
    let e = fresh.update(&m).await.unwrap_err();
    assert!(matches!(e, UpdateError::Freeze { .. }), "{e:?}");
    assert!(!fresh.install.exists() && !fresh.state.join("state.json").exists());
    // A longer maximum age accepts it.
    let o = fresh.builder().max_age(std::time::Duration::from_secs(31 * DAY)).transport(m.clone()).build().unwrap();
    assert_eq!(o.check().await.unwrap().status, Status::Available);

    // A heartbeat refreshes the signed time.
    p.heartbeat(T0 + 29 * DAY);
    m.set_content(p.bytes());
    let o = c.update(&m).await.unwrap();
    println!("after a heartbeat: {o:?}");
    assert_eq!((o.status, o.signed_time), (Status::UpToDate, T0 + 29 * DAY));
    assert_eq!(c.state().unwrap().time, T0 + 29 * DAY);
    let o = fresh.update(&m).await.unwrap();
    assert_eq!((o.status, o.version.as_str()), (Status::Updated, "1.0.0"));
    assert_installed(&fresh.install, LINUX, "1.0.0", p.app_size);
    // The replica verifies, with the heartbeat seal.
    let scan =
        dare_container::verify_file(&replica_path(&fresh.state), &ScanOptions { payloads: true, pins: None }).unwrap();
    assert!(scan.partial);
    assert_eq!(scan.last_seal.seal.time, T0 + 29 * DAY);
}

// ---------------------------------------------------------------------------------------------------------
// Wrong target, wrong keys

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_target_lists_what_exists() {
    let dir = tempdir();
    let p = Publisher::small(dir.path());
    p.publish("1.0.0", T0 + 60);
    let c = Client::new(dir.path(), "client", WINDOWS, p.verifiers());
    let before = c.snapshot();
    let e = c.update(&mem(&p)).await.unwrap_err();
    println!("missing target: {e}");
    match &e {
        UpdateError::MissingTarget { target, channel, available } => {
            assert_eq!((target.as_str(), channel.as_str()), (WINDOWS, "stable"));
            for t in TARGETS {
                assert!(available.contains(&format!("{t} on stable (1.0.0)")), "{available}");
            }
        }
        e => panic!("{e:?}"),
    }
    assert_untouched(&c, &before);
    assert!(!c.install.exists());
    // Another channel is missing too.
    let beta = Client::new(dir.path(), "beta", LINUX, p.verifiers());
    let e = beta.builder().channel("beta").transport(mem(&p)).build().unwrap().update().await.unwrap_err();
    assert!(matches!(e, UpdateError::MissingTarget { ref channel, .. } if channel == "beta"), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_without_enough_trusted_signatures_are_refused() {
    let dir = tempdir();
    let p = Publisher::small(dir.path());
    p.publish("1.0.0", T0 + 60);

    // Signed by a key the client does not trust.
    let c = Client::new(dir.path(), "other-key", LINUX, vec![key(2).verifier()]);
    let before = c.snapshot();
    let e = c.update(&mem(&p)).await.unwrap_err();
    assert!(matches!(e, UpdateError::BadSignature(_)), "{e:?}");
    println!("untrusted key: {e}");
    assert_untouched(&c, &before);

    // A threshold of two with one valid signature.
    let mut c = Client::new(dir.path(), "threshold", LINUX, vec![key(1).verifier(), key(2).verifier()]);
    c.threshold = 2;
    let before = c.snapshot();
    let e = c.update(&mem(&p)).await.unwrap_err();
    assert!(matches!(e, UpdateError::BadSignature(_)), "{e:?}");
    assert_untouched(&c, &before);

    // The same key trusted twice is a configuration mistake, not an attack: refused when building.
    let c2 = Client::new(dir.path(), "twice", LINUX, vec![key(1).verifier(), key(1).verifier()]);
    for threshold in [1, 2] {
        let e = c2.builder().threshold(threshold).transport(mem(&p)).build().unwrap_err();
        assert!(matches!(e, UpdateError::Config(_)), "threshold {threshold}: {e:?}");
    }

    // A container whose trust root needs both keys, which both sign: accepted with threshold 2.
    let dir2 = tempdir();
    let both = Publisher::create(dir2.path(), "app.dare", vec![key(1), key(2)], 2, 4096);
    both.publish("1.0.0", T0 + 60);
    let o = c.update(&mem(&both)).await.unwrap();
    assert_eq!(o.status, Status::Updated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_container_signed_by_the_same_key_is_refused() {
    let dir = tempdir();
    let p = Publisher::small(dir.path());
    p.publish("1.0.0", T0 + 60);
    let other = Publisher::create_for("example.com/other", dir.path(), "other.dare", vec![key(1)], 1, 4096);
    other.publish("2.0.0", T0 + 60);

    // Pinned at the first update.
    let c = Client::new(dir.path(), "client", LINUX, p.verifiers());
    c.update(&mem(&p)).await.unwrap();
    let before = c.snapshot();
    let e = c.update(&mem(&other)).await.unwrap_err();
    match &e {
        UpdateError::WrongOrigin { expected, found } => {
            assert_eq!((expected.as_str(), found.as_str()), (ORIGIN, "example.com/other"))
        }
        e => panic!("{e:?}"),
    }
    assert_untouched(&c, &before);
    // Pinned by the configuration.
    let fresh = Client::new(dir.path(), "fresh", LINUX, p.verifiers());
    let e = fresh.builder().origin(ORIGIN).transport(mem(&other)).build().unwrap().update().await.unwrap_err();
    assert!(matches!(e, UpdateError::WrongOrigin { .. }), "{e:?}");
    assert!(!fresh.install.exists());
}

// ---------------------------------------------------------------------------------------------------------
// Progress and concurrency

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_events_follow_the_update() {
    use dare_updater::Event;
    use std::sync::Mutex;
    let dir = tempdir();
    let p = Publisher::small(dir.path());
    p.publish("1.0.0", T0 + 60);
    let c = Client::new(dir.path(), "client", LINUX, p.verifiers());
    let events: Arc<Mutex<Vec<Event>>> = Arc::default();
    let sink = Arc::clone(&events);
    let updater = c
        .builder()
        .transport(mem(&p))
        .progress(Arc::new(move |e: Event| sink.lock().unwrap().push(e)))
        .build()
        .unwrap();
    let o = updater.update().await.unwrap();
    let events = events.lock().unwrap().clone();
    assert_eq!(events.first(), Some(&Event::Checking));
    assert!(events.contains(&Event::Found { version: "1.0.0".into(), bytes: o.payload_bytes }), "{events:?}");
    assert_eq!(events.last(), Some(&Event::Installing));
    let fetched: Vec<u64> =
        events.iter().filter_map(|e| if let Event::Fetched { bytes } = e { Some(*bytes) } else { None }).collect();
    assert!(!fetched.is_empty() && fetched.windows(2).all(|w| w[0] < w[1]), "{fetched:?}");
    assert!(*fetched.last().unwrap() <= o.payload_bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_updates_at_once_on_one_state_directory() {
    let dir = tempdir();
    let p = Publisher::small(dir.path());
    p.publish("1.0.0", T0 + 60);
    let slow = Arc::new(MemoryTransport::new("slow", p.bytes()).delay(std::time::Duration::from_millis(200)));
    let c = Client::new(dir.path(), "client", LINUX, p.verifiers());
    let (a, b) = (c.via(slow.clone()), c.via(slow.clone()));
    let (ra, rb) = tokio::join!(a.update(), b.update());
    let (won, lost) = match (ra, rb) {
        (Ok(o), Err(e)) | (Err(e), Ok(o)) => (o, e),
        other => panic!("one update must win and one be refused: {other:?}"),
    };
    assert_eq!(won.status, Status::Updated);
    assert!(matches!(&lost, UpdateError::State(m) if m.contains("locked")), "{lost:?}");
    assert_installed(&c.install, LINUX, "1.0.0", p.app_size);
}

// ---------------------------------------------------------------------------------------------------------
// Mirrors and networks

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_to_a_good_mirror() {
    let dir = tempdir();
    let p = Publisher::small(dir.path());
    p.publish("1.0.0", T0 + 60);

    // In memory: the first mirror answers 503 to everything.
    let dead = Arc::new(MemoryTransport::new("dead", Vec::new()).fail_first(u32::MAX));
    let good = mem(&p);
    let c = Client::new(dir.path(), "memory", LINUX, p.verifiers());
    let o = c.builder().transport(dead.clone()).transport(good.clone()).build().unwrap().update().await.unwrap();
    assert_eq!((o.status, o.version.as_str()), (Status::Updated, "1.0.0"));
    assert!(dead.stats().requests >= 1);
    assert_installed(&c.install, LINUX, "1.0.0", p.app_size);

    // A missing file, then the real one.
    let c = Client::new(dir.path(), "file", LINUX, p.verifiers());
    let missing: Arc<dyn Transport> = Arc::new(FileTransport::new(dir.path().join("nowhere.dare")));
    let real: Arc<dyn Transport> = Arc::new(FileTransport::new(p.container.clone()));
    let o = c.builder().transport(missing).transport(real).build().unwrap().update().await.unwrap();
    assert_eq!(o.status, Status::Updated);

    // Over HTTP: nothing listens on the first port.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let server = TestServer::start(p.bytes()).await;
    let c = Client::new(dir.path(), "http", LINUX, p.verifiers());
    let dead_url = format!("http://127.0.0.1:{port}/app.dare");
    let o = c.builder().mirror(&dead_url).mirror(server.url()).build().unwrap().update().await.unwrap();
    assert_eq!((o.status, o.version.as_str()), (Status::Updated, "1.0.0"));
    assert_installed(&c.install, LINUX, "1.0.0", p.app_size);

    // A mirror serving a damaged build, then an honest one: the session starts over there.
    let app = entry_of(&p.scan(), LINUX, "1.0.0", "bin/app");
    let liar = Arc::new(MemoryTransport::new("liar", p.bytes()).corrupt(app.frame.payload_offset + 3));
    let honest = mem(&p);
    let c = Client::new(dir.path(), "liar-then-honest", LINUX, p.verifiers());
    let o = c.builder().transport(liar.clone()).transport(honest.clone()).build().unwrap().update().await.unwrap();
    assert_eq!((o.status, o.version.as_str()), (Status::Updated, "1.0.0"));
    assert!(liar.stats().requests >= 2 && honest.stats().requests >= 2);
    assert!(o.requests >= liar.stats().requests + honest.stats().requests, "the outcome counts both mirrors' requests");
    assert_installed(&c.install, LINUX, "1.0.0", p.app_size);
    // Only liars: the first mirror's error, nothing installed.
    let c = Client::new(dir.path(), "liars", LINUX, p.verifiers());
    let liar2 = Arc::new(MemoryTransport::new("liar2", p.bytes()).corrupt(app.frame.payload_offset + 5));
    let e = c.builder().transport(liar).transport(liar2).build().unwrap().update().await.unwrap_err();
    assert!(matches!(e, UpdateError::BadDigest(_)), "{e:?}");
    assert!(!c.install.exists());

    // Every mirror dead: a network error, nothing installed.
    let c = Client::new(dir.path(), "none", LINUX, p.verifiers());
    let e = c.at(&dead_url).update().await.unwrap_err();
    assert!(matches!(e, UpdateError::Network(_)), "{e:?}");
    assert!(!c.install.exists());
}

/// A container whose builds are big enough to be cut mid-entry.
fn bigger(dir: &std::path::Path) -> Publisher {
    let p = Publisher::create(dir, "app.dare", vec![key(1)], 1, 64 * 1024);
    p.publish("1.0.0", T0 + 60);
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_resumes_in_memory() {
    let dir = tempdir();
    let p = bigger(dir.path());
    let base = Client::new(dir.path(), "baseline", LINUX, p.verifiers());
    let baseline = base.update(&mem(&p)).await.unwrap();

    // The tail (8 KiB) gets through; the entries are cut every 9000 bytes, three times.
    let m = Arc::new(MemoryTransport::new("memory", p.bytes()).drop_after(9000, 4));
    let c = Client::new(dir.path(), "client", LINUX, p.verifiers());
    let o = c.update(&m).await.unwrap();
    println!("dropped (memory): {o:?}\nbaseline: {baseline:?}");
    assert_eq!((o.status, o.version.as_str()), (Status::Updated, "1.0.0"));
    assert!(o.requests > baseline.requests, "{} requests", o.requests);
    assert!(o.bytes_fetched <= baseline.bytes_fetched + 512, "{} vs {}", o.bytes_fetched, baseline.bytes_fetched);
    assert!(o.bytes_fetched - o.payload_bytes <= FIRST_OVERHEAD);
    assert_installed(&c.install, LINUX, "1.0.0", p.app_size);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_resumes_over_http() {
    let dir = tempdir();
    let p = bigger(dir.path());
    let clean = TestServer::start(p.bytes()).await;
    let base = Client::new(dir.path(), "baseline", LINUX, p.verifiers());
    let baseline = base.at(&clean.url()).update().await.unwrap();

    let content: Arc<[u8]> = p.bytes().into();
    let knobs = Knobs { drop_after: 20_000, drop_requests: 3, ..Knobs::default() };
    let server = TestServer::start_with(Arc::new(move |_| Arc::clone(&content)), knobs).await;
    let c = Client::new(dir.path(), "client", LINUX, p.verifiers());
    let o = c.at(&server.url()).update().await.unwrap();
    println!("dropped (http): {o:?}\nbaseline: {baseline:?}\nranges: {:?}", server.log());
    assert_eq!((o.status, o.version.as_str()), (Status::Updated, "1.0.0"));
    assert!(o.requests > baseline.requests);
    assert!(o.bytes_fetched <= baseline.bytes_fetched + 4096, "{} vs {}", o.bytes_fetched, baseline.bytes_fetched);
    assert!(o.bytes_fetched - o.payload_bytes <= FIRST_OVERHEAD + 4096);
    assert_installed(&c.install, LINUX, "1.0.0", p.app_size);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_ignores_ranges_still_works() {
    let dir = tempdir();
    let p = Publisher::small(dir.path());
    p.publish("1.0.0", T0 + 60);
    p.publish("1.1.0", T0 + 120);

    let m = Arc::new(MemoryTransport::new("memory", p.bytes()).ignore_ranges());
    let c = Client::new(dir.path(), "memory", LINUX, p.verifiers());
    let o = c.update(&m).await.unwrap();
    assert_eq!((o.status, o.version.as_str()), (Status::Updated, "1.1.0"));
    assert_installed(&c.install, LINUX, "1.1.0", p.app_size);

    // Multi-range answers coalesced into one part, or with their parts reversed.
    for (name, m) in [
        ("coalesce", MemoryTransport::new("memory", p.bytes()).coalesce()),
        ("reorder", MemoryTransport::new("memory", p.bytes()).reorder()),
    ] {
        let c = Client::new(dir.path(), name, LINUX, p.verifiers());
        let o = c.update(&Arc::new(m)).await.unwrap();
        assert_eq!((o.status, o.version.as_str()), (Status::Updated, "1.1.0"), "{name}");
        assert_installed(&c.install, LINUX, "1.1.0", p.app_size);
    }

    let content: Arc<[u8]> = p.bytes().into();
    let knobs = Knobs { ignore_ranges: true, ..Knobs::default() };
    let server = TestServer::start_with(Arc::new(move |_| Arc::clone(&content)), knobs).await;
    let c = Client::new(dir.path(), "http", LINUX, p.verifiers());
    let o = c.at(&server.url()).update().await.unwrap();
    println!("ignoring ranges: {o:?}");
    assert_eq!((o.status, o.version.as_str()), (Status::Updated, "1.1.0"));
    assert_installed(&c.install, LINUX, "1.1.0", p.app_size);
    let o = c.at(&server.url()).update().await.unwrap();
    assert_eq!((o.status, o.requests), (Status::UpToDate, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_server_serves_a_newer_file_between_requests() {
    // A mirror that syncs between a client's requests: the tail comes from release 1, the entries and
    // hashes from release 2 (a longer file holding the same bytes at the same offsets).
    let dir = tempdir();
    let p = Publisher::small(dir.path());
    p.publish("1.0.0", T0 + 60);
    let r1: Arc<[u8]> = p.bytes().into();
    p.publish("1.1.0", T0 + 120);
    let r2: Arc<[u8]> = p.bytes().into();
    let server =
        TestServer::start_with(Arc::new(move |n| if n == 0 { r1.clone() } else { r2.clone() }), Knobs::default()).await;
    let c = Client::new(dir.path(), "client", LINUX, p.verifiers());
    let o = c.at(&server.url()).update().await.unwrap();
    assert_eq!((o.status, o.version.as_str()), (Status::Updated, "1.0.0"));
    let o = c.at(&server.url()).update().await.unwrap();
    assert_eq!((o.status, o.version.as_str()), (Status::Updated, "1.1.0"));
    assert_installed(&c.install, LINUX, "1.1.0", p.app_size);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_that_goes_back_mid_session() {
    // The tail comes from release 2, everything after from release 1: the new entries are past the end.
    let dir = tempdir();
    let p = Publisher::small(dir.path());
    p.publish("1.0.0", T0 + 60);
    let r1: Arc<[u8]> = p.bytes().into();
    p.publish("1.1.0", T0 + 120);
    let r2: Arc<[u8]> = p.bytes().into();
    let (a, b) = (r1.clone(), r2.clone());
    let pick = Arc::new(move |n| if n == 0 { b.clone() } else { a.clone() });
    let server = TestServer::start_with(pick.clone(), Knobs::default()).await;
    let c = Client::new(dir.path(), "client", LINUX, p.verifiers());
    let before = c.snapshot();
    let e = c.at(&server.url()).update().await.unwrap_err();
    assert!(matches!(e, UpdateError::Network(_)), "{e:?}");
    println!("mirror went back: {e}");
    assert_untouched(&c, &before);

    // With a second, honest mirror the update completes there.
    let lying = TestServer::start_with(pick, Knobs::default()).await;
    let honest = TestServer::start(r2.to_vec()).await;
    let o = c.builder().mirror(lying.url()).mirror(honest.url()).build().unwrap().update().await.unwrap();
    assert_eq!((o.status, o.version.as_str()), (Status::Updated, "1.1.0"));
    assert_installed(&c.install, LINUX, "1.1.0", p.app_size);
}

// ---------------------------------------------------------------------------------------------------------
// Installing

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_install_that_fails_midway_keeps_the_old_build() {
    let dir = tempdir();
    let p = Publisher::small(dir.path());
    p.publish("1.0.0", T0 + 60);
    let m = mem(&p);
    let c = Client::new(dir.path(), "client", LINUX, p.verifiers());
    c.update(&m).await.unwrap();
    p.publish("1.1.0", T0 + 120);
    m.set_content(p.bytes());

    // The new build is in versions/ but the link cannot be switched: the temporary link's name is taken.
    let obstacle = c.install.join(format!(".current-{}", std::process::id()));
    fs::create_dir_all(obstacle.join("busy")).unwrap();
    let state_before = c.snapshot().1;
    let e = c.update(&m).await.unwrap_err();
    assert!(matches!(e, UpdateError::Io { .. }), "{e:?}");
    println!("install failed midway: {e}");
    assert!(!c.state.join("staging").exists(), "the verified files are not left behind");
    assert_installed(&c.install, LINUX, "1.0.0", p.app_size);
    assert_eq!(c.snapshot().1, state_before, "the state records only what is installed");
    assert_eq!(c.state().unwrap().installed.unwrap().version, "1.0.0");

    // Once the obstacle is gone, the same update completes.
    fs::remove_dir_all(&obstacle).unwrap();
    let o = c.update(&m).await.unwrap();
    assert_eq!((o.status, o.version.as_str(), o.previous.as_deref()), (Status::Updated, "1.1.0", Some("1.0.0")));
    assert_installed(&c.install, LINUX, "1.1.0", p.app_size);
    assert_eq!(versions(&c.install), ["1.0.0", "1.1.0"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_current_that_is_not_a_link_is_left_alone() {
    let dir = tempdir();
    let p = Publisher::small(dir.path());
    p.publish("1.0.0", T0 + 60);
    let c = Client::new(dir.path(), "client", LINUX, p.verifiers());
    fs::create_dir_all(&c.install).unwrap();
    fs::write(c.install.join("current"), "not a link").unwrap();
    let before = c.snapshot();
    let e = c.update(&mem(&p)).await.unwrap_err();
    assert!(matches!(e, UpdateError::State(_)), "{e:?}");
    assert_untouched(&c, &before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_install_and_record_is_repaired_by_the_next_run() {
    let dir = tempdir();
    let p = Publisher::small(dir.path());
    p.publish("1.0.0", T0 + 60);
    let m = mem(&p);
    let c = Client::new(dir.path(), "client", LINUX, p.verifiers());
    c.update(&m).await.unwrap();
    p.publish("1.1.0", T0 + 120);
    m.set_content(p.bytes());

    // Install 1.1.0, then put the state back as it was: as if killed after switching `current` but
    // before the state (and the replica's committed length) were recorded.
    let saved = fs::read(c.state.join("state.json")).unwrap();
    c.update(&m).await.unwrap();
    fs::write(c.state.join("state.json"), &saved).unwrap();
    assert_installed(&c.install, LINUX, "1.1.0", p.app_size);

    let o = c.update(&m).await.unwrap();
    assert_eq!((o.status, o.version.as_str(), o.previous.as_deref()), (Status::Updated, "1.1.0", Some("1.0.0")));
    assert_installed(&c.install, LINUX, "1.1.0", p.app_size);
    assert_eq!(versions(&c.install), ["1.0.0", "1.1.0"], "the previous build is kept");
    let o = c.update(&m).await.unwrap();
    assert_eq!((o.status, o.requests), (Status::UpToDate, 1));
}

// ---------------------------------------------------------------------------------------------------------
// The replica

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replica_verifies_offline_and_detects_damage() {
    let dir = tempdir();
    let p = Publisher::small(dir.path());
    p.publish("1.0.0", T0 + 60);
    p.publish("1.1.0", T0 + 120);
    let c = Client::new(dir.path(), "client", LINUX, p.verifiers());
    c.update(&mem(&p)).await.unwrap();

    let replica = replica_path(&c.state);
    let opts = ScanOptions { payloads: true, pins: Some(p.verifiers()) };
    let scan = dare_container::verify_file(&replica, &opts).unwrap();
    assert!(scan.partial);
    assert_eq!((scan.seals, scan.size()), (1, p.scan().size()));
    assert_eq!(scan.last_seal.checkpoint, p.scan().last_seal.checkpoint);
    let mut held: Vec<(&str, &str, &str)> = scan
        .entries
        .iter()
        .map(|e| (e.entry.target.as_str(), e.entry.version.as_str(), e.entry.path.as_str()))
        .collect();
    held.sort();
    assert_eq!(held, [(LINUX, "1.1.0", "bin/app"), (LINUX, "1.1.0", "share/readme.txt")]);
    assert_eq!(c.state().unwrap().replica_len, fs::metadata(&replica).unwrap().len());
    assert_replica_damage_is_found(&replica, &scan, &dir.path().join("damaged.dare"), &opts);
}

/// Flipping a byte of an entry's payload, or of its header, makes the replica fail to verify.
fn assert_replica_damage_is_found(
    replica: &std::path::Path,
    scan: &dare_container::verify::Scan,
    damaged: &std::path::Path,
    opts: &ScanOptions,
) {
    for e in &scan.entries {
        let mut bytes = fs::read(replica).unwrap();
        bytes[(e.frame.payload_offset + e.frame.payload_len / 2) as usize] ^= 0x01;
        fs::write(damaged, &bytes).unwrap();
        let err = dare_container::verify_file(damaged, opts).unwrap_err();
        println!("payload of {} damaged: {err}", e.entry.path);
        let mut bytes = fs::read(replica).unwrap();
        bytes[(e.frame.header_offset + 12) as usize] ^= 0x01;
        fs::write(damaged, &bytes).unwrap();
        assert!(dare_container::verify_file(damaged, opts).is_err());
        // Without payload checks, header damage is still found by the proofs.
        assert!(dare_container::verify_file(damaged, &ScanOptions { payloads: false, pins: None }).is_err());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replica_follows_every_update() {
    let dir = tempdir();
    let p = Publisher::small(dir.path());
    p.publish("1.0.0", T0 + 60);
    let m = mem(&p);
    let c = Client::new(dir.path(), "client", LINUX, p.verifiers());
    c.update(&m).await.unwrap();
    p.publish("1.1.0", T0 + 120);
    m.set_content(p.bytes());
    c.update(&m).await.unwrap();

    let replica = replica_path(&c.state);
    let opts = ScanOptions { payloads: true, pins: Some(p.verifiers()) };
    let scan = dare_container::verify_file(&replica, &opts).unwrap();
    assert!(scan.partial);
    assert_eq!(scan.seals, 2);
    let mut held: Vec<(String, String)> =
        scan.entries.iter().map(|e| (e.entry.version.clone(), e.entry.path.clone())).collect();
    held.sort();
    let want: Vec<(String, String)> = ["1.0.0", "1.1.0"]
        .iter()
        .flat_map(|v| ["bin/app", "share/readme.txt"].map(|f| (v.to_string(), f.to_string())))
        .collect();
    assert_eq!(held, want);
    assert_eq!(c.state().unwrap().replica_len, fs::metadata(&replica).unwrap().len());

    // Another target's release: up to date, but the replica still follows the tree.
    p.publish_salted("1.2.0", T0 + 180, &[ARM], "");
    m.set_content(p.bytes());
    let o = c.update(&m).await.unwrap();
    assert_eq!((o.status, o.version.as_str()), (Status::UpToDate, "1.1.0"));
    assert!(o.requests <= 2, "{} requests", o.requests);
    // A heartbeat: one more seal.
    p.heartbeat(T0 + 600);
    m.set_content(p.bytes());
    assert_eq!(c.update(&m).await.unwrap().status, Status::UpToDate);
    let scan = dare_container::verify_file(&replica, &opts).unwrap();
    assert_eq!((scan.seals, scan.size(), scan.last_seal.seal.time), (4, p.scan().size(), T0 + 600));
    assert_replica_damage_is_found(&replica, &scan, &dir.path().join("damaged.dare"), &opts);

    // A crash after installing but before recording: the replica is cut back to its committed length.
    p.publish("1.3.0", T0 + 700);
    m.set_content(p.bytes());
    let saved = fs::read(c.state.join("state.json")).unwrap();
    c.update(&m).await.unwrap();
    fs::write(c.state.join("state.json"), &saved).unwrap();
    c.update(&m).await.unwrap();
    let scan = dare_container::verify_file(&replica, &opts).unwrap();
    assert_eq!((scan.seals, scan.size()), (5, p.scan().size()));
}

// ---------------------------------------------------------------------------------------------------------
// nginx as a mirror

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_main_flow_through_nginx() {
    let dir = tempdir();
    let root = dir.path().join("www");
    fs::create_dir_all(&root).unwrap();
    let p = Publisher::small(&root);
    p.publish("1.0.0", T0 + 60);
    let Some(nginx) = support::nginx::Nginx::start(&root, &dir.path().join("nginx")) else {
        eprintln!("{} is not installed; skipping (apt-get install -y nginx)", support::nginx::NGINX);
        return;
    };
    let url = nginx.url("app.dare");
    let c = Client::new(dir.path(), "client", LINUX, p.verifiers());
    let mut outcomes = Vec::new();
    let o = c.at(&url).update().await.unwrap();
    assert_eq!((o.status, o.version.as_str()), (Status::Updated, "1.0.0"));
    assert!(o.requests <= 3);
    outcomes.push(o);
    let o = c.at(&url).update().await.unwrap();
    assert_eq!((o.status, o.requests), (Status::UpToDate, 1));
    outcomes.push(o);
    p.publish("1.1.0", T0 + 120);
    let o = c.at(&url).update().await.unwrap();
    assert_eq!((o.status, o.version.as_str(), o.previous.as_deref()), (Status::Updated, "1.1.0", Some("1.0.0")));
    assert!(o.requests <= 3);
    outcomes.push(o);
    assert_installed(&c.install, LINUX, "1.1.0", p.app_size);

    let requests: u64 = outcomes.iter().map(|o| o.requests).sum();
    let bytes: u64 = outcomes.iter().map(|o| o.bytes_fetched).sum();
    let log = nginx.log(requests as usize);
    println!("nginx log: {log:#?}");
    assert_eq!(log.len() as u64, requests, "requests in the access log");
    assert!(log.iter().all(|l| l.status == 206), "{log:?}");
    let served: u64 = log.iter().map(|l| l.bytes).sum();
    assert_eq!(served, bytes, "body bytes nginx sent and the client counted");
    println!("nginx: {requests} requests, {bytes} bytes for {} bytes of container", p.bytes().len());
}

// ---------------------------------------------------------------------------------------------------------
// The budget of DESIGN.md section 3.4

/// Twenty target triples.
const TWENTY: [&str; 20] = [
    "x86_64-unknown-linux-gnu",
    "aarch64-unknown-linux-gnu",
    "x86_64-unknown-linux-musl",
    "aarch64-unknown-linux-musl",
    "armv7-unknown-linux-gnueabihf",
    "i686-unknown-linux-gnu",
    "riscv64gc-unknown-linux-gnu",
    "powerpc64le-unknown-linux-gnu",
    "s390x-unknown-linux-gnu",
    "x86_64-apple-darwin",
    "aarch64-apple-darwin",
    "x86_64-pc-windows-msvc",
    "aarch64-pc-windows-msvc",
    "i686-pc-windows-msvc",
    "x86_64-pc-windows-gnu",
    "x86_64-unknown-freebsd",
    "aarch64-linux-android",
    "x86_64-unknown-netbsd",
    "aarch64-apple-ios",
    "x86_64-unknown-illumos",
];

const BUDGET_FILE: usize = 256 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_one_target_of_twenty_after_twenty_releases() {
    let dir = tempdir();
    let p = Publisher::create(dir.path(), "app.dare", vec![key(1)], 1, 0);
    let target = TWENTY[7];
    let release = |i: u64| format!("1.{i}.0");
    for i in 1..=10 {
        p.publish_single(&release(i), T0 + 60 * i, &TWENTY, BUDGET_FILE);
    }
    let at10 = p.bytes();
    let m = Arc::new(MemoryTransport::new("memory", at10.clone()));
    let server10 = TestServer::start(at10).await;
    let c = Client::new(dir.path(), "memory", target, p.verifiers());
    let h = Client::new(dir.path(), "http", target, p.verifiers());
    assert_eq!(c.update(&m).await.unwrap().version, "1.10.0");
    assert_eq!(h.at(&server10.url()).update().await.unwrap().version, "1.10.0");
    drop(server10);

    for i in 11..=20 {
        p.publish_single(&release(i), T0 + 60 * i, &TWENTY, BUDGET_FILE);
    }
    let at20 = p.bytes();
    let size = at20.len();
    m.set_content(at20.clone());
    let server20 = TestServer::start(at20).await;

    let mut lines = Vec::new();
    for (name, client, via_http) in [("memory", &c, false), ("http", &h, true)] {
        let updater = if via_http { client.at(&server20.url()) } else { client.via(m.clone()) };
        let o = updater.update().await.unwrap();
        assert_eq!((o.status, o.version.as_str(), o.previous.as_deref()), (Status::Updated, "1.20.0", Some("1.10.0")));
        let path = client.install.join("current/app");
        assert_eq!(fs::read(path).unwrap(), single_bytes(target, "1.20.0", BUDGET_FILE));
        let overhead = o.bytes_fetched - BUDGET_FILE as u64;
        let up = updater.check().await.unwrap();
        assert_eq!((up.status, up.requests), (Status::UpToDate, 1));
        let again = updater.update().await.unwrap();
        assert_eq!((again.status, again.requests), (Status::UpToDate, 1));
        lines.push(format!(
            "budget ({name}): container {size} bytes; update 10 -> 20 of one target of 20: {} bytes in {} requests \
             ({} bytes of entry frame, {overhead} bytes beyond the 262144-byte file); up-to-date check: {} bytes in {} request",
            o.bytes_fetched, o.requests, o.payload_bytes, up.bytes_fetched, up.requests
        ));
        assert!(overhead <= 16 * 1024, "{name}: {overhead} bytes beyond the payload");
        assert!(o.requests <= 3, "{name}: {} requests", o.requests);
    }
    for l in &lines {
        println!("{l}");
    }
    println!("http ranges: {:?}", server20.log());

    // A heartbeat seal after it: the up-to-date check is still one request.
    p.heartbeat(T0 + 60 * 21);
    m.set_content(p.bytes());
    let o = c.via(m.clone()).check().await.unwrap();
    println!("budget: up-to-date after a heartbeat: {} bytes in {} request(s)", o.bytes_fetched, o.requests);
    assert_eq!((o.status, o.signed_time), (Status::UpToDate, T0 + 60 * 21));
    assert_eq!(o.requests, 1, "an up-to-date check after a heartbeat");
}
