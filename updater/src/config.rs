//! Building an [`Updater`](crate::Updater).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use dare_container::cosign::{WitnessKey, WitnessPolicy};
use dare_container::header::{validate_channel, validate_known_target};
use dare_container::keys::{TrustRoot, VerifierKey};

use crate::error::UpdateError;
use crate::fetch::RetryPolicy;
use crate::progress::Progress;
use crate::transport::{Timeouts, TlsRoots, Transport, transport_for_roots};

/// The default maximum age of a seal: 14 days.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(14 * 24 * 3600);

/// The target triple this binary was built for.
pub fn host_target() -> String {
    target_lexicon::HOST.to_string()
}

/// Everything an updater needs.
pub(crate) struct Config {
    pub(crate) transports: Vec<Arc<dyn Transport>>,
    pub(crate) trust: Vec<VerifierKey>,
    pub(crate) threshold: u32,
    /// Witnesses that must cosign a checkpoint, if any.
    pub(crate) witnesses: Option<WitnessPolicy>,
    pub(crate) target: String,
    pub(crate) channel: String,
    pub(crate) state_dir: PathBuf,
    pub(crate) install_dir: PathBuf,
    pub(crate) retry: RetryPolicy,
    pub(crate) timeouts: Timeouts,
    pub(crate) max_age: Duration,
    pub(crate) origin: Option<String>,
    pub(crate) progress: Option<Arc<dyn Progress>>,
    pub(crate) clock: fn() -> u64,
    /// The identities that open private channels' releases.
    #[cfg(feature = "encryption")]
    pub(crate) identities: Option<Arc<dare_container::crypt::Identities>>,
}

fn system_clock() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Configures an [`Updater`](crate::Updater): mirrors, trusted keys,
/// target, channel, directories, timeouts and the maximum seal age.
#[derive(Default)]
pub struct UpdaterBuilder {
    mirrors: Vec<String>,
    transports: Vec<Arc<dyn Transport>>,
    trust: Vec<VerifierKey>,
    threshold: Option<u32>,
    witnesses: Vec<WitnessKey>,
    witness_threshold: Option<usize>,
    target: Option<String>,
    channel: Option<String>,
    state_dir: Option<PathBuf>,
    install_dir: Option<PathBuf>,
    timeouts: Option<Timeouts>,
    tls_roots: TlsRoots,
    retry: Option<RetryPolicy>,
    max_age: Option<Duration>,
    origin: Option<String>,
    progress: Option<Arc<dyn Progress>>,
    clock: Option<fn() -> u64>,
    #[cfg(feature = "encryption")]
    identities: Option<Arc<dare_container::crypt::Identities>>,
}

impl std::fmt::Debug for UpdaterBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpdaterBuilder").field("mirrors", &self.mirrors).field("target", &self.target).finish()
    }
}

impl UpdaterBuilder {
    /// An empty configuration.
    pub fn new() -> Self {
        Self::default()
    }

    /// A mirror: an `http(s)://` URL of the container, a `file://` URL or a path. Repeat for failover.
    pub fn mirror(mut self, location: impl Into<String>) -> Self {
        self.mirrors.push(location.into());
        self
    }

    /// A mirror reached through a custom [`Transport`] (an in-memory fake in tests).
    pub fn transport(mut self, t: Arc<dyn Transport>) -> Self {
        self.transports.push(t);
        self
    }

    /// A trusted publisher key. Repeat for several.
    pub fn trust(mut self, key: VerifierKey) -> Self {
        self.trust.push(key);
        self
    }

    /// How many distinct trusted keys must sign a checkpoint (default 1).
    pub fn threshold(mut self, k: u32) -> Self {
        self.threshold = Some(k);
        self
    }

    /// A witness whose cosignature a checkpoint needs (C2SP
    /// `cosignature/v1`). Repeat for several; with any, a checkpoint without
    /// [`witness_threshold`](Self::witness_threshold) valid cosignatures is
    /// refused with [`UpdateError::Witness`].
    pub fn witness(mut self, key: WitnessKey) -> Self {
        self.witnesses.push(key);
        self
    }

    /// How many distinct witnesses must cosign (default: every one given).
    pub fn witness_threshold(mut self, k: usize) -> Self {
        self.witness_threshold = Some(k);
        self
    }

    /// The target triple (default: the host's, [`host_target`]).
    pub fn target(mut self, triple: impl Into<String>) -> Self {
        self.target = Some(triple.into());
        self
    }

    /// The channel (default `stable`).
    pub fn channel(mut self, name: impl Into<String>) -> Self {
        self.channel = Some(name.into());
        self
    }

    /// Where the replica and the verified checkpoint live (required).
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }

    /// Where builds are installed (required): `versions/<v>/` and a `current` link.
    pub fn install_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.install_dir = Some(dir.into());
        self
    }

    /// Timeouts, the minimum transfer rate and the per-mirror deadline (see [`Timeouts`] for the
    /// defaults and why).
    pub fn timeouts(mut self, t: Timeouts) -> Self {
        self.timeouts = Some(t);
        self
    }

    /// The root certificates HTTPS mirrors are checked against (default: [`TlsRoots::default`]).
    pub fn tls_roots(mut self, roots: TlsRoots) -> Self {
        self.tls_roots = roots;
        self
    }

    /// Retries per mirror and backoff.
    pub fn retry(mut self, r: RetryPolicy) -> Self {
        self.retry = Some(r);
        self
    }

    /// The oldest signed time accepted (default 14 days): an older seal is refused as a possible freeze.
    pub fn max_age(mut self, d: Duration) -> Self {
        self.max_age = Some(d);
        self
    }

    /// Require this checkpoint origin (default: pinned at the first update).
    pub fn origin(mut self, origin: impl Into<String>) -> Self {
        self.origin = Some(origin.into());
        self
    }

    /// Receive progress events.
    pub fn progress(mut self, p: Arc<dyn Progress>) -> Self {
        self.progress = Some(p);
        self
    }

    /// Replace the clock (Unix seconds), for tests of freshness.
    pub fn clock(mut self, now: fn() -> u64) -> Self {
        self.clock = Some(now);
        self
    }

    /// The age X25519 identities (`AGE-SECRET-KEY-1...`) that open the
    /// releases of a private channel (FORMAT.md section 13): the updater
    /// unwraps the release's content key with the first one that is a
    /// recipient. Without one, a private release fails with
    /// [`UpdateError::Identity`] before any payload is fetched.
    #[cfg(feature = "encryption")]
    pub fn identity(mut self, ids: dare_container::crypt::Identities) -> Self {
        self.identities = Some(Arc::new(ids));
        self
    }

    /// [`identity`](Self::identity) from the text of an identity file (as
    /// `age-keygen` or `dare keygen --encryption` writes it).
    #[cfg(feature = "encryption")]
    pub fn identity_text(self, text: &str) -> Result<Self, UpdateError> {
        let ids = dare_container::crypt::Identities::parse(text)
            .map_err(|e| UpdateError::Identity(format!("the identity file: {e}")))?;
        Ok(self.identity(ids))
    }

    /// Checks the configuration and builds the updater.
    pub fn build(self) -> Result<crate::Updater, UpdateError> {
        let cfg = |m: &str| UpdateError::Config(m.to_string());
        let timeouts = self.timeouts.unwrap_or_default();
        if timeouts.connect.is_zero() || timeouts.idle.is_zero() {
            return Err(cfg("the connect and idle timeouts must be longer than zero"));
        }
        if timeouts.min_rate > 0 && timeouts.rate_window.is_zero() {
            return Err(cfg("a minimum transfer rate needs a rate window longer than zero"));
        }
        let mut transports = self.transports;
        for m in &self.mirrors {
            transports.push(
                transport_for_roots(m, timeouts, &self.tls_roots).map_err(|e| UpdateError::Config(e.to_string()))?,
            );
        }
        if transports.is_empty() {
            return Err(cfg("no mirror given"));
        }
        if self.trust.is_empty() {
            return Err(cfg("no trusted key given"));
        }
        let threshold = self.threshold.unwrap_or(1);
        if threshold == 0 || threshold as usize > self.trust.len() {
            return Err(UpdateError::Config(format!(
                "threshold {threshold} needs between 1 and {} trusted keys",
                self.trust.len()
            )));
        }
        // The checkpoint is verified against exactly this trust root: a key given twice would
        // otherwise make every update fail as a bad signature.
        TrustRoot::new(self.trust.clone(), threshold)
            .map_err(|e| UpdateError::Config(format!("the trusted keys: {e}")))?;
        let witnesses = match (self.witnesses.is_empty(), self.witness_threshold) {
            (true, None) => None,
            (true, Some(_)) => return Err(cfg("a witness threshold without witness keys")),
            (false, k) => {
                let k = k.unwrap_or(self.witnesses.len());
                Some(
                    WitnessPolicy::new(self.witnesses, k)
                        .map_err(|e| UpdateError::Config(format!("the witnesses: {e}")))?,
                )
            }
        };
        let target = self.target.unwrap_or_else(host_target);
        validate_known_target(&target).map_err(|e| UpdateError::Config(e.to_string()))?;
        let channel = self.channel.unwrap_or_else(|| "stable".into());
        validate_channel(&channel).map_err(|e| UpdateError::Config(e.to_string()))?;
        let state_dir = self.state_dir.ok_or_else(|| cfg("no state directory given"))?;
        let install_dir = self.install_dir.ok_or_else(|| cfg("no install directory given"))?;
        let config = Config {
            transports,
            trust: self.trust,
            threshold,
            witnesses,
            target,
            channel,
            state_dir,
            install_dir,
            retry: self.retry.unwrap_or_default(),
            timeouts,
            max_age: self.max_age.unwrap_or(DEFAULT_MAX_AGE),
            origin: self.origin,
            progress: self.progress,
            clock: self.clock.unwrap_or(system_clock),
            #[cfg(feature = "encryption")]
            identities: self.identities,
        };
        Ok(crate::Updater::new(config))
    }
}
