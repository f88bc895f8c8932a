//! Random publish histories always give containers that verify forward and
//! backward, list what was published, store each content once, and give back
//! every file's content from its entry and from each of its deltas.

use std::collections::{BTreeMap, HashMap};

use crate::support::{T0, TARGETS, digest, genesis, key_a, put, put_delta, record, trust};
use dare_container::content;
use dare_container::header::{Compression, DeltaRef, FileRecord, LeafRef, Sha256Hex};
use dare_container::verify::{ScanOptions, Stored, Tail};
use dare_container::{Appender, scan_file, verify_file};
use proptest::prelude::*;

const CHANNELS: [&str; 2] = ["stable", "beta"];

#[derive(Clone, Debug)]
enum Op {
    /// Publish one file per (target, size, zstd), targets in any order.
    Publish(Vec<(usize, usize, bool)>),
    Heartbeat,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => proptest::collection::vec((0..TARGETS.len(), 0usize..600, any::<bool>()), 1..6).prop_map(Op::Publish),
        1 => Just(Op::Heartbeat),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_histories_verify_both_ways(ops in proptest::collection::vec(op(), 0..6)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.dare");
        let a = key_a();
        Appender::create(&path, genesis(trust(&[&a], 1)), &[&a], T0).unwrap();
        let mut leaves = 2u64;
        let mut seals = 1u64;
        let mut versions: BTreeMap<&str, u64> = BTreeMap::new();
        let mut stored: HashMap<Sha256Hex, LeafRef> = HashMap::new();
        let mut files = 0usize;
        for (i, op) in ops.iter().enumerate() {
            let mut app = Appender::open(&path).unwrap();
            let before = app.sealed_size();
            if let Op::Publish(entries) = op {
                let mut builds: BTreeMap<usize, Vec<FileRecord>> = BTreeMap::new();
                for &(t, size, zstd) in entries {
                    let list = builds.entry(t).or_default();
                    let body = crate::support::content((i * 100 + list.len()) as u64, size);
                    let compression = if zstd { Compression::Zstd } else { Compression::None };
                    let at = match stored.get(&digest(&body)) {
                        Some(at) => *at,
                        None => {
                            leaves += 1;
                            let at = put(&mut app, &body, compression).unwrap();
                            stored.insert(digest(&body), at);
                            at
                        }
                    };
                    list.push(record(&format!("f{}", list.len()), &body, at, vec![]));
                    files += 1;
                }
                for (t, list) in &builds {
                    let n = versions.entry(TARGETS[*t]).or_default();
                    *n += 1;
                    app.append_index("stable", TARGETS[*t], &format!("1.{n}.0"), list).unwrap();
                }
                leaves += builds.len() as u64 + 1;
            }
            let s = app.seal(&[&a], T0 + i as u64 + 1).unwrap();
            seals += 1;
            prop_assert_eq!(s.size, leaves);
            if matches!(op, Op::Heartbeat) {
                prop_assert_eq!(s.size, before);
            }
        }
        let fwd = scan_file(&path, &ScanOptions { payloads: true, pins: None }).unwrap();
        let both = verify_file(&path, &ScanOptions { payloads: true, pins: None }).unwrap();
        prop_assert!(both.walked_backward);
        prop_assert_eq!(&fwd.tail, &Tail::Clean);
        prop_assert_eq!((fwd.size(), fwd.seals, fwd.entries.len()), (leaves, seals, stored.len()));
        prop_assert_eq!(fwd.indexes.iter().map(|i| i.files.len()).sum::<usize>(), files);
        prop_assert_eq!(
            (both.size(), both.frames, both.sealed_len, both.seals),
            (fwd.size(), fwd.frames, fwd.sealed_len, fwd.seals)
        );
        prop_assert_eq!(fwd.sealed_len, std::fs::metadata(&path).unwrap().len());
        for (target, n) in &versions {
            let r = fwd.manifest.release("stable", target).unwrap();
            prop_assert_eq!(&r.version, &format!("1.{n}.0"));
        }
        prop_assert_eq!(fwd.manifest.releases.len(), versions.len());
        // The backward walk meets every frame the forward walk found.
        let bytes = std::fs::read(&path).unwrap();
        let mut back: Vec<_> = dare_container::frame::FramesBack::new(bytes.as_slice(), 0, bytes.len() as u64)
            .map(Result::unwrap)
            .collect();
        back.reverse();
        let fwd_frames: Vec<_> = crate::support::layout(&bytes).into_iter().map(|f| f.info).collect();
        prop_assert_eq!(back, fwd_frames);
    }
}

/// One build: (channel, target) and its files as (path, content from the pool, zstd).
type BuildPlan = ((usize, usize), Vec<(usize, usize, bool)>);

fn release_plan() -> impl Strategy<Value = Vec<BuildPlan>> {
    let file = (0usize..4, 0usize..8, any::<bool>());
    let build = ((0..CHANNELS.len(), 0..TARGETS.len()), proptest::collection::vec(file, 1..5));
    proptest::collection::vec(build, 0..4)
}

/// Contents that repeat and resemble each other: four bases and a changed
/// version of each, so files come back, move, and change a little.
fn pool(seed: u64, size: usize) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> =
        (0..4).map(|k| crate::support::content(seed * 10 + k, size + k as usize * 97)).collect();
    for k in 0..4 {
        let mut c = out[k].clone();
        let at = c.len() / 3;
        c.splice(at..at, b"a small change".iter().copied());
        out.push(c);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn random_releases_store_content_once_and_every_file_comes_back_from_its_entry_and_deltas(
        releases in proptest::collection::vec(release_plan(), 1..6),
        seed in 0u64..1000,
        size in 0usize..3000,
    ) {
        let pool = pool(seed, size);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.dare");
        let a = key_a();
        Appender::create(&path, genesis(trust(&[&a], 1)), &[&a], T0).unwrap();
        let mut stored: HashMap<Sha256Hex, LeafRef> = HashMap::new();
        let mut deltas: HashMap<(Sha256Hex, Sha256Hex), DeltaRef> = HashMap::new();
        // (channel, target) to its newest build's version number and files by path.
        let mut latest: BTreeMap<(usize, usize), (u64, BTreeMap<String, usize>)> = BTreeMap::new();
        let mut published: Vec<((usize, usize), u64, Vec<FileRecord>)> = Vec::new();
        for (i, plan) in releases.iter().enumerate() {
            let mut app = Appender::open(&path).unwrap();
            // One build per (channel, target), one file per path.
            let mut builds: BTreeMap<(usize, usize), BTreeMap<String, (usize, bool)>> = BTreeMap::new();
            for (key, files) in plan {
                let b = builds.entry(*key).or_default();
                for &(p, c, zstd) in files {
                    b.insert(format!("dir{}/file", p % 2) + &p.to_string(), (c, zstd));
                }
            }
            for (key, files) in builds {
                let previous = latest.get(&key).cloned();
                let mut records = Vec::new();
                for (p, (c, zstd)) in &files {
                    let body = &pool[*c];
                    let sha = digest(body);
                    let entry = match stored.get(&sha) {
                        Some(at) => *at,
                        None => {
                            let compression = if *zstd { Compression::Zstd } else { Compression::None };
                            let at = put(&mut app, body, compression).unwrap();
                            stored.insert(sha, at);
                            at
                        }
                    };
                    let mut drefs = Vec::new();
                    if let Some(old) = previous.as_ref().and_then(|(_, f)| f.get(p)).map(|k| &pool[*k]).filter(|o| digest(o) != sha) {
                        let d = match deltas.get(&(digest(old), sha)) {
                            Some(d) => *d,
                            None => {
                                let d = put_delta(&mut app, old, body).unwrap();
                                deltas.insert((digest(old), sha), d);
                                d
                            }
                        };
                        drefs.push(d);
                    }
                    records.push(record(p, body, entry, drefs));
                }
                let n = previous.map_or(1, |(n, _)| n + 1);
                let (channel, target) = (CHANNELS[key.0], TARGETS[key.1]);
                app.append_index(channel, target, &format!("1.{n}.0"), &records).unwrap();
                latest.insert(key, (n, files.into_iter().map(|(p, (c, _))| (p, c)).collect()));
                published.push((key, n, records));
            }
            app.seal(&[&a], T0 + i as u64 + 1).unwrap();
        }
        let scan = verify_file(&path, &ScanOptions { payloads: true, pins: None }).unwrap();
        prop_assert_eq!(&scan.tail, &Tail::Clean);
        prop_assert_eq!(scan.entries.len(), stored.len() + deltas.len());
        prop_assert_eq!(scan.indexes.len(), published.len());
        for (ix, (key, n, records)) in scan.indexes.iter().zip(&published) {
            prop_assert_eq!((ix.index.channel.as_str(), ix.index.target.as_str()), (CHANNELS[key.0], TARGETS[key.1]));
            prop_assert_eq!(&ix.index.version, &format!("1.{n}.0"));
            prop_assert_eq!(&ix.files, records);
        }
        for (key, (n, _)) in &latest {
            let r = scan.manifest.release(CHANNELS[key.0], TARGETS[key.1]).unwrap();
            prop_assert_eq!(&r.version, &format!("1.{n}.0"));
        }
        // Every file's content from its entry, and from each delta applied to its base.
        let bytes = std::fs::read(&path).unwrap();
        let src = bytes.as_slice();
        let whole = |leaf: u64| -> Vec<u8> {
            let rec = scan.entry(leaf).expect("an entry at that leaf");
            let Stored::Entry(e) = &rec.stored else { panic!("leaf {leaf} is not a whole entry") };
            content::entry_bytes(src, &rec.frame, e, 1 << 20).unwrap()
        };
        let by_sha: HashMap<Sha256Hex, u64> = scan
            .entries
            .iter()
            .filter(|e| matches!(e.stored, Stored::Entry(_)))
            .map(|e| (e.stored.sha256(), e.leaf))
            .collect();
        prop_assert_eq!(by_sha.len(), stored.len());
        for ix in &scan.indexes {
            for f in &ix.files {
                let c = whole(f.entry.leaf);
                prop_assert_eq!((digest(&c), c.len() as u64), (f.sha256, f.size));
                for d in &f.deltas {
                    let rec = scan.entry(d.leaf).expect("a delta at that leaf");
                    let Stored::Delta(h) = &rec.stored else { panic!("leaf {} is not a delta", d.leaf) };
                    prop_assert_eq!((h.base, h.sha256), (d.base, f.sha256));
                    let base = whole(by_sha[&d.base]);
                    let out = content::delta_content(src, &rec.frame, h, &base, Vec::new()).unwrap();
                    prop_assert_eq!(digest(&out), f.sha256);
                }
            }
        }
    }
}
