//! dare-publisher: build releases and append them to a dare container.
//!
//! A release engineer's CI runs [`publish`] once per release with every
//! target's build: each `TRIPLE=PATH` artifact (a file or a directory) is
//! gathered ([`release`]), streamed through multi-threaded zstd into a staging
//! file while both sides are hashed ([`compress`]), and appended as entries,
//! each target's next to each other; then the manifest, tiles and a signed
//! seal. Everything is checked before a byte is written, the container is
//! locked while appending, and a failure or a crash leaves the previous
//! release intact. [`heartbeat`] appends a fresh seal; [`extract`] verifies
//! and writes one build into a directory.
//!
//! ```no_run
//! use dare_publisher::{Artifact, PublishOptions, publish};
//! use dare_container::keys::SigningKey;
//!
//! let key = SigningKey::parse(&std::fs::read_to_string("release.key")?)?;
//! let artifacts = vec!["x86_64-unknown-linux-gnu=target/release/app".parse::<Artifact>()?];
//! let opts = PublishOptions::new("1.2.0", artifacts, 1_764_057_600);
//! let report = publish("app.dare".as_ref(), &[&key], &opts, &mut |_| {})?;
//! println!("sealed tree size {}", report.seal.size);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

pub mod compress;
pub mod error;
pub mod extract;
pub mod publish;
pub mod release;
pub mod rotate;
pub mod seal;

pub use error::PublishError;
pub use extract::{ExchangeOpener, ExtractOptions, ExtractReport, extract};
pub use publish::{PublishEvent, PublishOptions, PublishReport, TargetReport, publish, publish_cosigned};
pub use release::{Artifact, SourceFile, gather};
pub use rotate::{RotateOptions, RotateReport, rotate, rotate_cosigned};
pub use seal::{SealOptions, SealReport, heartbeat, seal, seal_cosigned};
