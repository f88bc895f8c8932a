//! Checkpoints and tiles for containers that are served but not synced:
//! every `*.dare` file in the served directory is scanned (structure,
//! headers, tree, tiles and seals; no payload digests) when it first appears
//! and whenever its length changes, and its log is published on the overlay.
//! A file that does not verify is still served as bytes, without a log.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

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
    let mut seen: HashMap<String, u64> = HashMap::new();
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

fn refresh(
    dir: &std::path::Path,
    skip: &[String],
    mut seen: HashMap<String, u64>,
    tlog: &TlogOverlay,
) -> HashMap<String, u64> {
    let Ok(entries) = std::fs::read_dir(dir) else { return seen };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".dare") || name.starts_with('.') || skip.contains(&name) {
            continue;
        }
        let Ok(meta) = e.metadata() else { continue };
        if !meta.is_file() || seen.get(&name) == Some(&meta.len()) {
            continue;
        }
        seen.insert(name.clone(), meta.len());
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
    seen
}
