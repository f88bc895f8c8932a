//! `dare verify`: check every frame, leaf, payload, tile and seal.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use dare_container::client::{MAX_CLOCK_SKEW, check_signed_time};
use dare_container::verify::{ScanOptions, Tail};
use dare_container::{hashio::to_hex, pending_publish, verify_file};

use super::load_verifiers;
use crate::VerificationFailed;
use crate::json;
use crate::report::{Human, bytes, print_json, time};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The container file.
    container: PathBuf,
    /// Require seals signed by these keys (text or file); default: the genesis trust root.
    #[arg(long, value_name = "PUB")]
    trust: Vec<String>,
    /// Print one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args) -> Result<()> {
    let pins = if a.trust.is_empty() { None } else { Some(load_verifiers(&a.trust)?) };
    let started = Instant::now();
    let scan = verify_file(&a.container, &ScanOptions::full().with_pins(pins.clone()))?;
    let h = Human::new(a.json);
    let mut interrupted = false;
    if let Tail::Torn { offset, len, reason } = &scan.tail {
        interrupted = pending_publish(&a.container) == Some(*offset);
        if !interrupted {
            return Err(VerificationFailed(format!(
                "torn tail at byte {offset}: {len} bytes after the last seal (frame {}) are not sealed: {reason} \
                 (if only a seal after them was cut off, `dare seal {} --key KEY --repair` seals them again)",
                scan.frames - 1,
                a.container.display()
            ))
            .into());
        }
        eprintln!(
            "warning: an interrupted publish left {len} unsealed bytes after byte {offset}; \
             they are ignored, and the next publish or seal cuts them off"
        );
    }
    // Clients refuse a seal signed further ahead of their clock than the skew.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    if let Err(e) = check_signed_time(scan.last_seal.seal.time, now, MAX_CLOCK_SKEW) {
        return Err(VerificationFailed(format!(
            "the last seal (frame {}) is from the future: {e}; clients refuse it. `dare seal {} --key KEY \
             --supersede-future-time` appends a seal at the right time that supersedes it",
            scan.last_seal.frame_index,
            a.container.display()
        ))
        .into());
    }
    let payload_bytes: u64 = scan.entries.iter().map(|e| e.frame.payload_len).sum();
    let cp = &scan.last_seal.checkpoint;
    let signers: Vec<String> = scan.last_seal.signers.iter().map(|k| k.to_string()).collect();
    let elapsed = started.elapsed();
    if a.json {
        print_json(&json::Verified {
            status: "ok",
            container: a.container.clone(),
            origin: scan.genesis.origin.clone(),
            product: scan.genesis.product.clone(),
            trust_fingerprint: scan.genesis_fingerprint(),
            trusted_by: if pins.is_some() { "--trust" } else { "genesis" },
            frames: scan.frames,
            leaves: scan.size(),
            partial: scan.partial,
            seals: scan.seals,
            entries: scan.entries.len(),
            payload_bytes,
            size: cp.size,
            root: to_hex(&cp.root),
            time: scan.last_seal.seal.time,
            signers: signers.clone(),
            sealed_len: scan.sealed_len,
            interrupted_publish: interrupted.then(|| scan.file_len - scan.sealed_len),
        });
    }
    h.line(format!("{}: OK", a.container.display()));
    h.line(format!("  origin      {} ({})", scan.genesis.origin, scan.genesis.product));
    match &pins {
        Some(_) => h.line(format!("  trust       --trust keys; genesis fingerprint {}", scan.genesis_fingerprint())),
        None => h.line(format!(
            "  trust       genesis root, {} of {} key(s), fingerprint {}",
            scan.genesis.trust.threshold,
            scan.genesis.trust.keys.len(),
            scan.genesis_fingerprint()
        )),
    }
    if scan.trust.fingerprint() != scan.genesis_fingerprint() {
        h.line(format!(
            "  rotated     to {} of {} key(s), fingerprint {} (the root in effect)",
            scan.trust.threshold,
            scan.trust.keys.len(),
            scan.trust.fingerprint()
        ));
    }
    if scan.partial {
        h.line(format!(
            "  frames      {} ({} seals), {} checked both ways: a partial container (replica) of a tree of {} leaves, \
             every leaf present proven by inclusion",
            scan.frames,
            scan.seals,
            bytes(scan.sealed_len),
            scan.size()
        ));
    } else {
        h.line(format!(
            "  frames      {} ({} leaves, {} seals), {} checked both ways",
            scan.frames,
            scan.size(),
            scan.seals,
            bytes(scan.sealed_len)
        ));
    }
    h.line(format!("  payloads    {} entries, {} hashed", scan.entries.len(), bytes(payload_bytes)));
    h.line(format!("  last seal   tree size {}, root {}", cp.size, to_hex(&cp.root)));
    h.line(format!("              signed {} by {}", time(scan.last_seal.seal.time), signers.join(", ")));
    h.line(format!("  took        {:.2?}", elapsed));
    Ok(())
}
