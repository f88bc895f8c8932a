//! Running the `dare` binary and making build files.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;
use tempfile::TempDir;

pub const LINUX: &str = "x86_64-unknown-linux-gnu";
pub const MAC: &str = "aarch64-apple-darwin";
pub const WINDOWS: &str = "x86_64-pc-windows-msvc";
pub const TARGETS: [&str; 3] = [LINUX, MAC, WINDOWS];
pub const T0: u64 = 1_764_057_600;

pub fn dare() -> assert_cmd::Command {
    let mut c = assert_cmd::Command::new(env!("CARGO_BIN_EXE_dare"));
    c.env_remove("SOURCE_DATE_EPOCH").env_remove("DARE_LOG");
    c
}

/// Runs `dare ARGS` and returns its output. Wine's `CreateProcess` now and
/// then fails to start a process (`ERROR_INTERNAL_ERROR`, 1359) in a test that
/// runs hundreds of them; a failure to *start* is retried there, never a
/// failure of `dare` itself.
pub fn run(args: &[&str]) -> Output {
    let mut tries = 0;
    loop {
        match dare().args(args).output() {
            Ok(out) => return out,
            Err(e) if cfg!(windows) && tries < 3 => {
                tries += 1;
                eprintln!("starting dare failed ({e}); retrying");
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            Err(e) => panic!("running dare {args:?}: {e}"),
        }
    }
}

/// A directory with a signing key and a fresh container `c/app.dare`.
pub struct Env {
    pub dir: TempDir,
    pub key: String,
    pub container: String,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let key = dir.path().join("release.key");
        dare().arg("keygen").arg("--out").arg(&key).assert().success();
        Env::with_key(dir, key)
    }

    /// A new container signed by an existing `key`.
    pub fn with_key(dir: TempDir, key: PathBuf) -> Env {
        fs::create_dir(dir.path().join("c")).expect("the container directory");
        let container = dir.path().join("c/app.dare");
        let env = Env { key: s(&key), container: s(&container), dir };
        let t = T0.to_string();
        env.ok(&["init", &env.container, "--key", &env.key, "--origin", "example.com/app", "--time", &t]);
        env
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn p(&self, rel: &str) -> String {
        s(&self.path(rel))
    }

    /// Runs `dare ARGS`, which must succeed.
    pub fn ok(&self, args: &[&str]) -> Output {
        let out = run(args);
        assert!(out.status.success(), "dare {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        out
    }

    /// Runs `dare ARGS`, which must succeed and print one JSON object on stdout.
    pub fn json(&self, args: &[&str]) -> Value {
        one_json(&self.ok(args).stdout)
    }

    /// Runs `dare ARGS`, which must fail with exit code 1 (bad input, I/O)
    /// and one line `error: ...` on stderr. Returns the line.
    pub fn fail(&self, args: &[&str]) -> String {
        self.fail_with(1, args)
    }

    /// Runs `dare ARGS`, which must fail verification: exit code 3 and one
    /// line `error: ...` on stderr. Returns the line.
    pub fn fail_verification(&self, args: &[&str]) -> String {
        self.fail_with(3, args)
    }

    fn fail_with(&self, code: i32, args: &[&str]) -> String {
        let out = run(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "dare {args:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "dare {args:?}: stderr is not one line: {stderr}");
        assert!(lines[0].starts_with("error: "), "dare {args:?}: {stderr}");
        lines[0].to_string()
    }

    /// `dare publish` of `version` with `--time`, adding `extra` arguments.
    pub fn publish_args(&self, version: &str, artifacts: &[(&str, &Path)], extra: &[&str]) -> Vec<String> {
        let mut a: Vec<String> = vec!["publish".into(), self.container.clone(), "--key".into(), self.key.clone()];
        a.extend(["--version".into(), version.into(), "--time".into(), (T0 + 60).to_string()]);
        for (t, p) in artifacts {
            a.push("--artifact".into());
            a.push(format!("{t}={}", p.display()));
        }
        a.extend(extra.iter().map(|x| x.to_string()));
        a
    }

    pub fn container_bytes(&self) -> Vec<u8> {
        fs::read(&self.container).expect("reading the container")
    }

    pub fn pending(&self) -> PathBuf {
        PathBuf::from(format!("{}.pending", self.container))
    }

    /// The `dare ls --json` releases as (channel, target, version).
    pub fn releases(&self) -> Vec<(String, String, String)> {
        let v = self.json(&["ls", &self.container, "--json"]);
        let mut out: Vec<(String, String, String)> = v["releases"]
            .as_array()
            .expect("a release list")
            .iter()
            .map(|r| (str_of(&r["channel"]), str_of(&r["target"]), str_of(&r["version"])))
            .collect();
        out.sort();
        out
    }
}

pub fn str_of(v: &Value) -> String {
    v.as_str().unwrap_or_else(|| panic!("{v} is not a string")).to_string()
}

pub fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

pub fn s(p: &Path) -> String {
    p.to_str().expect("a UTF-8 temporary path").to_string()
}

/// Exactly one JSON object on one line.
pub fn one_json(stdout: &[u8]) -> Value {
    let text = String::from_utf8_lossy(stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "stdout is not one line: {text}");
    let v: Value = serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {text}"));
    assert!(v.is_object(), "{v}");
    v
}

pub fn write(path: &Path, content: &[u8], mode: u32) {
    fs::create_dir_all(path.parent().expect("a parent")).expect("creating directories");
    fs::write(path, content).expect("writing a file");
    dare_container::fsys::set_mode(path, mode).expect("setting the mode");
}

/// xorshift64* bytes: zstd cannot shrink them.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        out.extend_from_slice(&s.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Code-like text: zstd shrinks it well, but not trivially.
pub fn text_bytes(len: usize, seed: u64) -> Vec<u8> {
    const WORDS: [&str; 16] = [
        "let", "mut", "self", "buffer", "index", "return", "match", "Some", "None", "offset", "len", "frame", "header",
        "payload", "write", "read",
    ];
    let noise = random_bytes(len / 4 + 8, seed);
    let mut out = Vec::with_capacity(len + 64);
    let mut i = 0;
    while out.len() < len {
        let r = noise[i % noise.len()] as usize;
        out.extend_from_slice(WORDS[r % 16].as_bytes());
        out.push(if r.is_multiple_of(7) { b'\n' } else { b' ' });
        if r.is_multiple_of(11) {
            out.extend_from_slice(format!("{} ", r * 31 + i).as_bytes());
        }
        i += 1;
    }
    out.truncate(len);
    out
}

/// A file of `mib` MiB mixing text, random and zero blocks of 1 MiB.
pub fn mixed_file(path: &Path, mib: usize, seed: u64) {
    const MIB: usize = 1 << 20;
    let blocks = [text_bytes(MIB, seed), random_bytes(MIB, seed + 1), vec![0u8; MIB], text_bytes(MIB, seed + 2)];
    let randoms: Vec<Vec<u8>> = (0..3).map(|i| random_bytes(MIB, seed * 10 + i)).collect();
    fs::create_dir_all(path.parent().expect("a parent")).expect("creating directories");
    let mut f = fs::File::create(path).expect("creating a build file");
    for i in 0..mib {
        let block = if i % 4 == 1 { &randoms[i / 4 % 3] } else { &blocks[i % 4] };
        f.write_all(block).expect("writing a build file");
    }
    f.sync_all().expect("syncing a build file");
}
