//! Embedding the updater in an application without an async runtime.
//!
//! ```sh
//! cargo run -p dare-updater --example embed_blocking -- http://127.0.0.1:8080/app.dare "$(cat release.key.pub)" /tmp/app-state /tmp/app
//! ```

use dare_container::keys::VerifierKey;
use dare_updater::{Status, UpdaterBuilder, blocking};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mirror, key, state, install] = args.as_slice() else {
        eprintln!("usage: embed_blocking MIRROR_URL VERIFIER_KEY STATE_DIR INSTALL_DIR");
        std::process::exit(2);
    };
    let key: VerifierKey = key.trim().parse()?;
    let updater = blocking::Updater::new(
        UpdaterBuilder::new().mirror(mirror.clone()).trust(key).state_dir(state).install_dir(install),
    )?;
    let outcome = updater.update()?;
    match outcome.status {
        Status::Updated => println!(
            "updated {} to {} ({} bytes in {} requests)",
            outcome.target, outcome.version, outcome.bytes_fetched, outcome.requests
        ),
        Status::UpToDate => println!("{} {} is up to date", outcome.target, outcome.version),
        Status::Available => println!("{} is available", outcome.version),
        // Status is non_exhaustive: a later version may report more.
        status => println!("{} {}", outcome.version, status.as_str()),
    }
    Ok(())
}
