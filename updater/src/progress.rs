//! Progress reporting: the library calls a [`Progress`] the application
//! provides (the `dare` CLI draws it with indicatif). Never printed here.

/// What the updater is doing.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Reading the signed tail from a mirror.
    Checking,
    /// A newer build was found; `bytes` of entries will be fetched.
    Found {
        /// The version found.
        version: String,
        /// Stored bytes of its entries.
        bytes: u64,
    },
    /// More entry bytes arrived (a running total).
    Fetched {
        /// Entry bytes received so far.
        bytes: u64,
    },
    /// Everything fetched verified; installing.
    Installing,
}

/// Receives [`Event`]s. Must be cheap: it is called from the fetch path.
pub trait Progress: Send + Sync {
    /// One event.
    fn event(&self, event: Event);
}

impl<F: Fn(Event) + Send + Sync> Progress for F {
    fn event(&self, event: Event) {
        self(event)
    }
}
