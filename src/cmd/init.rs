//! `dare init`: create a container with its genesis, an empty manifest and a seal.

use std::path::PathBuf;

use anyhow::{Context, Result};
use dare_container::Appender;
use dare_container::header::{FORMAT_VERSION, Genesis};
use dare_container::keys::TrustRoot;

use super::{load_signing_key, load_verifiers, signed_time};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The container file to create (refuses to overwrite).
    container: PathBuf,
    /// The signing key; its verifier key joins the trust root. Repeat for threshold signing.
    #[arg(long, value_name = "KEY", required = true)]
    key: Vec<PathBuf>,
    /// The container's unique name and checkpoint origin, e.g. example.com/myapp.
    #[arg(long)]
    origin: String,
    /// The product's display name (default: the origin's last path segment).
    #[arg(long = "name", value_name = "PRODUCT")]
    product: Option<String>,
    /// Another verifier key (text or file) for the trust root.
    #[arg(long, value_name = "PUB")]
    trust: Vec<String>,
    /// How many distinct trust-root keys must sign each seal.
    #[arg(long, value_name = "K", default_value_t = 1)]
    threshold: u32,
    /// The signed time in Unix seconds (default: SOURCE_DATE_EPOCH, else now).
    #[arg(long, value_name = "UNIX_SECONDS")]
    time: Option<u64>,
}

pub fn run(a: Args) -> Result<()> {
    let keys = a.key.iter().map(|p| load_signing_key(p)).collect::<Result<Vec<_>>>()?;
    let mut trusted: Vec<_> = keys.iter().map(|k| k.verifier()).collect();
    for k in load_verifiers(&a.trust)? {
        if !trusted.contains(&k) {
            trusted.push(k);
        }
    }
    let trust = TrustRoot::new(trusted, a.threshold).context("trust root")?;
    let product = a.product.unwrap_or_else(|| a.origin.rsplit('/').next().unwrap_or(&a.origin).to_string());
    let genesis = Genesis { format: FORMAT_VERSION, origin: a.origin.clone(), product, trust: trust.clone() };
    let time = signed_time(a.time)?;
    let refs: Vec<_> = keys.iter().collect();
    let summary = Appender::create(&a.container, genesis, &refs, time)
        .with_context(|| format!("creating {}", a.container.display()))?;
    crate::outln!("created {} for {}", a.container.display(), a.origin);
    crate::outln!(
        "  trust root {} of {} key(s), fingerprint {}",
        trust.threshold,
        trust.keys.len(),
        trust.fingerprint()
    );
    crate::outln!("  sealed     tree size {}, {} bytes", summary.size, summary.len);
    Ok(())
}
