//! An application that updates itself: on start it checks for a newer build
//! of itself, installs it with dare-updater, and replaces its own executable
//! with the new one (atomically, by rename), then re-executes it.
//!
//! On Windows a running executable cannot be overwritten or deleted, but it
//! can be renamed: the running one is renamed to `<name>.old` first (and
//! removed on a later start), then the new one takes its name.
//!
//! The published build for each target is expected to contain the
//! executable at `bin/<name>` (as `dare publish --artifact TRIPLE=dir/` with
//! `dir/bin/self_update` makes it).
//!
//! ```sh
//! SELF_UPDATE_MIRROR=http://127.0.0.1:8080/app.dare SELF_UPDATE_KEY="$(cat release.key.pub)" \
//!   cargo run --example self_update
//! ```

use std::path::{Path, PathBuf};

use dare_container::keys::VerifierKey;
use dare_updater::{Status, UpdaterBuilder, blocking};

/// This build's version; a real app uses `env!("CARGO_PKG_VERSION")`.
const VERSION: &str = env!("CARGO_PKG_VERSION");

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (Ok(mirror), Ok(key)) = (std::env::var("SELF_UPDATE_MIRROR"), std::env::var("SELF_UPDATE_KEY")) else {
        println!("self_update {VERSION}: set SELF_UPDATE_MIRROR and SELF_UPDATE_KEY to check for updates");
        return Ok(());
    };
    let exe = std::env::current_exe()?;
    // What a previous replacement left on Windows, once nothing runs it.
    let _ = std::fs::remove_file(old_exe(&exe));
    let name = exe.file_name().and_then(|n| n.to_str()).unwrap_or("self_update").to_string();
    let home = data_dir(&exe);
    let key: VerifierKey = key.trim().parse()?;
    let install = home.join("install");
    let updater = blocking::Updater::new(
        UpdaterBuilder::new().mirror(mirror).trust(key).state_dir(home.join("state")).install_dir(&install),
    )?;
    let outcome = updater.update()?;
    if outcome.status != Status::Updated {
        println!("self_update {VERSION}: up to date ({})", outcome.version);
        return Ok(());
    }
    // `current` is a symlink on Unix and a pointer file on Windows;
    // `current_dir` resolves it on both.
    let current = dare_updater::current_dir(&install).ok_or("the update installed no current build")?;
    let new_exe = current.join("bin").join(&name);
    replace_self(&exe, &new_exe)?;
    println!("self_update {VERSION}: replaced myself with {}; restarting", outcome.version);
    let err = exec(&exe);
    Err(err.into())
}

/// Where the updater keeps its state: next to the executable.
fn data_dir(exe: &Path) -> PathBuf {
    exe.parent().unwrap_or(Path::new(".")).join(".self_update")
}

/// Where the running executable goes aside on Windows.
fn old_exe(exe: &Path) -> PathBuf {
    let mut name = exe.as_os_str().to_os_string();
    name.push(".old");
    PathBuf::from(name)
}

/// Copies the verified new executable next to the running one, then renames
/// it over the running one: one atomic step on Unix, where the old inode
/// stays valid for the running process. Windows will not replace a running
/// executable, so there it is renamed aside to `<name>.old` first.
fn replace_self(exe: &Path, new_exe: &Path) -> std::io::Result<()> {
    let mut staged = exe.as_os_str().to_os_string();
    staged.push(".new");
    let staged = PathBuf::from(staged);
    std::fs::copy(new_exe, &staged)?;
    dare_container::fsys::sync_file(&staged)?;
    if cfg!(windows) {
        let old = old_exe(exe);
        let _ = std::fs::remove_file(&old);
        std::fs::rename(exe, &old)?;
        if let Err(e) = std::fs::rename(&staged, exe) {
            // Put the running one back rather than leave no executable.
            let _ = std::fs::rename(&old, exe);
            return Err(e);
        }
        return Ok(());
    }
    std::fs::rename(&staged, exe)
}

/// Runs the new executable in place of this process.
#[cfg(unix)]
fn exec(exe: &Path) -> std::io::Error {
    use std::os::unix::process::CommandExt;
    std::process::Command::new(exe).args(std::env::args_os().skip(1)).exec()
}

/// Windows has no exec: runs the new executable and exits with its status.
#[cfg(windows)]
fn exec(exe: &Path) -> std::io::Error {
    match std::process::Command::new(exe).args(std::env::args_os().skip(1)).status() {
        Ok(status) => std::process::exit(status.code().unwrap_or(1)),
        Err(e) => e,
    }
}
