//! `dare publish`: append one release of many targets, then seal.

use std::path::PathBuf;

use anyhow::{Context, Result};
use dare_publisher::{Artifact, PublishEvent, PublishOptions, publish_cosigned};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{load_signing_key, signed_time};
use crate::json;
use crate::report::{Human, bytes, print_json};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The container file.
    container: PathBuf,
    /// A signing key in the trust root; repeat for threshold signing.
    #[arg(long, value_name = "KEY", required = true)]
    key: Vec<PathBuf>,
    /// The release's semver version.
    #[arg(long, value_name = "SEMVER")]
    version: String,
    /// The release channel.
    #[arg(long, value_name = "NAME", default_value = "stable")]
    channel: String,
    /// A build: TRIPLE=PATH, a file or a directory. Repeat for every target.
    #[arg(long, value_name = "TRIPLE=PATH", required = true)]
    artifact: Vec<String>,
    /// zstd compression level (1-22).
    #[arg(long, default_value_t = dare_publisher::compress::DEFAULT_LEVEL)]
    level: i32,
    /// Also store a zstd patch-from delta of each changed file against its
    /// version in each of the last K releases of its target and channel,
    /// where that is clearly smaller (0: no deltas).
    #[arg(long, value_name = "K", default_value_t = 1)]
    deltas: u32,
    /// zstd level of the deltas (1-22).
    #[arg(long, value_name = "LEVEL", default_value_t = dare_publisher::compress::DEFAULT_DELTA_LEVEL)]
    delta_level: i32,
    /// The signed time in Unix seconds (default: SOURCE_DATE_EPOCH, else now).
    /// Any time in the past is fine; one more than --max-skew ahead of the
    /// clock is refused.
    #[arg(long, value_name = "UNIX_SECONDS")]
    time: Option<u64>,
    /// How far ahead of this clock the signed time may be, in seconds (at
    /// most 86400).
    #[arg(long, value_name = "SECS", default_value_t = dare_container::client::MAX_CLOCK_SKEW)]
    max_skew: u64,
    /// Make this release of the channel private: its entries, deltas and
    /// listings are encrypted, readable only with an identity of one of
    /// these recipients. Each is an age recipient (age1...) or a file of
    /// them, one per line. A new content key is made for every release.
    #[arg(long, value_name = "RECIPIENT", num_args = 1..)]
    encrypt_to: Vec<String>,
    /// With --encrypt-to: the publisher's own age identity (a recipient of
    /// the earlier private releases), so what they hold is reused and deltas
    /// are made against them.
    #[arg(long, value_name = "FILE", requires = "encrypt_to")]
    identity: Option<PathBuf>,
    #[command(flatten)]
    witnesses: crate::witness_client::WitnessArgs,
    /// Print one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args) -> Result<()> {
    let artifacts = a.artifact.iter().map(|s| s.parse::<Artifact>()).collect::<Result<Vec<_>, _>>()?;
    let keys = a.key.iter().map(|p| load_signing_key(p)).collect::<Result<Vec<_>>>()?;
    let refs: Vec<_> = keys.iter().collect();
    let mut opts = PublishOptions::new(a.version.clone(), artifacts, signed_time(a.time)?);
    opts.channel = a.channel.clone();
    opts.level = a.level;
    opts.deltas = a.deltas;
    opts.delta_level = a.delta_level;
    opts.max_skew = a.max_skew;
    if !a.encrypt_to.is_empty() {
        opts = opts.encrypt_to(super::load_recipients(&a.encrypt_to)?);
    }
    if let Some(id) = &a.identity {
        opts = opts.identities(super::load_identities(id)?);
    }
    let private = opts.encrypt_to.as_ref().map(|r| r.to_strings().len());
    let mut witnesses = a.witnesses.cosigner()?;
    let h = Human::new(a.json);
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg:40!} {bytes:>10}/{total_bytes:10} {bytes_per_sec:>12} {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut cosign = |req: &dare_container::CosignRequest<'_>| match witnesses.as_mut() {
        Some(w) => w.cosign(req),
        None => Ok(Vec::new()),
    };
    let mut progress = |event| match event {
        PublishEvent::Gathered { bytes, .. } => bar.set_length(bytes),
        PublishEvent::CutTail(c) => bar.suspend(|| {
            eprintln!("warning: cut off a torn tail of {} bytes at byte {}: {}", c.len, c.offset, c.reason)
        }),
        PublishEvent::FileDone { target, path, size, .. } => {
            bar.inc(size);
            bar.set_message(format!("{target} {path}"));
        }
        PublishEvent::Sealing => bar.set_message(if a.witnesses.witness.is_empty() {
            "sealing"
        } else {
            "asking witnesses to cosign, sealing"
        }),
        _ => {}
    };
    let report = publish_cosigned(&a.container, &refs, &opts, &mut progress, &mut cosign)
        .with_context(|| format!("publishing {} to {}", a.version, a.container.display()))?;
    bar.finish_and_clear();
    let size: u64 = report.targets.values().map(|t| t.size).sum();
    let stored: u64 = report.targets.values().map(|t| t.stored + t.delta_bytes).sum();
    h.line(format!(
        "published {} on {} to {}: {} target(s), {} file(s), {} ({} stored new)",
        report.version,
        report.channel,
        a.container.display(),
        report.targets.len(),
        report.targets.values().map(|t| t.files).sum::<usize>(),
        bytes(size),
        bytes(stored)
    ));
    for (target, t) in &report.targets {
        h.line(format!(
            "  {target:<34} {:>5} file(s) {:>10}: {} new, {} file(s) shared ({}), {} delta(s) ({})",
            t.files,
            bytes(t.size),
            bytes(t.stored),
            t.shared,
            bytes(t.shared_bytes),
            t.deltas,
            bytes(t.delta_bytes)
        ));
    }
    let cosignatures = witnesses.as_ref().map_or(0, |w| w.cosigned());
    if let Some(n) = private {
        h.line(format!("  private: encrypted to {n} recipient(s) with a new content key"));
    }
    h.line(format!("  sealed tree size {}, container {}", report.seal.size, bytes(report.seal.len)));
    if witnesses.is_some() {
        h.line(format!("  cosigned by {cosignatures} witness(es)"));
    }
    if a.json {
        print_json(&json::Published {
            status: "published",
            version: report.version,
            channel: report.channel,
            targets: report
                .targets
                .iter()
                .map(|(t, r)| {
                    let target = json::PublishedTarget {
                        files: r.files,
                        size: r.size,
                        stored_size: r.stored,
                        shared_files: r.shared,
                        shared_size: r.shared_bytes,
                        deltas: r.deltas,
                        delta_size: r.delta_bytes,
                    };
                    (t.clone(), target)
                })
                .collect(),
            tree_size: report.seal.size,
            root: dare_container::hashio::to_hex(&report.seal.root),
            time: report.seal.time,
            container_len: report.seal.len,
            appended: report.seal.appended,
            cut_tail: report.cut.map(|c| json::CutTail { offset: c.offset, len: c.len }),
            cosignatures,
        });
    }
    Ok(())
}
