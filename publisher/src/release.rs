//! Gathering a release's files: every `--artifact TRIPLE=PATH`, a file or a
//! directory, becomes a list of regular files with relative `/` paths and
//! their exec bits.
//!
//! Symlinks are refused with a clear message rather than stored: a link in a
//! release would have to be re-created on every client, and a link that
//! points outside the install directory is a classic escape. Replace a link
//! with the file it points to (e.g. `cp -L`) before publishing.

use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use dare_container::header::{find_name_collision, validate_known_target, validate_path};

use crate::error::PublishError;

/// One `--artifact TRIPLE=PATH`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Artifact {
    /// The target triple.
    pub target: String,
    /// A file or a directory.
    pub path: PathBuf,
}

impl FromStr for Artifact {
    type Err = PublishError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (target, path) =
            s.split_once('=').ok_or_else(|| PublishError::Invalid(format!("--artifact {s}: expected TRIPLE=PATH")))?;
        if path.is_empty() {
            return Err(PublishError::Invalid(format!("--artifact {s}: the path is empty")));
        }
        validate_known_target(target).map_err(|e| PublishError::Invalid(format!("--artifact {s}: {e}")))?;
        Ok(Artifact { target: target.to_string(), path: PathBuf::from(path) })
    }
}

/// One file of a release.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceFile {
    /// The target triple.
    pub target: String,
    /// The path inside the release, `/`-separated.
    pub path: String,
    /// Where it is on disk.
    pub source: PathBuf,
    /// `0o755` when it is a program, else `0o644`: any exec bit set on Unix;
    /// on Windows, which has no exec bit, see
    /// [`is_executable`](dare_container::fsys::is_executable).
    pub mode: u32,
    /// Its size when gathered.
    pub size: u64,
}

/// Every file of every artifact, grouped by target in the order the targets
/// were first given, each target's files sorted by path.
pub fn gather(artifacts: &[Artifact]) -> Result<Vec<SourceFile>, PublishError> {
    if artifacts.is_empty() {
        return Err(PublishError::Invalid("no --artifact given".into()));
    }
    let mut targets: Vec<String> = Vec::new();
    for a in artifacts {
        // An `Artifact` built by hand skips `FromStr`'s check.
        validate_known_target(&a.target)
            .map_err(|e| PublishError::Invalid(format!("--artifact {}={}: {e}", a.target, a.path.display())))?;
        if let Some(first) = artifacts.iter().find(|b| b.target == a.target && !std::ptr::eq(*b, a)) {
            return Err(PublishError::Invalid(format!(
                "the target {} is given twice (--artifact {}={} and --artifact {}={}); give each target one \
                 artifact: a file, or a directory holding all its files",
                a.target,
                first.target,
                first.path.display(),
                a.target,
                a.path.display()
            )));
        }
        targets.push(a.target.clone());
    }
    let mut out = Vec::new();
    for target in &targets {
        let mut files = Vec::new();
        for a in artifacts.iter().filter(|a| &a.target == target) {
            let meta = fs::symlink_metadata(&a.path).map_err(|e| PublishError::io("reading artifact", &a.path, e))?;
            if meta.file_type().is_symlink() {
                return Err(symlink_refused(&a.path));
            }
            if meta.is_dir() {
                let before = files.len();
                walk(target, &a.path, "", &mut files)?;
                if files.len() == before {
                    return Err(PublishError::Invalid(format!("{}: the directory has no files", a.path.display())));
                }
            } else if meta.is_file() {
                let name = a.path.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
                    PublishError::Invalid(format!("{}: the file name is not UTF-8", a.path.display()))
                })?;
                files.push(source_file(target, name.to_string(), &a.path, &meta)?);
            } else {
                return Err(PublishError::Invalid(format!("{}: not a regular file or directory", a.path.display())));
            }
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        refuse_collisions(target, &files)?;
        out.extend(files);
    }
    Ok(out)
}

/// Refuses two paths of one build that are one file on macOS or Windows
/// ([`find_name_collision`]), before anything is compressed; the appender
/// refuses such an index too.
fn refuse_collisions(target: &str, files: &[SourceFile]) -> Result<(), PublishError> {
    match find_name_collision(files.iter().map(|f| f.path.as_str())) {
        Some(m) => Err(PublishError::Invalid(format!("{target}: {m}"))),
        None => Ok(()),
    }
}

fn symlink_refused(path: &Path) -> PublishError {
    let to = fs::read_link(path).map(|t| format!(" -> {}", t.display())).unwrap_or_default();
    PublishError::Invalid(format!(
        "{}{to}: symlinks are not published; replace the link with the file it points to (e.g. cp -L)",
        path.display()
    ))
}

fn source_file(target: &str, rel: String, path: &Path, meta: &fs::Metadata) -> Result<SourceFile, PublishError> {
    validate_path(&rel).map_err(|e| PublishError::Invalid(format!("{}: {e}", path.display())))?;
    let exec = dare_container::fsys::is_executable(path, meta).map_err(|e| PublishError::io("reading", path, e))?;
    Ok(SourceFile {
        target: target.to_string(),
        path: rel,
        source: path.to_path_buf(),
        mode: if exec { 0o755 } else { 0o644 },
        size: meta.len(),
    })
}

fn walk(target: &str, dir: &Path, prefix: &str, out: &mut Vec<SourceFile>) -> Result<(), PublishError> {
    let entries = fs::read_dir(dir).map_err(|e| PublishError::io("reading directory", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| PublishError::io("reading directory", dir, e))?;
        let path = entry.path();
        let name = entry
            .file_name()
            .into_string()
            .map_err(|_| PublishError::Invalid(format!("{}: the file name is not UTF-8", path.display())))?;
        let rel = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
        let meta = fs::symlink_metadata(&path).map_err(|e| PublishError::io("reading", &path, e))?;
        let kind = meta.file_type();
        if kind.is_symlink() {
            return Err(symlink_refused(&path));
        } else if kind.is_dir() {
            walk(target, &path, &rel, out)?;
        } else if kind.is_file() {
            out.push(source_file(target, rel, &path, &meta)?);
        } else {
            return Err(PublishError::Invalid(format!(
                "{}: not a regular file (sockets, fifos and devices are not published)",
                path.display()
            )));
        }
    }
    Ok(())
}
