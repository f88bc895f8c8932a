//! One module per subcommand; `run` dispatches. `serve`, `witness` and
//! `demo` run the mirror's server, which is Unix-only (sendfile, openat2); on
//! Windows they are not commands at all.

#[cfg(unix)]
mod demo;
mod extract;
mod init;
mod keygen;
mod keys;
mod ls;
mod publish;
mod seal;
#[cfg(unix)]
mod serve;
mod update;
mod verify;
#[cfg(unix)]
mod witness;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use dare_container::keys::{SigningKey, VerifierKey};

/// Signed, append-only release containers: publish, mirror, update.
#[derive(Debug, Parser)]
#[command(name = "dare", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate an Ed25519 signing key and its verifier key (or a witness's key).
    Keygen(keygen::Args),
    /// Create a new container: genesis, an empty manifest and a seal.
    Init(init::Args),
    /// Rotate a container's trust root: add, remove or replace signing keys.
    Keys(keys::Args),
    /// Append one release (every target's build) to a container and seal it.
    Publish(publish::Args),
    /// Append a fresh seal (a new signed time) without new entries.
    Seal(seal::Args),
    /// Check every frame, leaf, payload, tile and seal of a container.
    Verify(verify::Args),
    /// List the releases in a container and its latest seal.
    Ls(ls::Args),
    /// Verify and write one build's files into a directory.
    Extract(extract::Args),
    /// Serve a directory of containers over HTTP with byte ranges; sync from upstreams.
    #[cfg(unix)]
    Serve(serve::Args),
    /// Check for and install the newest build from untrusted mirrors.
    Update(update::Args),
    /// Run a C2SP tlog-witness: cosign the checkpoints of the given logs when they are consistent.
    #[cfg(unix)]
    Witness(witness::Args),
    /// Publish, serve and update on loopback with generated builds, and report what happened.
    #[cfg(unix)]
    Demo(demo::Args),
}

impl Command {
    /// Whether the command was asked for JSON output.
    pub fn json(&self) -> bool {
        match self {
            Command::Verify(a) => a.json,
            Command::Ls(a) => a.json,
            Command::Publish(a) => a.json,
            Command::Update(a) => a.json,
            Command::Keygen(_) | Command::Init(_) | Command::Keys(_) | Command::Seal(_) | Command::Extract(_) => false,
            #[cfg(unix)]
            Command::Serve(_) | Command::Demo(_) | Command::Witness(_) => false,
        }
    }

    /// The log level when `DARE_LOG` is not set.
    pub fn default_log_level(&self) -> &'static str {
        match self {
            // The access log and sync events are the server's output.
            #[cfg(unix)]
            Command::Serve(_) | Command::Witness(_) => "info",
            _ => "warn",
        }
    }
}

pub fn run(command: Command) -> Result<()> {
    match command {
        Command::Keygen(a) => keygen::run(a),
        Command::Init(a) => init::run(a),
        Command::Keys(a) => keys::run(a),
        Command::Verify(a) => verify::run(a),
        Command::Ls(a) => ls::run(a),
        Command::Publish(a) => publish::run(a),
        Command::Seal(a) => seal::run(a),
        Command::Extract(a) => extract::run(a),
        Command::Update(a) => update::run(a),
        #[cfg(unix)]
        Command::Serve(a) => serve::run(a),
        #[cfg(unix)]
        Command::Demo(a) => demo::run(a),
        #[cfg(unix)]
        Command::Witness(a) => witness::run(a),
    }
}

/// Reads a signing key file written by `dare keygen`.
pub fn load_signing_key(path: &Path) -> Result<SigningKey> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading key {}", path.display()))?;
    SigningKey::parse(&text).with_context(|| format!("key {}", path.display()))
}

/// A verifier key given as its text (`name+hexid+base64`) or as a file holding it.
pub fn load_verifier(arg: &str) -> Result<VerifierKey> {
    match VerifierKey::parse(arg.trim()) {
        Ok(k) => return Ok(k),
        Err(e @ dare_container::keys::KeyError::PrivateKey) => {
            // The secret is on the command line: name the flag, never echo the key.
            return Err(anyhow::Error::new(e).context("--trust"));
        }
        Err(_) => {}
    }
    let path = PathBuf::from(arg);
    if !path.exists() {
        bail!("--trust {arg}: neither a verifier key (name+hexid+base64) nor a file");
    }
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    VerifierKey::parse(text.trim()).with_context(|| format!("--trust {}", path.display()))
}

/// Verifier keys from repeated `--trust` arguments.
pub fn load_verifiers(args: &[String]) -> Result<Vec<VerifierKey>> {
    args.iter().map(|a| load_verifier(a)).collect()
}

/// The signed time: `--time`, else `SOURCE_DATE_EPOCH`, else now.
pub fn signed_time(flag: Option<u64>) -> Result<u64> {
    if let Some(t) = flag {
        return Ok(t);
    }
    if let Ok(v) = std::env::var("SOURCE_DATE_EPOCH") {
        return v.trim().parse().with_context(|| format!("SOURCE_DATE_EPOCH={v} is not a number of seconds"));
    }
    Ok(std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_secs())
}

/// Recipients of a private channel: each argument an `age1...` string or a
/// file of them.
pub fn load_recipients(args: &[String]) -> Result<dare_container::crypt::Recipients> {
    let mut texts = Vec::with_capacity(args.len());
    for a in args {
        if a.starts_with("age1") {
            texts.push(a.clone());
        } else {
            let text = std::fs::read_to_string(a)
                .with_context(|| format!("--encrypt-to {a}: neither an age1... recipient nor a readable file"))?;
            texts.push(text);
        }
    }
    dare_container::crypt::Recipients::parse(texts.iter().map(String::as_str)).context("--encrypt-to")
}

/// An age identity file (`AGE-SECRET-KEY-1...`, as `dare keygen --encryption`
/// or `age-keygen` writes it).
pub fn load_identities(path: &std::path::Path) -> Result<dare_container::crypt::Identities> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading the identity {}", path.display()))?;
    dare_container::crypt::Identities::parse(&text).with_context(|| format!("the identity {}", path.display()))
}
