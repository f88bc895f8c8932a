//! Random publish histories always give containers that verify forward and
//! backward and that list what was published.

mod support;

use std::collections::BTreeMap;

use dare_container::header::Compression;
use dare_container::verify::{ScanOptions, Tail};
use dare_container::{Appender, scan_file, verify_file};
use proptest::prelude::*;
use support::{T0, TARGETS, append, content, genesis, key_a, trust};

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
        let mut files = 0usize;
        for (i, op) in ops.iter().enumerate() {
            let mut app = Appender::open(&path, false).unwrap();
            let before = app.sealed_size();
            if let Op::Publish(entries) = op {
                let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
                for &(t, size, zstd) in entries {
                    let n = counts.entry(t).or_default();
                    let version = format!("1.{}.0", versions.get(TARGETS[t]).copied().unwrap_or(0) + 1);
                    let body = content((i * 100 + *n) as u64, size);
                    let compression = if zstd { Compression::Zstd } else { Compression::None };
                    append(&mut app, TARGETS[t], &version, "stable", &format!("f{n}"), &body, compression).unwrap();
                    *n += 1;
                    files += 1;
                }
                for t in counts.keys() {
                    *versions.entry(TARGETS[*t]).or_default() += 1;
                }
                leaves += entries.len() as u64 + 1;
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
        prop_assert_eq!((fwd.size(), fwd.seals, fwd.entries.len()), (leaves, seals, files));
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
        let fwd_frames: Vec<_> = support::layout(&bytes).into_iter().map(|f| f.info).collect();
        prop_assert_eq!(back, fwd_frames);
    }
}
