//! Seals without new entries: heartbeats (a fresh signed time), the way out
//! of a seal signed in the future, and repairs of a seal that was cut off.

use std::path::Path;

use dare_container::keys::SigningKey;
use dare_container::{Appender, Cosigner, CutTail, SealSummary};

use crate::error::PublishError;
use crate::publish::{check_signers, cut_back, distinct_keys, open_appender};

/// How [`seal`] signs.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SealOptions {
    /// The signed time, Unix seconds.
    pub time: u64,
    /// How far ahead of the clock `time` may be, seconds (default
    /// [`MAX_CLOCK_SKEW`](dare_container::client::MAX_CLOCK_SKEW); at most
    /// [`MAX_SKEW_LIMIT`](dare_container::client::MAX_SKEW_LIMIT)).
    pub max_skew: u64,
    /// The container's last seal was signed in the future: sign `time`
    /// anyway, saying which time it supersedes
    /// ([`Appender::supersede_future_time`]).
    pub supersede_future_time: bool,
    /// The container's last seal was cut off: seal the same tree again
    /// ([`Appender::repair`]).
    pub repair: bool,
}

impl SealOptions {
    /// A heartbeat at `time` with the default skew.
    pub fn new(time: u64) -> Self {
        SealOptions {
            time,
            max_skew: dare_container::client::MAX_CLOCK_SKEW,
            supersede_future_time: false,
            repair: false,
        }
    }
}

/// What [`seal`] did.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SealReport {
    /// The new seal.
    pub summary: SealSummary,
    /// A torn tail cut off first (an interrupted publish).
    pub cut: Option<CutTail>,
    /// Bytes of a cut-off seal replaced by a repair.
    pub repaired: Option<u64>,
}

/// Appends a fresh seal (a new signed time) without new entries, so updaters
/// can tell a live container from a frozen one. Cuts a torn tail first.
pub fn heartbeat(
    container: &Path,
    keys: &[&SigningKey],
    time: u64,
) -> Result<(SealSummary, Option<CutTail>), PublishError> {
    let r = seal(container, keys, &SealOptions::new(time))?;
    Ok((r.summary, r.cut))
}

/// Appends a seal as `opts` says: a heartbeat, a seal that supersedes a
/// time from the future, or the repair of a seal that was cut off.
pub fn seal(container: &Path, keys: &[&SigningKey], opts: &SealOptions) -> Result<SealReport, PublishError> {
    seal_cosigned(container, keys, opts, &mut |_| Ok(Vec::new()))
}

/// [`seal`], with witness cosignatures embedded before the seal is written
/// ([`Appender::seal_cosigned`]). A repair (`opts.repair`) seals again a
/// tree that was already signed and does not call the cosigner.
pub fn seal_cosigned(
    container: &Path,
    keys: &[&SigningKey],
    opts: &SealOptions,
    cosigner: &mut Cosigner<'_>,
) -> Result<SealReport, PublishError> {
    let keys = distinct_keys(keys);
    if opts.repair {
        let mut appender = Appender::open_for_repair(container)?;
        appender.set_max_skew(opts.max_skew)?;
        if opts.supersede_future_time {
            appender.supersede_future_time();
        }
        check_signers(&appender, &keys, opts.time)?;
        let (summary, repaired) = appender.repair(&keys, opts.time)?;
        return Ok(SealReport { summary, cut: None, repaired: Some(repaired) });
    }
    let (mut appender, cut) = open_appender(container)?;
    appender.set_max_skew(opts.max_skew)?;
    if opts.supersede_future_time {
        appender.supersede_future_time();
    }
    check_signers(&appender, &keys, opts.time)?;
    let summary = appender.seal_cosigned(&keys, opts.time, cosigner).inspect_err(|_| cut_back(container))?;
    Ok(SealReport { summary, cut, repaired: None })
}
