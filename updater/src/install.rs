//! Installing a verified build atomically.
//!
//! The install directory holds `versions/<version>/` for the new build and the
//! one before it, and `current`, which names one of them (a symlink on Unix,
//! a small pointer file on Windows; see [`current_dir`]). A new build is
//! assembled in a temporary directory under `versions/` ([`Incoming`]):
//! files the installed build already has are linked (or copied) from it and
//! hashed, never trusted unhashed; fetched files are moved in from the state
//! directory. It is then renamed to its final name, and `current` is switched
//! by renaming a new link (or pointer file) over it: one atomic step. A kill
//! at any instant leaves `current` pointing at the old build or the new one,
//! never at a mix.
//!
//! Nothing here follows a link out of the install directory: `versions` and
//! every version directory must be real directories, checked with
//! `symlink_metadata`. Only what the updater made is ever removed: a version
//! directory is removed only when `.dare-installed/<name>` (written before
//! the directory got its name) says the updater installed it. It is renamed
//! aside before it is deleted, and deleting is best effort: on Windows a
//! build whose program is still running cannot be renamed or deleted, so it
//! stays until a later update, and the update does not fail for it.

mod current;

use std::fs;
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};

use dare_container::hashio::HashingReader;
use dare_container::header::Sha256Hex;

use crate::error::UpdateError;
use crate::state::sync_dir;

/// The `current` link of an install directory: a symlink on Unix, a pointer
/// file holding `versions/<name>` on Windows. Read it with [`current_dir`].
pub fn current_link(install_dir: &Path) -> PathBuf {
    install_dir.join("current")
}

/// The version `current` points at, if any.
pub fn current_version(install_dir: &Path) -> Option<String> {
    current_dir_name(install_dir).map(|n| n.split('~').next().unwrap_or_default().to_string())
}

/// The directory of the build `current` points at, if any: where an app
/// finds its live build, on every platform.
pub fn current_dir(install_dir: &Path) -> Option<PathBuf> {
    let dir = current_dir_name(install_dir).map(|n| install_dir.join("versions").join(n))?;
    // A link (or `versions` being one) is not followed out of the install directory.
    let real = |d: &Path| fs::symlink_metadata(d).is_ok_and(|m| m.is_dir());
    (real(&install_dir.join("versions")) && real(&dir)).then_some(dir)
}

/// The directory under `versions/` that `current` points at: the version,
/// or `<version>~N` when that version was installed again (semver has no `~`).
fn current_dir_name(install_dir: &Path) -> Option<String> {
    let target = current::read(&current_link(install_dir))?;
    let name = target.file_name()?.to_str()?.to_string();
    (target.parent()? == Path::new("versions")).then_some(name)
}

/// The SHA-256 of a file and its length.
pub(crate) fn hash_file(path: &Path) -> io::Result<(Sha256Hex, u64)> {
    let mut r = HashingReader::new(BufReader::with_capacity(1 << 20, fs::File::open(path)?));
    io::copy(&mut r, &mut io::sink())?;
    let (sha, n, _) = r.finish();
    Ok((Sha256Hex(sha), n))
}

/// A new build being assembled under `versions/`.
#[derive(Debug)]
pub struct Incoming {
    install_dir: PathBuf,
    version: String,
    tmp: PathBuf,
    done: bool,
    /// Directories this made (the install directory, `versions/`), removed
    /// again if the install does not finish and they are empty.
    made: Vec<PathBuf>,
}

impl Incoming {
    /// Starts assembling `version` in `install_dir`.
    pub fn new(install_dir: &Path, version: &str) -> Result<Incoming, UpdateError> {
        if version.is_empty() || version.contains('/') || version.starts_with('.') {
            return Err(UpdateError::State(format!("`{version}` cannot name a directory")));
        }
        // Refuse before creating anything: a refusal leaves the install directory as it was.
        current::check_replaceable(&current_link(install_dir))?;
        let versions = install_dir.join("versions");
        refuse_link(&versions)?;
        let made: Vec<PathBuf> =
            [versions.clone(), install_dir.to_path_buf()].into_iter().filter(|d| !d.exists()).collect();
        fs::create_dir_all(&versions).map_err(|e| UpdateError::io("creating", &versions, e))?;
        let tmp = versions.join(format!(".incoming-{version}-{}", std::process::id()));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(|e| UpdateError::io("removing", &tmp, e))?;
        }
        fs::create_dir(&tmp).map_err(|e| UpdateError::io("creating", &tmp, e))?;
        Ok(Incoming { install_dir: install_dir.to_path_buf(), version: version.to_string(), tmp, done: false, made })
    }

    fn dest(&self, path: &str) -> Result<PathBuf, UpdateError> {
        let dest = self.tmp.join(path);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(|e| UpdateError::io("creating", parent, e))?;
        }
        Ok(dest)
    }

    /// Takes `path` from the installed file `from`, which must hash to
    /// `sha256`: a hard link when its permission bits are already `mode`
    /// (the build is then stored once on disk), a copy otherwise. Returns
    /// whether it did; a file that does not hash to `sha256` is not used.
    pub fn reuse(&mut self, path: &str, from: &Path, mode: u32, sha256: Sha256Hex) -> Result<bool, UpdateError> {
        let dest = self.dest(path)?;
        let same_mode = fs::symlink_metadata(from)
            .map(|m| m.file_type().is_file() && dare_container::fsys::mode_matches(&m, mode))
            .unwrap_or(false);
        let linked = same_mode && fs::hard_link(from, &dest).is_ok();
        if !linked {
            match fs::symlink_metadata(from) {
                Ok(m) if m.file_type().is_file() => {}
                _ => return Ok(false),
            }
            if fs::copy(from, &dest).is_err() {
                let _ = fs::remove_file(&dest);
                return Ok(false);
            }
        }
        // Never trusted unhashed: what is in the new build is what was checked.
        match hash_file(&dest) {
            Ok((sha, _)) if sha == sha256 => {}
            _ => {
                fs::remove_file(&dest).map_err(|e| UpdateError::io("removing", &dest, e))?;
                return Ok(false);
            }
        }
        if !linked {
            dare_container::fsys::set_mode(&dest, mode)
                .map_err(|e| UpdateError::io("setting permissions of", &dest, e))?;
        }
        Ok(true)
    }

    /// Places a verified staged file at `path`: moved when `last`, else copied.
    pub fn place(&mut self, path: &str, staged: &Path, mode: u32, last: bool) -> Result<(), UpdateError> {
        let dest = self.dest(path)?;
        if last {
            move_file(staged, &dest)?;
        } else {
            fs::copy(staged, &dest).map_err(|e| UpdateError::io("copying", &dest, e))?;
        }
        dare_container::fsys::set_mode(&dest, mode).map_err(|e| UpdateError::io("setting permissions of", &dest, e))
    }

    /// Renames the assembled build into place and switches `current` to it.
    /// Returns the directory of the new build.
    pub fn commit(mut self) -> Result<PathBuf, UpdateError> {
        let result = self.switch();
        if result.is_ok() {
            self.done = true;
        }
        result
    }

    fn switch(&mut self) -> Result<PathBuf, UpdateError> {
        let install_dir = &self.install_dir;
        let version = &self.version;
        let versions = install_dir.join("versions");
        let link = current_link(install_dir);
        sync_tree(&self.tmp)?;
        let previous_dir = current_dir_name(install_dir);
        let previous = current_version(install_dir);
        // Re-installing a version (an earlier run installed it but was killed
        // before recording it) goes to a fresh directory, so `current` always
        // names a complete build, even between the two renames.
        refuse_link(&versions)?;
        let owned = install_dir.join(OWNED);
        // `current` is ours: what it points at was installed by an updater
        // (perhaps one older than these marks), so it may be pruned later.
        if let Some(prev) = &previous_dir
            && fs::symlink_metadata(versions.join(prev)).is_ok_and(|m| m.is_dir())
        {
            mark(&owned, prev)?;
        }
        let mut name = version.to_string();
        if previous_dir.as_deref() != Some(version) && is_owned(&versions, &owned, &name) {
            // A leftover of ours nothing points at (a run killed before
            // switching). If it cannot go (in use), the build goes beside it.
            discard(&versions, &owned, &name);
        }
        // Anything else of that name (the build `current` names, or a directory
        // the updater did not make) stays; this build goes beside it.
        let mut n = 0u32;
        while fs::symlink_metadata(versions.join(&name)).is_ok() {
            n += 1;
            name = format!("{version}~{n}");
        }
        mark(&owned, &name)?;
        let final_dir = versions.join(&name);
        fs::rename(&self.tmp, &final_dir).map_err(|e| UpdateError::io("moving into place", &final_dir, e))?;
        sync_dir(&versions)?;
        current::switch(&link, &name)?;
        // When `current` already named this version (an earlier run was killed
        // after switching it but before recording it), only that old copy goes.
        if previous.as_deref() == Some(version.as_str()) {
            // The old copy of this same version is replaced; which build came
            // before it is not known here, so nothing else is removed.
            if let Some(old) = &previous_dir
                && is_owned(&versions, &owned, old)
            {
                discard(&versions, &owned, old);
            }
        } else {
            prune(&versions, &owned, &name, previous_dir.as_deref());
        }
        Ok(final_dir)
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_dir_all(&self.tmp);
            // Only if empty: a failed first install leaves nothing behind.
            for d in &self.made {
                let _ = fs::remove_dir(d);
            }
        }
    }
}

/// Where the updater marks the version directories it installed.
const OWNED: &str = ".dare-installed";

/// Refuses `dir` when it is a symbolic link (or not a directory): the
/// updater never follows a link out of the install directory.
fn refuse_link(dir: &Path) -> Result<(), UpdateError> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_symlink() => Err(UpdateError::State(format!(
            "{} is a symbolic link; the updater does not follow links out of the install directory \
             (make it a real directory, or install elsewhere)",
            dir.display()
        ))),
        Ok(m) if !m.is_dir() => {
            Err(UpdateError::State(format!("{} is not a directory; refusing to install into it", dir.display())))
        }
        _ => Ok(()),
    }
}

/// Records that the updater installed `versions/<name>`.
fn mark(owned: &Path, name: &str) -> Result<(), UpdateError> {
    refuse_link(owned)?;
    fs::create_dir_all(owned).map_err(|e| UpdateError::io("creating", owned, e))?;
    let m = owned.join(name);
    fs::File::create(&m).map_err(|e| UpdateError::io("creating", &m, e))?;
    sync_dir(owned)
}

/// Whether `versions/<name>` is a real directory the updater installed.
fn is_owned(versions: &Path, owned: &Path, name: &str) -> bool {
    fs::symlink_metadata(versions.join(name)).is_ok_and(|m| m.is_dir())
        && fs::symlink_metadata(owned).is_ok_and(|m| m.is_dir())
        && fs::symlink_metadata(owned.join(name)).is_ok_and(|m| m.is_file())
}

/// Removes every version the updater installed but `keep` and `previous`,
/// and leftovers of its own killed runs (best effort: a leftover old version
/// wastes space but breaks nothing). A directory it did not make stays.
fn prune(versions: &Path, owned: &Path, keep: &str, previous: Option<&str>) {
    let Ok(entries) = fs::read_dir(versions) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name == keep || Some(name.as_str()) == previous {
            continue;
        }
        let leftover =
            (name.starts_with(".incoming-") || name.starts_with(DISCARDED)) && e.file_type().is_ok_and(|t| t.is_dir());
        if leftover {
            let _ = fs::remove_dir_all(e.path());
        } else if is_owned(versions, owned, &name) {
            discard(versions, owned, &name);
        }
    }
}

/// The prefix of a version directory renamed aside to be deleted.
const DISCARDED: &str = ".discarded-";

/// Removes the version directory `versions/<name>` the updater installed,
/// best effort: it is renamed aside first, so the name is free at once and
/// nothing half-deleted keeps it, then deleted. When it cannot be renamed
/// (on Windows: a program in it is running) it stays, still marked as ours,
/// for a later update to remove. Returns whether the name is free.
fn discard(versions: &Path, owned: &Path, name: &str) -> bool {
    let from = versions.join(name);
    let Some(aside) = (0..100u32)
        .map(|i| versions.join(format!("{DISCARDED}{name}-{}-{i}", std::process::id())))
        .find(|p| fs::symlink_metadata(p).is_err())
    else {
        return false;
    };
    if let Err(e) = fs::rename(&from, &aside) {
        tracing::debug!(dir = %from.display(), error = %e, "an old version stays for now (in use?)");
        return false;
    }
    let _ = fs::remove_file(owned.join(name));
    if let Err(e) = fs::remove_dir_all(&aside) {
        tracing::debug!(dir = %aside.display(), error = %e, "an old version is left to remove later");
    }
    true
}

/// Renames, or copies when the state and install directories are on
/// different filesystems.
fn move_file(from: &Path, to: &Path) -> Result<(), UpdateError> {
    match fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::CrossesDevices => {
            fs::copy(from, to).map_err(|e| UpdateError::io("copying", to, e))?;
            dare_container::fsys::sync_file(to).map_err(|e| UpdateError::io("syncing", to, e))?;
            let _ = fs::remove_file(from);
            Ok(())
        }
        Err(e) => Err(UpdateError::io("moving", to, e)),
    }
}

fn sync_tree(dir: &Path) -> Result<(), UpdateError> {
    for e in fs::read_dir(dir).map_err(|e| UpdateError::io("reading", dir, e))? {
        let e = e.map_err(|e| UpdateError::io("reading", dir, e))?;
        let kind = e.file_type().map_err(|err| UpdateError::io("reading", e.path(), err))?;
        if kind.is_dir() {
            sync_tree(&e.path())?;
        } else if kind.is_file() {
            // The files must be on disk before `current` points at them.
            dare_container::fsys::sync_file(&e.path()).map_err(|err| UpdateError::io("syncing", e.path(), err))?;
        }
    }
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Installs `version`, one program `bin/app`, into `install`.
    fn install(install: &Path, staging: &Path, version: &str) -> PathBuf {
        let staged = staging.join(format!("app-{version}"));
        fs::write(&staged, format!("app {version}\n")).unwrap();
        let mut incoming = Incoming::new(install, version).unwrap();
        incoming.place("bin/app", &staged, 0o755, true).unwrap();
        incoming.commit().unwrap()
    }

    /// Opens a file the way Windows holds a running program: others may
    /// read it, but not write, rename or delete it.
    fn hold_like_a_running_program(path: &Path) -> fs::File {
        let mut opts = fs::OpenOptions::new();
        opts.read(true);
        #[cfg(windows)]
        {
            use std::os::windows::fs::OpenOptionsExt;
            opts.share_mode(0x1); // FILE_SHARE_READ
        }
        opts.open(path).unwrap()
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> =
            fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    #[test]
    fn an_old_build_in_use_does_not_fail_an_update_and_goes_later() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, staging) = (tmp.path().join("install"), tmp.path().join("staging"));
        fs::create_dir_all(&staging).unwrap();
        install(&dir, &staging, "1.0.0");
        install(&dir, &staging, "1.1.0");
        let held = hold_like_a_running_program(&dir.join("versions/1.0.0/bin/app"));
        // 1.0.0 is pruned now, or (on Windows, where it cannot be renamed
        // or deleted while running) left for later; the update succeeds.
        let live = install(&dir, &staging, "1.2.0");
        assert_eq!(current_dir(&dir), Some(live.clone()));
        assert_eq!(fs::read_to_string(live.join("bin/app")).unwrap(), "app 1.2.0\n");
        assert_eq!(current_version(&dir).as_deref(), Some("1.2.0"));
        drop(held);
        install(&dir, &staging, "1.3.0");
        assert_eq!(names(&dir.join("versions")), ["1.2.0", "1.3.0"]);
        assert_eq!(names(&dir.join(OWNED)), ["1.2.0", "1.3.0"]);
        assert_eq!(names(&dir), [OWNED, "current", "versions"]);
    }

    #[test]
    fn a_leftover_discarded_directory_is_removed_by_the_next_prune() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, staging) = (tmp.path().join("install"), tmp.path().join("staging"));
        fs::create_dir_all(&staging).unwrap();
        install(&dir, &staging, "1.0.0");
        let leftover = dir.join("versions").join(format!("{DISCARDED}0.9.0-1-0"));
        fs::create_dir_all(leftover.join("bin")).unwrap();
        fs::write(leftover.join("bin/app"), b"old").unwrap();
        install(&dir, &staging, "1.1.0");
        assert_eq!(names(&dir.join("versions")), ["1.0.0", "1.1.0"]);
    }
}
