//! `dare keys rotate`: replace a container's trust root (add a key, remove a
//! compromised one, change the threshold), signed by the old and the new.

use std::path::PathBuf;

use anyhow::{Context, Result};
use dare_container::keys::TrustRoot;
use dare_publisher::RotateOptions;

use super::{load_signing_key, load_verifiers, signed_time};
use crate::report::time;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Debug, clap::Subcommand)]
enum KeysCommand {
    /// Append a new trust root, signed by a threshold of the current root and
    /// of the new one, and seal it.
    Rotate(RotateArgs),
}

#[derive(Debug, clap::Args)]
struct RotateArgs {
    /// The container file.
    container: PathBuf,
    /// A signing key of the current or the new root; repeat until both
    /// thresholds are met.
    #[arg(long, value_name = "KEY", required = true)]
    key: Vec<PathBuf>,
    /// A verifier key (text or file) of the new trust root; repeat for each key.
    #[arg(long, value_name = "PUB", required = true)]
    new_trust: Vec<String>,
    /// How many distinct keys of the new root must sign each seal.
    #[arg(long, value_name = "K", default_value_t = 1)]
    threshold: u32,
    /// The signed time in Unix seconds (default: SOURCE_DATE_EPOCH, else now).
    #[arg(long, value_name = "UNIX_SECONDS")]
    time: Option<u64>,
    /// How far ahead of this clock the signed time may be, in seconds (at
    /// most 86400).
    #[arg(long, value_name = "SECS", default_value_t = dare_container::client::MAX_CLOCK_SKEW)]
    max_skew: u64,
}

pub fn run(a: Args) -> Result<()> {
    match a.command {
        KeysCommand::Rotate(a) => rotate(a),
    }
}

fn rotate(a: RotateArgs) -> Result<()> {
    let keys = a.key.iter().map(|p| load_signing_key(p)).collect::<Result<Vec<_>>>()?;
    let refs: Vec<_> = keys.iter().collect();
    let mut new_keys = Vec::new();
    for k in load_verifiers(&a.new_trust).context("--new-trust")? {
        if !new_keys.contains(&k) {
            new_keys.push(k);
        }
    }
    let root = TrustRoot::new(new_keys, a.threshold).context("the new trust root")?;
    let mut opts = RotateOptions::new(signed_time(a.time)?);
    opts.max_skew = a.max_skew;
    let report = dare_publisher::rotate(&a.container, &refs, &root, &opts)
        .with_context(|| format!("rotating the keys of {}", a.container.display()))?;
    if let Some(c) = report.cut {
        eprintln!("warning: cut off a torn tail of {} bytes at byte {}: {}", c.len, c.offset, c.reason);
    }
    crate::outln!("rotated {}: trust root {} -> {}", a.container.display(), report.from, report.to);
    crate::outln!(
        "  new root {} of {} key(s); sealed tree size {}, signed {}",
        root.threshold,
        root.keys.len(),
        report.summary.size,
        time(report.summary.time)
    );
    Ok(())
}
