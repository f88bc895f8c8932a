//! Heartbeat seals: a fresh signed time with no new entries.

use std::path::Path;

use dare_container::keys::SigningKey;
use dare_container::{CutTail, SealSummary};

use crate::error::PublishError;
use crate::publish::{check_signers, cut_back, distinct_keys, open_appender};

/// Appends a fresh seal (a new signed time) without new entries, so updaters
/// can tell a live container from a frozen one. Cuts a torn tail first.
pub fn heartbeat(
    container: &Path,
    keys: &[&SigningKey],
    time: u64,
) -> Result<(SealSummary, Option<CutTail>), PublishError> {
    let (appender, cut) = open_appender(container)?;
    check_signers(&appender, keys, time)?;
    let keys = distinct_keys(keys);
    let summary = appender.seal(&keys, time).inspect_err(|_| cut_back(container))?;
    Ok((summary, cut))
}
