//! Running the built `dare` binary in a temporary directory, and building
//! containers with releases through the library (the CLI has no `publish`).

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use dare_container::Appender;
use dare_container::frame::{FrameInfo, Frames, read_header};
use dare_container::hashio::sha256;
use dare_container::header::{Compression, Entry, Header, Sha256Hex};
use dare_container::keys::{SigningKey, VerifierKey};

/// The signed time most tests use.
pub const T0: u64 = 1_700_000_000;

/// What one run of `dare` printed and how it exited.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts success and returns self.
    #[track_caller]
    pub fn ok(&self) -> &Self {
        assert_eq!(self.code, 0, "dare failed:\nstdout: {}\nstderr: {}", self.stdout, self.stderr);
        self
    }

    /// Asserts exit code 1 and that stderr is exactly one `error: ` line;
    /// returns that line.
    #[track_caller]
    pub fn error(&self) -> &str {
        assert_eq!(self.code, 1, "expected exit 1:\nstdout: {}\nstderr: {}", self.stdout, self.stderr);
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "stderr is not one line: {:?}", self.stderr);
        assert!(lines[0].starts_with("error: "), "{:?}", self.stderr);
        lines[0]
    }

    /// Asserts stdout is exactly one JSON object on one line and returns it.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        let lines: Vec<&str> = self.stdout.lines().collect();
        assert_eq!(lines.len(), 1, "stdout is not one line: {:?}", self.stdout);
        let v: serde_json::Value = serde_json::from_str(lines[0]).expect("stdout is JSON");
        assert!(v.is_object(), "{v}");
        v
    }
}

/// A temporary directory to run `dare` in.
pub struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Self {
        Sandbox { dir: tempfile::tempdir().expect("temp dir") }
    }

    /// A path inside the sandbox.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs `dare args...` in the sandbox with a clean environment for the
    /// variables dare reads, plus `env`.
    pub fn dare_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = Command::cargo_bin("dare").expect("the dare binary is built");
        cmd.current_dir(self.dir.path()).env_remove("SOURCE_DATE_EPOCH").env_remove("DARE_LOG").args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("dare runs");
        Run {
            code: out.status.code().expect("dare exits, not killed by a signal"),
            stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
            stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
        }
    }

    /// Runs `dare args...` in the sandbox.
    pub fn dare(&self, args: &[&str]) -> Run {
        self.dare_env(args, &[])
    }

    /// `dare keygen --out NAME`: the key's path and its verifier key text.
    pub fn keygen(&self, name: &str) -> (PathBuf, String) {
        let run = self.dare(&["keygen", "--out", name]);
        run.ok();
        (self.path(name), run.stdout.trim().to_string())
    }

    /// `dare init NAME --key KEY --origin example.com/app --time T0`.
    pub fn init(&self, name: &str, key: &str) -> PathBuf {
        let t = T0.to_string();
        self.dare(&["init", name, "--key", key, "--origin", "example.com/app", "--time", &t]).ok();
        self.path(name)
    }
}

/// Reads a key file written by `dare keygen`.
pub fn signing_key(path: &Path) -> SigningKey {
    SigningKey::parse(&std::fs::read_to_string(path).expect("key file")).expect("a signing key")
}

/// Parses a verifier key text.
pub fn verifier(text: &str) -> VerifierKey {
    VerifierKey::parse(text.trim()).expect("a verifier key")
}

/// One file of a release: target, version, channel, path, content, zstd?
pub type File<'a> = (&'a str, &'a str, &'a str, &'a str, &'a [u8], bool);

/// Appends one release of `files` signed by `key` at `time`, through the
/// library.
pub fn publish(container: &Path, key: &SigningKey, files: &[File<'_>], time: u64) {
    let mut app = open(container);
    for &(target, version, channel, path, content, zstd) in files {
        let (compression, stored) = if zstd {
            (Compression::Zstd, zstd::encode_all(content, 3).expect("zstd"))
        } else {
            (Compression::None, content.to_vec())
        };
        let e = Entry {
            target: target.into(),
            version: version.into(),
            channel: channel.into(),
            path: path.into(),
            mode: 0o755,
            size: content.len() as u64,
            sha256: Sha256Hex(sha256(content)),
            stored_size: stored.len() as u64,
            stored_sha256: Sha256Hex(sha256(&stored)),
            compression,
            delta_base: None,
        };
        app.append_entry(e, &mut stored.as_slice()).expect("append an entry");
    }
    app.seal(&[key], time).expect("seal");
}

/// Opens a container for appending. The appender's lock belongs to the open
/// file, and a process that another test thread is spawning holds a copy of
/// every open file between its fork and its exec: so the lock of an appender
/// this thread just dropped can outlive it for a moment. Wait that out.
fn open(container: &Path) -> Appender {
    for _ in 0..100 {
        match Appender::open(container, true) {
            Err(dare_container::Error::Locked(_)) => std::thread::sleep(std::time::Duration::from_millis(20)),
            other => return other.expect("open the container"),
        }
    }
    panic!("{} stayed locked", container.display());
}

/// Every frame of a container with its parsed header.
pub fn frames(bytes: &[u8]) -> Vec<(FrameInfo, Header)> {
    Frames::new(bytes, 0, bytes.len() as u64)
        .map(|f| {
            let f = f.expect("well-formed frame");
            let h = Header::parse(&read_header(bytes, &f).expect("header")).expect("valid header");
            (f, h)
        })
        .collect()
}

/// The three targets the CLI tests publish for.
pub const LINUX: &str = "x86_64-unknown-linux-gnu";
pub const MAC: &str = "aarch64-apple-darwin";
pub const WINDOWS: &str = "x86_64-pc-windows-msvc";

/// A container with two stable releases for three targets and a beta for
/// Linux, signed by a `dare keygen` key: (sandbox, container, key path).
pub fn released() -> (Sandbox, PathBuf, PathBuf) {
    let sb = Sandbox::new();
    let (key_path, _) = sb.keygen("release.key");
    let c = sb.init("app.dare", "release.key");
    let key = signing_key(&key_path);
    let big = vec![b'x'; 5000];
    publish(
        &c,
        &key,
        &[
            (LINUX, "1.0.0", "stable", "bin/app", b"linux 1.0.0", false),
            (LINUX, "1.0.0", "stable", "share/big", &big, true),
            (MAC, "1.0.0", "stable", "bin/app", b"mac 1.0.0", true),
            (WINDOWS, "1.0.0", "stable", "bin/app.exe", b"windows 1.0.0", false),
        ],
        T0 + 100,
    );
    publish(
        &c,
        &key,
        &[
            (LINUX, "1.1.0", "stable", "bin/app", b"linux 1.1.0", true),
            (MAC, "1.1.0", "stable", "bin/app", b"mac 1.1.0", true),
            (LINUX, "2.0.0-beta.1", "beta", "bin/app", b"linux beta", false),
        ],
        T0 + 200,
    );
    (sb, c, key_path)
}
