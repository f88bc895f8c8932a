//! Key rotation: a new trust root, appended as a `keys` leaf whose rotation
//! note, and the seal after it, are signed by a threshold of the root it
//! replaces and of the new one (FORMAT.md 8.3). Adding a key, removing a
//! compromised one and changing the threshold are all rotations.

use std::path::Path;

use dare_container::keys::{SigningKey, TrustRoot};
use dare_container::{CutTail, SealSummary};

use crate::error::PublishError;
use crate::publish::{cut_back, distinct_keys, open_appender};

/// How [`rotate`] signs.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RotateOptions {
    /// The signed time of the seal, Unix seconds.
    pub time: u64,
    /// How far ahead of the clock `time` may be, seconds.
    pub max_skew: u64,
}

impl RotateOptions {
    /// A rotation sealed at `time` with the default skew.
    pub fn new(time: u64) -> Self {
        RotateOptions { time, max_skew: dare_container::client::MAX_CLOCK_SKEW }
    }
}

/// What [`rotate`] did.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RotateReport {
    /// The seal that put the new root in effect.
    pub summary: SealSummary,
    /// A torn tail cut off first (an interrupted publish).
    pub cut: Option<CutTail>,
    /// The fingerprint of the root replaced.
    pub from: String,
    /// The fingerprint of the new root.
    pub to: String,
}

/// Appends `new_root` as the container's trust root, signed by `keys`: they
/// must hold a threshold of the current root and of the new one, and each
/// must be in one of them. Refused, with the container unchanged, otherwise.
pub fn rotate(
    container: &Path,
    keys: &[&SigningKey],
    new_root: &TrustRoot,
    opts: &RotateOptions,
) -> Result<RotateReport, PublishError> {
    let keys = distinct_keys(keys);
    if keys.is_empty() {
        return Err(PublishError::Invalid("no --key given".into()));
    }
    new_root.validate().map_err(|e| PublishError::Invalid(format!("the new trust root: {e}")))?;
    let (mut appender, cut) = open_appender(container)?;
    appender.set_max_skew(opts.max_skew)?;
    let from = appender.trust().clone();
    let refuse = |appender: dare_container::Appender, why: String| {
        let _ = appender.abort();
        Err(PublishError::Invalid(why))
    };
    for k in &keys {
        let v = k.verifier();
        if !from.contains(&v) && !new_root.contains(&v) {
            return refuse(
                appender,
                format!(
                    "key {v} is in neither the current trust root (fingerprint {}) nor the new one",
                    from.fingerprint()
                ),
            );
        }
    }
    for (what, root) in [("current", &from), ("new", new_root)] {
        let signing = keys.iter().filter(|k| root.contains(&k.verifier())).count();
        if signing < root.threshold as usize {
            return refuse(
                appender,
                format!(
                    "the {what} trust root needs {} of its keys to sign a rotation (--key repeated); {signing} given",
                    root.threshold
                ),
            );
        }
    }
    if let Err(e) = appender.append_keys(new_root.clone(), &keys) {
        let _ = appender.abort();
        return Err(e.into());
    }
    let summary = appender.seal(&keys, opts.time).inspect_err(|_| cut_back(container))?;
    Ok(RotateReport { summary, cut, from: from.fingerprint(), to: new_root.fingerprint() })
}
