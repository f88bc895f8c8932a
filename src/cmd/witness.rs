//! `dare witness`: a C2SP tlog-witness for the named logs, on one
//! single-threaded runtime (a witness answers a few requests per log and
//! seal; each one's fsync runs on the blocking pool).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use dare_container::cosign::{WitnessKey, WitnessSigningKey};
use dare_container::keys::{KeyError, VerifierKey};
use dare_mirror::witness::{Witness, WitnessConfig};
use tokio::signal::unix::{SignalKind, signal};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The witness's signing key, made by `dare keygen --witness`.
    #[arg(long, value_name = "KEY")]
    key: PathBuf,
    /// Directory holding the latest checkpoint cosigned for each log (created if missing).
    #[arg(long, value_name = "DIR")]
    state: PathBuf,
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// A log to witness: its origin line and a log verifier key (text or file). Repeat for more logs. The same
    /// origin may be given several keys: a checkpoint validly signed by any one of them is accepted.
    #[arg(long, value_name = "ORIGIN=PUB", required = true)]
    log: Vec<String>,
}

/// One `--log ORIGIN=PUB`.
fn parse_log(arg: &str) -> Result<(String, VerifierKey)> {
    let Some((origin, key)) = arg.split_once('=').filter(|(o, k)| !o.is_empty() && !k.is_empty()) else {
        bail!("--log {arg}: expected ORIGIN=PUB");
    };
    let parsed = match VerifierKey::parse(key.trim()) {
        Ok(k) => k,
        // The secret is on the command line: never echo it.
        Err(e @ KeyError::PrivateKey) => return Err(anyhow::Error::new(e).context(format!("--log {origin}"))),
        Err(_) => {
            not_a_witness_key(origin, key.trim())?;
            let path = PathBuf::from(key);
            if !path.exists() {
                bail!("--log {arg}: {key} is neither a verifier key (name+hexid+base64) nor a file");
            }
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            not_a_witness_key(origin, text.trim())?;
            VerifierKey::parse(text.trim()).with_context(|| format!("--log {origin}={}", path.display()))?
        }
    };
    Ok((origin.to_owned(), parsed))
}

/// Refuses a witness key where the log's key belongs, saying so.
fn not_a_witness_key(origin: &str, text: &str) -> Result<()> {
    if WitnessKey::parse(text).is_ok() {
        bail!(
            "--log {origin}: this is a witness's cosignature/v1 key; --log takes the log's verifier key (the .pub of \
             the key that signs its seals)"
        );
    }
    Ok(())
}

pub fn run(a: Args) -> Result<()> {
    let text = std::fs::read_to_string(&a.key).with_context(|| format!("reading key {}", a.key.display()))?;
    let key = WitnessSigningKey::parse(&text).with_context(|| format!("key {}", a.key.display()))?;
    let logs = a.log.iter().map(|l| parse_log(l)).collect::<Result<Vec<_>>>()?;
    let witness = Witness::open(key, logs, &a.state, WitnessConfig::default())?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(async {
        // Signals are caught from here on, before anyone learns where we listen.
        let mut int = signal(SignalKind::interrupt()).context("catching SIGINT")?;
        let mut term = signal(SignalKind::terminate()).context("catching SIGTERM")?;
        let listener =
            tokio::net::TcpListener::bind(a.listen).await.with_context(|| format!("binding {}", a.listen))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        crate::outln!("listening on http://{addr}");
        let _ = std::io::stdout().flush();
        let shutdown = async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            tracing::info!("shutting down");
        };
        witness.run(listener, shutdown).await.context("serving")
    })
}
