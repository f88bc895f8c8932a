//! `dare ls`: the releases in a container and its latest seal.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Result;
use dare_container::verify::{ScanOptions, Tail};
use dare_container::{hashio::to_hex, scan_file};
use serde_json::json;

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
    let scan = scan_file(&a.container, &ScanOptions { payloads: false, pins: None })?;
    if let Tail::Torn { offset, len, reason } = &scan.tail {
        eprintln!(
            "warning: {len} bytes after the last seal (byte {offset}) are not sealed and are not listed: {reason}"
        );
    }
    // (channel, target, version) -> files, in publication order.
    type Versions<'a> = Vec<(semver::Version, Vec<&'a dare_container::verify::EntryRecord>)>;
    let mut releases: BTreeMap<(String, String), Versions<'_>> = BTreeMap::new();
    for e in &scan.entries {
        if a.target.as_ref().is_some_and(|t| *t != e.entry.target)
            || a.channel.as_ref().is_some_and(|c| *c != e.entry.channel)
        {
            continue;
        }
        let list = releases.entry((e.entry.channel.clone(), e.entry.target.clone())).or_default();
        let v = e.entry.semver();
        match list.last_mut() {
            Some((last, files)) if *last == v => files.push(e),
            _ => list.push((v, vec![e])),
        }
    }
    let seal = &scan.last_seal;
    let h = Human::new(a.json);
    let mut json_releases = Vec::new();
    h.line(format!(
        "{} ({}), {} releases",
        scan.genesis.origin,
        scan.genesis.product,
        releases.values().map(Vec::len).sum::<usize>()
    ));
    for ((channel, target), versions) in &releases {
        let newest = scan.manifest.release(channel, target).map(|r| r.version.clone());
        for (v, files) in versions {
            let size: u64 = files.iter().map(|f| f.entry.size).sum();
            let stored: u64 = files.iter().map(|f| f.entry.stored_size).sum();
            let latest = newest.as_deref() == Some(&v.to_string());
            h.line(format!(
                "{v:<14} {channel:<8} {target:<32} {:>3} file(s) {:>10} ({} stored){}",
                files.len(),
                bytes(size),
                bytes(stored),
                if latest { "  latest" } else { "" }
            ));
            json_releases.push(json!({
                "version": v.to_string(), "channel": channel, "target": target, "latest": latest,
                "size": size, "stored_size": stored,
                "files": files.iter().map(|f| json!({
                    "path": f.entry.path, "mode": format!("{:o}", f.entry.mode), "size": f.entry.size,
                    "stored_size": f.entry.stored_size, "compression": f.entry.compression,
                    "sha256": f.entry.sha256.to_string(), "leaf": f.leaf,
                })).collect::<Vec<_>>(),
            }));
        }
    }
    h.line(format!(
        "sealed {} by {}: tree size {}, root {}, {} bytes",
        time(seal.seal.time),
        seal.signers.iter().map(|k| k.name().to_string()).collect::<Vec<_>>().join(", "),
        seal.checkpoint.size,
        to_hex(&seal.checkpoint.root),
        scan.sealed_len
    ));
    if a.json {
        print_json(&json!({
            "status": "ok",
            "origin": scan.genesis.origin,
            "product": scan.genesis.product,
            "releases": json_releases,
            "seal": { "time": seal.seal.time, "size": seal.checkpoint.size, "root": to_hex(&seal.checkpoint.root),
                      "signers": seal.signers.iter().map(|k| k.to_string()).collect::<Vec<_>>(), "sealed_len": scan.sealed_len },
        }));
    }
    Ok(())
}
