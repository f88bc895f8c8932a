//! `dare update`: check for and install the newest build from untrusted mirrors.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use dare_updater::transport::Timeouts;
use dare_updater::{Event, Status, UpdaterBuilder};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::load_verifiers;
use crate::json;
use crate::report::{Human, bytes, print_json};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A mirror: the container's http(s) URL, a file:// URL or a path. Repeat to fail over.
    #[arg(long = "from", value_name = "URL", required = true)]
    from: Vec<String>,
    /// A trusted publisher verifier key (text or file). Repeat for several.
    #[arg(long, value_name = "PUB", required = true)]
    trust: Vec<String>,
    /// How many distinct trusted keys must sign the checkpoint.
    #[arg(long, value_name = "K", default_value_t = 1)]
    threshold: u32,
    /// A witness verifier key (text or file, as `dare keygen --witness`
    /// writes KEY.pub) whose cosignature the checkpoint needs. Repeat for
    /// several.
    #[arg(long, value_name = "PUB")]
    witness: Vec<String>,
    /// How many of the --witness keys must have cosigned the checkpoint
    /// (default: all of them).
    #[arg(long, value_name = "K", requires = "witness")]
    witness_threshold: Option<usize>,
    /// Where the replica and the last verified checkpoint live.
    #[arg(long, value_name = "DIR")]
    state: PathBuf,
    /// Where builds are installed: versions/<v>/ and `current` (a link; on Windows a file naming the version).
    #[arg(long, value_name = "DIR")]
    install: PathBuf,
    /// The target triple (default: this machine's).
    #[arg(long, value_name = "TRIPLE")]
    target: Option<String>,
    /// The channel.
    #[arg(long, value_name = "NAME", default_value = "stable")]
    channel: String,
    /// Refuse a container of any other origin (checkpoint origin), also on first use.
    #[arg(long, value_name = "ORIGIN")]
    origin: Option<String>,
    /// The oldest signed time accepted, in seconds (default 14 days).
    #[arg(long, value_name = "SECS", default_value_t = 1_209_600)]
    max_age: u64,
    /// Give up on a connection attempt (TLS included) after this long.
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    connect_timeout: u64,
    /// Give up on a mirror that sends nothing (no headers, no body bytes) for this long.
    #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    idle_timeout: u64,
    /// Drop a mirror that sends fewer bytes per second than this, measured over 10 s windows
    /// (0: no minimum).
    #[arg(long, value_name = "BYTES_PER_SEC", default_value_t = 1024)]
    min_rate: u64,
    /// The time one mirror may take in one run, retries included, plus one second per
    /// --min-rate bytes asked of it; then the next --from is tried (0: no deadline).
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    mirror_deadline: u64,
    /// An age identity file (`AGE-SECRET-KEY-1...`, from `dare keygen --encryption` or
    /// age-keygen): opens a private channel's builds.
    #[arg(long, value_name = "FILE")]
    identity: Option<PathBuf>,
    /// Only report whether a newer build exists.
    #[arg(long)]
    check: bool,
    /// Print one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args) -> Result<()> {
    let keys = load_verifiers(&a.trust)?;
    let mut builder = UpdaterBuilder::new()
        .threshold(a.threshold)
        .channel(a.channel.clone())
        .state_dir(&a.state)
        .install_dir(&a.install)
        .max_age(Duration::from_secs(a.max_age))
        .timeouts(
            Timeouts::default()
                .with_connect(Duration::from_secs(a.connect_timeout))
                .with_idle(Duration::from_secs(a.idle_timeout))
                .with_min_rate(a.min_rate)
                .with_mirror_deadline(Duration::from_secs(a.mirror_deadline)),
        );
    for k in keys {
        builder = builder.trust(k);
    }
    for m in &a.from {
        builder = builder.mirror(m.clone());
    }
    for w in &a.witness {
        builder = builder.witness(crate::witness_client::load_witness_key(w)?);
    }
    if let Some(k) = a.witness_threshold {
        builder = builder.witness_threshold(k);
    }
    if let Some(t) = &a.target {
        builder = builder.target(t.clone());
    }
    if let Some(o) = &a.origin {
        builder = builder.origin(o.clone());
    }
    if let Some(path) = &a.identity {
        builder = builder.identity_text(&read_identity_file(path)?)?;
    }
    let bar = if std::io::stderr().is_terminal() && !a.json {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} {bytes:>10}/{total_bytes:10} {bytes_per_sec:>12} {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Some(bar)
    } else {
        None
    };
    if let Some(bar) = bar.clone() {
        builder = builder.progress(Arc::new(move |e: Event| match e {
            Event::Checking => bar.set_message("checking"),
            Event::Found { version, bytes } => {
                bar.set_length(bytes);
                bar.set_message(format!("fetching {version}"));
            }
            Event::Fetched { bytes } => bar.set_position(bytes),
            Event::Installing => bar.set_message("installing"),
            _ => {}
        }));
    }
    let updater = dare_updater::blocking::Updater::new(builder)?;
    let result = if a.check { updater.check() } else { updater.update() };
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let outcome = result?;
    let h = Human::new(a.json);
    match outcome.status {
        Status::Updated => h.line(format!(
            "updated {} {} -> {} ({} fetched in {} requests: {} whole entries, {} deltas; {} reused from the installed build)",
            outcome.target,
            outcome.previous.as_deref().unwrap_or("nothing"),
            outcome.version,
            bytes(outcome.bytes_fetched),
            outcome.requests,
            bytes(outcome.bytes_full),
            bytes(outcome.bytes_delta),
            bytes(outcome.bytes_reused)
        )),
        Status::UpToDate => h.line(format!(
            "{} {} is up to date ({} fetched in {} request(s))",
            outcome.target,
            outcome.version,
            bytes(outcome.bytes_fetched),
            outcome.requests
        )),
        Status::Available => h.line(format!(
            "{} {} is available (installed: {})",
            outcome.target,
            outcome.version,
            outcome.previous.as_deref().unwrap_or("nothing")
        )),
        status => h.line(format!("{} {}: {}", outcome.target, outcome.version, status.as_str())),
    }
    if let Some(p) = &outcome.install_path {
        h.line(format!("  installed in {}", p.display()));
    }
    if outcome.rotations > 0 {
        let pending = if a.check { "pending (an update follows it)" } else { "followed" };
        h.line(format!(
            "  key rotation {pending}: {} rotation(s) of the trust root since the last update; now {}",
            outcome.rotations, outcome.trust_fingerprint
        ));
    }
    if a.json {
        print_json(&json::Updated {
            status: outcome.status.as_str(),
            target: outcome.target,
            channel: outcome.channel,
            version: outcome.version,
            previous: outcome.previous,
            bytes_fetched: outcome.bytes_fetched,
            requests: outcome.requests,
            payload_bytes: outcome.payload_bytes,
            bytes_full: outcome.bytes_full,
            bytes_delta: outcome.bytes_delta,
            bytes_reused: outcome.bytes_reused,
            tree_size: outcome.tree_size,
            signed_time: outcome.signed_time,
            install_path: outcome.install_path,
            rotations: outcome.rotations,
            trust_fingerprint: outcome.trust_fingerprint,
        });
    }
    Ok(())
}

/// The text of an identity file (at most 1 MiB: one holds a few keys).
pub(crate) fn read_identity_file(path: &std::path::Path) -> Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(1 << 20).read_to_string(&mut text))
        .with_context(|| format!("reading the identity file {}", path.display()))?;
    Ok(text)
}
