//! Runs the independent Python reader (`dare_reader.py`, written from
//! docs/FORMAT.md alone) on containers that the `dare` CLI makes: full ones
//! (releases, a heartbeat, a 2-of-2 threshold root, more than 256 leaves) and
//! an updater's replica (a partial container). Every one must verify; then
//! single damaged bytes and cut tails must make both the reader and
//! `dare verify` fail.
//!
//! Needs `python3` with the `cryptography` module (CI installs it); without
//! them each test prints why it skips and passes.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The first signed time; later steps add to it.
const T0: u64 = 1_750_000_000;
const LINUX: &str = "x86_64-unknown-linux-gnu";
const MAC: &str = "aarch64-apple-darwin";
const WINDOWS: &str = "x86_64-pc-windows-msvc";

fn reader_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/independent/dare_reader.py")
}

/// Whether `python3` and its `cryptography` module are here; prints why not.
fn python_ready(test: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import cryptography.hazmat.primitives.asymmetric.ed25519"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!(
            "SKIPPED {test}: python3 with the `cryptography` module is not installed \
             (apt-get install python3-cryptography, or pip install cryptography)"
        );
    }
    ok
}

/// Runs the reader on `file`; returns its exit code and stdout.
fn read(file: &Path) -> (i32, String) {
    let out = Command::new("python3").arg(reader_script()).arg(file).output().expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("Traceback"), "the reader crashed on {}:\n{stderr}", file.display());
    (out.status.code().expect("the reader exits"), stdout)
}

/// Asserts the reader accepts `file` as a `kind` ("full" or "partial")
/// container with `frames` frames and tree `size`, and that `dare verify`
/// agrees; returns the reader's OK line.
#[track_caller]
fn assert_ok(s: &Sandbox, file: &Path, kind: &str, frames: usize, size: u64) -> String {
    let (code, stdout) = read(file);
    assert_eq!(code, 0, "the reader rejects {}:\n{stdout}", file.display());
    let ok = stdout.lines().last().unwrap_or_default().to_owned();
    let want = format!("OK: {kind} container, {frames} frames, tree size {size}, root ");
    assert!(ok.starts_with(&want), "expected {want:?}...\ngot {stdout}");
    assert_eq!(ok.len(), want.len() + 64, "{ok}");
    s.dare(&["verify", &file.to_string_lossy()]);
    ok
}

/// Writes `bytes` to a new file, and asserts that the reader says BAD and
/// exits 1, and that `dare verify` fails too.
#[track_caller]
fn assert_bad(s: &Sandbox, name: &str, bytes: &[u8], why: &str) {
    let file = s.path(&format!("bad-{name}.dare"));
    std::fs::write(&file, bytes).expect("write");
    let (code, stdout) = read(&file);
    assert_eq!(code, 1, "{why}: the reader accepts it:\n{stdout}");
    assert!(stdout.starts_with("BAD: frame "), "{why}: {stdout}");
    let verify = s.run(&["verify", &file.to_string_lossy()]);
    assert!(!verify.status.success(), "{why}: dare verify accepts it");
    eprintln!("{name}: {}", stdout.trim());
}

/// A temporary directory, and the built `dare` binary run in it.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        Sandbox { dir: tempfile::tempdir().expect("temp dir") }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        assert_cmd::Command::new(env!("CARGO_BIN_EXE_dare"))
            .current_dir(self.dir.path())
            .env_remove("SOURCE_DATE_EPOCH")
            .args(args)
            .output()
            .expect("dare runs")
    }

    /// Runs `dare args...` and asserts it succeeds.
    #[track_caller]
    fn dare(&self, args: &[&str]) {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "dare {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `dare keygen` of a key named `name` into the file `file` (and `file.pub`).
    fn keygen(&self, file: &str, name: &str) {
        self.dare(&["keygen", "--out", file, "--name", name]);
    }

    /// Writes a build directory: an incompressible binary (stored as is), a
    /// compressible text (stored as zstd) and a small file in a subdirectory.
    fn build(&self, dir: &str, seed: u64) {
        let root = self.path(dir);
        std::fs::create_dir_all(root.join("bin")).expect("mkdir");
        std::fs::create_dir_all(root.join("share/doc")).expect("mkdir");
        std::fs::write(root.join("bin/app"), noise(seed, 6000)).expect("write");
        std::fs::write(root.join("share/doc/README"), "dare independent reader test\n".repeat(400)).expect("write");
        std::fs::write(root.join("share/VERSION"), format!("{seed}\n")).expect("write");
    }
}

/// `len` bytes that zstd cannot shrink (xorshift64).
fn noise(mut x: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A frame of a container, found by a minimal forward walk (FORMAT.md 2.2),
/// to aim the damage.
struct Frame {
    offset: usize,
    header: std::ops::Range<usize>,
    payload: std::ops::Range<usize>,
    kind: String,
}

fn frames(bytes: &[u8]) -> Vec<Frame> {
    fn length(bytes: &[u8], at: usize, width: usize) -> usize {
        bytes[at..at + width].iter().fold(0, |n, b| n << 8 | usize::from(*b))
    }
    let width = |tag: u8| 1usize << (tag & 3);
    let (mut out, mut o) = (Vec::new(), 0);
    while o < bytes.len() {
        let w = width(bytes[o]);
        let body = o + 1 + w;
        let total = length(bytes, o + 1, w) + 2 + 2 * w;
        let hw = width(bytes[body]);
        let header = body + 1 + hw..body + 1 + hw + length(bytes, body + 1, hw);
        let pw = width(bytes[header.end]);
        let payload = header.end + 1 + pw..header.end + 1 + pw + length(bytes, header.end + 1, pw);
        let h: serde_json::Value = serde_json::from_slice(&bytes[header.clone()]).expect("header is JSON");
        let kind = h["kind"].as_str().expect("kind").to_owned();
        out.push(Frame { offset: o, header, payload, kind });
        o += total;
    }
    out
}

/// Damages `file` in the ways every container kind shares, and in those its
/// frames allow, expecting BAD each time.
fn assert_damage_detected(s: &Sandbox, file: &Path) {
    let good = std::fs::read(file).expect("read");
    let all = frames(&good);
    let stem = file.file_stem().expect("name").to_string_lossy().into_owned();
    let damaged = |at: usize, f: &dyn Fn(u8) -> u8| {
        let mut b = good.clone();
        b[at] = f(b[at]);
        b
    };
    let flip = |b: u8| b ^ 0x01;
    let of = |kind: &'static str| all.iter().filter(move |f| f.kind == kind);

    // An entry header: another path (still a valid header); only the tree can tell.
    let entry = of("entry").next().expect("an entry");
    let at = entry.header.start
        + find(&good[entry.header.clone()], br#""path":""#).expect("a path member")
        + br#""path":""#.len();
    let other = |b: u8| if b == b'z' { b'y' } else { b'z' };
    assert_bad(s, &format!("{stem}-entry-path"), &damaged(at, &other), "a changed entry path");
    // An entry header byte that breaks the JSON.
    assert_bad(s, &format!("{stem}-entry-json"), &damaged(entry.header.start, &flip), "a broken entry header");
    // A payload byte, of a stored and of a compressed entry.
    for (i, e) in of("entry").filter(|e| !e.payload.is_empty()).take(3).enumerate() {
        let at = e.payload.start + e.payload.len() / 2;
        assert_bad(s, &format!("{stem}-payload-{i}"), &damaged(at, &flip), "a changed payload byte");
    }
    // A tile hash (full containers) or a proof hash (replicas).
    for kind in ["tile", "proof"] {
        if let Some(f) = of(kind).rfind(|f| !f.payload.is_empty()) {
            let at = f.payload.start + f.payload.len() / 2;
            assert_bad(s, &format!("{stem}-{kind}"), &damaged(at, &flip), "a changed tile or proof hash");
        }
    }
    // A signature character of the last seal (still canonical base64).
    let seal = of("seal").next_back().expect("a seal");
    let end = find(&good[seal.header.clone()], br#"\n","time""#).expect("the checkpoint's end");
    let at = seal.header.start + end - 30;
    let other = |b: u8| if b == b'A' { b'B' } else { b'A' };
    assert_bad(s, &format!("{stem}-signature"), &damaged(at, &other), "a changed seal signature");
    // The first frame's tag, and the last frame's trailing tag.
    assert_bad(s, &format!("{stem}-first-tag"), &damaged(0, &flip), "a changed first tag");
    assert_bad(s, &format!("{stem}-last-tag"), &damaged(good.len() - 1, &flip), "a changed last tag");
    // A cut tail: one byte, part of the last seal, the whole last seal.
    assert_bad(s, &format!("{stem}-cut-1"), &good[..good.len() - 1], "a file cut by one byte");
    assert_bad(s, &format!("{stem}-cut-100"), &good[..good.len() - 100], "a file cut inside its last seal");
    let last = all.last().expect("frames");
    if all.len() > 1 && all[all.len() - 2].kind != "seal" {
        assert_bad(s, &format!("{stem}-cut-seal"), &good[..last.offset], "a file without its last seal");
    }
    // Bytes after the last seal (a torn tail with no CONTAINER.pending).
    let mut torn = good.clone();
    torn.extend_from_slice(&good[entry.offset..entry.header.start + 2]);
    assert_bad(s, &format!("{stem}-torn"), &torn, "a partial frame after the last seal");
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn t(k: u64) -> String {
    (T0 + k).to_string()
}

fn artifact(target: &str, dir: &str) -> String {
    format!("{target}={dir}")
}

#[test]
fn full_container_with_releases_and_a_heartbeat() {
    if !python_ready("full_container_with_releases_and_a_heartbeat") {
        return;
    }
    let s = Sandbox::new();
    s.keygen("k", "example.com/indep");
    let c = s.path("app.dare");
    let cs = c.to_string_lossy().into_owned();
    s.dare(&["init", &cs, "--key", "k", "--origin", "example.com/indep", "--time", &t(0)]);
    assert_ok(&s, &c, "full", 4, 2);

    for (dir, seed) in [("linux", 1), ("mac", 2), ("windows", 3)] {
        s.build(dir, seed);
    }
    let (l, m, w) = (artifact(LINUX, "linux"), artifact(MAC, "mac"), artifact(WINDOWS, "windows"));
    // Two targets of three files each, then a third target at the same version:
    // each publish adds its entries, a right-edge tile, a manifest and a seal.
    let one =
        ["publish", &cs, "--key", "k", "--version", "1.0.0", "--artifact", &l, "--artifact", &m, "--time", &t(10)];
    s.dare(&one);
    s.dare(&["publish", &cs, "--key", "k", "--version", "1.0.0", "--artifact", &w, "--time", &t(20)]);
    assert_ok(&s, &c, "full", 4 + (6 + 3) + (3 + 3), 2 + 7 + 4);

    for (dir, seed) in [("linux", 4), ("mac", 5), ("windows", 6)] {
        s.build(dir, seed);
    }
    let two =
        ["publish", &cs, "--key", "k", "--version", "1.1.0-rc.1", "--artifact", &l, "--artifact", &m, "--time", &t(30)];
    s.dare(&two);
    let before = assert_ok(&s, &c, "full", 19 + 6 + 3, 20);
    s.dare(&["seal", &cs, "--key", "k", "--time", &t(40)]);
    let after = assert_ok(&s, &c, "full", 29, 20);
    assert_eq!(before.split("root").last(), after.split("root").last(), "a heartbeat keeps the tree");
    assert_damage_detected(&s, &c);
}

#[test]
fn threshold_two_of_two() {
    if !python_ready("threshold_two_of_two") {
        return;
    }
    let s = Sandbox::new();
    s.keygen("k", "example.com/indep");
    s.keygen("other", "other.example/witness");
    let c = s.path("two.dare");
    let cs = c.to_string_lossy().into_owned();
    // Both keys sign the genesis seal, so `init` takes both as --key.
    s.dare(&["init", &cs, "--key", "k", "--key", "other", "--threshold", "2", "--origin", "example.com/two"]);
    s.build("wasm", 7);
    let a = artifact("wasm32-wasip1", "wasm");
    s.dare(&["publish", &cs, "--key", "k", "--key", "other", "--version", "2.0.0+build.7", "--artifact", &a]);
    assert_ok(&s, &c, "full", 10, 6);
    // One signature is not enough: the reader must reject a seal whose
    // second signature line is damaged.
    assert_damage_detected(&s, &c);
}

#[test]
fn more_than_256_leaves_has_full_tiles() {
    if !python_ready("more_than_256_leaves_has_full_tiles") {
        return;
    }
    let s = Sandbox::new();
    s.keygen("k", "example.com/many");
    let c = s.path("many.dare");
    let cs = c.to_string_lossy().into_owned();
    s.dare(&["init", &cs, "--key", "k", "--origin", "example.com/many", "--time", &t(0)]);
    let dir = s.path("many");
    std::fs::create_dir_all(&dir).expect("mkdir");
    for i in 0..300 {
        std::fs::write(dir.join(format!("f{i:03}")), format!("file {i}\n")).expect("write");
    }
    let a = artifact(LINUX, "many");
    s.dare(&["publish", &cs, "--key", "k", "--version", "1.0.0", "--artifact", &a, "--time", &t(10)]);
    // 2 + 300 + 1 = 303 leaves: one full level-0 tile and a partial one of 47.
    assert_ok(&s, &c, "full", 4 + 300 + 2 + 3, 303);
    s.dare(&["publish", &cs, "--key", "k", "--version", "1.0.1", "--artifact", &a, "--time", &t(20)]);
    // 604 leaves: two full level-0 tiles, a partial one, and a level-1 tile of 2.
    assert_ok(&s, &c, "full", 309 + 300 + 3 + 2, 604);
    assert_damage_detected(&s, &c);
}

#[test]
fn replica_of_updates_is_a_partial_container() {
    if !python_ready("replica_of_updates_is_a_partial_container") {
        return;
    }
    let s = Sandbox::new();
    s.keygen("k", "example.com/indep");
    let c = s.path("app.dare");
    let cs = c.to_string_lossy().into_owned();
    let update = || {
        s.dare(&[
            "update",
            "--from",
            &cs,
            "--trust",
            "k.pub",
            "--state",
            "state",
            "--install",
            "install",
            "--target",
            LINUX,
            "--max-age",
            "100000000",
        ])
    };
    let replica = s.path("state/replica.dare");
    s.dare(&["init", &cs, "--key", "k", "--origin", "example.com/indep", "--time", &t(0)]);
    for (dir, seed) in [("linux", 1), ("mac", 2)] {
        s.build(dir, seed);
    }
    let (l, m) = (artifact(LINUX, "linux"), artifact(MAC, "mac"));
    s.dare(&["publish", &cs, "--key", "k", "--version", "1.0.0", "--artifact", &l, "--artifact", &m, "--time", &t(10)]);
    update();
    // genesis, 3 entries, manifest, proof, seal; tree of 2 + 6 + 1 leaves.
    assert_ok(&s, &replica, "partial", 7, 9);

    s.build("linux", 3);
    s.dare(&["publish", &cs, "--key", "k", "--version", "1.1.0", "--artifact", &l, "--time", &t(20)]);
    s.dare(&["seal", &cs, "--key", "k", "--time", &t(30)]);
    update();
    // + 3 entries, manifest, proof, seal; tree 9 + 4.
    assert_ok(&s, &replica, "partial", 13, 13);

    // Up to date: a heartbeat appends the seal alone; another target's
    // release appends the manifest, proof and seal.
    s.dare(&["seal", &cs, "--key", "k", "--time", &t(40)]);
    update();
    assert_ok(&s, &replica, "partial", 14, 13);
    s.build("mac", 4);
    s.dare(&["publish", &cs, "--key", "k", "--version", "1.2.0", "--artifact", &m, "--time", &t(50)]);
    update();
    assert_ok(&s, &replica, "partial", 17, 17);
    assert_damage_detected(&s, &replica);
}
