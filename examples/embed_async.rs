//! Embedding the updater in an async (tokio) application: check on start,
//! update in the background, report progress.
//!
//! ```sh
//! cargo run --example embed_async -- http://127.0.0.1:8080/app.dare "$(cat release.key.pub)" /tmp/app-state /tmp/app
//! ```

use std::sync::Arc;
use std::time::Duration;

use dare_container::keys::VerifierKey;
use dare_updater::{Event, Status, UpdateError, UpdaterBuilder};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mirror, key, state, install] = args.as_slice() else {
        eprintln!("usage: embed_async MIRROR_URL VERIFIER_KEY STATE_DIR INSTALL_DIR");
        std::process::exit(2);
    };
    let key: VerifierKey = key.trim().parse()?;
    let updater = UpdaterBuilder::new()
        .mirror(mirror.clone())
        .trust(key)
        .state_dir(state)
        .install_dir(install)
        .max_age(Duration::from_secs(7 * 24 * 3600))
        .progress(Arc::new(|e: Event| {
            if let Event::Found { version, bytes } = e {
                eprintln!("downloading {version} ({bytes} bytes)");
            }
        }))
        .build()?;
    match updater.check().await {
        Ok(o) if o.status == Status::Available => {
            let done = updater.update().await?;
            println!("updated to {} in {}", done.version, updater.install_dir().join("current").display());
        }
        Ok(o) => println!("{} {} is up to date", o.target, o.version),
        // Each defence has its own error; an app can react differently.
        Err(UpdateError::Freeze { age_secs, .. }) => eprintln!("the update feed is {age_secs} s old; trying later"),
        Err(e @ (UpdateError::Rollback(_) | UpdateError::Fork(_) | UpdateError::BadSignature(_))) => {
            eprintln!("refusing an update that failed verification: {e}");
        }
        Err(e) => return Err(e.into()),
    }
    Ok(())
}
