//! Private channels (FORMAT.md section 13): a client holding a recipient
//! identity installs, decrypting while streaming, with reuse and deltas
//! across releases; one without, or with another identity, fails with the
//! `identity` kind before any payload is fetched; a flipped ciphertext byte
//! is refused before anything is installed; the replica keeps the private
//! index sealed and still verifies without a key.
//!
//! The releases are written with the container's appender directly, as
//! section 13.3 lays them out: an exchange, sealed entries and deltas, and a
//! sealed index.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::sync::Arc;

use dare_container::Appender;
use dare_container::crypt::{self, ContentKey, Identities, PayloadKey, Recipients};
use dare_container::hashio::sha256;
use dare_container::header::{Compression, Delta, DeltaRef, Entry, FileRecord, LeafRef, Sha256Hex};
use dare_container::keys::SigningKey;
use dare_container::verify::ScanOptions;
use dare_updater::transport::{MemoryTransport, Transport};
use dare_updater::{Status, UpdateError, Updater};

use crate::support::*;

const CHANNEL: &str = "licensed";

/// An identity file as `age-keygen` wrote it (a key made for these tests).
const AGE_KEYGEN_IDENTITY: &str = "# created: 2026-12-05T14:06:51Z
# public key: age1dw0dzdd8s8w7wcsmvf5x7vk65lhxpr2lcj47ynjhyzlkwzxyrgfq8pgfgf
AGE-SECRET-KEY-1YLLCHSTU8AAMY7QGFSN5VDGM0K8Y0ULMYJWS96XZXFX4TKNA23MSSFZ602
";
const AGE_KEYGEN_RECIPIENT: &str = "age1dw0dzdd8s8w7wcsmvf5x7vk65lhxpr2lcj47ynjhyzlkwzxyrgfq8pgfgf";

/// One private release as published: its listing and its frames.
struct Release {
    files: Vec<FileRecord>,
    entries: Vec<LeafRef>,
    deltas: Vec<LeafRef>,
}

/// A file of a build: path and content.
type File = (&'static str, Vec<u8>);

/// Publishes `version` of [`LINUX`] on [`CHANNEL`] at `time`: a new content
/// key wrapped to `to`; a content `prev` stored is reused (its entry and
/// key); any other gets a sealed entry (zstd when `zstd`), and a changed
/// path also a sealed delta against its content in `prev`.
fn publish_private(
    p: &Publisher,
    version: &str,
    time: u64,
    files: &[File],
    to: &Recipients,
    prev: Option<(&Release, &[File])>,
    zstd: bool,
) -> Release {
    let signers: Vec<&SigningKey> = p.keys.iter().collect();
    let mut a = Appender::open(&p.container).unwrap();
    let k = ContentKey::generate().unwrap();
    let x = a.append_exchange(CHANNEL, &crypt::wrap_content_key(&k, to).unwrap()).unwrap();
    let mut stored: BTreeMap<Sha256Hex, (LeafRef, PayloadKey)> = BTreeMap::new();
    if let Some((r, _)) = prev {
        for f in &r.files {
            stored.insert(f.sha256, (f.entry, f.key.unwrap()));
        }
    }
    let mut files: Vec<&File> = files.iter().collect();
    files.sort_by_key(|f| f.0);
    let mut out = Release { files: Vec::new(), entries: Vec::new(), deltas: Vec::new() };
    for (path, bytes) in files {
        let sha = Sha256Hex(sha256(bytes));
        let (entry, key) = match stored.get(&sha) {
            Some(e) => *e,
            None => {
                let pk = k.payload_key(a.next_leaf());
                let (payload, compression) = if zstd {
                    (zstd::bulk::compress(bytes, 3).unwrap(), Compression::Zstd)
                } else {
                    (bytes.clone(), Compression::None)
                };
                let sealed = crypt::seal_all(&pk, &payload);
                let e = Entry {
                    size: bytes.len() as u64,
                    sha256: k.keyed_digest(&sha),
                    stored_size: sealed.len() as u64,
                    stored_sha256: Sha256Hex(sha256(&sealed)),
                    compression,
                    sealed: Some(x),
                };
                let at = a.append_entry(e, &mut sealed.as_slice()).unwrap();
                out.entries.push(at);
                stored.insert(sha, (at, pk));
                (at, pk)
            }
        };
        let mut deltas = Vec::new();
        let old = prev.and_then(|(_, old)| old.iter().find(|(p, b)| p == path && b != bytes));
        if let Some((_, base)) = old {
            let base_sha = Sha256Hex(sha256(base));
            let mut enc = zstd::stream::write::Encoder::with_ref_prefix(Vec::new(), 19, base).unwrap();
            enc.write_all(bytes).unwrap();
            let patch = enc.finish().unwrap();
            let pk = k.payload_key(a.next_leaf());
            let sealed = crypt::seal_all(&pk, &patch);
            let d = Delta {
                base: k.keyed_digest(&base_sha),
                base_size: base.len() as u64,
                size: bytes.len() as u64,
                sha256: k.keyed_digest(&sha),
                stored_size: sealed.len() as u64,
                stored_sha256: Sha256Hex(sha256(&sealed)),
                sealed: Some(x),
            };
            let at = a.append_delta(d, &mut sealed.as_slice()).unwrap();
            out.deltas.push(at);
            deltas.push(DeltaRef {
                base: base_sha,
                leaf: at.leaf,
                offset: at.offset,
                length: at.length,
                key: Some(pk),
            });
        }
        out.files.push(FileRecord {
            path: (*path).into(),
            mode: 0o644,
            size: bytes.len() as u64,
            sha256: sha,
            entry,
            deltas,
            key: Some(key),
        });
    }
    a.append_sealed_index(CHANNEL, LINUX, version, &out.files, &k, x).unwrap();
    a.seal(&signers, time).unwrap();
    out
}

fn build_v1() -> Vec<File> {
    vec![
        ("bin/app", noise("private app 1", 300 * 1024)),
        ("share/data.bin", noise("private data", 90 * 1024)),
        ("share/readme.txt", b"a licensed build\n".repeat(200)),
    ]
}

/// The next build: `bin/app` changed a little (a delta applies), the data
/// the same (reused), the readme changed.
fn build_v2() -> Vec<File> {
    let mut app = noise("private app 1", 300 * 1024);
    app[1000..1100].copy_from_slice(&[7u8; 100]);
    vec![
        ("bin/app", app),
        ("share/data.bin", noise("private data", 90 * 1024)),
        ("share/readme.txt", b"a licensed build, again\n".repeat(200)),
    ]
}

fn recipients(ids: &[&Identities]) -> Recipients {
    let all: Vec<String> = ids.iter().flat_map(|i| i.recipients().to_strings()).collect();
    Recipients::parse(all.iter().map(String::as_str)).unwrap()
}

fn client(root: &std::path::Path, name: &str, p: &Publisher) -> Client {
    Client::new(root, name, LINUX, p.verifiers())
}

fn updater(c: &Client, t: Arc<dyn Transport>, ids: Option<Identities>) -> Updater {
    let b = c.builder().channel(CHANNEL).transport(t);
    match ids {
        Some(ids) => b.identity(ids),
        None => b,
    }
    .build()
    .unwrap()
}

fn assert_files(install: &std::path::Path, files: &[File]) {
    let dir = current_dir(install);
    for (path, bytes) in files {
        assert_eq!(&fs::read(dir.join(path)).unwrap(), bytes, "{path}");
    }
}

#[tokio::test]
async fn a_recipient_installs_private_builds_with_reuse_and_deltas_and_its_replica_verifies_keyless() {
    let dir = tempfile::tempdir().unwrap();
    let p = Publisher::small(dir.path());
    let other = Identities::generate();
    let to = Recipients::parse([AGE_KEYGEN_RECIPIENT, &other.recipients().to_strings()[0]]).unwrap();
    let v1 = build_v1();
    let r1 = publish_private(&p, "1.0.0", T0 + 60, &v1, &to, None, true);
    // The container verifies in full without any key.
    p.scan();

    let c = client(dir.path(), "c", &p);
    // The identity file exactly as age-keygen writes it.
    let build = |t: Arc<dyn Transport>| {
        c.builder().channel(CHANNEL).transport(t).identity_text(AGE_KEYGEN_IDENTITY).unwrap().build().unwrap()
    };
    let m = Arc::new(MemoryTransport::new("memory", p.bytes()));
    let o = build(m.clone()).update().await.unwrap();
    assert_eq!(o.status, Status::Updated);
    assert_eq!(o.version, "1.0.0");
    assert_files(&c.install, &v1);
    assert!(o.bytes_full > 0);

    // The replica keeps the private index sealed (its whole frame, and its
    // exchange) and verifies with no key.
    let replica = dare_updater::state::replica_path(&c.state);
    let scan = dare_container::scan_file(&replica, &ScanOptions::default()).unwrap();
    assert!(scan.partial);
    let raw = fs::read(&replica).unwrap();
    assert!(raw.len() as u64 > r1.files.len() as u64 * 64, "the sealed listing is kept");
    assert!(!raw.windows(7).any(|w| w == b"bin/app"), "no plaintext path in the replica");

    // The next release, with a new content key: the unchanged file is reused
    // from the installed build, the changed app arrives as a sealed delta.
    let v2 = build_v2();
    let r2 = publish_private(&p, "1.0.1", T0 + 120, &v2, &to, Some((&r1, &v1)), false);
    assert_eq!(r2.deltas.len(), 2, "the app and the readme changed");
    p.scan();
    m.set_content(p.bytes());
    let o = build(m.clone()).update().await.unwrap();
    assert_eq!(o.status, Status::Updated);
    assert_eq!(o.version, "1.0.1");
    assert_files(&c.install, &v2);
    assert!(o.bytes_delta > 0, "{o:?}");
    assert_eq!(o.bytes_reused, 90 * 1024, "{o:?}");
    // Only deltas were fetched: the new entries were not.
    assert_eq!(o.bytes_full, 0, "{o:?}");
    dare_container::scan_file(&replica, &ScanOptions::default()).unwrap();

    // Up to date now, with the replica's private index opened again.
    let o = build(m.clone()).update().await.unwrap();
    assert_eq!(o.status, Status::UpToDate);
}

#[tokio::test]
async fn without_an_identity_or_as_a_non_recipient_no_payload_is_fetched() {
    let dir = tempfile::tempdir().unwrap();
    let p = Publisher::small(dir.path());
    let member = Identities::generate();
    let r = publish_private(&p, "1.0.0", T0 + 60, &build_v1(), &recipients(&[&member]), None, true);
    let total = p.bytes().len() as u64;
    let payloads: Vec<LeafRef> = r.entries.iter().chain(&r.deltas).copied().collect();
    assert!(!payloads.is_empty());

    for (name, ids) in [("none", None), ("stranger", Some(Identities::generate()))] {
        let c = client(dir.path(), name, &p);
        let w = Arc::new(Watched::passive(Arc::new(MemoryTransport::new("memory", p.bytes()))));
        let e = updater(&c, w.clone(), ids).update().await.unwrap_err();
        assert!(matches!(e, UpdateError::Identity(_)), "{name}: {e:?}");
        assert_eq!(e.kind(), "identity");
        assert!(!e.is_verification_failure());
        for at in &payloads {
            assert!(!w.asked_for(total, at.offset, at.end()), "{name}: fetched the payload at {}", at.offset);
        }
        assert!(dare_updater::current_dir(&c.install).is_none(), "{name}: nothing installed");
    }

    // A plain client of the same container is not disturbed: it asks for
    // another channel and the member installs.
    let c = client(dir.path(), "member", &p);
    let m = Arc::new(MemoryTransport::new("memory", p.bytes()));
    let o = updater(&c, m, Some(member)).update().await.unwrap();
    assert_eq!(o.status, Status::Updated);
    assert_files(&c.install, &build_v1());
}

#[tokio::test]
async fn a_flipped_ciphertext_byte_is_refused_before_install() {
    let dir = tempfile::tempdir().unwrap();
    let p = Publisher::small(dir.path());
    let member = Identities::generate();
    let text = member.to_file_text();
    let r = publish_private(&p, "1.0.0", T0 + 60, &build_v1(), &recipients(&[&member]), None, false);
    for (i, at) in r.entries.iter().enumerate() {
        // A byte of the sealed payload: its first chunk's ciphertext.
        let flip = at.end() - 40;
        let c = client(dir.path(), &format!("c{i}"), &p);
        let m = Arc::new(MemoryTransport::new("memory", p.bytes()).corrupt(flip));
        let e = updater(&c, m, Some(Identities::parse(&text).unwrap())).update().await.unwrap_err();
        assert!(matches!(e, UpdateError::BadDigest(_)), "{e:?}");
        assert!(dare_updater::current_dir(&c.install).is_none(), "nothing installed");
    }
}
