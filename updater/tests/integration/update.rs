//! The updater end to end on loopback: containers built with the publisher,
//! served from memory (with faults), from files, from a range server of our
//! own and from nginx; every attack of DESIGN.md section 4 refused with its
//! own error and nothing installed.

use std::collections::BTreeSet;
use std::fs;
use std::sync::Arc;

use crate::support::server::{Knobs, TestServer};
use crate::support::*;
use dare_container::merkle::Frontier;
use dare_container::verify::ScanOptions;
use dare_updater::state::replica_path;
use dare_updater::transport::{ByteRange, FileTransport, MemoryTransport, Transport};
use dare_updater::{Status, UpdateError};

fn mem(p: &Publisher) -> Arc<MemoryTransport> {
    Arc::new(MemoryTransport::new("memory", p.bytes()))
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// What a client fetches beyond its entries on a first install: the 1 KiB suffix with the seal, the
/// map and manifest, its index, the genesis and a few hashes.
const FIRST_OVERHEAD: u64 = 12 * 1024;

/// Requests of an update: the seal, the map and manifest, the index with its proof, then the
/// entries and their hashes (two requests in parallel).
const UPDATE_REQUESTS: u64 = 5;

#[track_caller]
fn assert_untouched(c: &Client, before: &(Snapshot, Snapshot)) {
    let mut after = c.snapshot();
    // A refused first install leaves an empty `versions/` behind (a library bug, shown by
    // `a_refused_first_install_creates_no_directories`); the other tests look past it.
    if !before.0.contains_key(std::path::Path::new("versions"))
        && after.0.get(std::path::Path::new("versions")).is_some_and(|v| v.starts_with("dir"))
        && after.0.len() == 1
    {
        after.0.clear();
    }
    assert_eq!(before.0, after.0, "the install directory changed");
    assert_eq!(before.1, after.1, "the state changed");
    assert!(!c.state.join("staging").exists(), "a staging directory was left behind");
    assert_no_incoming(&c.install);
}

/// No build is installed: no `current`, nothing under `versions/`.
#[track_caller]
fn assert_nothing_installed(install: &std::path::Path) {
    assert!(fs::symlink_metadata(install.join("current")).is_err(), "current exists");
    assert_eq!(files_under(&install.join("versions")).len(), 0, "files under versions/");
    assert_no_incoming(install);
}

/// No half-assembled build is left under `versions/`.
#[track_caller]
fn assert_no_incoming(install: &std::path::Path) {
    let left: Vec<String> = fs::read_dir(install.join("versions"))
        .map(|r| r.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    assert!(left.iter().all(|n| !n.starts_with('.')), "left under versions/: {left:?}");
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
    assert!(o.requests <= UPDATE_REQUESTS, "{} requests", o.requests);
    assert!(o.payload_bytes > p.app_size as u64, "payload {}", o.payload_bytes);
    // Nothing installed: every file comes whole.
    assert_eq!((o.bytes_full, o.bytes_delta, o.bytes_reused), (o.payload_bytes, 0, 0));
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
    let i = s.installed.as_ref().expect("the install is recorded");
    assert_eq!((i.target.as_str(), i.channel.as_str(), i.version.as_str()), (LINUX, "stable", "1.0.0"));
    assert_eq!((s.size, s.time, s.origin.as_str()), (o.tree_size, T0 + 60, ORIGIN));
    assert!(!c.state.join("staging").exists());

    // Nothing new: one request of at most 1 KiB, nothing changes.
    let before = c.snapshot();
    let o = c.update(&m).await.unwrap();
    assert_eq!(o.status, Status::UpToDate);
    assert_eq!(o.requests, 1);
    assert!(o.bytes_fetched <= 1024, "{} bytes", o.bytes_fetched);
    assert_eq!((o.version.as_str(), o.previous.as_deref(), o.payload_bytes), ("1.0.0", Some("1.0.0"), 0));
    assert_eq!(o.install_path, None);
    assert_untouched(&c, &before);

    // The next release: installed, the previous one kept.
    p.publish("1.1.0", T0 + 120);
    m.set_content(p.bytes());
    let o = c.update(&m).await.unwrap();
    println!("next release: {o:?}");
    assert_eq!((o.status, o.version.as_str(), o.previous.as_deref()), (Status::Updated, "1.1.0", Some("1.0.0")));
    assert!(o.requests <= UPDATE_REQUESTS, "{} requests", o.requests);
    assert_eq!(o.payload_bytes, o.bytes_full + o.bytes_delta);
    assert_installed(&c.install, LINUX, "1.1.0", p.app_size);
    assert_eq!(versions(&c.install), ["1.0.0", "1.1.0"]);
    // The previous build is still intact.
    assert_eq!(fs::read(c.install.join("versions/1.0.0/bin/app")).unwrap(), app_bytes(LINUX, "1.0.0", p.app_size));

    // The one after prunes the oldest, also for a new state directory on the same install directory
    // (which knows no installed build: nothing is reused).
    p.publish("1.2.0", T0 + 180);
    m.set_content(p.bytes());
    let mut again = Client::new(dir.path(), "again", LINUX, p.verifiers());
    again.install = c.install.clone();
    let o = again.update(&m).await.unwrap();
    assert_eq!((o.status, o.version.as_str(), o.previous.as_deref()), (Status::Updated, "1.2.0", None));
    assert_eq!((o.bytes_delta, o.bytes_reused), (0, 0));
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

    // A new client: nothing installed, nothing recorded. The seal, then the manifest (in this small
    // container, the suffix read for the seal holds it too).
    let fresh = Client::new(dir.path(), "fresh", LINUX, p.verifiers());
    let o = fresh.via(m.clone()).check().await.unwrap();
    assert_eq!((o.status, o.version.as_str(), o.previous.as_deref()), (Status::Available, "1.0.0", None));
    assert_eq!((o.payload_bytes, o.install_path.clone()), (0, None));
    assert!(o.requests <= 2, "{} requests", o.requests);
    assert!(!fresh.install.exists());
    assert!(!fresh.state.join("state.json").exists());
    assert!(!replica_path(&fresh.state).exists());

    // An installed client: a newer build is reported, not installed.
    let c = Client::new(dir.path(), "client", LINUX, p.verifiers());
    c.update(&m).await.unwrap();
    let o = c.via(m.clone()).check().await.unwrap();
    assert_eq!((o.status, o.requests), (Status::UpToDate, 1));
    assert!(o.bytes_fetched <= 1024, "{} bytes", o.bytes_fetched);
    p.publish("1.1.0", T0 + 120);
    m.set_content(p.bytes());
    let before = c.snapshot();
    let o = c.via(m.clone()).check().await.unwrap();
    assert_eq!((o.status, o.version.as_str(), o.previous.as_deref()), (Status::Available, "1.1.0", Some("1.0.0")));
    assert!(o.requests <= 2, "{} requests", o.requests);
    assert_untouched(&c, &before);
    assert_installed(&c.install, LINUX, "1.0.0", p.app_size);
}

/// 16 MiB of junk between the frames a seal names and the seal itself (a mirror padding the
/// tail): what the client remembers for its next tail read is the verified seal's length, so a later
/// check still reads one small suffix, not the padding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn padding_before_the_seal_is_not_remembered_as_the_tail() {
    let dir = tempdir();
    let p = Publisher::small(dir.path());
    p.publish("1.0.0", T0 + 60);
    let (bytes, seal) = (p.bytes(), p.scan().last_seal.frame);
    let at = seal.offset as usize;
    let mut padded = bytes[..at].to_vec();
    padded.extend(noise("padding", 16 << 20));
    padded.extend_from_slice(&bytes[at..]);
    let m = Arc::new(MemoryTransport::new("padded", padded));
    let c = Client::new(dir.path(), "client", LINUX, p.verifiers());
    // Everything the client uses is verified; the padding is never read.
    let o = c.update(&m).await.unwrap();
    assert_eq!((o.status, o.version.as_str()), (Status::Updated, "1.0.0"));
    assert!(o.bytes_fetched < 1 << 20, "{} bytes", o.bytes_fetched);
    assert_eq!(c.state().unwrap().seal_len, seal.len(), "the hint is the verified seal frame");
    let o = c.via(m.clone()).check().await.unwrap();
    assert_eq!((o.status, o.requests), (Status::UpToDate, 1));
    assert!(o.bytes_fetched <= seal.len() + 64, "{} bytes for a seal of {}", o.bytes_fetched, seal.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_and_file_url_mirrors() {
    let dir = tempdir();
    let p = Publisher::small(dir.path());
    p.publish("1.0.0", T0 + 60);
    let c = Client::new(dir.path(), "client", ARM, p.verifiers());
    let o = c.at(p.container.to_str().unwrap()).update().await.unwrap();
    assert_eq!((o.status, o.version.as_str()), (Status::Updated, "1.0.0"));
    assert!(o.requests <= UPDATE_REQUESTS);
    assert_installed(&c.install, ARM, "1.0.0", p.app_size);

    p.publish("1.1.0", T0 + 120);
    let url = file_url(&p.container);
    let o = c.at(&url).update().await.unwrap();
    assert_eq!((o.status, o.version.as_str(), o.previous.as_deref()), (Status::Updated, "1.1.0", Some("1.0.0")));
    assert_installed(&c.install, ARM, "1.1.0", p.app_size);
    let o = c.at(&url).update().await.unwrap();
    assert_eq!((o.status, o.requests), (Status::UpToDate, 1));
}

// ---------------------------------------------------------------------------------------------------------
// Damaged bytes

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_to_another_targets_entry_or_index_does_not_matter() {
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

    // The same on an update, with the other target's header damaged this time, then its index.
    p.publish("1.1.0", T0 + 120);
    let scan = p.scan();
    let other = entry_of(&scan, MAC, "1.1.0", "bin/app");
    let other_index = index_of(&scan, MAC, "1.1.0");
    m.set_content(p.bytes());
    m.update_faults(|f| f.corrupt_at = Some(other.frame.header_offset + 10));
    let o = c.update(&m).await.unwrap();
    assert_eq!((o.status, o.version.as_str()), (Status::Updated, "1.1.0"));
    assert_installed(&c.install, LINUX, "1.1.0", p.app_size);
    for at in [other_index.frame.header_offset + 10, other_index.frame.payload_offset + 3] {
        let fresh = Client::new(dir.path(), &format!("fresh-{at}"), LINUX, p.verifiers());
        let m = Arc::new(MemoryTransport::new("memory", p.bytes()).corrupt(at));
        let o = fresh.update(&m).await.unwrap();
        assert_eq!((o.status, o.version.as_str()), (Status::Updated, "1.1.0"), "byte {at}");
        assert_installed(&fresh.install, LINUX, "1.1.0", p.app_size);
    }
}

/// Fetches through a transport that corrupts the byte at `at`, expecting an error; then the install
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
        assert_nothing_installed(&fresh.install);
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
    assert_installed(&c.install, LINUX, "1.1.0", p.app_size);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_to_this_targets_entry_header_is_a_bad_digest() {
    let dir = tempdir();
    let p = Publisher::small(dir.path());
    p.publish("1.0.0", T0 + 60);
    let scan = p.scan();
    let fresh = Client::new(dir.path(), "fresh", LINUX, p.verifiers());
    for path in ["bin/app", "share/readme.txt"] {
        let e = entry_of(&scan, LINUX, "1.0.0", path);
        // Inside the JSON, on the frame's leading tag and length, and on its trailing length.
        for at in [e.frame.header_offset + 20, e.frame.offset, e.frame.offset + 1, e.frame.offset + e.frame.len() - 2] {
            let err = refused_with_corruption(&fresh, p.bytes(), at).await;
            assert!(matches!(err, UpdateError::BadDigest(_)), "{path} byte {at}: {err:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_to_this_targets_index_is_a_bad_digest() {
    let dir = tempdir();
    let p = Publisher::small(dir.path());
    p.publish("1.0.0", T0 + 60);
    let ix = index_of(&p.scan(), LINUX, "1.0.0");
    let fresh = Client::new(dir.path(), "fresh", LINUX, p.verifiers());
    // The frame's tag, its header (the listing's digest among it), the listing, the trailing length.
    for at in [
        ix.frame.offset,
        ix.frame.header_offset + 20,
        ix.frame.header_offset + ix.frame.header_len - 20,
        ix.frame.payload_offset,
        ix.frame.payload_offset + ix.frame.payload_len / 2,
        ix.frame.offset + ix.frame.len() - 1,
    ] {
        let err = refused_with_corruption(&fresh, p.bytes(), at).await;
        assert!(matches!(err, UpdateError::BadDigest(_)), "byte {at}: {err:?}");
    }

    // An installed client keeps its build.
    let c = Client::new(dir.path(), "client", LINUX, p.verifiers());
    c.update(&mem(&p)).await.unwrap();
    p.publish("1.1.0", T0 + 120);
    let ix = index_of(&p.scan(), LINUX, "1.1.0");
    let err = refused_with_corruption(&c, p.bytes(), ix.frame.payload_offset + 5).await;
    assert!(matches!(err, UpdateError::BadDigest(_)), "{err:?}");
    println!("index damaged: {err}");
    assert_installed(&c.install, LINUX, "1.0.0", p.app_size);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_to_a_tile_hash() {
    let dir = tempdir();
    let p = Publisher::small(dir.path());
    p.publish("1.0.0", T0 + 60);
    let trust = p.verifiers();
    let c = Client::new(dir.path(), "client", ARM, trust.clone());
    c.update(&mem(&p)).await.unwrap();
    let old = c.state().unwrap().frontier;
    p.publish("1.1.0", T0 + 120);
    let bytes = p.bytes();
    let top = signed_top(&bytes, &trust);
    let scan = p.scan();
    let n = scan.size();
    let index_leaf = index_of(&scan, ARM, "1.1.0").leaf;
    // Round 3 proves the genesis, the index and the manifest; round 4 adds what is fetched.
    let proven = BTreeSet::from([0, index_leaf, n - 1]);
    let inclusion = |installed: Option<&str>| {
        let mut all = proven.clone();
        all.extend(needed_leaves(&scan, ARM, "1.1.0", installed));
        let mut r = proof_ranges(&bytes, &top, &Frontier::new(), &proven);
        r.extend(proof_ranges(&bytes, &top, &Frontier::new(), &all));
        bytes_in(&r)
    };

    // A first install has no stored tree: any bad hash on the proofs is a bad digest.
    let fresh_bytes: Vec<u64> = inclusion(None).into_iter().collect();
    assert!(!fresh_bytes.is_empty(), "the proofs need tile hashes");
    let fresh = Client::new(dir.path(), "fresh", ARM, trust.clone());
    let picks = [fresh_bytes[0], fresh_bytes[fresh_bytes.len() / 2], fresh_bytes[fresh_bytes.len() - 1]];
    for at in picks {
        let err = refused_with_corruption(&fresh, bytes.clone(), at).await;
        assert!(matches!(err, UpdateError::BadDigest(_)), "byte {at}: {err:?}");
    }

    // A client with a stored tree: a hash the consistency proof needs is classified as a fork (the
    // bytes cannot show that the signed tree extends the stored one, whether the log forked or the
    // mirror lies about the tiles); a hash only the inclusion proofs need is a bad digest.
    let consistency = bytes_in(&proof_ranges(&bytes, &top, &old, &BTreeSet::from([n - 1])));
    // The proof hashes this client fetches (its replica already holds some): watched on a copy of it.
    let copy = Client::new(dir.path(), "copy", ARM, trust.clone());
    copy_tree(&c.state, &copy.state);
    copy_tree(&c.install, &copy.install);
    let watched = Arc::new(Watched::passive(Arc::new(MemoryTransport::new("memory", bytes.clone()))));
    copy.via(watched.clone()).update().await.unwrap();
    let contents: BTreeSet<u64> = needed_leaves(&scan, ARM, "1.1.0", Some("1.0.0"))
        .into_iter()
        .flat_map(|leaf| {
            let e = scan.entries.iter().find(|e| e.leaf == leaf).expect("a needed leaf is an entry or delta");
            e.frame.offset..e.frame.end()
        })
        .collect();
    let index = index_of(&scan, ARM, "1.1.0").frame;
    let asked: BTreeSet<u64> = watched
        .log()
        .iter()
        .flatten()
        .filter_map(|r| match r {
            ByteRange::Span { start, end } => Some(*start..*end),
            ByteRange::Suffix(_) => None,
        })
        .flatten()
        .filter(|b| !contents.contains(b) && !(index.offset..index.end()).contains(b))
        .filter(|b| *b < top.seal.seal.map.offset)
        .collect();
    let included: BTreeSet<u64> = inclusion(Some("1.0.0")).intersection(&asked).copied().collect();
    let both: Vec<u64> = included.intersection(&consistency).copied().collect();
    let only_consistency: Vec<u64> = consistency.difference(&included).copied().collect();
    let inclusion_only: Vec<u64> = included.difference(&consistency).copied().collect();
    println!(
        "tree {} -> {n}: consistency {} bytes, inclusion {} bytes, {} in both",
        old.size(),
        consistency.len(),
        included.len(),
        both.len()
    );
    assert!(!consistency.is_empty() && !inclusion_only.is_empty(), "the fixture needs both kinds of hashes");
    let cons: Vec<u64> = consistency.iter().copied().collect();
    for at in [cons[0], cons[cons.len() - 1]]
        .into_iter()
        .chain(both.first().copied())
        .chain(only_consistency.first().copied())
    {
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
    let map = scan.last_seal.seal.map;
    let map_frame = dare_container::frame::read_frame_at(p.bytes().as_slice(), map.offset, map.end()).unwrap();
    // The manifest's header, the seal's header, the map's header and its frontier (the hashes the
    // manifest is proven with).
    for at in [m.header_offset + 30, seal.header_offset + 40, map_frame.header_offset + 3, map_frame.payload_offset + 5]
    {
        let err = refused_with_corruption(&fresh, p.bytes(), at).await;
        assert!(matches!(err, UpdateError::BadSignature(_)), "byte {at}: {err:?}");
    }
    // A file that does not end with a whole frame is a damaged copy, not a publish in progress.
    let err = refused_with_corruption(&fresh, p.bytes(), seal.offset + seal.len() - 1).await;
    assert!(matches!(err, UpdateError::Damaged(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shifted_file_is_a_damaged_copy_not_unsealed() {
    // One byte too many or too few, at the start or at the end: each says what was seen.
    let dir = tempdir();
    let p = Publisher::small(dir.path());
    p.publish("1.0.0", T0 + 60);
    let fresh = Client::new(dir.path(), "fresh", LINUX, p.verifiers());
    let good = p.bytes();
    let shifted = [
        ("an extra byte at the start", [&[0u8][..], &good].concat(), "not where it places them"),
        ("a byte missing at the start", good[1..].to_vec(), "past the seal itself"),
        ("an extra byte at the end", [&good[..], &[0u8][..]].concat(), "the last bytes are not a seal frame"),
        ("a byte missing at the end", good[..good.len() - 1].to_vec(), "the last bytes are not a seal frame"),
    ];
    for (what, bytes, says) in shifted {
        let m = Arc::new(MemoryTransport::new("shifted", bytes));
        let e = fresh.builder().transport(m).build().unwrap().update().await.unwrap_err();
        assert!(matches!(e, UpdateError::Damaged(_)), "{what}: {e:?}");
        let text = e.to_string();
        assert!(
            text.contains(says) && text.contains("shifted") && !text.contains("publish in progress"),
            "{what}: {e}"
        );
        assert!(e.another_mirror_may_help(), "{what}");
        assert!(!fresh.install.exists());
        println!("{what}: {e}");
    }
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
    // Whole frames after the last seal: a publish in progress.
    let frames = dare_container::frame::Frames::new(full.as_slice(), sealed.len() as u64, full.len() as u64);
    let ends: Vec<u64> = frames.map(|f| f.unwrap().end()).collect();
    let entries_end = ends[ends.len() / 2] as usize;
    let m = Arc::new(MemoryTransport::new("mid-publish", full[..entries_end].to_vec()));
    let e = fresh.builder().transport(m).build().unwrap().update().await.unwrap_err();
    assert!(matches!(e, UpdateError::Unsealed(_)), "cut at {entries_end}: {e:?}");
    assert_eq!(e.kind(), "unsealed");
    assert!(!fresh.install.exists());
    // A frame cut in half cannot be told from a damaged file; the message says both.
    let m = Arc::new(MemoryTransport::new("mid-frame", full[..sealed.len() + 100].to_vec()));
    let e = fresh.builder().transport(m).build().unwrap().update().await.unwrap_err();
    assert!(matches!(e, UpdateError::Damaged(_)), "{e:?}");
    assert!(e.to_string().contains("in the middle of writing a frame"), "{e}");
    assert!(!fresh.install.exists());
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
    let scan = dare_container::verify_file(&replica_path(&fresh.state), &ScanOptions::full()).unwrap();
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
    // Slow enough that the winner holds the lock well past the loser's
    // wait for it (2 s): the loser is refused, not queued.
    let slow = Arc::new(MemoryTransport::new("slow", p.bytes()).delay(std::time::Duration::from_millis(1000)));
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
    assert_nothing_installed(&c.install);

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
async fn a_dropped_connection_resumes_in_the_middle_of_a_delta() {
    let dir = tempdir();
    let p = Publisher::small(dir.path());
    let (v1, v2) = (three_files("1.0.0"), three_files("1.1.0"));
    p.publish_builds("1.0.0", T0 + 60, &[(LINUX, &v1)]);
    let m = mem(&p);
    let c = Client::new(dir.path(), "client", LINUX, p.verifiers());
    c.update(&m).await.unwrap();
    p.publish_builds("1.1.0", T0 + 120, &[(LINUX, &v2)]);
    m.set_content(p.bytes());
    let delta = delta_of(&p.scan(), LINUX, "1.1.0", "bin/tool").frame;
    let total = p.bytes().len() as u64;
    let cut = std::sync::atomic::AtomicBool::new(false);
    let w = Arc::new(Watched::new(
        m.clone(),
        Box::new(move |_, ranges| {
            // Cut the request for the contents in the middle of the delta, once.
            if ranges.iter().any(|r| touches(r, total, delta.offset, delta.end()))
                && !cut.swap(true, std::sync::atomic::Ordering::SeqCst)
            {
                let mut before = 0;
                for (s, e) in ranges.iter().map(|r| resolve(r, total)) {
                    if (s..e).contains(&delta.offset) {
                        return Act::CutAfter(before + delta.offset - s + delta.len() / 2);
                    }
                    before += e - s;
                }
            }
            Act::Pass
        }),
    ));
    let o = c.update(&w).await.unwrap();
    println!("cut mid-delta: {o:?}\nrequests: {:?}; the delta at {delta:?}", w.log());
    assert_eq!((o.status, o.version.as_str()), (Status::Updated, "1.1.0"));
    assert_eq!(
        (o.bytes_full, o.bytes_delta, o.bytes_reused),
        expected_transfer(&p.scan(), LINUX, "1.1.0", Some("1.0.0"))
    );
    let resumed = w.log().iter().flatten().any(|r| resolve(r, total).0 == delta.offset + delta.len() / 2);
    assert!(resumed, "the delta was resumed where it was cut: {:?}", w.log());
    assert_build(&c.install, "1.1.0", &v2);
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
async fn a_refused_first_install_creates_no_directories() {
    // Refused in the last round trip (a damaged entry), after the build began to be assembled: the
    // install directory must be as it was, here absent, as after a refusal in any earlier round.
    let dir = tempdir();
    let p = Publisher::small(dir.path());
    p.publish("1.0.0", T0 + 60);
    let app = entry_of(&p.scan(), LINUX, "1.0.0", "bin/app");
    let c = Client::new(dir.path(), "client", LINUX, p.verifiers());
    let m = Arc::new(MemoryTransport::new("memory", p.bytes()).corrupt(app.frame.payload_offset + 9));
    let e = c.update(&m).await.unwrap_err();
    assert!(matches!(e, UpdateError::BadDigest(_)), "{e:?}");
    assert_nothing_installed(&c.install);
    assert!(!c.install.exists(), "left behind: {:?}", snapshot(&c.install));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_install_and_record_is_repaired_by_the_next_run() {
    // Killed after switching `current` but before the replica and the state were replaced, or after
    // the replica but before the state: the old files are put back after a real install of 1.1.0.
    for kept in [&["state.json"][..], &["state.json", "replica.dare"][..]] {
        let dir = tempdir();
        let p = Publisher::small(dir.path());
        p.publish("1.0.0", T0 + 60);
        let m = mem(&p);
        let c = Client::new(dir.path(), "client", LINUX, p.verifiers());
        c.update(&m).await.unwrap();
        p.publish("1.1.0", T0 + 120);
        m.set_content(p.bytes());

        let saved: Vec<(&str, Vec<u8>)> = kept.iter().map(|n| (*n, fs::read(c.state.join(n)).unwrap())).collect();
        c.update(&m).await.unwrap();
        for (n, bytes) in &saved {
            fs::write(c.state.join(n), bytes).unwrap();
        }
        assert_installed(&c.install, LINUX, "1.1.0", p.app_size);

        // The installed files are not what the recorded index says: hashing them keeps them out.
        let o = c.update(&m).await.unwrap();
        assert_eq!(
            (o.status, o.version.as_str(), o.previous.as_deref()),
            (Status::Updated, "1.1.0", Some("1.0.0")),
            "{kept:?}"
        );
        assert_installed(&c.install, LINUX, "1.1.0", p.app_size);
        assert_eq!(versions(&c.install), ["1.0.0", "1.1.0"], "the previous build is kept");
        assert_no_incoming(&c.install);
        let o = c.update(&m).await.unwrap();
        assert_eq!((o.status, o.requests), (Status::UpToDate, 1));
        let scan = dare_container::scan_file(&replica_path(&c.state), &ScanOptions::full()).unwrap();
        assert_eq!(scan.indexes.iter().map(|i| i.index.version.as_str()).collect::<Vec<_>>(), ["1.1.0"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leftover_of_a_killed_run_is_neither_used_nor_kept() {
    let dir = tempdir();
    let p = Publisher::small(dir.path());
    p.publish("1.0.0", T0 + 60);
    let m = mem(&p);
    let c = Client::new(dir.path(), "client", LINUX, p.verifiers());
    c.update(&m).await.unwrap();
    p.publish("1.1.0", T0 + 120);
    m.set_content(p.bytes());
    // A run killed while assembling 1.1.0 (another process id), and one killed while staging.
    let leftover = c.install.join("versions/.incoming-1.1.0-4242424");
    fs::create_dir_all(leftover.join("bin")).unwrap();
    fs::write(leftover.join("bin/app"), b"half a build").unwrap();
    fs::create_dir_all(c.state.join("staging")).unwrap();
    fs::write(c.state.join("staging/junk"), b"junk").unwrap();
    let o = c.update(&m).await.unwrap();
    assert_eq!((o.status, o.version.as_str()), (Status::Updated, "1.1.0"));
    assert_installed(&c.install, LINUX, "1.1.0", p.app_size);
    assert_eq!(versions(&c.install), ["1.0.0", "1.1.0"]);
    assert!(!leftover.exists(), "the leftover is pruned");
    assert!(!c.state.join("staging").exists());
}

#[cfg(unix)] // Making a symlink needs a privilege on Windows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_versions_link_out_of_the_install_dir_is_refused() {
    // `versions` links to a directory outside the install directory: neither a first install nor
    // the cleanup after a later one may write or delete anything there.
    let dir = tempdir();
    let p = Publisher::small(dir.path());
    p.publish("1.0.0", T0 + 60);
    let m = mem(&p);
    let c = Client::new(dir.path(), "client", LINUX, p.verifiers());
    let outside = dir.path().join("outside");
    fs::create_dir_all(outside.join("0.9.0/bin")).unwrap();
    fs::write(outside.join("0.9.0/bin/app"), b"someone else's").unwrap();
    fs::create_dir_all(&c.install).unwrap();
    std::os::unix::fs::symlink(&outside, c.install.join("versions")).unwrap();
    let outside_before = snapshot(&outside);
    let before = c.snapshot();
    let e = c.update(&m).await.unwrap_err();
    assert!(matches!(e, UpdateError::State(_)), "{e:?}");
    assert!(e.to_string().contains("symbolic link") && e.to_string().contains("versions"), "{e}");
    assert_eq!(snapshot(&outside), outside_before, "the outside directory changed");
    assert_eq!(c.snapshot(), before, "the install directory or the state changed");

    // After an install, `versions` replaced by a link (with the installed builds behind it).
    fs::remove_file(c.install.join("versions")).unwrap();
    c.update(&m).await.unwrap();
    p.publish("1.1.0", T0 + 120);
    m.set_content(p.bytes());
    c.update(&m).await.unwrap();
    fs::rename(c.install.join("versions"), outside.join("moved")).unwrap();
    for v in ["1.0.0", "1.1.0"] {
        fs::rename(outside.join("moved").join(v), outside.join(v)).unwrap();
    }
    fs::remove_dir(outside.join("moved")).unwrap();
    std::os::unix::fs::symlink(&outside, c.install.join("versions")).unwrap();
    p.publish("1.2.0", T0 + 180);
    m.set_content(p.bytes());
    let outside_before = snapshot(&outside);
    let e = c.update(&m).await.unwrap_err();
    assert!(matches!(e, UpdateError::State(_)), "{e:?}");
    assert_eq!(snapshot(&outside), outside_before, "the outside directory changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_removes_only_the_versions_it_installed() {
    let dir = tempdir();
    let p = Publisher::small(dir.path());
    p.publish("1.0.0", T0 + 60);
    let m = mem(&p);
    let c = Client::new(dir.path(), "client", LINUX, p.verifiers());
    c.update(&m).await.unwrap();
    // Directories someone else put under versions/: one with a name of its own, one named as the
    // next release, and a link to a directory outside.
    let foreign = c.install.join("versions/foreign");
    fs::create_dir_all(&foreign).unwrap();
    fs::write(foreign.join("data"), b"keep me").unwrap();
    let squatter = c.install.join("versions/1.2.0");
    fs::create_dir_all(&squatter).unwrap();
    fs::write(squatter.join("data"), b"keep me too").unwrap();
    let outside = dir.path().join("outside");
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("data"), b"outside").unwrap();
    // Making a symlink needs a privilege on Windows.
    #[cfg(unix)]
    std::os::unix::fs::symlink(&outside, c.install.join("versions/0.1.0")).unwrap();
    let kept = (snapshot(&foreign), snapshot(&squatter), snapshot(&outside));

    for (v, t) in [("1.1.0", 120), ("1.2.0", 180), ("1.3.0", 240)] {
        p.publish(v, T0 + t);
        m.set_content(p.bytes());
        let o = c.update(&m).await.unwrap();
        assert_eq!((o.status, o.version.as_str()), (Status::Updated, v));
        assert_installed(&c.install, LINUX, v, p.app_size);
    }
    assert_eq!((snapshot(&foreign), snapshot(&squatter), snapshot(&outside)), kept, "a foreign directory changed");
    // Its own builds are pruned as before: 1.2.0 went beside the squatter, then was removed.
    #[cfg(unix)]
    {
        assert!(fs::symlink_metadata(c.install.join("versions/0.1.0")).unwrap().file_type().is_symlink());
        assert_eq!(versions(&c.install), ["0.1.0", "1.2.0", "1.2.0", "1.3.0", "foreign"]);
    }
    #[cfg(windows)]
    assert_eq!(versions(&c.install), ["1.2.0", "1.2.0", "1.3.0", "foreign"]);
}

// ---------------------------------------------------------------------------------------------------------
// The replica: genesis, installed index, manifest, proof, seal

/// Checks the replica of a client that installed `version` of `target` from `p`: it verifies offline
/// (with the pinned keys) as a partial container of the container's tree, and holds exactly the
/// genesis, that build's index, the manifest, one proof and one seal: no payloads.
#[track_caller]
fn assert_replica(c: &Client, p: &Publisher, target: &str, version: &str) -> dare_container::verify::Scan {
    let replica = replica_path(&c.state);
    let opts = ScanOptions::full().with_pins(Some(p.verifiers()));
    let scan = dare_container::scan_file(&replica, &opts).unwrap();
    dare_container::verify_file(&replica, &opts).unwrap();
    let full = p.scan();
    assert!(scan.partial);
    assert_eq!((scan.seals, scan.size()), (1, full.size()));
    assert_eq!(scan.last_seal.checkpoint, full.last_seal.checkpoint);
    assert_eq!(scan.last_seal.seal, full.last_seal.seal);
    assert_eq!(scan.manifest, full.manifest);
    assert_eq!(scan.genesis_bytes, full.genesis_bytes);
    assert!(scan.entries.is_empty(), "no payloads in the replica");
    let ix = index_of(&full, target, version);
    assert_eq!(scan.indexes.len(), 1);
    assert_eq!((scan.indexes[0].leaf, &scan.indexes[0].index, &scan.indexes[0].files), (ix.leaf, &ix.index, &ix.files));
    let len = fs::metadata(&replica).unwrap().len();
    assert_eq!(scan.file_len, len);
    // One build's metadata, whatever the container holds: the frames above (the listing perhaps
    // stored plain) and a proof of a few dozen hashes.
    let genesis = dare_container::frame::read_frame_at(p.bytes().as_slice(), 0, 1 << 20).unwrap().len();
    let bound = genesis
        + ix.frame.len()
        + ix.index.size
        + full.manifest_frame.len()
        + full.last_seal.frame.len()
        + 64 * 33
        + 256;
    assert!(len <= bound, "a replica of {len} bytes, more than {bound}");
    assert_eq!(c.state().unwrap().seal_len, full.last_seal.frame.len());
    scan
}

/// What a scan of a replica asserts: the genesis, the tree, the manifest and the indexes.
fn replica_claims(s: &dare_container::verify::Scan) -> String {
    let ix: Vec<String> = s.indexes.iter().map(|i| format!("{} {:?} {:?}", i.leaf, i.index, i.files)).collect();
    format!("{:?} {:?} {:?} {:?}", s.genesis_bytes, s.last_seal.checkpoint, s.manifest, ix)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replica_verifies_offline_and_detects_damage() {
    let dir = tempdir();
    let p = Publisher::small(dir.path());
    p.publish("1.0.0", T0 + 60);
    p.publish("1.1.0", T0 + 120);
    let c = Client::new(dir.path(), "client", LINUX, p.verifiers());
    c.update(&mem(&p)).await.unwrap();
    let scan = assert_replica(&c, &p, LINUX, "1.1.0");
    let replica = replica_path(&c.state);
    let bytes = fs::read(&replica).unwrap();
    println!("replica: {} bytes for a container of {}", bytes.len(), p.bytes().len());
    assert!(bytes.len() < 8 * 1024, "{} bytes", bytes.len());

    // Every flipped bit is found, or changes nothing the replica asserts (a hint such as the upstream
    // offset of the map in the seal, or a proof node the root does not use).
    let opts = ScanOptions::full().with_pins(Some(p.verifiers()));
    let claims = replica_claims(&scan);
    let damaged = dir.path().join("damaged.dare");
    let mut unnoticed = Vec::new();
    // (The low bit: a digit or a letter becomes another, the subtlest damage.)
    for at in 0..bytes.len() {
        let mut b = bytes.clone();
        b[at] ^= 0x01;
        fs::write(&damaged, &b).unwrap();
        if let Ok(s) = dare_container::scan_file(&damaged, &opts) {
            assert_eq!(replica_claims(&s), claims, "a flip at byte {at} changed what the replica asserts");
            unnoticed.push(at);
        }
    }
    println!("{} of {} bit flips not noticed, at bytes {unnoticed:?}", unnoticed.len(), bytes.len());
    // A flip in the genesis, the index (and its listing), or the manifest is always noticed.
    let genesis_end = dare_container::frame::read_frame_at(bytes.as_slice(), 0, bytes.len() as u64).unwrap().end();
    let idx = &scan.indexes[0].frame;
    for (what, from, to) in [
        ("genesis", 0, genesis_end),
        ("index", idx.offset, scan.manifest_frame.offset),
        ("manifest", scan.manifest_frame.offset, scan.manifest_frame.end()),
    ] {
        assert!(unnoticed.iter().all(|at| !(from..to).contains(&(*at as u64))), "a flip in the {what} went unnoticed");
    }

    // A truncated replica is refused too.
    for cut in [bytes.len() - 1, bytes.len() / 2, 10] {
        fs::write(&damaged, &bytes[..cut]).unwrap();
        assert!(dare_container::scan_file(&damaged, &opts).is_err(), "cut at {cut}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_replica_costs_only_reuse() {
    let dir = tempdir();
    let p = Publisher::small(dir.path());
    let (v1, v2) = (three_files("1.0.0"), three_files("1.1.0"));
    p.publish_builds("1.0.0", T0 + 60, &[(LINUX, &v1)]);
    let r1 = p.bytes();
    p.publish_builds("1.1.0", T0 + 120, &[(LINUX, &v2)]);
    let r2 = p.bytes();

    // With its replica intact, a client reuses the unchanged file and patches the changed one.
    let intact = Client::new(dir.path(), "intact", LINUX, p.verifiers());
    let m = Arc::new(MemoryTransport::new("memory", r1.clone()));
    intact.update(&m).await.unwrap();
    let replica_bytes = fs::read(replica_path(&intact.state)).unwrap();
    let scan = dare_container::scan_file(&replica_path(&intact.state), &ScanOptions::full()).unwrap();
    m.set_content(r2.clone());
    let o = intact.update(&m).await.unwrap();
    assert_eq!(o.bytes_reused, (v2["lib/big.bin"].0.len() + v2["share/lisez moi é.txt"].0.len()) as u64);
    assert!(o.bytes_delta > 0, "{o:?}");
    assert_build(&intact.install, "1.1.0", &v2);

    // Damage in the genesis, the index header, the listing, the manifest, the proof, the seal; a
    // replica cut short; an empty one.
    let idx = scan.indexes[0].frame;
    let manifest = scan.manifest_frame;
    let proof_at = (manifest.end() + 20) as usize;
    let seal_at = (scan.last_seal.frame.header_offset + 30) as usize;
    type Damage = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: Vec<(&str, Damage)> = vec![
        ("genesis", Box::new(|b: &mut Vec<u8>| b[20] ^= 1)),
        ("index header", Box::new(move |b: &mut Vec<u8>| b[idx.header_offset as usize + 30] ^= 1)),
        ("listing", Box::new(move |b: &mut Vec<u8>| b[idx.payload_offset as usize + 10] ^= 1)),
        ("manifest", Box::new(move |b: &mut Vec<u8>| b[manifest.header_offset as usize + 40] ^= 1)),
        ("proof", Box::new(move |b: &mut Vec<u8>| b[proof_at] ^= 1)),
        ("seal", Box::new(move |b: &mut Vec<u8>| b[seal_at] ^= 1)),
        ("cut", Box::new(|b: &mut Vec<u8>| b.truncate(b.len() - 3))),
        ("empty", Box::new(|b: &mut Vec<u8>| b.clear())),
    ];
    for (what, damage) in cases {
        let c = Client::new(dir.path(), &format!("client-{what}"), LINUX, p.verifiers());
        let m = Arc::new(MemoryTransport::new("memory", r1.clone()));
        c.update(&m).await.unwrap();
        assert_eq!(fs::read(replica_path(&c.state)).unwrap(), replica_bytes);
        let mut b = replica_bytes.clone();
        damage(&mut b);
        fs::write(replica_path(&c.state), &b).unwrap();
        assert!(
            dare_container::scan_file(&replica_path(&c.state), &ScanOptions::full()).is_err(),
            "{what}: the damage is found"
        );
        m.set_content(r2.clone());
        let o = c.update(&m).await.unwrap();
        println!("{what}: {o:?}");
        assert_eq!((o.status, o.version.as_str()), (Status::Updated, "1.1.0"), "{what}");
        assert_eq!((o.bytes_reused, o.bytes_delta), (0, 0), "{what}: nothing is reused without the replica");
        assert_build(&c.install, "1.1.0", &v2);
        assert_replica(&c, &p, LINUX, "1.1.0");
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
    assert_replica(&c, &p, LINUX, "1.0.0");
    p.publish("1.1.0", T0 + 120);
    m.set_content(p.bytes());
    c.update(&m).await.unwrap();
    let len = fs::metadata(replica_path(&c.state)).unwrap().len();
    assert_replica(&c, &p, LINUX, "1.1.0");

    // Another target's release: up to date, but the replica follows the tree (keeping our index).
    p.publish_salted("1.2.0", T0 + 180, &[ARM], "");
    m.set_content(p.bytes());
    let o = c.update(&m).await.unwrap();
    assert_eq!((o.status, o.version.as_str()), (Status::UpToDate, "1.1.0"));
    assert!(o.requests <= 3, "{} requests", o.requests);
    assert_eq!(o.payload_bytes, 0);
    assert_replica(&c, &p, LINUX, "1.1.0");
    // A heartbeat: the replica's seal is replaced by the fresher one.
    p.heartbeat(T0 + 600);
    m.set_content(p.bytes());
    let o = c.update(&m).await.unwrap();
    assert_eq!((o.status, o.requests), (Status::UpToDate, 1));
    let scan = assert_replica(&c, &p, LINUX, "1.1.0");
    assert_eq!(scan.last_seal.seal.time, T0 + 600);
    assert_eq!(c.state().unwrap().time, T0 + 600);
    // The replica does not grow with the container.
    let now = fs::metadata(replica_path(&c.state)).unwrap().len();
    assert!(now < len + 1024, "{len} -> {now} bytes");

    // The next release of our target.
    p.publish("1.3.0", T0 + 700);
    m.set_content(p.bytes());
    c.update(&m).await.unwrap();
    assert_replica(&c, &p, LINUX, "1.3.0");
}

// ---------------------------------------------------------------------------------------------------------
// nginx as a mirror

#[cfg(unix)] // nginx is a Unix program here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_main_flow_through_nginx() {
    let dir = tempdir();
    let root = dir.path().join("www");
    fs::create_dir_all(&root).unwrap();
    let p = Publisher::small(&root);
    p.publish("1.0.0", T0 + 60);
    let Some(nginx) = crate::support::nginx::Nginx::start(&root, &dir.path().join("nginx")) else {
        return;
    };
    let url = nginx.url("app.dare");
    let c = Client::new(dir.path(), "client", LINUX, p.verifiers());
    let mut outcomes = Vec::new();
    let o = c.at(&url).update().await.unwrap();
    assert_eq!((o.status, o.version.as_str()), (Status::Updated, "1.0.0"));
    assert!(o.requests <= UPDATE_REQUESTS);
    outcomes.push(o);
    let o = c.at(&url).update().await.unwrap();
    assert_eq!((o.status, o.requests), (Status::UpToDate, 1));
    outcomes.push(o);
    p.publish("1.1.0", T0 + 120);
    let o = c.at(&url).update().await.unwrap();
    assert_eq!((o.status, o.version.as_str(), o.previous.as_deref()), (Status::Updated, "1.1.0", Some("1.0.0")));
    assert!(o.requests <= UPDATE_REQUESTS);
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
    let mut overheads = Vec::new();
    let watched = Arc::new(Watched::passive(m.clone()));
    for (name, client, via_http) in [("memory", &c, false), ("http", &h, true)] {
        let updater = if via_http { client.at(&server20.url()) } else { client.via(watched.clone()) };
        let o = updater.update().await.unwrap();
        if !via_http {
            // Where the bytes went: the tile hashes proving the genesis (leaf 0) come from the
            // first level-0 tile, the costliest part of the proofs.
            let bytes = p.bytes();
            let top = signed_top(&bytes, &p.verifiers());
            let genesis = bytes_in(&proof_ranges(&bytes, &top, &Frontier::new(), &BTreeSet::from([0])));
            let asked: Vec<(u64, u64)> = watched
                .log()
                .iter()
                .flatten()
                .filter_map(|r| match r {
                    ByteRange::Span { start, end } => Some((*start, *end)),
                    ByteRange::Suffix(_) => None,
                })
                .collect();
            let for_genesis = bytes_in(&asked).intersection(&genesis).count();
            println!(
                "budget (memory): requests {:?}; {for_genesis} bytes of tile hashes prove the genesis",
                watched.log()
            );
        }
        let path = current_dir(&client.install).join("app");
        assert_eq!(fs::read(path).unwrap(), single_bytes(target, "1.20.0", BUDGET_FILE));
        let overhead = o.bytes_fetched - BUDGET_FILE as u64;
        let up = updater.check().await.unwrap();
        assert_eq!((up.status, up.requests), (Status::UpToDate, 1));
        assert!(up.bytes_fetched <= 1024, "{name}: {} bytes", up.bytes_fetched);
        let again = updater.update().await.unwrap();
        assert_eq!((again.status, again.requests), (Status::UpToDate, 1));
        assert!(again.bytes_fetched <= 1024, "{name}: {} bytes", again.bytes_fetched);
        lines.push(format!(
            "budget ({name}): container {size} bytes; update 10 -> 20 of one target of 20: {} bytes in {} requests \
             ({} bytes of entry frame, {overhead} bytes beyond the 262144-byte file); up-to-date check: {} bytes in {} request",
            o.bytes_fetched, o.requests, o.payload_bytes, up.bytes_fetched, up.requests
        ));
        println!("{}", lines.last().unwrap());
        overheads.push((name, overhead, o.requests));
    }
    println!("http ranges: {:?}", server20.log());

    // A heartbeat seal after it: the up-to-date check is still one request.
    p.heartbeat(T0 + 60 * 21);
    m.set_content(p.bytes());
    let o = c.via(m.clone()).check().await.unwrap();
    println!("budget: up-to-date after a heartbeat: {} bytes in {} request(s)", o.bytes_fetched, o.requests);
    assert_eq!((o.status, o.signed_time), (Status::UpToDate, T0 + 60 * 21));
    assert_eq!(o.requests, 1, "an up-to-date check after a heartbeat");
    assert!(o.bytes_fetched <= 1024, "{} bytes", o.bytes_fetched);
    // DESIGN.md 3.4: at most 16 KiB beyond the payload.
    for (name, overhead, requests) in overheads {
        assert!(overhead <= 16 * 1024, "{name}: {overhead} bytes beyond the payload");
        assert!(requests <= UPDATE_REQUESTS, "{name}: {requests} requests");
    }
}

// ---------------------------------------------------------------------------------------------------------
// Staying current costs one small request

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_to_date_is_one_small_request_even_after_a_hundred_heartbeats() {
    let dir = tempdir();
    let p = Publisher::small(dir.path());
    p.publish("1.0.0", T0 + 60);
    let m = mem(&p);
    let c = Client::new(dir.path(), "client", LINUX, p.verifiers());
    c.update(&m).await.unwrap();
    let check = |label: &'static str| {
        let updater = c.via(m.clone());
        async move {
            for (what, o) in [("check", updater.check().await.unwrap()), ("update", updater.update().await.unwrap())] {
                println!("{label} {what}: {} bytes in {} request(s)", o.bytes_fetched, o.requests);
                assert_eq!((o.status, o.version.as_str()), (Status::UpToDate, "1.0.0"), "{label} {what}");
                assert_eq!(o.requests, 1, "{label} {what}");
                assert!(o.bytes_fetched <= 1024, "{label} {what}: {} bytes", o.bytes_fetched);
                assert_eq!(o.payload_bytes, 0);
            }
        }
    };
    check("after the update").await;

    for i in 1..=100 {
        p.heartbeat(T0 + 60 + 10 * i);
    }
    m.set_content(p.bytes());
    check("after 100 heartbeats").await;
    let s = c.state().unwrap();
    assert_eq!((s.time, s.size), (T0 + 60 + 1000, p.scan().size()));
    assert_replica(&c, &p, LINUX, "1.0.0");
}

/// Fifty target triples.
const FIFTY: [&str; 50] = [
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
    "i686-unknown-linux-musl",
    "arm-unknown-linux-gnueabi",
    "arm-unknown-linux-gnueabihf",
    "armv7-unknown-linux-musleabihf",
    "mips64-unknown-linux-gnuabi64",
    "mips64el-unknown-linux-gnuabi64",
    "powerpc-unknown-linux-gnu",
    "powerpc64-unknown-linux-gnu",
    "sparc64-unknown-linux-gnu",
    "loongarch64-unknown-linux-gnu",
    "armv7-linux-androideabi",
    "i686-linux-android",
    "x86_64-linux-android",
    "riscv64gc-unknown-linux-musl",
    "aarch64-unknown-freebsd",
    "i686-unknown-freebsd",
    "aarch64-unknown-netbsd",
    "x86_64-unknown-openbsd",
    "aarch64-unknown-openbsd",
    "x86_64-unknown-dragonfly",
    "x86_64-apple-ios",
    "aarch64-apple-ios-sim",
    "aarch64-apple-tvos",
    "x86_64-sun-solaris",
    "sparcv9-sun-solaris",
    "i686-pc-windows-gnu",
    "aarch64-pc-windows-gnullvm",
    "x86_64-pc-windows-gnullvm",
    "x86_64-unknown-linux-gnux32",
    "armv5te-unknown-linux-gnueabi",
];

/// 200 small files per target, all distinct; `changed` of them differ in `version`.
fn many_files(target: &str, version: &str, changed: usize) -> Build {
    (0..200)
        .map(|i| {
            let v = if i < changed { version } else { "1.0.0" };
            let path = format!("lib/m{:02}/f{i:03}.dat", i % 16);
            (path, (format!("{target} file {i} of {v}\n").into_bytes(), i % 7 == 0))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_to_date_is_one_small_request_with_fifty_targets_of_two_hundred_files() {
    let dir = tempdir();
    let p = Publisher::small(dir.path());
    let builds: Vec<Build> = FIFTY.iter().map(|t| many_files(t, "1.0.0", 0)).collect();
    let pairs: Vec<(&str, &Build)> = FIFTY.iter().copied().zip(builds.iter()).collect();
    p.publish_builds_with("1.0.0", T0 + 60, &pairs, |o| o.deltas = 0);
    let m = mem(&p);
    let target = FIFTY[7];
    let c = Client::new(dir.path(), "client", target, p.verifiers());
    let o = c.update(&m).await.unwrap();
    println!(
        "50 x 200: container {} bytes, tree {}; first install {} bytes in {} requests",
        p.bytes().len(),
        o.tree_size,
        o.bytes_fetched,
        o.requests
    );
    assert_build(&c.install, "1.0.0", &builds[7]);
    for o in [c.via(m.clone()).check().await.unwrap(), c.via(m.clone()).update().await.unwrap()] {
        assert_eq!((o.status, o.requests), (Status::UpToDate, 1));
        assert!(o.bytes_fetched <= 1024, "{} bytes", o.bytes_fetched);
    }

    // Every target changes 3 files: a check sees it in two requests, the update reuses the rest, and
    // the next check is one small request again.
    let builds: Vec<Build> = FIFTY.iter().map(|t| many_files(t, "1.1.0", 3)).collect();
    let pairs: Vec<(&str, &Build)> = FIFTY.iter().copied().zip(builds.iter()).collect();
    p.publish_builds_with("1.1.0", T0 + 120, &pairs, |o| o.deltas = 0);
    m.set_content(p.bytes());
    let o = c.via(m.clone()).check().await.unwrap();
    println!("50 x 200: a check that finds 1.1.0: {} bytes in {} requests", o.bytes_fetched, o.requests);
    assert_eq!((o.status, o.version.as_str(), o.requests), (Status::Available, "1.1.0", 2));
    let o = c.update(&m).await.unwrap();
    println!("50 x 200: the update: {o:?}");
    let (full, delta, reused) = expected_transfer(&p.scan(), target, "1.1.0", Some("1.0.0"));
    assert_eq!((o.bytes_full, o.bytes_delta, o.bytes_reused), (full, delta, reused));
    assert_build(&c.install, "1.1.0", &builds[7]);
    for o in [c.via(m.clone()).check().await.unwrap(), c.via(m.clone()).update().await.unwrap()] {
        assert_eq!((o.status, o.requests), (Status::UpToDate, 1));
        assert!(o.bytes_fetched <= 1024, "{} bytes", o.bytes_fetched);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_of_another_target_does_not_fetch_our_index() {
    let dir = tempdir();
    let p = Publisher::small(dir.path());
    p.publish("1.0.0", T0 + 60);
    let m = mem(&p);
    let c = Client::new(dir.path(), "client", LINUX, p.verifiers());
    c.update(&m).await.unwrap();
    p.publish_salted("1.1.0", T0 + 120, &[ARM], "");
    m.set_content(p.bytes());
    let scan = p.scan();
    let total = p.bytes().len() as u64;
    let ours = index_of(&scan, LINUX, "1.0.0");
    let w = Arc::new(Watched::passive(m.clone()));

    let o = c.via(w.clone()).check().await.unwrap();
    assert_eq!((o.status, o.version.as_str(), o.previous.as_deref()), (Status::UpToDate, "1.0.0", Some("1.0.0")));
    assert!(o.requests <= 2, "the seal, then the manifest: {} requests", o.requests);
    println!("check after another target's release: {} bytes, ranges {:?}", o.bytes_fetched, w.log());
    assert!(!w.asked_for(total, ours.frame.offset, ours.frame.end()), "our index was fetched: {:?}", w.log());
    for f in &ours.files {
        assert!(!w.asked_for(total, f.entry.offset, f.entry.end()), "{} was fetched", f.path);
    }

    // An update follows the new tree without fetching our index or our files either.
    w.clear();
    let before = c.snapshot().0;
    let o = c.update(&w).await.unwrap();
    assert_eq!((o.status, o.version.as_str()), (Status::UpToDate, "1.0.0"));
    assert!(o.requests <= 3, "{} requests", o.requests);
    assert!(!w.asked_for(total, ours.frame.offset, ours.frame.end()), "our index was fetched: {:?}", w.log());
    for f in &ours.files {
        assert!(!w.asked_for(total, f.entry.offset, f.entry.end()), "{} was fetched", f.path);
    }
    assert_eq!(c.snapshot().0, before, "the install directory is left alone");
    assert_eq!(c.state().unwrap().size, scan.size());
    let o = c.via(m.clone()).check().await.unwrap();
    assert_eq!((o.status, o.requests), (Status::UpToDate, 1));
}

// ---------------------------------------------------------------------------------------------------------
// Reusing the installed build, deltas

/// Three files: `lib/big.bin` (the same in every version), `bin/tool` (a few bytes different in each,
/// so it gets a delta) and `share/notes.bin` (new random bytes in each, so it comes whole); and two
/// that never change: an empty file and one whose name has spaces and non-ASCII letters.
fn three_files(version: &str) -> Build {
    build_of(&[
        ("lib/big.bin", noise("big", 96 * 1024), false),
        ("bin/tool", tweaked(&noise("tool", 128 * 1024), version), true),
        ("share/notes.bin", noise(&format!("notes {version}"), 8 * 1024), false),
        ("share/empty", Vec::new(), false),
        ("share/lisez moi é.txt", "à lire\n".as_bytes().to_vec(), false),
    ])
}

#[cfg(unix)] // Hard links are told apart by inode; std has no file index on Windows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_files_are_linked_from_the_installed_build() {
    let dir = tempdir();
    let p = Publisher::small(dir.path());
    let v1 = build_of(&[
        ("bin/app", noise("app", 64 * 1024), true),
        ("lib/libfoo.so", noise("libfoo", 64 * 1024), false),
        ("share/data.bin", noise("data", 32 * 1024), false),
        ("share/old.txt", b"removed in 1.1.0\n".to_vec(), false),
        ("etc/config", noise("config 1", 16 * 1024), false),
    ]);
    let mut v2 = v1.clone();
    v2.remove("share/old.txt");
    v2.get_mut("share/data.bin").unwrap().1 = true;
    v2.insert("etc/config".into(), (noise("config 2", 16 * 1024), false));
    v2.insert("share/new.bin".into(), (noise("new", 8 * 1024), false));
    p.publish_builds("1.0.0", T0 + 60, &[(LINUX, &v1)]);
    let m = mem(&p);
    let c = Client::new(dir.path(), "client", LINUX, p.verifiers());
    c.update(&m).await.unwrap();
    let old_dir = assert_build(&c.install, "1.0.0", &v1);
    let old_inodes: Vec<_> = ["bin/app", "lib/libfoo.so", "share/data.bin"].map(|f| inode(&old_dir.join(f))).to_vec();

    let report = p.publish_builds("1.1.0", T0 + 120, &[(LINUX, &v2)]);
    println!("publish 1.1.0: {:?}", report.targets[LINUX]);
    assert_eq!(report.targets[LINUX].shared, 3, "three contents are not stored again");
    m.set_content(p.bytes());
    let o = c.update(&m).await.unwrap();
    println!("{o:?}");
    let scan = p.scan();
    assert_eq!((o.status, o.version.as_str()), (Status::Updated, "1.1.0"));
    assert_eq!(o.bytes_reused, (64 + 64 + 32) * 1024);
    assert_eq!(o.bytes_delta, 0);
    let new_entries = entry_of(&scan, LINUX, "1.1.0", "etc/config").frame.len()
        + entry_of(&scan, LINUX, "1.1.0", "share/new.bin").frame.len();
    assert_eq!(o.bytes_full, new_entries, "only the changed and new files are fetched");
    assert_eq!((o.bytes_full, o.bytes_delta, o.bytes_reused), expected_transfer(&scan, LINUX, "1.1.0", Some("1.0.0")));
    assert!(o.bytes_fetched < o.bytes_full + 8 * 1024, "{} bytes fetched", o.bytes_fetched);

    let new_dir = assert_build(&c.install, "1.1.0", &v2);
    // Same content and mode: the very same file. A new mode: a copy, the old file keeps its mode.
    assert_eq!(inode(&new_dir.join("bin/app")), old_inodes[0]);
    assert_eq!(inode(&new_dir.join("lib/libfoo.so")), old_inodes[1]);
    assert_ne!(inode(&new_dir.join("share/data.bin")), old_inodes[2]);
    assert_dir(&old_dir, &v1);
    assert_eq!(versions(&c.install), ["1.0.0", "1.1.0"]);
    assert_replica(&c, &p, LINUX, "1.1.0");

    // The next release prunes 1.0.0: the files it shares with 1.1.0 stay.
    let mut v3 = v2.clone();
    v3.insert("etc/config".into(), (noise("config 3", 16 * 1024), false));
    p.publish_builds("1.2.0", T0 + 180, &[(LINUX, &v3)]);
    m.set_content(p.bytes());
    let o = c.update(&m).await.unwrap();
    assert_eq!(o.bytes_reused, v3.values().map(|f| f.0.len() as u64).sum::<u64>() - 16 * 1024);
    assert_build(&c.install, "1.2.0", &v3);
    assert_dir(&new_dir, &v2);
    assert_eq!(versions(&c.install), ["1.1.0", "1.2.0"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_change_to_a_large_file_comes_as_a_delta() {
    let dir = tempdir();
    let p = Publisher::small(dir.path());
    let big = noise("large", 1 << 20);
    let v1 = build_of(&[("bin/big", big.clone(), true), ("share/readme.txt", b"read me\n".repeat(100), false)]);
    let mut v2 = v1.clone();
    v2.insert("bin/big".into(), (tweaked(&big, "1.1.0"), true));
    p.publish_builds("1.0.0", T0 + 60, &[(LINUX, &v1)]);
    let m = mem(&p);
    let c = Client::new(dir.path(), "client", LINUX, p.verifiers());
    c.update(&m).await.unwrap();
    let report = p.publish_builds("1.1.0", T0 + 120, &[(LINUX, &v2)]);
    assert_eq!(report.targets[LINUX].deltas, 1, "{:?}", report.targets[LINUX]);
    m.set_content(p.bytes());
    let scan = p.scan();
    let delta = delta_of(&scan, LINUX, "1.1.0", "bin/big");
    let whole = entry_of(&scan, LINUX, "1.1.0", "bin/big");

    let o = c.update(&m).await.unwrap();
    println!("delta update: {o:?}; the whole entry is {} bytes", whole.frame.len());
    assert_eq!((o.status, o.version.as_str()), (Status::Updated, "1.1.0"));
    assert_eq!(o.bytes_delta, delta.frame.len());
    assert_eq!(o.bytes_full, 0);
    assert_eq!(o.bytes_reused, 800);
    assert!(o.bytes_delta * 20 < whole.frame.len(), "a delta of {} bytes", o.bytes_delta);
    assert!(o.bytes_fetched < 16 * 1024, "{} bytes fetched", o.bytes_fetched);
    let d = assert_build(&c.install, "1.1.0", &v2);
    assert_eq!(fs::read(d.join("bin/big")).unwrap(), v2["bin/big"].0);
    assert_dir(&c.install.join("versions/1.0.0"), &v1);
    assert_replica(&c, &p, LINUX, "1.1.0");

    // A client that never installed 1.0.0 gets the whole entry.
    let fresh = Client::new(dir.path(), "fresh", LINUX, p.verifiers());
    let o = fresh.update(&m).await.unwrap();
    assert_eq!((o.bytes_delta, o.bytes_reused), (0, 0));
    assert_eq!((o.bytes_full, o.bytes_delta, o.bytes_reused), expected_transfer(&scan, LINUX, "1.1.0", None));
    assert_build(&fresh.install, "1.1.0", &v2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delta_whose_installed_base_was_modified_falls_back_to_the_whole_entry() {
    let dir = tempdir();
    let p = Publisher::small(dir.path());
    let (v1, v2) = (three_files("1.0.0"), three_files("1.1.0"));
    p.publish_builds("1.0.0", T0 + 60, &[(LINUX, &v1)]);
    let r1 = p.bytes();
    p.publish_builds("1.1.0", T0 + 120, &[(LINUX, &v2)]);
    let scan = p.scan();
    let tool_delta = delta_of(&scan, LINUX, "1.1.0", "bin/tool");
    let tool_entry = entry_of(&scan, LINUX, "1.1.0", "bin/tool");
    let notes = entry_of(&scan, LINUX, "1.1.0", "share/notes.bin");

    // Modified before the update: the base does not hash as the index says, so no delta is asked for.
    let c = Client::new(dir.path(), "before", LINUX, p.verifiers());
    let m = Arc::new(MemoryTransport::new("memory", r1.clone()));
    c.update(&m).await.unwrap();
    let base = c.install.join("versions/1.0.0/bin/tool");
    let mut edited = fs::read(&base).unwrap();
    edited[1000] ^= 1;
    fs::write(&base, &edited).unwrap();
    m.set_content(p.bytes());
    let o = c.update(&m).await.unwrap();
    println!("base edited before: {o:?}");
    assert_eq!(o.bytes_delta, 0);
    assert_eq!(o.bytes_full, tool_entry.frame.len() + notes.frame.len());
    assert_build(&c.install, "1.1.0", &v2);

    // Modified while the delta is on its way: applying it fails its digest, and the whole entry is
    // fetched instead.
    let c = Client::new(dir.path(), "during", LINUX, p.verifiers());
    let m = Arc::new(MemoryTransport::new("memory", r1));
    c.update(&m).await.unwrap();
    m.set_content(p.bytes());
    let base = c.install.join("versions/1.0.0/bin/tool");
    let (from, to) = (tool_delta.frame.offset, tool_delta.frame.end());
    let total = p.bytes().len() as u64;
    let w = Arc::new(Watched::new(
        m.clone(),
        Box::new(move |_, ranges| {
            if ranges.iter().any(|r| touches(r, total, from, to)) {
                let mut b = fs::read(&base).unwrap();
                b[5] ^= 1;
                fs::write(&base, &b).unwrap();
            }
            Act::Pass
        }),
    ));
    let o = c.update(&w).await.unwrap();
    println!("base edited during: {o:?}");
    assert_eq!((o.status, o.version.as_str()), (Status::Updated, "1.1.0"));
    assert_eq!(o.bytes_delta, tool_delta.frame.len(), "the delta was fetched");
    assert_eq!(o.bytes_full, notes.frame.len() + tool_entry.frame.len(), "then the whole entry");
    assert!(w.asked_for(total, tool_entry.frame.offset, tool_entry.frame.end()));
    assert_build(&c.install, "1.1.0", &v2);
    assert!(!c.state.join("staging").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_paths_with_the_same_content_are_fetched_once() {
    let dir = tempdir();
    let p = Publisher::small(dir.path());
    let v1 = build_of(&[("a.txt", b"a\n".to_vec(), false)]);
    let same = noise("same", 64 * 1024);
    let v2 = build_of(&[
        ("a.txt", b"a\n".to_vec(), false),
        ("x/one", same.clone(), true),
        ("y/two", same.clone(), false),
        ("z/three", same, false),
    ]);
    p.publish_builds("1.0.0", T0 + 60, &[(LINUX, &v1)]);
    let m = mem(&p);
    let c = Client::new(dir.path(), "client", LINUX, p.verifiers());
    c.update(&m).await.unwrap();
    p.publish_builds("1.1.0", T0 + 120, &[(LINUX, &v2)]);
    m.set_content(p.bytes());
    let scan = p.scan();
    let one = file_of(&scan, LINUX, "1.1.0", "x/one");
    assert_eq!(one.entry, file_of(&scan, LINUX, "1.1.0", "y/two").entry, "stored once");
    let w = Arc::new(Watched::passive(m.clone()));
    let o = c.update(&w).await.unwrap();
    println!("{o:?}");
    assert_eq!(o.bytes_full, one.entry.length, "one entry for three paths");
    assert_eq!(o.bytes_reused, 2);
    let total = p.bytes().len() as u64;
    let asked: u64 = w
        .log()
        .iter()
        .flatten()
        .map(|r| resolve(r, total))
        .map(|(s, e)| e.min(one.entry.end()).saturating_sub(s.max(one.entry.offset)))
        .sum();
    assert_eq!(asked, one.entry.length, "the entry's bytes were asked for once");
    assert_build(&c.install, "1.1.0", &v2);

    // A first install fetches it once too.
    let fresh = Client::new(dir.path(), "fresh", LINUX, p.verifiers());
    let o = fresh.update(&m).await.unwrap();
    assert_eq!((o.bytes_full, o.bytes_delta, o.bytes_reused), expected_transfer(&scan, LINUX, "1.1.0", None));
    assert_eq!(o.bytes_full, one.entry.length + entry_of(&scan, LINUX, "1.1.0", "a.txt").frame.len());
    assert_build(&fresh.install, "1.1.0", &v2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_renamed_with_the_version_gets_a_delta() {
    // A Python wheel: `pkg-1.0.0.data/scripts/tool` becomes `pkg-1.1.0.data/scripts/tool`.
    let dir = tempdir();
    let p = Publisher::small(dir.path());
    let tool = noise("wheel tool", 256 * 1024);
    let wheel = |v: &str, tool: Vec<u8>| {
        build_of(&[
            (&format!("pkg-{v}.data/scripts/tool"), tool, true),
            (&format!("pkg-{v}.dist-info/METADATA"), format!("Name: pkg\nVersion: {v}\n").into_bytes(), false),
            ("pkg/__init__.py", b"# the package\n".to_vec(), false),
        ])
    };
    let (v1, v2) = (wheel("1.0.0", tool.clone()), wheel("1.1.0", tweaked(&tool, "1.1.0")));
    p.publish_builds("1.0.0", T0 + 60, &[(LINUX, &v1)]);
    let m = mem(&p);
    let c = Client::new(dir.path(), "client", LINUX, p.verifiers());
    c.update(&m).await.unwrap();
    p.publish_builds("1.1.0", T0 + 120, &[(LINUX, &v2)]);
    m.set_content(p.bytes());
    let scan = p.scan();
    let delta = delta_of(&scan, LINUX, "1.1.0", "pkg-1.1.0.data/scripts/tool");
    let base = file_of(&scan, LINUX, "1.0.0", "pkg-1.0.0.data/scripts/tool").sha256;
    assert!(matches!(&delta.stored, dare_container::verify::Stored::Delta(d) if d.base == base));

    let o = c.update(&m).await.unwrap();
    println!("{o:?}");
    assert!(o.bytes_delta >= delta.frame.len(), "{o:?}");
    assert_eq!((o.bytes_full, o.bytes_delta, o.bytes_reused), expected_transfer(&scan, LINUX, "1.1.0", Some("1.0.0")));
    assert!(o.bytes_full + o.bytes_delta < 8 * 1024, "{o:?}");
    assert_build(&c.install, "1.1.0", &v2);
}

// ---------------------------------------------------------------------------------------------------------
// Lying containers and mirrors

/// An entry of `content` stored as-is.
fn plain_entry(content: &[u8]) -> dare_container::header::Entry {
    let sha = dare_container::header::Sha256Hex(dare_container::hashio::sha256(content));
    dare_container::header::Entry {
        sealed: None,
        size: content.len() as u64,
        sha256: sha,
        stored_size: content.len() as u64,
        stored_sha256: sha,
        compression: dare_container::header::Compression::None,
    }
}

fn sha(content: &[u8]) -> dare_container::header::Sha256Hex {
    dare_container::header::Sha256Hex(dare_container::hashio::sha256(content))
}

/// A zstd patch-from payload turning `base` into `result`.
fn patch(base: &[u8], result: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = zstd::stream::write::Encoder::with_ref_prefix(Vec::new(), 19, base).unwrap();
    enc.write_all(result).unwrap();
    enc.finish().unwrap()
}

fn record(
    path: &str,
    content: &[u8],
    entry: dare_container::header::LeafRef,
    deltas: Vec<dare_container::header::DeltaRef>,
) -> dare_container::header::FileRecord {
    dare_container::header::FileRecord {
        key: None,
        path: path.into(),
        mode: 0o755,
        size: content.len() as u64,
        sha256: sha(content),
        entry,
        deltas,
    }
}

fn delta_ref(base: &[u8], at: dare_container::header::LeafRef) -> dare_container::header::DeltaRef {
    dare_container::header::DeltaRef { key: None, base: sha(base), leaf: at.leaf, offset: at.offset, length: at.length }
}

fn delta_header(base: &[u8], result: &[u8], payload: &[u8]) -> dare_container::header::Delta {
    dare_container::header::Delta {
        sealed: None,
        base: sha(base),
        base_size: base.len() as u64,
        size: result.len() as u64,
        sha256: sha(result),
        stored_size: payload.len() as u64,
        stored_sha256: sha(payload),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_naming_another_contents_entry_is_refused() {
    // A signed container (a buggy or hostile publisher) whose index for this target names, for the
    // content A, the entry of another target's content B.
    let dir = tempdir();
    let p = Publisher::small(dir.path());
    let (a, b) = (noise("content A", 4096), noise("content B", 4096));
    let key = key(1);
    let mut ap = dare_container::Appender::open(&p.container).unwrap();
    let at_b = ap.append_entry(plain_entry(&b), &mut b.as_slice()).unwrap();
    ap.append_index("stable", ARM, "1.0.0", &[record("app", &b, at_b, vec![])]).unwrap();
    ap.seal(&[&key], T0 + 60).unwrap();
    let mut ap = dare_container::Appender::open(&p.container).unwrap();
    ap.append_index("stable", LINUX, "1.0.0", &[record("app", &a, at_b, vec![])]).unwrap();
    ap.seal(&[&key], T0 + 120).unwrap();
    // The full check names the lie; the updater reads only what it needs, and must refuse it too.
    let e = dare_container::scan_file(&p.container, &ScanOptions::default()).unwrap_err();
    println!("verify: {e}");

    let c = Client::new(dir.path(), "client", LINUX, p.verifiers());
    let before = c.snapshot();
    let e = c.update(&mem(&p)).await.unwrap_err();
    println!("update: {e}");
    assert!(matches!(e, UpdateError::BadDigest(_)), "{e:?}");
    assert_untouched(&c, &before);
    assert!(!c.install.join("current").exists());
    // The other target's client is not affected.
    let arm = Client::new(dir.path(), "arm", ARM, p.verifiers());
    arm.update(&mem(&p)).await.unwrap();
    assert_eq!(fs::read(current_dir(&arm.install).join("app")).unwrap(), b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_naming_another_contents_delta_is_refused() {
    // The index of 1.1.0 gives its content C a delta from the installed A, but names the delta
    // another target stored from A to E.
    let dir = tempdir();
    let p = Publisher::small(dir.path());
    let a = noise("content A", 64 * 1024);
    let (c_new, e) = (tweaked(&a, "C"), tweaked(&a, "E"));
    let key = key(1);
    let mut ap = dare_container::Appender::open(&p.container).unwrap();
    let at_a = ap.append_entry(plain_entry(&a), &mut a.as_slice()).unwrap();
    ap.append_index("stable", LINUX, "1.0.0", &[record("app", &a, at_a, vec![])]).unwrap();
    ap.seal(&[&key], T0 + 60).unwrap();
    let r1 = p.bytes();
    let mut ap = dare_container::Appender::open(&p.container).unwrap();
    let at_e = ap.append_entry(plain_entry(&e), &mut e.as_slice()).unwrap();
    let payload = patch(&a, &e);
    let at_ae = ap.append_delta(delta_header(&a, &e, &payload), &mut payload.as_slice()).unwrap();
    ap.append_index("stable", ARM, "1.0.0", &[record("app", &e, at_e, vec![delta_ref(&a, at_ae)])]).unwrap();
    ap.seal(&[&key], T0 + 120).unwrap();
    let mut ap = dare_container::Appender::open(&p.container).unwrap();
    let at_c = ap.append_entry(plain_entry(&c_new), &mut c_new.as_slice()).unwrap();
    ap.append_index("stable", LINUX, "1.1.0", &[record("app", &c_new, at_c, vec![delta_ref(&a, at_ae)])]).unwrap();
    ap.seal(&[&key], T0 + 180).unwrap();
    assert!(dare_container::scan_file(&p.container, &ScanOptions::default()).is_err());

    let c = Client::new(dir.path(), "client", LINUX, p.verifiers());
    let m = Arc::new(MemoryTransport::new("memory", r1));
    c.update(&m).await.unwrap();
    m.set_content(p.bytes());
    let before = c.snapshot();
    match c.update(&m).await {
        // Refused ...
        Err(err) => {
            println!("refused: {err}");
            assert!(matches!(err, UpdateError::BadDigest(_)), "{err:?}");
            assert_untouched(&c, &before);
            assert_eq!(fs::read(current_dir(&c.install).join("app")).unwrap(), a);
        }
        // ... or fetched whole: never E in place of C.
        Ok(o) => {
            println!("fetched whole: {o:?}");
            assert_eq!(fs::read(current_dir(&c.install).join("app")).unwrap(), c_new);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_delta_that_does_not_give_its_content_falls_back_to_the_whole_entry() {
    // The delta's header promises C, its (well-formed, digest-matching) payload gives E.
    let dir = tempdir();
    let p = Publisher::small(dir.path());
    let a = noise("content A", 64 * 1024);
    let (c_new, e) = (tweaked(&a, "C"), tweaked(&a, "E"));
    let key = key(1);
    let mut ap = dare_container::Appender::open(&p.container).unwrap();
    let at_a = ap.append_entry(plain_entry(&a), &mut a.as_slice()).unwrap();
    ap.append_index("stable", LINUX, "1.0.0", &[record("app", &a, at_a, vec![])]).unwrap();
    ap.seal(&[&key], T0 + 60).unwrap();
    let r1 = p.bytes();
    let mut ap = dare_container::Appender::open(&p.container).unwrap();
    let at_c = ap.append_entry(plain_entry(&c_new), &mut c_new.as_slice()).unwrap();
    let payload = patch(&a, &e);
    let lying = delta_header(&a, &c_new, &payload);
    let at_d = ap.append_delta(lying, &mut payload.as_slice()).unwrap();
    ap.append_index("stable", LINUX, "1.1.0", &[record("app", &c_new, at_c, vec![delta_ref(&a, at_d)])]).unwrap();
    ap.seal(&[&key], T0 + 120).unwrap();
    assert!(dare_container::scan_file(&p.container, &ScanOptions::full()).is_err());

    let c = Client::new(dir.path(), "client", LINUX, p.verifiers());
    let m = Arc::new(MemoryTransport::new("memory", r1));
    c.update(&m).await.unwrap();
    m.set_content(p.bytes());
    let o = c.update(&m).await.unwrap();
    println!("{o:?}");
    assert_eq!((o.status, o.version.as_str()), (Status::Updated, "1.1.0"));
    assert_eq!((o.bytes_delta, o.bytes_full), (at_d.length, at_c.length), "the delta, then the whole entry");
    assert_eq!(fs::read(current_dir(&c.install).join("app")).unwrap(), c_new);
    assert!(!c.state.join("staging").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_flipping_a_byte_of_a_delta_is_refused_and_an_honest_one_used() {
    let dir = tempdir();
    let p = Publisher::small(dir.path());
    let (v1, v2) = (three_files("1.0.0"), three_files("1.1.0"));
    p.publish_builds("1.0.0", T0 + 60, &[(LINUX, &v1)]);
    let r1 = p.bytes();
    p.publish_builds("1.1.0", T0 + 120, &[(LINUX, &v2)]);
    let delta = delta_of(&p.scan(), LINUX, "1.1.0", "bin/tool");
    let c = Client::new(dir.path(), "client", LINUX, p.verifiers());
    c.update(&Arc::new(MemoryTransport::new("memory", r1))).await.unwrap();

    for at in [delta.frame.payload_offset + 5, delta.frame.payload_offset + delta.frame.payload_len - 1] {
        let liar = Arc::new(MemoryTransport::new("liar", p.bytes()).corrupt(at));
        let before = c.snapshot();
        let e = c.update(&liar).await.unwrap_err();
        println!("delta byte {at} flipped: {e}");
        assert!(matches!(e, UpdateError::BadDigest(_)), "{e:?}");
        assert_untouched(&c, &before);
        assert_build(&c.install, "1.0.0", &v1);
    }
    let liar = Arc::new(MemoryTransport::new("liar", p.bytes()).corrupt(delta.frame.payload_offset + 5));
    let honest = mem(&p);
    let o = c.builder().transport(liar.clone()).transport(honest.clone()).build().unwrap().update().await.unwrap();
    println!("{o:?}");
    assert_eq!((o.status, o.version.as_str()), (Status::Updated, "1.1.0"));
    assert_eq!(o.bytes_delta, delta.frame.len());
    assert!(liar.stats().requests >= 1 && honest.stats().requests >= 1);
    assert_build(&c.install, "1.1.0", &v2);
}

// ---------------------------------------------------------------------------------------------------------
// Kill-safety and the size of the state

#[cfg(unix)] // Hard links are told apart by inode; std has no file index on Windows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_install_that_fails_after_reusing_files_keeps_the_old_build() {
    let dir = tempdir();
    let p = Publisher::small(dir.path());
    let (v1, v2) = (three_files("1.0.0"), three_files("1.1.0"));
    p.publish_builds("1.0.0", T0 + 60, &[(LINUX, &v1)]);
    let m = mem(&p);
    let c = Client::new(dir.path(), "client", LINUX, p.verifiers());
    c.update(&m).await.unwrap();
    let old_dir = c.install.join("versions/1.0.0");
    let big = inode(&old_dir.join("lib/big.bin"));
    p.publish_builds("1.1.0", T0 + 120, &[(LINUX, &v2)]);
    m.set_content(p.bytes());
    let notes = entry_of(&p.scan(), LINUX, "1.1.0", "share/notes.bin").frame;
    let total = p.bytes().len() as u64;
    let before = c.snapshot();

    // The connection drops in the middle of the new file, after the unchanged one was linked into
    // the build being assembled, and the mirror is gone after that.
    let seen: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let (versions_dir, seen2) = (c.install.join("versions"), seen.clone());
    let cut = std::sync::atomic::AtomicBool::new(false);
    let w = Arc::new(Watched::new(
        m.clone(),
        Box::new(move |_, ranges| {
            if !ranges.iter().any(|r| touches(r, total, notes.offset, notes.end())) {
                return Act::Pass;
            }
            if cut.swap(true, std::sync::atomic::Ordering::SeqCst) {
                return Act::Fail(dare_updater::transport::TransportError::NotFound { url: "watched".into() });
            }
            for e in fs::read_dir(&versions_dir).unwrap() {
                let e = e.unwrap().path();
                let linked = e.join("lib/big.bin").exists() && inode(&e.join("lib/big.bin")) == big;
                seen2.lock().unwrap().push(format!("{} {linked}", e.file_name().unwrap().to_string_lossy()));
            }
            Act::CutAfter(notes.len() / 2)
        }),
    ));
    let e = c.update(&w).await.unwrap_err();
    println!("cut mid-entry: {e}; versions/ then: {:?}", seen.lock().unwrap());
    assert!(matches!(e, UpdateError::Network(_)), "{e:?}");
    let seen = seen.lock().unwrap().clone();
    assert!(seen.iter().any(|s| s.starts_with(".incoming-1.1.0") && s.ends_with(" true")), "{seen:?}");
    assert_untouched(&c, &before);
    assert_build(&c.install, "1.0.0", &v1);
    assert_eq!(inode(&old_dir.join("lib/big.bin")), big);

    // The install fails at the very end (the new `current` cannot be made): still the old build.
    let obstacle = c.install.join(format!(".current-{}", std::process::id()));
    fs::create_dir_all(obstacle.join("busy")).unwrap();
    let state_before = c.snapshot().1;
    let e = c.update(&m).await.unwrap_err();
    assert!(matches!(e, UpdateError::Io { .. }), "{e:?}");
    assert_build(&c.install, "1.0.0", &v1);
    assert_eq!(c.snapshot().1, state_before);
    fs::remove_dir_all(&obstacle).unwrap();

    let o = c.update(&m).await.unwrap();
    assert_eq!((o.status, o.version.as_str()), (Status::Updated, "1.1.0"));
    assert!(o.bytes_reused > 0 && o.bytes_delta > 0, "{o:?}");
    assert_build(&c.install, "1.1.0", &v2);
    assert_dir(&old_dir, &v1);
    assert_eq!(versions(&c.install), ["1.0.0", "1.1.0"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_stays_bounded_over_updates() {
    // A 4 MiB build of 16 files; each release changes a few bytes of one file and one small file.
    let dir = tempdir();
    let p = Publisher::small(dir.path());
    let build = |i: usize| -> Build {
        let mut b: Build = (0..16)
            .map(|k| {
                let mut bytes = noise(&format!("part {k}"), 256 * 1024);
                if (1..=i).contains(&k) {
                    bytes = tweaked(&bytes, &format!("release {k}"));
                }
                (format!("lib/part{k:02}.bin"), (bytes, k == 0))
            })
            .collect();
        b.insert("VERSION".into(), (format!("1.{i}.0\n").into_bytes(), false));
        b
    };
    let size_of = |b: &Build| b.values().map(|f| f.0.len() as u64).sum::<u64>();
    let m = mem(&p);
    let c = Client::new(dir.path(), "client", LINUX, p.verifiers());
    for i in 0..=4usize {
        let b = build(i);
        let version = format!("1.{i}.0");
        p.publish_builds(&version, T0 + 60 * (i as u64 + 1), &[(LINUX, &b)]);
        m.set_content(p.bytes());
        let o = c.update(&m).await.unwrap();
        assert_eq!((o.status, o.version.as_str()), (Status::Updated, version.as_str()));
        assert_build(&c.install, &version, &b);
        let (state, installed) = (tree_size(&c.state), size_of(&b));
        println!(
            "after {version}: fetched {} (full {}, delta {}, reused {}); state dir {state} bytes for builds of {installed}",
            o.bytes_fetched, o.bytes_full, o.bytes_delta, o.bytes_reused
        );
        assert!(state * 10 < installed * 11 + (10 << 20), "the state dir holds {state} bytes");
        // Two builds kept, sharing their unchanged files (hard links are
        // counted once by inode, which std cannot read on Windows).
        #[cfg(unix)]
        {
            let disk = distinct_size(&c.install);
            println!("install dir {disk} bytes on disk");
            assert!(disk * 10 < installed * 11, "the install dir holds {disk} bytes");
        }
        if i > 0 {
            assert!(o.bytes_full + o.bytes_delta < 64 * 1024, "{o:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Shapes of containers

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_shared_by_targets_is_stored_once_and_installs_for_each() {
    let dir = tempdir();
    let p = Publisher::small(dir.path());
    let shared = noise("shared", 48 * 1024);
    let of = |t: &str, v: &str| {
        build_of(&[("share/data.bin", shared.clone(), false), ("bin/app", noise(&format!("{t} {v}"), 8 * 1024), true)])
    };
    let (linux, arm) = (of(LINUX, "1.0.0"), of(ARM, "1.0.0"));
    p.publish_builds("1.0.0", T0 + 60, &[(LINUX, &linux), (ARM, &arm)]);
    let scan = p.scan();
    let (a, b) = (file_of(&scan, LINUX, "1.0.0", "share/data.bin"), file_of(&scan, ARM, "1.0.0", "share/data.bin"));
    assert_eq!(a.entry, b.entry, "one entry for both targets");
    // It sits among the first target's entries, before that target's index.
    assert!(a.entry.leaf < index_of(&scan, LINUX, "1.0.0").leaf);
    for (t, build) in [(LINUX, &linux), (ARM, &arm)] {
        let c = Client::new(dir.path(), t, t, p.verifiers());
        let o = c.update(&mem(&p)).await.unwrap();
        assert_eq!((o.bytes_full, o.bytes_delta, o.bytes_reused), expected_transfer(&scan, t, "1.0.0", None));
        assert_build(&c.install, "1.0.0", build);
    }
    // The next release of ARM only changes its app: the shared content is not stored again.
    let arm2 = of(ARM, "1.1.0");
    let report = p.publish_builds("1.1.0", T0 + 120, &[(ARM, &arm2)]);
    assert_eq!(report.targets[ARM].shared, 1);
    let c = Client::new(dir.path(), "arm-fresh", ARM, p.verifiers());
    c.update(&mem(&p)).await.unwrap();
    assert_build(&c.install, "1.1.0", &arm2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_signers_make_a_long_seal_and_genesis() {
    // Twenty keys sign every seal (more than the first 1 KiB read holds) and the genesis lists them
    // all (longer than the first guess at it).
    let dir = tempdir();
    let keys: Vec<_> = (1..=20).map(key).collect();
    let p = Publisher::create(dir.path(), "app.dare", keys, 2, 4096);
    p.publish("1.0.0", T0 + 60);
    let scan = p.scan();
    println!("seal {} bytes, genesis {} bytes", scan.last_seal.frame.len(), scan.genesis_bytes.len());
    assert!(scan.last_seal.frame.len() > 1024 && scan.genesis_bytes.len() > 1024);
    let mut c = Client::new(dir.path(), "client", LINUX, p.verifiers());
    c.threshold = 2;
    let m = mem(&p);
    let o = c.update(&m).await.unwrap();
    println!("{o:?}");
    assert_eq!((o.status, o.version.as_str()), (Status::Updated, "1.0.0"));
    assert_installed(&c.install, LINUX, "1.0.0", p.app_size);
    assert_replica(&c, &p, LINUX, "1.0.0");
    // Later checks read the seal's length (and a little more) at once.
    let o = c.via(m.clone()).check().await.unwrap();
    assert_eq!((o.status, o.requests), (Status::UpToDate, 1));
    assert!(o.bytes_fetched <= scan.last_seal.frame.len() + 64, "{} bytes", o.bytes_fetched);
    p.publish("1.1.0", T0 + 120);
    m.set_content(p.bytes());
    let o = c.update(&m).await.unwrap();
    assert_eq!((o.status, o.version.as_str()), (Status::Updated, "1.1.0"));
    assert_installed(&c.install, LINUX, "1.1.0", p.app_size);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_beta_channel_shares_content_with_stable() {
    let dir = tempdir();
    let p = Publisher::small(dir.path());
    let (v1, v2) = (three_files("1.0.0"), three_files("1.1.0-beta.1"));
    p.publish_builds("1.0.0", T0 + 60, &[(LINUX, &v1)]);
    let m = mem(&p);
    let stable = Client::new(dir.path(), "stable", LINUX, p.verifiers());
    stable.update(&m).await.unwrap();
    let report = p.publish_builds_with("1.1.0-beta.1", T0 + 120, &[(LINUX, &v2)], |o| o.channel = "beta".into());
    assert_eq!(report.targets[LINUX].shared, 3, "{:?}", report.targets[LINUX]);
    m.set_content(p.bytes());

    // A release on another channel: the stable client is up to date.
    let o = stable.update(&m).await.unwrap();
    assert_eq!((o.status, o.version.as_str()), (Status::UpToDate, "1.0.0"));
    assert_eq!(o.payload_bytes, 0);
    // A beta client gets the beta build, the shared content from stable's entries.
    let beta = Client::new(dir.path(), "beta", LINUX, p.verifiers());
    let updater = beta.builder().channel("beta").transport(m.clone()).build().unwrap();
    let o = updater.update().await.unwrap();
    assert_eq!((o.status, o.channel.as_str(), o.version.as_str()), (Status::Updated, "beta", "1.1.0-beta.1"));
    assert_build(&beta.install, "1.1.0-beta.1", &v2);
    let o = updater.check().await.unwrap();
    assert_eq!((o.status, o.requests), (Status::UpToDate, 1));
    let s = beta.state().unwrap();
    assert_eq!(s.installed.unwrap().channel, "beta");
}

/// Copies a directory tree (files, directories and symlinks).
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let kind = e.file_type().unwrap();
        if kind.is_dir() {
            copy_tree(&src, &dst);
        } else if kind.is_symlink() {
            // Only Unix installs hold a link (`current`).
            #[cfg(unix)]
            std::os::unix::fs::symlink(std::fs::read_link(&src).unwrap(), &dst).unwrap();
            #[cfg(not(unix))]
            panic!("a symlink in an install directory: {}", src.display());
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}
