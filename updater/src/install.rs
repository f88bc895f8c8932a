//! Installing a verified build atomically.
//!
//! The install directory holds `versions/<version>/` for the new build and the
//! one before it, and `current`, a symlink to one of them. A new build is
//! assembled in a temporary directory under `versions/`, renamed to its final
//! name, and `current` is switched by renaming a new symlink over it: one
//! atomic step. A kill at any instant leaves `current` pointing at the old
//! build or the new one, never at a mix.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::UpdateError;
use crate::state::sync_dir;

/// A verified file waiting in the state directory.
#[derive(Clone, Debug)]
pub struct StagedFile {
    /// Its path in the build, `/`-separated (validated by the signed header).
    pub path: String,
    /// Where it waits.
    pub staged: PathBuf,
    /// Its permission bits.
    pub mode: u32,
}

/// The `current` link of an install directory.
pub fn current_link(install_dir: &Path) -> PathBuf {
    install_dir.join("current")
}

/// The version `current` points at, if any.
pub fn current_version(install_dir: &Path) -> Option<String> {
    current_dir_name(install_dir).map(|n| n.split('~').next().unwrap_or_default().to_string())
}

/// The directory under `versions/` that `current` points at: the version,
/// or `<version>~N` when that version was installed again (semver has no `~`).
fn current_dir_name(install_dir: &Path) -> Option<String> {
    let target = fs::read_link(current_link(install_dir)).ok()?;
    let name = target.file_name()?.to_str()?.to_string();
    (target.parent()? == Path::new("versions")).then_some(name)
}

/// Installs `files` as `version` and switches `current` to it. Returns the
/// directory of the new build.
pub fn install(install_dir: &Path, version: &str, files: &[StagedFile]) -> Result<PathBuf, UpdateError> {
    if version.is_empty() || version.contains('/') || version.starts_with('.') {
        return Err(UpdateError::State(format!("`{version}` cannot name a directory")));
    }
    // Refuse before creating anything: a refusal leaves the install directory as it was.
    let link = current_link(install_dir);
    if let Ok(m) = fs::symlink_metadata(&link)
        && !m.file_type().is_symlink()
    {
        return Err(UpdateError::State(format!(
            "{} exists and is not a symlink; refusing to replace it",
            link.display()
        )));
    }
    let versions = install_dir.join("versions");
    fs::create_dir_all(&versions).map_err(|e| UpdateError::io("creating", &versions, e))?;
    let previous_dir = current_dir_name(install_dir);
    let previous = current_version(install_dir);
    let tmp = versions.join(format!(".incoming-{version}-{}", std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(|e| UpdateError::io("removing", &tmp, e))?;
    }
    fs::create_dir(&tmp).map_err(|e| UpdateError::io("creating", &tmp, e))?;
    let placed = (|| {
        for f in files {
            let dest = tmp.join(&f.path);
            if let Some(parent) = dest.parent() {
                fs::create_dir_all(parent).map_err(|e| UpdateError::io("creating", parent, e))?;
            }
            move_file(&f.staged, &dest)?;
            fs::set_permissions(&dest, fs::Permissions::from_mode(f.mode & 0o777))
                .map_err(|e| UpdateError::io("setting permissions of", &dest, e))?;
        }
        sync_tree(&tmp)
    })();
    if let Err(e) = placed {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    // Re-installing a version (an earlier run installed it but was killed
    // before recording it) goes to a fresh directory, so `current` always
    // names a complete build, even between the two renames.
    let mut name = version.to_string();
    if previous_dir.as_deref() == Some(version) {
        let mut n = 0u32;
        while versions.join(&name).exists() {
            n += 1;
            name = format!("{version}~{n}");
        }
    } else if versions.join(&name).exists() {
        // A leftover nothing points at (a run killed before switching).
        let stale = versions.join(&name);
        fs::remove_dir_all(&stale).map_err(|e| UpdateError::io("removing", &stale, e))?;
    }
    let final_dir = versions.join(&name);
    fs::rename(&tmp, &final_dir).map_err(|e| UpdateError::io("moving into place", &final_dir, e))?;
    sync_dir(&versions)?;
    let new_link = install_dir.join(format!(".current-{}", std::process::id()));
    let _ = fs::remove_file(&new_link);
    std::os::unix::fs::symlink(Path::new("versions").join(&name), &new_link)
        .map_err(|e| UpdateError::io("creating", &new_link, e))?;
    fs::rename(&new_link, &link).map_err(|e| UpdateError::io("switching", &link, e))?;
    sync_dir(install_dir)?;
    // When `current` already named this version (an earlier run was killed
    // after switching it but before recording it), only that old copy goes.
    if previous.as_deref() == Some(version) {
        // The old copy of this same version is replaced; which build came
        // before it is not known here, so nothing else is removed.
        if let Some(old) = &previous_dir {
            let _ = fs::remove_dir_all(versions.join(old));
        }
    } else {
        prune(&versions, &name, previous_dir.as_deref());
    }
    Ok(final_dir)
}

/// Removes every version but `keep` and `previous` (best effort: a leftover
/// old version wastes space but breaks nothing).
fn prune(versions: &Path, keep: &str, previous: Option<&str>) {
    let Ok(entries) = fs::read_dir(versions) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name == keep || Some(name.as_str()) == previous {
            continue;
        }
        let _ = fs::remove_dir_all(e.path());
    }
}

/// Renames, or copies when the state and install directories are on
/// different filesystems.
fn move_file(from: &Path, to: &Path) -> Result<(), UpdateError> {
    match fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::CrossesDevices => {
            fs::copy(from, to).map_err(|e| UpdateError::io("copying", to, e))?;
            fs::File::open(to).and_then(|f| f.sync_all()).map_err(|e| UpdateError::io("syncing", to, e))?;
            let _ = fs::remove_file(from);
            Ok(())
        }
        Err(e) => Err(UpdateError::io("moving", to, e)),
    }
}

fn sync_tree(dir: &Path) -> Result<(), UpdateError> {
    for e in fs::read_dir(dir).map_err(|e| UpdateError::io("reading", dir, e))? {
        let e = e.map_err(|e| UpdateError::io("reading", dir, e))?;
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            sync_tree(&e.path())?;
        }
    }
    sync_dir(dir)
}
