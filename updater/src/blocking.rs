//! A blocking wrapper for applications without an async runtime.

use crate::Outcome;
use crate::config::UpdaterBuilder;
use crate::error::UpdateError;

/// An [`Updater`](crate::Updater) that runs each call on its own small
/// tokio runtime: the current thread, or two workers with the
/// `rt-multi-thread` feature.
pub struct Updater {
    inner: crate::Updater,
    runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for Updater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("blocking::Updater").finish_non_exhaustive()
    }
}

impl Updater {
    /// Builds from a configured builder.
    pub fn new(config: UpdaterBuilder) -> Result<Self, UpdateError> {
        // One thread is enough for one session: it waits on the network and verifies what arrives.
        // With `rt-multi-thread`, hyper's connection tasks read on a second worker while the session
        // hashes and decompresses.
        #[cfg(not(feature = "rt-multi-thread"))]
        let mut builder = tokio::runtime::Builder::new_current_thread();
        #[cfg(feature = "rt-multi-thread")]
        let mut builder = {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(2);
            b
        };
        let runtime =
            builder.enable_all().build().map_err(|e| UpdateError::Config(format!("starting a runtime: {e}")))?;
        Ok(Updater { inner: config.build()?, runtime })
    }

    /// Checks for a newer build without installing anything.
    pub fn check(&self) -> Result<Outcome, UpdateError> {
        self.runtime.block_on(self.inner.check())
    }

    /// Installs the newest build if there is one.
    pub fn update(&self) -> Result<Outcome, UpdateError> {
        self.runtime.block_on(self.inner.update())
    }
}
