//! The few file-system operations that differ between Unix and Windows, in
//! one place so the rest of the workspace stays platform-free.
//!
//! - Positioned reads and writes ([`read_exact_at`], [`write_all_at`]). On
//!   Windows `seek_read`/`seek_write` also move the file's cursor; these put
//!   it back, so a positioned read never moves where the next `write` goes,
//!   as on Unix.
//! - [`sync_dir`]: makes a rename durable on Unix. Windows cannot open a
//!   directory handle for flushing (it fails with "Access denied") and NTFS
//!   journals renames itself, so there it does nothing.
//! - [`same_file`]: whether two metadata describe the same file (device and
//!   inode on Unix; on Windows, where std exposes no file index, the creation
//!   and write times, size and attributes).
//! - Modes: Unix permission bits; Windows stores no executable bit and only
//!   maps "no write bit" to the read-only attribute ([`mode_matches`],
//!   [`set_mode`], [`create_new`], [`is_executable`]).
//! - [`open_exclusive_rw`]: opens a file to append to it. On Windows it is
//!   opened without `FILE_SHARE_DELETE`, so nobody can rename, replace or
//!   delete it while it is open.

use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::path::Path;

/// Fills `buf` from `offset` of `file`, or fails with `UnexpectedEof`.
pub fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
    }
    #[cfg(windows)]
    {
        windows::keeping_cursor(file, |file| windows::read_exact_at(file, buf, offset))
    }
}

/// Writes all of `buf` at `offset` of `file`.
pub fn write_all_at(file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::write_all_at(file, buf, offset)
    }
    #[cfg(windows)]
    {
        windows::keeping_cursor(file, |file| windows::write_all_at(file, buf, offset))
    }
}

/// Makes the entries of `dir` (a rename into it, a removal) durable. A no-op
/// on Windows, which cannot flush a directory handle.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir).and_then(|d| d.sync_all())
    }
    #[cfg(windows)]
    {
        let _ = dir;
        Ok(())
    }
}

/// Flushes the file at `path` to disk. Windows flushes only through a
/// handle that may write, so it is opened for writing there; a file that
/// cannot be (a running program, a read-only file) is not being written and
/// is left as it is.
pub fn sync_file(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(path).and_then(|f| f.sync_all())
    }
    #[cfg(windows)]
    {
        match OpenOptions::new().write(true).open(path) {
            Ok(f) => f.sync_all(),
            // ERROR_ACCESS_DENIED, ERROR_SHARING_VIOLATION, ERROR_LOCK_VIOLATION
            Err(e) if matches!(e.raw_os_error(), Some(5 | 32 | 33)) && path.is_file() => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Whether `a` and `b` (from an open handle and from a path, say) describe
/// the same file.
pub fn same_file(a: &Metadata, b: &Metadata) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        a.dev() == b.dev() && a.ino() == b.ino()
    }
    #[cfg(windows)]
    {
        // std has no stable file index on Windows. A file opened with
        // `open_exclusive_rw` cannot be replaced while open anyway; this
        // catches a different file put at the path before that.
        use std::os::windows::fs::MetadataExt;
        a.creation_time() == b.creation_time()
            && a.last_write_time() == b.last_write_time()
            && a.file_size() == b.file_size()
            && a.file_attributes() == b.file_attributes()
    }
}

/// Opens `path` for reading and writing so it cannot be swapped underneath:
/// on Windows without `FILE_SHARE_DELETE` (nobody may rename, replace or
/// delete it while it is open); on Unix a plain open (the caller checks
/// [`same_file`] instead).
pub fn open_exclusive_rw(path: &Path) -> io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.read(true).write(true);
    #[cfg(windows)]
    {
        use std::os::windows::fs::OpenOptionsExt;
        // FILE_SHARE_READ | FILE_SHARE_WRITE, without FILE_SHARE_DELETE.
        opts.share_mode(0x1 | 0x2);
    }
    opts.open(path)
}

/// Creates `path`, which must not exist, for writing. On Unix it has `mode`
/// from the start; on Windows the directory's inherited ACL decides who may
/// read it (`mode` has no equivalent there).
pub fn create_new(path: &Path, mode: u32) -> io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    #[cfg(windows)]
    let _ = mode;
    opts.open(path)
}

/// Gives `path` the permission bits of `mode` (`0o777` of it): on Windows,
/// a mode without any write bit makes it read-only, any other makes it
/// writable.
pub fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o777))
    }
    #[cfg(windows)]
    {
        let mut perms = std::fs::metadata(path)?.permissions();
        let readonly = mode & 0o222 == 0;
        if perms.readonly() != readonly {
            #[allow(clippy::permissions_set_readonly_false)] // Windows: clears the read-only attribute only.
            perms.set_readonly(readonly);
            std::fs::set_permissions(path, perms)?;
        }
        Ok(())
    }
}

/// Whether a file with metadata `meta` already has what [`set_mode`] would
/// give it for `mode`.
pub fn mode_matches(meta: &Metadata, mode: u32) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.permissions().mode() & 0o777 == mode & 0o777
    }
    #[cfg(windows)]
    {
        meta.permissions().readonly() == (mode & 0o222 == 0)
    }
}

/// Whether the file at `path` (with metadata `meta`) is a program: on Unix,
/// any exec bit is set. Windows stores no exec bit, so there a file is a
/// program when its name ends in `.exe`, `.com`, `.bat` or `.cmd`, or it
/// starts like one built for another system (`#!`, ELF, Mach-O), so a Linux
/// or macOS build published from Windows stays executable.
pub fn is_executable(path: &Path, meta: &Metadata) -> io::Result<bool> {
    #[cfg(unix)]
    {
        let _ = path;
        use std::os::unix::fs::PermissionsExt;
        Ok(meta.permissions().mode() & 0o111 != 0)
    }
    #[cfg(windows)]
    {
        let _ = meta;
        windows::looks_executable(path)
    }
}

#[cfg(any(windows, test))]
mod windows {
    use std::io::{self, Read};
    use std::path::Path;

    /// Windows program extensions (compared case-insensitively).
    const EXTENSIONS: [&str; 4] = ["exe", "com", "bat", "cmd"];

    /// The first bytes of programs for other systems: a script, ELF, Mach-O
    /// (32 and 64 bit, both byte orders) and a universal Mach-O.
    const MAGICS: [&[u8]; 7] = [
        b"#!",
        b"\x7fELF",
        b"\xfe\xed\xfa\xce",
        b"\xfe\xed\xfa\xcf",
        b"\xce\xfa\xed\xfe",
        b"\xcf\xfa\xed\xfe",
        b"\xca\xfe\xba\xbe",
    ];

    pub(super) fn looks_executable(path: &Path) -> io::Result<bool> {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(ext)) {
            return Ok(true);
        }
        let mut head = [0u8; 4];
        let mut n = 0;
        let mut f = std::fs::File::open(path)?;
        while n < head.len() {
            match f.read(&mut head[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(MAGICS.iter().any(|m| head[..n].starts_with(m)))
    }

    #[cfg(windows)]
    pub(super) fn keeping_cursor<T>(
        file: &std::fs::File,
        f: impl FnOnce(&std::fs::File) -> io::Result<T>,
    ) -> io::Result<T> {
        use std::io::{Seek, SeekFrom};
        let mut handle = file;
        let pos = handle.stream_position()?;
        let result = f(file);
        handle.seek(SeekFrom::Start(pos))?;
        result
    }

    #[cfg(windows)]
    pub(super) fn read_exact_at(file: &std::fs::File, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
        use std::os::windows::fs::FileExt;
        while !buf.is_empty() {
            match file.seek_read(buf, offset) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "failed to fill whole buffer")),
                Ok(n) => {
                    buf = &mut buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Reading at or past the end of a file is EOF, not an error.
                Err(e) if e.raw_os_error() == Some(38) => {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "failed to fill whole buffer"));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    #[cfg(windows)]
    pub(super) fn write_all_at(file: &std::fs::File, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
        use std::os::windows::fs::FileExt;
        while !buf.is_empty() {
            match file.seek_write(buf, offset) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "failed to write whole buffer")),
                Ok(n) => {
                    buf = &buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, Write};

    #[test]
    fn positioned_io_leaves_the_cursor_alone() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let mut f = OpenOptions::new().read(true).write(true).create_new(true).open(&p).unwrap();
        f.write_all(b"0123456789").unwrap();
        write_all_at(&f, b"ab", 2).unwrap();
        let mut buf = [0u8; 3];
        read_exact_at(&f, &mut buf, 1).unwrap();
        assert_eq!(&buf, b"1ab");
        assert_eq!(f.stream_position().unwrap(), 10);
        f.write_all(b"z").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"01ab456789z");
        let mut past = [0u8; 2];
        let err = read_exact_at(&f, &mut past, 10).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(read_exact_at(&f, &mut past, 100).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn same_file_tells_files_apart() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, b"a").unwrap();
        std::fs::write(&b, b"bb").unwrap();
        let open = open_exclusive_rw(&a).unwrap();
        assert!(same_file(&open.metadata().unwrap(), &std::fs::metadata(&a).unwrap()));
        assert!(!same_file(&open.metadata().unwrap(), &std::fs::metadata(&b).unwrap()));
        sync_dir(dir.path()).unwrap();
        drop(open);
        sync_file(&a).unwrap();
        assert!(sync_file(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn modes_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        drop(create_new(&p, 0o600).unwrap());
        assert!(create_new(&p, 0o600).is_err(), "create_new replaced a file");
        for mode in [0o644, 0o444, 0o755, 0o600] {
            set_mode(&p, mode).unwrap();
            assert!(mode_matches(&std::fs::metadata(&p).unwrap(), mode), "{mode:o}");
        }
        #[cfg(unix)]
        assert!(!mode_matches(&std::fs::metadata(&p).unwrap(), 0o644));
        assert!(!mode_matches(&std::fs::metadata(&p).unwrap(), 0o444));
    }

    #[test]
    fn programs_for_other_systems_are_recognised_by_their_first_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let cases: [(&str, &[u8], bool); 6] = [
            ("app.EXE", b"MZ", true),
            ("run.cmd", b"@echo off", true),
            ("linux-app", b"\x7fELF\x02\x01", true),
            ("script", b"#!/bin/sh\n", true),
            ("data.txt", b"hello", false),
            ("empty", b"", false),
        ];
        for (name, bytes, want) in cases {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            assert_eq!(windows::looks_executable(&p).unwrap(), want, "{name}");
        }
    }
}
