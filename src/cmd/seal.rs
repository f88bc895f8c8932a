//! `dare seal`: a fresh signed time without new entries (a heartbeat).

use std::path::PathBuf;

use anyhow::{Context, Result};

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
    #[arg(long, value_name = "UNIX_SECONDS")]
    time: Option<u64>,
}

pub fn run(a: Args) -> Result<()> {
    let keys = a.key.iter().map(|p| load_signing_key(p)).collect::<Result<Vec<_>>>()?;
    let refs: Vec<_> = keys.iter().collect();
    let (summary, cut) = dare_publisher::heartbeat(&a.container, &refs, signed_time(a.time)?)
        .with_context(|| format!("sealing {}", a.container.display()))?;
    if let Some(c) = cut {
        eprintln!("warning: cut off a torn tail of {} bytes at byte {}: {}", c.len, c.offset, c.reason);
    }
    crate::outln!(
        "sealed {}: tree size {}, signed {}, {} bytes appended",
        a.container.display(),
        summary.size,
        time(summary.time),
        summary.appended
    );
    Ok(())
}
