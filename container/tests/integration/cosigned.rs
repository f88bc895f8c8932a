//! Sealing with cosignatures: the lines a cosigner returns are added to the
//! signed checkpoint before the seal is written; a cosigner that fails, or
//! lines that would break the checkpoint, leave the container as it was.

use std::path::PathBuf;

use dare_container::cosign::{WitnessPolicy, WitnessSigningKey};
use dare_container::merkle::verify_consistency;
use dare_container::note::{Note, NoteSignature};
use dare_container::verify::ScanOptions;
use dare_container::{Appender, Error, pending_path, verify_file};

use crate::support::{T0, TARGETS, genesis, key_a, put_build, trust};

fn fresh() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.dare");
    let a = key_a();
    Appender::create(&path, genesis(trust(&[&a], 1)), &[&a], T0).unwrap();
    (dir, path)
}

fn witness(seed: u8) -> WitnessSigningKey {
    WitnessSigningKey::from_seed(&format!("witness{seed}.example"), [seed; 32]).unwrap()
}

/// A witness's `cosignature/v1` line over `note`'s text.
fn witness_line(note: &Note, seed: u8) -> NoteSignature {
    witness(seed).cosign(note.text(), T0 + 5)
}

fn open_with_build(path: &std::path::Path, version: &str) -> Appender {
    let mut app = Appender::open(path).unwrap();
    put_build(&mut app, "stable", TARGETS[0], version, "bin/app", version.as_bytes()).unwrap();
    app
}

#[test]
fn cosignatures_are_added_to_the_sealed_checkpoint() {
    let (_d, path) = fresh();
    let before = verify_file(&path, &ScanOptions::default()).unwrap();
    let app = open_with_build(&path, "1.0.0");
    let (mut seen, mut proof) = (None, Vec::new());
    let summary = app
        .seal_cosigned(&[&key_a()], T0 + 1, &mut |req| {
            assert_eq!(req.previous_size(), 2);
            proof = req.consistency_proof(req.previous_size())?;
            let old_root = before.last_seal.checkpoint.root;
            verify_consistency(2, req.size(), &old_root, &req.checkpoint().root, &proof).unwrap();
            seen = Some(req.note_bytes());
            Ok(vec![witness_line(req.note(), 7), witness_line(req.note(), 8)])
        })
        .unwrap();
    let note = Note::parse(summary.checkpoint.as_bytes()).unwrap();
    assert_eq!(note.signatures().len(), 3);
    assert!(summary.checkpoint.as_bytes().starts_with(&seen.unwrap()));
    // The container verifies with its trust root: the extra lines are ignored.
    let scan = verify_file(&path, &ScanOptions::full()).unwrap();
    assert_eq!(scan.size, summary.size);
    assert_eq!(proof, scan.tree.consistency_proof(2, summary.size).unwrap());
    // And each cosignature verifies with its witness's key.
    let policy = WitnessPolicy::new(vec![witness(7).verifier(), witness(8).verifier()], 2).unwrap();
    assert_eq!(policy.check(&note).unwrap().len(), 2);
    // A heartbeat is cosigned the same way, with an empty proof.
    let app = Appender::open(&path).unwrap();
    let hb = app
        .seal_cosigned(&[&key_a()], T0 + 2, &mut |req| {
            assert_eq!((req.previous_size(), req.size()), (summary.size, summary.size));
            assert!(req.consistency_proof(req.previous_size())?.is_empty());
            Ok(vec![witness_line(req.note(), 7)])
        })
        .unwrap();
    assert_eq!(Note::parse(hb.checkpoint.as_bytes()).unwrap().signatures().len(), 2);
    verify_file(&path, &ScanOptions::full()).unwrap();
}

#[test]
fn a_failing_cosigner_seals_nothing() {
    let (_d, path) = fresh();
    let bytes = std::fs::read(&path).unwrap();
    let app = open_with_build(&path, "1.0.0");
    let err =
        app.seal_cosigned(&[&key_a()], T0 + 1, &mut |_| Err(Error::Refused("witness w1 is down".into()))).unwrap_err();
    assert!(err.to_string().contains("witness w1 is down"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "the container is cut back");
    assert!(!pending_path(&path).exists());
    // The same release can be published again.
    open_with_build(&path, "1.0.0").seal(&[&key_a()], T0 + 1).unwrap();
}

#[test]
fn lines_that_break_the_checkpoint_are_refused() {
    let (_d, path) = fresh();
    let bytes = std::fs::read(&path).unwrap();
    // A line in the name of a trusted key that does not verify.
    let forged = |req: &dare_container::CosignRequest<'_>| {
        let mut s = req.note().signatures()[0].clone();
        s.signature[0] ^= 1;
        s
    };
    let err = open_with_build(&path, "1.0.0")
        .seal_cosigned(&[&key_a()], T0 + 1, &mut |req| Ok(vec![forged(req)]))
        .unwrap_err();
    assert!(matches!(err, Error::Note(_)), "{err:?}");
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    // More lines than a note may carry.
    let err = open_with_build(&path, "1.0.0")
        .seal_cosigned(&[&key_a()], T0 + 1, &mut |req| Ok((0..100).map(|_| witness_line(req.note(), 9)).collect()))
        .unwrap_err();
    assert!(err.to_string().contains("do not fit"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    assert!(!pending_path(&path).exists());
}
