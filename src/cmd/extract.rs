//! `dare extract`: verify and write one build's files into a directory.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use dare_container::crypt::unwrap_content_key;
use dare_publisher::{ExchangeOpener, ExtractOptions, extract};

use super::load_verifiers;
use crate::report::bytes;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The container file.
    container: PathBuf,
    /// The target triple.
    #[arg(long, value_name = "TRIPLE")]
    target: String,
    /// The version (default: the newest on the channel).
    #[arg(long, value_name = "SEMVER")]
    version: Option<String>,
    /// The channel.
    #[arg(long, value_name = "NAME", default_value = "stable")]
    channel: String,
    /// The directory to write into (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Require seals signed by these keys (text or file); default: the genesis trust root.
    #[arg(long, value_name = "PUB")]
    trust: Vec<String>,
    /// An age identity file (`AGE-SECRET-KEY-1...`): opens a private channel's build.
    #[arg(long, value_name = "FILE")]
    identity: Option<PathBuf>,
}

pub fn run(a: Args) -> Result<()> {
    let pins = if a.trust.is_empty() { None } else { Some(load_verifiers(&a.trust)?) };
    let opener = match &a.identity {
        Some(path) => {
            let ids = Arc::new(super::load_identities(path)?);
            Some(ExchangeOpener(Arc::new(move |x: &[u8]| unwrap_content_key(x, &ids))))
        }
        None => None,
    };
    let opts = ExtractOptions::new(a.target.clone(), a.out.clone())
        .version(a.version)
        .channel(a.channel)
        .pins(pins)
        .opener(opener);
    let report = extract(&a.container, &opts).with_context(|| format!("extracting {}", a.target))?;
    crate::outln!(
        "extracted {} {} into {}: {} file(s), {}",
        a.target,
        report.version,
        a.out.display(),
        report.files.len(),
        bytes(report.bytes)
    );
    for f in &report.files {
        crate::outln!("  {f}");
    }
    Ok(())
}
