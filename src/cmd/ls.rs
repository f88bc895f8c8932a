//! `dare ls`: the releases in a container and its latest seal.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use anyhow::Result;
use dare_container::verify::{IndexRecord, ScanOptions, Tail};
use dare_container::{hashio::to_hex, scan_file};

use crate::json;
use crate::report::{Human, bytes, print_json, time};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The container file.
    container: PathBuf,
    /// Only this target triple.
    #[arg(long, value_name = "TRIPLE")]
    target: Option<String>,
    /// Only this channel.
    #[arg(long, value_name = "NAME")]
    channel: Option<String>,
    /// Print one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args) -> Result<()> {
    let scan = scan_file(&a.container, &ScanOptions::default())?;
    if let Tail::Torn { offset, len, reason } = &scan.tail {
        eprintln!(
            "warning: {len} bytes after the last seal (byte {offset}) are not sealed and are not listed: {reason}"
        );
    }
    let h = Human::new(a.json);
    let mut json_releases = Vec::new();
    let shown: Vec<&IndexRecord> = scan
        .indexes
        .iter()
        .filter(|i| a.target.as_ref().is_none_or(|t| *t == i.index.target))
        .filter(|i| a.channel.as_ref().is_none_or(|c| *c == i.index.channel))
        .collect();
    h.line(format!("{} ({}), {} releases", scan.genesis.origin, scan.genesis.product, shown.len()));
    // What each release stored new: entries and deltas no earlier index named.
    let mut seen: HashSet<u64> = HashSet::new();
    let mut rows: BTreeMap<(String, String), Vec<json::ListedRelease>> = BTreeMap::new();
    let mut lines: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for ix in &scan.indexes {
        let (mut new_bytes, mut shared, mut shared_bytes, mut deltas, mut delta_bytes) =
            (0u64, 0usize, 0u64, 0usize, 0u64);
        for f in &ix.files {
            if seen.insert(f.entry.leaf) {
                new_bytes += scan.entry(f.entry.leaf).map_or(0, |e| e.stored.stored_size());
            } else {
                shared += 1;
                shared_bytes += f.size;
            }
            for d in &f.deltas {
                if seen.insert(d.leaf) {
                    deltas += 1;
                    delta_bytes += scan.entry(d.leaf).map_or(0, |e| e.stored.stored_size());
                }
            }
        }
        if !shown.iter().any(|s| s.leaf == ix.leaf) {
            continue;
        }
        let i = &ix.index;
        let size: u64 = ix.files.iter().map(|f| f.size).sum();
        let latest = scan.manifest.release(&i.channel, &i.target).is_some_and(|r| r.index.leaf == ix.leaf);
        let key = (i.channel.clone(), i.target.clone());
        let private = i.sealed.is_some();
        if private {
            lines.entry(key.clone()).or_default().push(format!(
                "{:<14} {:<8} {:<32} {:>5} file(s), private (listing encrypted; {} stored){}",
                i.version,
                i.channel,
                i.target,
                i.files,
                bytes(ix.frame.payload_len),
                if latest { "  latest" } else { "" }
            ));
        } else {
            lines.entry(key.clone()).or_default().push(format!(
                "{:<14} {:<8} {:<32} {:>5} file(s) {:>10}: stored {} new, {} file(s) shared ({}), {} delta(s) ({}){}",
                i.version,
                i.channel,
                i.target,
                ix.files.len(),
                bytes(size),
                bytes(new_bytes),
                shared,
                bytes(shared_bytes),
                deltas,
                bytes(delta_bytes),
                if latest { "  latest" } else { "" }
            ));
        }
        rows.entry(key).or_default().push(json::ListedRelease {
            version: i.version.to_string(),
            channel: i.channel.clone(),
            target: i.target.clone(),
            latest,
            size,
            stored_new: new_bytes,
            shared_files: shared,
            shared_size: shared_bytes,
            deltas,
            delta_size: delta_bytes,
            index_leaf: ix.leaf,
            private,
            file_count: private.then_some(i.files),
            files: ix
                .files
                .iter()
                .map(|f| json::ListedFile {
                    path: f.path.to_string(),
                    mode: format!("{:o}", f.mode),
                    size: f.size,
                    sha256: f.sha256.to_string(),
                    leaf: f.entry.leaf,
                    deltas_from: f.deltas.iter().map(|d| d.base.to_string()).collect(),
                })
                .collect(),
        });
    }
    for (key, l) in lines {
        for line in l {
            h.line(line);
        }
        json_releases.extend(rows.remove(&key).unwrap_or_default());
    }
    let seal = &scan.last_seal;
    h.line(format!(
        "sealed {} by {}: tree size {}, root {}, {} bytes",
        time(seal.seal.time),
        seal.signers.iter().map(|k| k.name().to_string()).collect::<Vec<_>>().join(", "),
        seal.checkpoint.size,
        to_hex(&seal.checkpoint.root),
        scan.sealed_len
    ));
    if a.json {
        print_json(&json::Listing {
            status: "ok",
            origin: scan.genesis.origin.clone(),
            product: scan.genesis.product.clone(),
            releases: json_releases,
            seal: json::ListedSeal {
                time: seal.seal.time,
                size: seal.checkpoint.size,
                root: to_hex(&seal.checkpoint.root),
                signers: seal.signers.iter().map(|k| k.to_string()).collect(),
                sealed_len: scan.sealed_len,
            },
        });
    }
    Ok(())
}
