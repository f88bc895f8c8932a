//! Checkpoints and tiles for containers that are served but not synced:
//! every `*.dare` file in the served directory is scanned (structure,
//! headers, tree, tiles and seals; no payload digests) when it first appears
//! and whenever its length, modification time or inode changes (a file
//! replaced by one of the same length too), and its log is published on the
//! overlay. A file that does not verify is still served as bytes, without a
//! log; a file that is gone loses its log.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use dare_container::scan_file;
use dare_container::verify::ScanOptions;

use crate::tlog::TlogOverlay;

/// Refreshes the logs of `dir`'s `*.dare` files (except `skip`, which a
/// syncer owns) every `interval` until `shutdown`.
pub async fn follow(
    dir: PathBuf,
    skip: Vec<String>,
    tlog: TlogOverlay,
    interval: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut seen: HashMap<String, Stamp> = HashMap::new();
    loop {
        let d = dir.clone();
        let skip2 = skip.clone();
        let known = seen.clone();
        let tlog2 = tlog.clone();
        let refreshed = tokio::task::spawn_blocking(move || refresh(&d, &skip2, known, &tlog2)).await;
        if let Ok(s) = refreshed {
            seen = s;
        }
        tokio::select! {
            () = &mut shutdown => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}

/// What tells that a file changed: length, modification time, inode.
type Stamp = (u64, Option<SystemTime>, u64);

fn refresh(
    dir: &std::path::Path,
    skip: &[String],
    mut seen: HashMap<String, Stamp>,
    tlog: &TlogOverlay,
) -> HashMap<String, Stamp> {
    let Ok(entries) = std::fs::read_dir(dir) else { return seen };
    let mut present = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".dare") || name.starts_with('.') || skip.contains(&name) {
            continue;
        }
        // `metadata` follows a symlink, as the server does.
        let Ok(meta) = std::fs::metadata(e.path()) else { continue };
        if !meta.is_file() {
            continue;
        }
        present.push(name.clone());
        let stamp = (meta.len(), meta.modified().ok(), meta.ino());
        if seen.get(&name) == Some(&stamp) {
            continue;
        }
        seen.insert(name.clone(), stamp);
        let path = format!("/{name}");
        match scan_file(&e.path(), &ScanOptions::default()) {
            Ok(scan) => {
                tlog.set(&path, scan.last_seal.seal.checkpoint.clone(), Arc::new(scan.tree.clone()), scan.size());
            }
            Err(err) => {
                tracing::warn!(file = %e.path().display(), error = %err, "not serving a log for a container that does not verify");
                tlog.remove(&path);
            }
        }
    }
    seen.retain(|name, _| {
        let keep = present.contains(name);
        if !keep {
            tlog.remove(&format!("/{name}"));
        }
        keep
    });
    seen
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::overlay::Overlay;
    use dare_container::Appender;
    use dare_container::header::{FORMAT_VERSION, Genesis};
    use dare_container::keys::{SigningKey, TrustRoot};

    fn create(path: &std::path::Path, time: u64) -> String {
        let key = SigningKey::from_seed("release", [1; 32]).unwrap();
        let trust = TrustRoot::new(vec![key.verifier()], 1).unwrap();
        let genesis =
            Genesis { format: FORMAT_VERSION, origin: "example.com/app".into(), product: "app".into(), trust };
        Appender::create(path, genesis, &[&key], time).unwrap();
        scan_file(path, &ScanOptions::default()).unwrap().last_seal.seal.checkpoint
    }

    fn checkpoint(tlog: &TlogOverlay) -> Option<String> {
        tlog.lookup("/app.dare/checkpoint").map(|b| String::from_utf8(b.bytes.to_vec()).unwrap())
    }

    #[test]
    fn follows_files_that_appear_change_and_go() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("app.dare");
        let tlog = TlogOverlay::new();
        let mut seen = refresh(tmp.path(), &[], HashMap::new(), &tlog);
        assert_eq!(checkpoint(&tlog), None);

        let first = create(&file, 1_700_000_000);
        seen = refresh(tmp.path(), &[], seen, &tlog);
        assert_eq!(checkpoint(&tlog), Some(first.clone()));

        // Replaced by a container of the same length with another checkpoint.
        let other = tmp.path().join("other");
        let second = create(&other, 1_700_000_001);
        assert_ne!(first, second);
        assert_eq!(std::fs::metadata(&other).unwrap().len(), std::fs::metadata(&file).unwrap().len());
        std::fs::rename(&other, &file).unwrap();
        seen = refresh(tmp.path(), &[], seen, &tlog);
        assert_eq!(checkpoint(&tlog), Some(second));

        // Gone.
        std::fs::remove_file(&file).unwrap();
        seen = refresh(tmp.path(), &[], seen, &tlog);
        assert_eq!(checkpoint(&tlog), None);
        assert!(seen.is_empty());

        // A synced container is left to its syncer.
        create(&file, 1_700_000_000);
        refresh(tmp.path(), &["app.dare".to_string()], seen, &tlog);
        assert_eq!(checkpoint(&tlog), None);
    }
}
