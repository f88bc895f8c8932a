//! `current`: which build under `versions/` is live, switched in one atomic
//! rename.
//!
//! On Unix it is a symbolic link to `versions/<name>`. Windows needs a
//! privilege to make symbolic links, so there it is a small file holding the
//! text `versions/<name>`, written beside it and renamed over it. Either way
//! a reader sees the old build or the new one, never a mix, and
//! [`super::current_dir`] resolves it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::UpdateError;

/// The longest pointer file read: far more than any `versions/<name>`.
#[cfg(any(windows, test))]
const MAX_POINTER: u64 = 4096;

/// What `current` at `link` points at, relative to the install directory
/// (`versions/<name>`), or `None` when it is missing or not one of ours.
pub(super) fn read(link: &Path) -> Option<PathBuf> {
    #[cfg(unix)]
    {
        fs::read_link(link).ok()
    }
    #[cfg(windows)]
    {
        let meta = fs::symlink_metadata(link).ok()?;
        if !meta.file_type().is_file() {
            return None;
        }
        parse_pointer(&read_bounded(link).ok()?)
    }
}

/// Refuses to replace `link` when it is something the updater did not make:
/// on Unix anything but a symbolic link, on Windows anything but a file.
pub(super) fn check_replaceable(link: &Path) -> Result<(), UpdateError> {
    let Ok(m) = fs::symlink_metadata(link) else { return Ok(()) };
    // On Windows, a file is ours only if it reads as a pointer.
    let (ours, what) = if cfg!(windows) {
        (m.file_type().is_file() && read(link).is_some(), "a pointer file (versions/<name>)")
    } else {
        (m.file_type().is_symlink(), "a symlink")
    };
    if ours {
        Ok(())
    } else {
        Err(UpdateError::State(format!("{} exists and is not {what}; refusing to replace it", link.display())))
    }
}

/// Points `link` at `versions/<name>` in one rename: a new link (or pointer
/// file) is made beside it, then renamed over it.
pub(super) fn switch(link: &Path, name: &str) -> Result<(), UpdateError> {
    let dir = link.parent().unwrap_or(Path::new("."));
    let new_link = dir.join(format!(".current-{}", std::process::id()));
    let _ = fs::remove_file(&new_link);
    make(&new_link, name).map_err(|e| UpdateError::io("creating", &new_link, e))?;
    fs::rename(&new_link, link).map_err(|e| {
        let _ = fs::remove_file(&new_link);
        UpdateError::io("switching", link, e)
    })?;
    dare_container::fsys::sync_dir(dir).map_err(|e| UpdateError::io("syncing", dir, e))
}

#[cfg(unix)]
fn make(new_link: &Path, name: &str) -> io::Result<()> {
    std::os::unix::fs::symlink(Path::new("versions").join(name), new_link)
}

#[cfg(windows)]
fn make(new_link: &Path, name: &str) -> io::Result<()> {
    use std::io::Write;
    let mut f = fs::OpenOptions::new().write(true).create_new(true).open(new_link)?;
    f.write_all(pointer_text(name).as_bytes())?;
    f.sync_all()
}

/// The text of a pointer file naming `versions/<name>`.
#[cfg(any(windows, test))]
fn pointer_text(name: &str) -> String {
    format!("versions/{name}\n")
}

/// `versions/<name>` from a pointer file's bytes; `None` unless it is
/// exactly that, with one plain name (no separators, not `.` or `..`).
#[cfg(any(windows, test))]
fn parse_pointer(bytes: &[u8]) -> Option<PathBuf> {
    let text = std::str::from_utf8(bytes).ok()?;
    let text = text.strip_suffix('\n').unwrap_or(text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    let name = text.strip_prefix("versions/")?;
    let plain = !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', ':', '\0', '\n']);
    plain.then(|| Path::new("versions").join(name))
}

#[cfg(any(windows, test))]
fn read_bounded(path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    fs::File::open(path)?.take(MAX_POINTER + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_POINTER {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "too long for a pointer file"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pointer_names_one_version_directory() {
        for name in ["1.2.3", "1.2.3~2", "2.0.0-rc.1+build.5"] {
            let text = pointer_text(name);
            assert_eq!(parse_pointer(text.as_bytes()), Some(Path::new("versions").join(name)), "{text}");
        }
        assert_eq!(parse_pointer(b"versions/1.0.0\r\n"), Some(Path::new("versions").join("1.0.0")));
        for bad in [
            &b""[..],
            b"versions/",
            b"versions/..",
            b"versions/.",
            b"versions/a/b",
            b"versions/..\\..\\x",
            b"versions/C:x",
            b"/etc/passwd",
            b"other/1.0.0",
            b"versions/1.0.0\n\n",
            b"\xffversions/1",
        ] {
            assert_eq!(parse_pointer(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn an_oversized_pointer_file_is_not_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("current");
        fs::write(&p, vec![b'v'; MAX_POINTER as usize + 10]).unwrap();
        assert_eq!(read_bounded(&p).unwrap_err().kind(), io::ErrorKind::InvalidData);
        fs::write(&p, pointer_text("1.0.0")).unwrap();
        assert_eq!(read_bounded(&p).unwrap(), b"versions/1.0.0\n");
    }

    #[test]
    fn switching_replaces_current_atomically_and_leaves_nothing_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("current");
        for name in ["1.0.0", "1.1.0", "1.1.0~1"] {
            check_replaceable(&link).unwrap();
            switch(&link, name).unwrap();
            assert_eq!(read(&link), Some(Path::new("versions").join(name)));
        }
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["current"]);
    }

    #[test]
    fn something_else_at_current_is_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("current");
        fs::create_dir(&link).unwrap();
        let err = check_replaceable(&link).unwrap_err().to_string();
        assert!(err.contains("refusing to replace it"), "{err}");
        assert_eq!(read(&link), None);
    }
}
