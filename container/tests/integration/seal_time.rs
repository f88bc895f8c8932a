//! Signed time against the clock, the way out of a seal from the future,
//! repairing a seal that was cut off, damaged tails and files that are not
//! containers.

use std::path::{Path, PathBuf};

use crate::support::{TARGETS, genesis, key_a, put_build, trust};
use dare_container::client::{MAX_CLOCK_SKEW, MAX_SKEW_LIMIT, SUPERSEDES_TIME, superseded_time};
use dare_container::note::{Checkpoint, Note};
use dare_container::verify::ScanOptions;
use dare_container::{Appender, Error, scan_file, verify_file};

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// A fresh container signed by A at `time` (an hour ago by default).
fn fresh() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.dare");
    let a = key_a();
    Appender::create(&path, genesis(trust(&[&a], 1)), &[&a], now() - 3600).unwrap();
    (dir, path)
}

fn release(path: &Path, version: &str, time: u64) {
    let mut app = Appender::open(path).unwrap();
    put_build(&mut app, "stable", TARGETS[0], version, "bin/app", version.as_bytes()).unwrap();
    app.seal(&[&key_a()], time).unwrap();
}

fn verified(path: &Path) -> dare_container::verify::Scan {
    verify_file(path, &ScanOptions { payloads: true, pins: None }).unwrap()
}

fn message(r: Result<impl std::fmt::Debug, Error>) -> String {
    match r {
        Err(e) => e.to_string(),
        Ok(v) => panic!("expected an error, got {v:?}"),
    }
}

#[test]
fn a_time_from_the_future_is_refused_at_create_and_seal() {
    let dir = tempfile::tempdir().unwrap();
    let a = key_a();
    let path = dir.path().join("new.dare");
    let m = message(Appender::create(&path, genesis(trust(&[&a], 1)), &[&a], now() + 3600));
    assert!(m.contains("ahead of the clock") && m.contains(&format!("skew of {MAX_CLOCK_SKEW} s")), "{m}");
    assert!(!path.exists());

    let (_d, path) = fresh();
    // Milliseconds: the year 58895. The message says what it looks like.
    let m = message(Appender::open(&path).unwrap().seal(&[&a], now() * 1000));
    assert!(m.contains("it looks like milliseconds"), "{m}");
    // A few seconds ahead is clock skew, not a mistake; the past is backdating.
    Appender::open(&path).unwrap().seal(&[&a], now() + 60).unwrap();
    assert!(matches!(Appender::open(&path).unwrap().seal(&[&a], now() - 60), Err(Error::Refused(_))));
    assert_eq!(verified(&path).seals, 2);
}

#[test]
fn a_wider_skew_is_capped() {
    let (_d, path) = fresh();
    let mut app = Appender::open(&path).unwrap();
    assert!(matches!(app.set_max_skew(MAX_SKEW_LIMIT + 1), Err(Error::Refused(_))));
    app.set_max_skew(3600).unwrap();
    app.check_time(now() + 3000).unwrap();
    assert!(matches!(app.check_time(now() + 4000), Err(Error::FutureTime(_))));
    app.set_max_skew(MAX_SKEW_LIMIT).unwrap();
    assert!(matches!(app.check_time(now() * 1000), Err(Error::FutureTime(_))));
}

/// A container whose last seal is 20 hours in the future (signed with the
/// widest skew, as a publisher's wrong clock would have).
fn with_future_seal() -> (tempfile::TempDir, PathBuf, u64) {
    let (d, path) = fresh();
    release(&path, "1.0.0", now() - 60);
    let future = now() + 20 * 3600;
    let mut app = Appender::open(&path).unwrap();
    app.set_max_skew(MAX_SKEW_LIMIT).unwrap();
    app.seal(&[&key_a()], future).unwrap();
    (d, path, future)
}

#[test]
fn a_seal_from_the_future_is_superseded_on_purpose_only() {
    let (_d, path, future) = with_future_seal();
    // An honest seal now is refused, saying how to get out.
    let m = message(Appender::open(&path).unwrap().seal(&[&key_a()], now()));
    assert!(m.contains("--supersede-future-time"), "{m}");
    // The way out: a seal at the right time that says what it supersedes.
    let mut app = Appender::open(&path).unwrap();
    app.supersede_future_time();
    let s = app.seal(&[&key_a()], now()).unwrap();
    let note = Note::parse(s.checkpoint.as_bytes()).unwrap();
    let cp = Checkpoint::parse(note.text()).unwrap();
    assert_eq!(superseded_time(&cp).unwrap(), Some(future));
    assert!(cp.extensions.contains(&format!("{SUPERSEDES_TIME} {future}")));
    // The container verifies, and the log goes on from the honest time.
    assert_eq!(verified(&path).last_seal.seal.time, s.time);
    release(&path, "1.0.1", now());
    assert_eq!(verified(&path).seals, 5);
    // Nothing to supersede now.
    let mut app = Appender::open(&path).unwrap();
    app.supersede_future_time();
    assert!(message(app.seal(&[&key_a()], now())).contains("nothing to supersede"));
}

#[test]
fn superseding_cannot_backdate_past_an_honest_seal() {
    // The seal before the future one was signed a minute ago; a superseding
    // seal may not go back past it, though the future one is far ahead.
    use std::collections::BTreeSet;
    let honest = 1_000_000;
    let future = honest + 10 * 86_400;
    let earlier = BTreeSet::from([honest, future]);
    dare_container::client::check_seal_order(honest + 1, Some(future), future, &earlier).unwrap();
    let m = dare_container::client::check_seal_order(honest - 1, Some(future), future, &earlier).unwrap_err();
    assert!(m.contains("goes back past a seal signed at"), "{m}");
    // Only past a seal more than the skew ahead, and only when it says so.
    let near = BTreeSet::from([honest, honest + MAX_CLOCK_SKEW]);
    assert!(
        dare_container::client::check_seal_order(honest, Some(honest + MAX_CLOCK_SKEW), honest + MAX_CLOCK_SKEW, &near)
            .is_err()
    );
    assert!(dare_container::client::check_seal_order(honest + 1, None, future, &earlier).is_err());
    assert!(dare_container::client::check_seal_order(honest + 1, Some(future + 1), future, &earlier).is_err());
    // A forward seal names no superseded time.
    assert!(dare_container::client::check_seal_order(future, Some(honest), honest, &BTreeSet::from([honest])).is_err());
}

/// Cuts `n` bytes off the end of the file.
fn cut(path: &Path, n: u64) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    let len = f.metadata().unwrap().len();
    f.set_len(len - n).unwrap();
}

#[test]
fn a_seal_cut_off_is_repaired_with_the_same_tree() {
    let (_d, path) = fresh();
    release(&path, "1.0.0", now() - 120);
    release(&path, "1.0.1", now() - 60);
    let before = verified(&path);
    let (size, root) = (before.size, before.last_seal.checkpoint.root);
    cut(&path, 40);
    // Publishing or sealing on top is refused, saying how to check and repair.
    let m = message(Appender::open(&path));
    assert!(m.contains("dare verify") && m.contains("--repair"), "{m}");
    let app = Appender::open_for_repair(&path).unwrap();
    app.check_time(now()).unwrap();
    let (s, replaced) = app.repair(&[&key_a()], now()).unwrap();
    assert!(replaced > 0);
    assert_eq!((s.size, s.root), (size, root));
    let after = verified(&path);
    assert_eq!((after.size, after.last_seal.checkpoint.root), (size, root));
    assert_eq!(after.seals, before.seals);
    // The log goes on.
    release(&path, "1.0.2", now());
    verified(&path);
    // A complete container has nothing to repair.
    assert!(message(Appender::open_for_repair(&path)).contains("nothing to repair"));
}

#[test]
fn a_manifest_cut_off_is_not_repaired() {
    let (_d, path) = fresh();
    release(&path, "1.0.0", now() - 60);
    let len = std::fs::metadata(&path).unwrap().len();
    let seal_len = len - verified(&path).last_seal.frame.offset;
    cut(&path, seal_len + 5);
    let m = message(Appender::open_for_repair(&path));
    assert!(m.contains("cannot repair") && m.contains("dare verify"), "{m}");
}

#[test]
fn a_corrupt_tail_is_refused_with_how_to_check_it() {
    let (_d, path) = fresh();
    release(&path, "1.0.0", now() - 60);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = verified(&path).last_seal.frame.offset as usize + 60;
    bytes[at] ^= 0x20;
    std::fs::write(&path, &bytes).unwrap();
    let m = message(Appender::open(&path));
    assert!(m.contains("tail is damaged") && m.contains(&format!("dare verify {}", path.display())), "{m}");
    assert!(m.contains("--repair"), "{m}");
}

#[test]
fn a_file_that_is_not_a_container_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.zip");
    std::fs::write(&path, b"PK\x03\x04 some archive").unwrap();
    for m in [
        message(scan_file(&path, &ScanOptions::default())),
        message(verify_file(&path, &ScanOptions::default())),
        message(Appender::open(&path)),
        message(Appender::open_for_repair(&path)),
    ] {
        assert!(m.contains("is not a dare container") && m.contains("PK\\x03\\x04"), "{m}");
    }
    std::fs::write(&path, b"").unwrap();
    assert!(message(scan_file(&path, &ScanOptions::default())).contains("it is empty"));
}
