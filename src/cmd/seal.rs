//! `dare seal`: a fresh signed time without new entries (a heartbeat), the
//! way out of a seal signed in the future, and the repair of a seal cut off.

use std::path::PathBuf;

use anyhow::{Context, Result};
use dare_publisher::SealOptions;

use super::{load_signing_key, signed_time};
use crate::report::time;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The container file.
    container: PathBuf,
    /// A signing key in the trust root; repeat for threshold signing.
    #[arg(long, value_name = "KEY", required = true)]
    key: Vec<PathBuf>,
    /// The signed time in Unix seconds (default: SOURCE_DATE_EPOCH, else now).
    /// Any time in the past is fine; one more than --max-skew ahead of the
    /// clock is refused.
    #[arg(long, value_name = "UNIX_SECONDS")]
    time: Option<u64>,
    /// How far ahead of this clock the signed time may be, in seconds (at
    /// most 86400).
    #[arg(long, value_name = "SECS", default_value_t = dare_container::client::MAX_CLOCK_SKEW)]
    max_skew: u64,
    /// The last seal was signed in the future (more than 5 minutes ahead of
    /// the new time): sign the new time anyway; the new seal's checkpoint
    /// says which time it supersedes.
    #[arg(long)]
    supersede_future_time: bool,
    /// The last seal was cut off, but the leaves and manifest it covered are
    /// intact: seal that same tree again instead of cutting it away.
    #[arg(long, conflicts_with = "witness")]
    repair: bool,
    #[command(flatten)]
    witnesses: crate::witness_client::WitnessArgs,
}

pub fn run(a: Args) -> Result<()> {
    let keys = a.key.iter().map(|p| load_signing_key(p)).collect::<Result<Vec<_>>>()?;
    let refs: Vec<_> = keys.iter().collect();
    let mut opts = SealOptions::new(signed_time(a.time)?);
    opts.max_skew = a.max_skew;
    opts.supersede_future_time = a.supersede_future_time;
    opts.repair = a.repair;
    let mut witnesses = a.witnesses.cosigner()?;
    let mut cosign = |req: &dare_container::CosignRequest<'_>| match witnesses.as_mut() {
        Some(w) => w.cosign(req),
        None => Ok(Vec::new()),
    };
    let report = dare_publisher::seal_cosigned(&a.container, &refs, &opts, &mut cosign)
        .with_context(|| format!("sealing {}", a.container.display()))?;
    if let Some(c) = report.cut {
        eprintln!("warning: cut off a torn tail of {} bytes at byte {}: {}", c.len, c.offset, c.reason);
    }
    if let Some(n) = report.repaired {
        eprintln!("repaired: replaced {n} bytes of a seal that was cut off with a new seal of the same tree");
    }
    let summary = report.summary;
    crate::outln!(
        "sealed {}: tree size {}, signed {}, {} bytes appended",
        a.container.display(),
        summary.size,
        time(summary.time),
        summary.appended
    );
    if let Some(w) = &witnesses {
        crate::outln!("  cosigned by {} witness(es)", w.cosigned());
    }
    Ok(())
}
