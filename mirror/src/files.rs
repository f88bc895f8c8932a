//! Mapping request paths to regular files under the served directory.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use crate::sealed::SealedPrefixes;

/// Lengths up to which paths may be served, shared between the server and
/// whoever decides them (the sync task serves a container only up to the
/// length it has verified).
///
/// A path present here is served as `min(file length, set length)` bytes;
/// a path absent here is served whole. Keys are URL paths such as
/// `/app.dare`, percent-decoded.
#[derive(Clone, Default, Debug)]
pub struct ServedLengths(Arc<RwLock<HashMap<String, u64>>>);

impl ServedLengths {
    /// Serve `path` up to `len` bytes from now on.
    pub fn set(&self, path: &str, len: u64) {
        self.0.write().unwrap_or_else(PoisonError::into_inner).insert(path.to_owned(), len);
    }

    /// The length `path` is capped to, if any.
    pub fn get(&self, path: &str) -> Option<u64> {
        self.0.read().unwrap_or_else(PoisonError::into_inner).get(path).copied()
    }

    /// Serve `path` whole again.
    pub fn remove(&self, path: &str) {
        self.0.write().unwrap_or_else(PoisonError::into_inner).remove(path);
    }
}

/// Why a request path is not served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PathRejection {
    /// Malformed or hostile: bad percent-encoding, `.`/`..` segments, NUL,
    /// backslashes, encoded slashes. Answered 400.
    BadRequest,
    /// Well-formed but never a file: `/`, empty segments, hidden names.
    /// Answered 404.
    NotFound,
}

/// A request path that is safe to join to the served directory: non-empty
/// `/`-separated segments, percent-decoded, none of them `.`, `..` or hidden
/// (starting with `.`), without NUL, `\` or encoded `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestPath {
    /// Decoded, with its leading `/`: the key for [`ServedLengths`] and
    /// overlays.
    decoded: String,
}

impl RequestPath {
    pub fn parse(raw: &str) -> Result<RequestPath, PathRejection> {
        let rest = raw.strip_prefix('/').ok_or(PathRejection::BadRequest)?;
        let mut decoded = String::with_capacity(raw.len());
        let mut hidden = false;
        for segment in rest.split('/') {
            let segment = percent_decode(segment)?;
            match segment.as_str() {
                "." | ".." => return Err(PathRejection::BadRequest),
                "" => hidden = true,
                s if s.starts_with('.') => hidden = true,
                _ => {}
            }
            decoded.push('/');
            decoded.push_str(&segment);
        }
        // Checked after the loop so that a hostile path is always a 400, even
        // behind an empty segment.
        if hidden {
            return Err(PathRejection::NotFound);
        }
        Ok(RequestPath { decoded })
    }

    pub fn as_str(&self) -> &str {
        &self.decoded
    }

    /// The path relative to the served directory.
    fn relative(&self) -> &Path {
        Path::new(&self.decoded[1..])
    }
}

fn percent_decode(segment: &str) -> Result<String, PathRejection> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or(PathRejection::BadRequest)?;
                // `from_str_radix` alone also takes a sign: `%+1`.
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return Err(PathRejection::BadRequest);
                }
                let hex = std::str::from_utf8(hex).map_err(|_| PathRejection::BadRequest)?;
                i += 2;
                u8::from_str_radix(hex, 16).map_err(|_| PathRejection::BadRequest)?
            }
            b => b,
        };
        if matches!(b, 0 | b'/' | b'\\') {
            return Err(PathRejection::BadRequest);
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8(out).map_err(|_| PathRejection::BadRequest)
}

/// A regular file opened for one response, with the length and validators
/// taken from one `fstat` of the open descriptor.
#[derive(Debug)]
pub(crate) struct OpenFile {
    pub file: Arc<File>,
    /// The representation length: the file's length, capped by
    /// [`ServedLengths`].
    pub len: u64,
    pub etag: String,
    /// Whole seconds, never in the future.
    pub last_modified: SystemTime,
}

impl OpenFile {
    /// Opens `path` in `dir`, or takes the descriptor `recent` holds for it.
    /// `Ok(None)` when there is no regular file there inside the directory:
    /// missing, a directory, a FIFO or device, or a symlink that leads out.
    /// Length and validators come from an `fstat` made now either way.
    pub fn open(
        dir: &ServedDir,
        recent: &RecentFiles,
        sealed: &SealedPrefixes,
        path: &RequestPath,
        cap: Option<u64>,
    ) -> io::Result<Option<OpenFile>> {
        let Some(file) = recent.open(dir, path)? else {
            return Ok(None);
        };
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Ok(None);
        }
        // A container is served up to its last complete seal.
        let prefix = sealed.get(path.as_str(), &file, &meta);
        let len = cap.map_or(prefix.len, |cap| cap.min(prefix.len));
        let (secs, nsecs) = prefix.mtime;
        let now = SystemTime::now();
        let last_modified = (SystemTime::UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64)).min(now);
        // Strong: a changed length, inode or modification time (to the
        // nanosecond) gives a new tag, so a file that grows gets a new one.
        let etag = format!("\"{:x}-{:x}-{:x}-{:x}.{:x}\"", meta.dev(), meta.ino(), len, secs, nsecs);
        Ok(Some(OpenFile { file, len, etag, last_modified }))
    }
}

/// At most this many descriptors are kept open by [`RecentFiles`].
const RECENT_FILES: usize = 256;

/// Descriptors of recently opened files, reused for a short time so that a
/// busy file is not opened and closed for every request.
///
/// Every response still `fstat`s the descriptor, so a file that grows is
/// seen at once. A file renamed over or deleted is served as it was for up
/// to `ttl`. Sharing a descriptor is safe: every read names its offset.
#[derive(Debug)]
pub(crate) struct RecentFiles {
    ttl: Duration,
    files: Mutex<HashMap<String, (Arc<File>, Instant)>>,
}

impl RecentFiles {
    /// A zero `ttl` keeps nothing.
    pub fn new(ttl: Duration) -> RecentFiles {
        RecentFiles { ttl, files: Mutex::new(HashMap::new()) }
    }

    fn open(&self, dir: &ServedDir, path: &RequestPath) -> io::Result<Option<Arc<File>>> {
        if self.ttl.is_zero() {
            return Ok(dir.open_file(path.relative())?.map(Arc::new));
        }
        let now = Instant::now();
        if let Some((file, opened)) = self.lock().get(path.as_str())
            && now.duration_since(*opened) < self.ttl
        {
            return Ok(Some(file.clone()));
        }
        let Some(file) = dir.open_file(path.relative())?.map(Arc::new) else {
            return Ok(None);
        };
        let mut files = self.lock();
        if files.len() >= RECENT_FILES {
            files.retain(|_, (_, opened)| now.duration_since(*opened) < self.ttl);
        }
        if files.len() < RECENT_FILES {
            files.insert(path.as_str().to_owned(), (file.clone(), now));
        }
        Ok(Some(file))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Arc<File>, Instant)>> {
        self.files.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The served directory.
#[derive(Debug)]
pub(crate) struct ServedDir {
    /// Canonical.
    path: PathBuf,
    /// What `openat2` resolves request paths beneath.
    #[cfg(target_os = "linux")]
    fd: std::os::fd::OwnedFd,
}

/// Set when the kernel (or a seccomp filter) refuses `openat2`.
#[cfg(target_os = "linux")]
static NO_OPENAT2: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl ServedDir {
    pub fn open(root: &Path) -> io::Result<ServedDir> {
        let path = std::fs::canonicalize(root)?;
        if !path.is_dir() {
            return Err(io::Error::new(io::ErrorKind::NotADirectory, "not a directory"));
        }
        Ok(ServedDir {
            #[cfg(target_os = "linux")]
            fd: rustix::fs::open(
                &path,
                rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            )?,
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens `relative` for reading if it resolves inside the directory.
    /// Non-blocking, so that a FIFO cannot hang the open; the caller checks
    /// that it got a regular file.
    fn open_file(&self, relative: &Path) -> io::Result<Option<File>> {
        #[cfg(target_os = "linux")]
        if !NO_OPENAT2.load(std::sync::atomic::Ordering::Relaxed) {
            use rustix::fs::{Mode, OFlags, ResolveFlags};
            use rustix::io::Errno;
            // The kernel refuses any resolution that leaves the directory
            // (`..` or symlinks out, /proc magic links) in one call, with no
            // window for a swapped symlink. It also refuses every absolute
            // symlink (EXDEV); those get the slower check below, which
            // accepts the ones that lead back inside.
            match rustix::fs::openat2(
                &self.fd,
                relative,
                OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
                Mode::empty(),
                ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
            ) {
                Ok(fd) => return Ok(Some(File::from(fd))),
                Err(Errno::NOSYS | Errno::PERM) => {
                    tracing::warn!("openat2 unavailable; checking paths through /proc instead");
                    NO_OPENAT2.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                Err(Errno::XDEV) => {}
                Err(Errno::LOOP) => return Ok(None),
                Err(e) => {
                    let e = io::Error::from(e);
                    return if is_absent(&e) { Ok(None) } else { Err(e) };
                }
            }
        }
        self.open_checked(relative)
    }

    /// The portable way: open, then check where the descriptor really is.
    fn open_checked(&self, relative: &Path) -> io::Result<Option<File>> {
        let full = self.path.join(relative);
        // Checked before opening: opening a FIFO would block until a writer
        // comes.
        match std::fs::metadata(&full) {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => return Ok(None),
            Err(e) if is_absent(&e) => return Ok(None),
            Err(e) => return Err(e),
        }
        let file = match File::open(&full) {
            Ok(file) => file,
            Err(e) if is_absent(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(self.holds(&full, &file)?.then_some(file))
    }

    /// Whether the open file's real path lies inside the directory. The
    /// descriptor's own path (`/proc/self/fd/N`) is checked where there is
    /// one, so a symlink swapped in meanwhile cannot redirect what is served.
    fn holds(&self, full: &Path, file: &File) -> io::Result<bool> {
        use std::os::fd::AsRawFd;
        let real = match std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())) {
            Ok(real) => real,
            Err(_) => match std::fs::canonicalize(full) {
                Ok(real) => real,
                Err(e) if is_absent(&e) => return Ok(false),
                Err(e) => return Err(e),
            },
        };
        Ok(real.starts_with(&self.path) && real != self.path)
    }
}

fn is_absent(e: &io::Error) -> bool {
    // ENOTDIR: a path segment is a file. Permission problems are not the
    // client's business; they look like a missing file too.
    matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory | io::ErrorKind::PermissionDenied)
        || e.raw_os_error() == Some(40) // ELOOP on Linux
}

/// Reads exactly `len` bytes at `offset`. A file that shrank meanwhile is an
/// error: the response already announced its length.
pub(crate) fn read_exact_at(file: &File, offset: u64, len: usize) -> io::Result<Bytes> {
    let mut buf = vec![0u8; len];
    let mut filled = 0;
    while filled < len {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "file shrank while being served: {} bytes missing at offset {}",
                        len - filled,
                        offset + filled as u64
                    ),
                ));
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Bytes::from(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<String, PathRejection> {
        RequestPath::parse(raw).map(|p| p.decoded)
    }

    #[test]
    fn good_paths() {
        assert_eq!(parse("/app.dare"), Ok("/app.dare".into()));
        assert_eq!(parse("/a/b%20c.dare"), Ok("/a/b c.dare".into()));
        assert_eq!(parse("/%C3%A9t%C3%A9"), Ok("/été".into()));
        assert_eq!(parse("/a..b"), Ok("/a..b".into()));
    }

    #[test]
    fn hostile_paths_are_bad_requests() {
        for raw in [
            "/..",
            "/../etc/passwd",
            "/a/../../etc/passwd",
            "/%2e%2e/etc/passwd",
            "/%2E%2e",
            "/.%2e/x",
            "/./a",
            "/a/.",
            "/..%2Fetc%2Fpasswd",
            "/a%2fb",
            "/a%5cb",
            "/a\\b",
            "/a%00b",
            "/%",
            "/%4",
            "/%zz",
            "/%ff",
            "etc/passwd",
            "",
            "//../x",
        ] {
            assert_eq!(parse(raw), Err(PathRejection::BadRequest), "{raw:?}");
        }
    }

    #[test]
    fn non_files_are_not_found() {
        for raw in ["/", "//etc/passwd", "/a//b", "/dir/", "/.hidden", "/a/.git/config", "/%2ehidden", "/..."] {
            assert_eq!(parse(raw), Err(PathRejection::NotFound), "{raw:?}");
        }
    }

    /// `openat2` and the portable check accept exactly the same paths.
    #[test]
    fn both_ways_of_opening_agree() {
        use std::os::unix::fs::symlink;
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(tmp.path().join("secret"), b"s").unwrap();
        std::fs::write(root.join("a"), b"a").unwrap();
        std::fs::write(root.join("sub/b"), b"b").unwrap();
        symlink("a", root.join("relative-in")).unwrap();
        symlink("../a", root.join("sub/up-in")).unwrap();
        symlink(root.join("sub/b"), root.join("absolute-in")).unwrap();
        symlink("../secret", root.join("relative-out")).unwrap();
        symlink(tmp.path().join("secret"), root.join("absolute-out")).unwrap();
        symlink(tmp.path(), root.join("dir-out")).unwrap();
        symlink("loop", root.join("loop")).unwrap();
        symlink("/proc/self/root/etc/hostname", root.join("magic")).unwrap();
        let dir = ServedDir::open(&root).unwrap();
        for (path, served) in [
            ("a", true),
            ("sub/b", true),
            ("relative-in", true),
            ("sub/up-in", true),
            ("absolute-in", true),
            ("relative-out", false),
            ("absolute-out", false),
            ("dir-out/secret", false),
            ("loop", false),
            ("magic", false),
            ("missing", false),
            ("a/x", false),
        ] {
            let path = Path::new(path);
            let checked = dir.open_checked(path).unwrap().is_some();
            assert_eq!(checked, served, "portable check: {}", path.display());
            let opened = dir.open_file(path).unwrap().is_some();
            assert_eq!(opened, served, "openat2: {}", path.display());
        }
    }

    #[test]
    fn served_lengths() {
        let lengths = ServedLengths::default();
        assert_eq!(lengths.get("/a"), None);
        lengths.set("/a", 10);
        let shared = lengths.clone();
        assert_eq!(shared.get("/a"), Some(10));
        shared.remove("/a");
        assert_eq!(lengths.get("/a"), None);
    }
}
