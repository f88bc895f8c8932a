//! Running the built `dare` binary in a temporary directory, and building
//! containers with releases through the publisher library.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use dare_container::frame::{FrameInfo, Frames, read_header};
use dare_container::header::Header;
use dare_container::keys::{SigningKey, VerifierKey};
use dare_publisher::{Artifact, PublishError, PublishOptions};

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

    /// Asserts exit code 1 (bad input, I/O) and that stderr is exactly one
    /// `error: ` line; returns that line.
    #[track_caller]
    pub fn error(&self) -> &str {
        self.failed(1)
    }

    /// Asserts exit code 3 (a verification failure or a refused attack) and
    /// that stderr is exactly one `error: ` line; returns that line.
    #[track_caller]
    pub fn refused(&self) -> &str {
        self.failed(3)
    }

    #[track_caller]
    fn failed(&self, code: i32) -> &str {
        assert_eq!(self.code, code, "expected exit {code}:\nstdout: {}\nstderr: {}", self.stdout, self.stderr);
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

/// One target's build: its files as (path, content).
pub type Build<'a> = (&'a str, &'a [(&'a str, &'a [u8])]);

/// Publishes `version` of `builds` on `channel`, signed by `key` at `time`,
/// through the library: each build is written to a directory beside the
/// container, and published as that target's artifact.
pub fn publish(container: &Path, key: &SigningKey, channel: &str, version: &str, builds: &[Build<'_>], time: u64) {
    let root = container.with_extension(format!("builds-{channel}-{version}"));
    let mut artifacts = Vec::new();
    for (target, files) in builds {
        let dir = root.join(target);
        for (path, content) in *files {
            let p = dir.join(path);
            std::fs::create_dir_all(p.parent().expect("a parent")).expect("a build directory");
            std::fs::write(&p, content).expect("writing a build file");
            dare_container::fsys::set_mode(&p, 0o755).expect("the mode");
        }
        artifacts.push(Artifact { target: target.to_string(), path: dir });
    }
    let mut opts = PublishOptions::new(version, artifacts, time);
    opts.channel = channel.into();
    // The container's lock belongs to the open file, and a process that
    // another test thread is spawning holds a copy of every open file
    // between its fork and its exec: so the lock of an appender that just
    // closed can outlive it for a moment. Wait that out.
    for _ in 0..100 {
        match dare_publisher::publish(container, &[key], &opts, &mut |_| {}) {
            Err(PublishError::Container(dare_container::Error::Locked(_))) => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            other => {
                other.unwrap_or_else(|e| panic!("publishing {version}: {e}"));
                return;
            }
        }
    }
    panic!("{} stayed locked", container.display());
}

/// The content of a `bin/app` of `target` at `version`: 30 kB that zstd
/// cannot shrink, the same for every version of a target but the last line,
/// so a new version is a small delta from the previous one. It starts like
/// an ELF program: on Windows, which has no exec bit, that is how `dare
/// publish` knows it is one.
pub fn app(target: &str, version: &str) -> Vec<u8> {
    let mut s = target.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    let mut out = Vec::with_capacity(30_100);
    out.extend_from_slice(b"\x7fELF");
    while out.len() < 30_000 {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        out.extend_from_slice(&s.to_le_bytes());
    }
    out.extend_from_slice(format!("\n{target} {version}\n").as_bytes());
    out
}

/// The license every build ships: stored once.
pub const LICENSE: &[u8] = b"Permission is hereby granted, free of charge, to any person obtaining a copy\n";

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
///
/// - 1.0.0 (T0 + 100): Linux `bin/app`, `share/LICENSE`, `share/big`; macOS
///   `bin/app`, `share/LICENSE`; Windows `bin/app.exe`, `share/LICENSE`.
///   The license is stored once.
/// - 1.1.0 (T0 + 200): Linux and macOS, each `bin/app` changed (a delta
///   from 1.0.0's), the rest as in 1.0.0.
/// - 2.0.0-beta.1 on beta (T0 + 300): Linux `bin/app`, `share/LICENSE`.
pub fn released() -> (Sandbox, PathBuf, PathBuf) {
    let sb = Sandbox::new();
    let (key_path, _) = sb.keygen("release.key");
    let c = sb.init("app.dare", "release.key");
    let key = signing_key(&key_path);
    let big = vec![b'x'; 5000];
    let (l1, m1, w1) = (app(LINUX, "1.0.0"), app(MAC, "1.0.0"), app(WINDOWS, "1.0.0"));
    publish(
        &c,
        &key,
        "stable",
        "1.0.0",
        &[
            (LINUX, &[("bin/app", &l1), ("share/big", &big), ("share/LICENSE", LICENSE)]),
            (MAC, &[("bin/app", &m1), ("share/LICENSE", LICENSE)]),
            (WINDOWS, &[("bin/app.exe", &w1), ("share/LICENSE", LICENSE)]),
        ],
        T0 + 100,
    );
    let (l2, m2) = (app(LINUX, "1.1.0"), app(MAC, "1.1.0"));
    publish(
        &c,
        &key,
        "stable",
        "1.1.0",
        &[
            (LINUX, &[("bin/app", &l2), ("share/big", &big), ("share/LICENSE", LICENSE)]),
            (MAC, &[("bin/app", &m2), ("share/LICENSE", LICENSE)]),
        ],
        T0 + 200,
    );
    let beta = app(LINUX, "2.0.0-beta.1");
    publish(&c, &key, "beta", "2.0.0-beta.1", &[(LINUX, &[("bin/app", &beta), ("share/LICENSE", LICENSE)])], T0 + 300);
    (sb, c, key_path)
}

/// Checks a private key file is readable by its owner only. (On Windows
/// the directory's inherited ACL decides that; there is no mode to check.)
#[track_caller]
pub fn assert_private(path: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(path).unwrap().permissions().mode() & 0o777, 0o600);
    }
    #[cfg(windows)]
    assert!(std::fs::metadata(path).unwrap().is_file());
}
