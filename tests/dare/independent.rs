//! Unix-only: the reader runs under the system's python3, which the Windows
//! test run (under Wine) does not have; the format is the same everywhere.
//!
//! Runs the independent Python reader (`dare_reader.py`, written from
//! docs/FORMAT.md alone) on format-2 containers that the `dare` CLI makes:
//! several targets and channels, releases that share content with earlier
//! ones, deltas, index patches, content identical across targets, heartbeats,
//! a key rotation (made with `dare_container::Appender::append_keys`: the CLI
//! has no `dare keys rotate`), a 2-of-2 threshold, a level with 256 full
//! tiles (a page), torn tails with and without `CONTAINER.pending`, and an
//! updater's replicas (partial containers, fetched from a path and a
//! `file://` mirror). Every one must verify, and `dare verify --json` must
//! report the same frames, tree size and root; then damaged copies (a byte of
//! an entry payload, a delta payload, an index listing or patch, a map slot,
//! a page, a tile, a seal signature, a cut or torn tail, ...) must make both
//! the reader and `dare verify` fail.
//!
//! Three more scripts, also written from FORMAT.md alone:
//! `worked_examples.py` checks section 12 byte for byte against what the CLI
//! makes; `conformance.py` writes containers dare's writer never produces
//! (valid ones, and ones breaking one rule each) on which `dare verify` and
//! the reader must agree with the document; `make_partial.py` writes partial
//! containers of several segments from a full one (section 11).
//!
//! Needs `python3` with the `cryptography` and `zstandard` modules. Without
//! them each test prints why it skips and passes, except under `CI=true`,
//! where it fails.
//!
//! Private channels (FORMAT.md 13), made by `dare publish --encrypt-to` and
//! with `dare_container::Appender` (a removed recipient, an entry sealed under
//! another key): the reader verifies them without a key, opens them with an
//! age identity (`--identity`) and gets the original bytes, says "NOT A
//! RECIPIENT" for another identity, and refuses a flipped ciphertext byte as
//! `dare verify` does.
//!
//! With `DARE_KEEP_SANDBOX` set, a failing test keeps its directory.

#![cfg(unix)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use dare_container::Appender;
use dare_container::crypt::{ContentKey, PayloadKey, Recipients, seal_all, wrap_content_key};
use dare_container::keys::{SigningKey, TrustRoot};

/// The first signed time; later steps add to it.
const T0: u64 = 1_750_000_000;
/// `dare update --max-age`: T0 is in the past.
const MAX_AGE: &str = "1000000000";
const LINUX: &str = "x86_64-unknown-linux-gnu";
const MAC: &str = "aarch64-apple-darwin";
const WINDOWS: &str = "x86_64-pc-windows-msvc";

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/independent").join(name)
}

/// Whether `python3` and its `cryptography` and `zstandard` modules are here.
/// Without them the test skips (prints why), except under `CI=true`, where a
/// missing tool is a failure.
fn python_ready(test: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import cryptography.hazmat.primitives.asymmetric.ed25519, zstandard"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        let why = "python3 with the `cryptography` and `zstandard` modules is not installed \
                   (apt-get install python3-cryptography python3-zstandard, or pip install cryptography zstandard)";
        if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
            panic!("{test}: {why}; CI=true, so this fails instead of skipping");
        }
        eprintln!("SKIPPED {test}: {why}");
    }
    ok
}

/// Runs a script of tests/independent with `args`; returns its exit code and
/// stdout.
fn python(name: &str, args: &[&Path]) -> (i32, String) {
    let out = Command::new("python3")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .arg(script(name))
        .args(args)
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("Traceback"), "{name} crashed on {args:?}:\n{stdout}{stderr}");
    (out.status.code().expect("the script exits"), stdout)
}

/// What the reader counted (its `stats:` line), e.g. `deltas_applied`.
type Stats = HashMap<String, String>;

fn stat(stats: &Stats, name: &str) -> u64 {
    stats.get(name).unwrap_or_else(|| panic!("no {name} in {stats:?}")).parse().expect("a count")
}

/// Asserts the reader accepts `file` as a `kind` ("full" or "partial")
/// container, and that `dare verify --json` agrees on the frames, tree size,
/// root, trust fingerprint and number of entries and deltas; returns the
/// reader's counts.
#[track_caller]
fn assert_ok(s: &Sandbox, file: &Path, kind: &str) -> Stats {
    let (code, stdout) = python("dare_reader.py", &[file]);
    assert_eq!(code, 0, "the reader rejects {}:\n{stdout}", file.display());
    let lines: Vec<&str> = stdout.lines().collect();
    let ok = lines.last().copied().unwrap_or_default();
    let stats: Stats = lines
        .iter()
        .find_map(|l| l.strip_prefix("stats: "))
        .expect("a stats line")
        .split(' ')
        .map(|kv| kv.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())).expect("name=value"))
        .collect();
    let out = s.run(&["verify", "--json", &file.to_string_lossy()]);
    assert!(out.status.success(), "dare verify rejects {}: {}", file.display(), String::from_utf8_lossy(&out.stdout));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("verify --json");
    let want = format!(
        "OK: {kind} container, {} frames, tree size {}, root {}",
        v["frames"],
        v["size"],
        v["root"].as_str().expect("root")
    );
    assert_eq!(ok, want, "the reader and dare verify disagree on {}:\n{stdout}", file.display());
    assert_eq!(v["partial"], serde_json::json!(kind == "partial"));
    assert_eq!(stats["fingerprint"], v["trust_fingerprint"].as_str().expect("fingerprint"));
    assert_eq!(stat(&stats, "entries") + stat(&stats, "deltas"), v["entries"].as_u64().expect("entries"));
    stats
}

/// Writes `bytes` to a new file (with `pending` as its CONTAINER.pending
/// content, if any) and asserts that the reader says BAD and exits 1, and
/// that `dare verify` fails too.
#[track_caller]
fn assert_bad(s: &Sandbox, name: &str, bytes: &[u8], pending: Option<&str>, why: &str) {
    let file = s.path(&format!("bad-{name}.dare"));
    std::fs::write(&file, bytes).expect("write");
    if let Some(p) = pending {
        std::fs::write(s.path(&format!("bad-{name}.dare.pending")), p).expect("write");
    }
    let (code, stdout) = python("dare_reader.py", &[&file]);
    assert_eq!(code, 1, "{why}: the reader accepts it:\n{stdout}");
    assert!(stdout.starts_with("BAD: frame "), "{why}: {stdout}");
    let verify = s.run(&["verify", &file.to_string_lossy()]);
    assert!(!verify.status.success(), "{why}: dare verify accepts it:\n{}", String::from_utf8_lossy(&verify.stdout));
    eprintln!("{name}: {}", stdout.trim());
}

/// A temporary directory, and the built `dare` binary run in it. With
/// `DARE_KEEP_SANDBOX` set, a failing test keeps it and prints where.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if std::thread::panicking() && std::env::var_os("DARE_KEEP_SANDBOX").is_some() {
            let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"));
            eprintln!("kept the sandbox {}", dir.keep().display());
        }
    }
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

    /// Runs `dare args...`, asserts it succeeds and returns its stdout.
    #[track_caller]
    fn dare(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "dare {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `dare keygen` of a key named `name` into the file `file` (and `file.pub`).
    fn keygen(&self, file: &str, name: &str) {
        self.dare(&["keygen", "--out", file, "--name", name]);
    }

    /// Writes `content` at `dir/rel` (creating directories) with `mode`.
    fn write(&self, dir: &str, rel: &str, content: &[u8], mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        let path = self.path(dir).join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, content).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    /// A build directory: an incompressible executable (stored as is), a
    /// compressible text (stored as zstd) and a small file every target has.
    fn build(&self, dir: &str, exe: &str, seed: u64) {
        self.write(dir, exe, &noise(seed, 30_000), 0o755);
        self.write(dir, "share/doc/README", readme(0).as_bytes(), 0o644);
        self.write(dir, "share/COMMON", b"the same in every build\n", 0o644);
    }

    /// `dare update` of the `LINUX` stable build from `from` into state/ and
    /// install/; returns its JSON outcome.
    fn update(&self, from: &str, trust: &[&str]) -> serde_json::Value {
        let mut args = vec!["update", "--from", from, "--state", "state", "--install", "install"];
        args.extend(["--target", LINUX, "--max-age", MAX_AGE, "--json"]);
        for k in trust {
            args.extend(["--trust", k]);
        }
        let out = self.dare(&args);
        serde_json::from_str(&out).expect("update --json")
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

/// A compressible text; `edits` changes a few lines of it.
fn readme(edits: usize) -> String {
    (0..600)
        .map(|i| {
            if i % 100 == 7 && i / 100 < edits {
                format!("line {i}: edited\n")
            } else {
                format!("line {i} of the readme\n")
            }
        })
        .collect()
}

/// Changes a few bytes of `dir/rel` in place (a file a delta patches well).
fn patch(s: &Sandbox, dir: &str, rel: &str, at: usize) {
    let path = s.path(dir).join(rel);
    let mut b = std::fs::read(&path).expect("read");
    for x in &mut b[at..at + 16] {
        *x ^= 0x5a;
    }
    std::fs::write(&path, b).expect("write");
}

/// Appends a new trust root of `new` to `container` with the library (the
/// CLI has no rotation command) and seals it with both the old and the new
/// key (FORMAT.md 8.3).
fn rotate(s: &Sandbox, container: &Path, old: &str, new: &str, time: u64) {
    let key = |f: &str| SigningKey::parse(&std::fs::read_to_string(s.path(f)).expect("key file")).expect("key");
    let (old, new) = (key(old), key(new));
    let mut a = Appender::open(container).expect("open for appending");
    a.append_keys(TrustRoot::new(vec![new.verifier()], 1).expect("root"), &[&old, &new]).expect("append keys");
    a.seal(&[&old, &new], time).expect("seal");
}

/// A frame of a container, found by a minimal forward walk (FORMAT.md 2.2),
/// to aim the damage.
struct Frame {
    offset: usize,
    len: usize,
    header: std::ops::Range<usize>,
    payload: std::ops::Range<usize>,
    h: serde_json::Value,
}

impl Frame {
    fn kind(&self) -> &str {
        self.h["kind"].as_str().expect("kind")
    }
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
        let len = length(bytes, o + 1, w) + 2 + 2 * w;
        let hw = width(bytes[body]);
        let header = body + 1 + hw..body + 1 + hw + length(bytes, body + 1, hw);
        let pw = width(bytes[header.end]);
        let payload = header.end + 1 + pw..header.end + 1 + pw + length(bytes, header.end + 1, pw);
        let h = serde_json::from_slice(&bytes[header.clone()]).expect("header is JSON");
        out.push(Frame { offset: o, len, header, payload, h });
        o += len;
    }
    out
}

/// A frame with minimal-width lengths (FORMAT.md 2.1).
fn encode_frame(header: &[u8], payload: &[u8]) -> Vec<u8> {
    fn width(n: usize) -> (u8, usize) {
        match n {
            0..=0xff => (0, 1),
            0x100..=0xffff => (1, 2),
            0x1_0000..=0xffff_ffff => (2, 4),
            _ => (3, 8),
        }
    }
    let mut body = Vec::new();
    for record in [header, payload] {
        let (t, w) = width(record.len());
        body.push(0xf0 + t);
        body.extend_from_slice(&(record.len() as u64).to_be_bytes()[8 - w..]);
        body.extend_from_slice(record);
    }
    let (t, w) = width(body.len());
    let mut out = vec![0xf4 + t];
    out.extend_from_slice(&(body.len() as u64).to_be_bytes()[8 - w..]);
    out.extend_from_slice(&body);
    out.extend_from_slice(&(body.len() as u64).to_le_bytes()[..w]);
    out.push(0xf4 + t);
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `good` with the byte at `at` changed by `f`.
fn damaged(good: &[u8], at: usize, f: impl Fn(u8) -> u8) -> Vec<u8> {
    let mut b = good.to_vec();
    b[at] = f(b[at]);
    b
}

fn flip(b: u8) -> u8 {
    b ^ 0x01
}

/// Another lowercase hex digit (keeps a digest well-formed).
fn other_hex(b: u8) -> u8 {
    if b == b'a' { b'b' } else { b'a' }
}

/// Damages `file` in the ways every container shares and in those its frames
/// allow, expecting BAD from the reader and a failure from `dare verify`
/// each time.
fn assert_damage_detected(s: &Sandbox, file: &Path) {
    let good = std::fs::read(file).expect("read");
    let all = frames(&good);
    let stem = file.file_stem().expect("name").to_string_lossy().into_owned();
    let of = |kind: &'static str| all.iter().filter(move |f| f.kind() == kind);
    let mid = |f: &Frame| f.payload.start + f.payload.len() / 2;
    let bad = |what: &str, bytes: &[u8], why: &str| assert_bad(s, &format!("{stem}-{what}"), bytes, None, why);

    // Entry payloads: one stored as is, one zstd (its stored digest, and what it decompresses to).
    for compression in ["none", "zstd"] {
        if let Some(e) = of("entry").find(|e| e.h["compression"] == compression && !e.payload.is_empty()) {
            bad(&format!("entry-{compression}"), &damaged(&good, mid(e), flip), "a changed entry payload byte");
        }
    }
    // An entry header's sha256 (still a valid header: only the tree can tell).
    if let Some(e) = of("entry").find(|e| e.h["compression"] == "zstd").or_else(|| of("entry").next()) {
        let at = e.header.start + find(&good[e.header.clone()], br#""sha256":""#).expect("sha256") + 12;
        bad("entry-sha256", &damaged(&good, at, other_hex), "a changed entry digest");
    }
    // A delta payload, and its digest in the header.
    if let Some(d) = of("delta").next() {
        bad("delta", &damaged(&good, mid(d), flip), "a changed delta payload byte");
        let at = d.header.start + find(&good[d.header.clone()], br#""base":""#).expect("base") + 10;
        bad("delta-base", &damaged(&good, at, other_hex), "a changed delta base");
    }
    // An index listing (payload), an index patch, a replica's listing frame, and an index header.
    if let Some(i) = of("index").find(|i| !i.payload.is_empty()) {
        bad("index-listing", &damaged(&good, i.payload.end - 2, flip), "a changed index listing byte");
    }
    if let Some(i) = of("index").find(|i| i.h.get("patch").is_some() && !i.payload.is_empty()) {
        let bytes = damaged(&good, i.payload.start + 2, flip);
        if of("proof").next().is_none() {
            bad("index-patch", &bytes, "a changed index patch byte");
        } else {
            // FORMAT.md 11 steps 4 and 6 name an index's listing and a
            // delta's stored bytes, not an index's patch: dare verify does not
            // check a patch in a partial container; the reader checks it
            // against patch.stored_sha256 (a signed digest).
            let file = s.path(&format!("bad-{stem}-index-patch.dare"));
            std::fs::write(&file, &bytes).expect("write");
            let (code, stdout) = python("dare_reader.py", &[&file]);
            assert_eq!(code, 1, "a changed index patch byte in a partial container: the reader accepts it:\n{stdout}");
        }
    }
    if let Some(l) = of("listing").next() {
        bad("listing", &damaged(&good, mid(l), flip), "a changed listing frame byte");
    }
    if let Some(i) = of("index").next() {
        let at = i.header.start + find(&good[i.header.clone()], br#""version":""#).expect("version") + 11;
        bad("index-version", &damaged(&good, at, |b| if b == b'7' { b'8' } else { b'7' }), "a changed index version");
    }
    // The last map: its last slot (a tile offset), and its frontier.
    if let Some(m) = of("map").next_back() {
        bad("map-slot", &damaged(&good, m.payload.end - 1, flip), "a changed map slot");
        if m.h["size"].as_u64() != Some(1) && m.payload.len() > 8 {
            bad("map-frontier", &damaged(&good, m.payload.start, flip), "a changed map frontier");
        }
    }
    // A page.
    if let Some(p) = of("page").next() {
        bad("page", &damaged(&good, mid(p), flip), "a changed page offset");
    }
    // A tile hash (full containers) or a proof hash (replicas).
    for kind in ["tile", "proof"] {
        if let Some(f) = of(kind).rfind(|f| !f.payload.is_empty()) {
            bad(kind, &damaged(&good, mid(f), flip), "a changed tile or proof hash");
        }
    }
    // A manifest header byte (a version digit or a digest).
    if let Some(m) = of("manifest").next_back().filter(|m| m.h["releases"].as_array().is_some_and(|r| !r.is_empty())) {
        let at = m.header.start + find(&good[m.header.clone()], br#""version":""#).expect("version") + 11;
        bad("manifest", &damaged(&good, at, |b| if b == b'7' { b'8' } else { b'7' }), "a changed manifest");
    }
    // A signature character of every signature line of the last seal (still
    // canonical base64): lines of keys the reader does not trust are ignored
    // (FORMAT.md 6.2), so damage them all.
    let seal = of("seal").next_back().expect("a seal");
    let mut b = good.clone();
    let note = &good[seal.header.clone()];
    let start = "\\n\u{2014} ".as_bytes(); // a JSON-escaped newline, an em dash, a space
    for (i, _) in note.windows(start.len()).enumerate().filter(|(_, w)| *w == start) {
        let line_end = i + start.len() + find(&note[i + start.len()..], b"\\n").expect("the line's end");
        let at = seal.header.start + line_end - 20;
        b[at] = if b[at] == b'A' { b'B' } else { b'A' };
    }
    assert_ne!(b, good, "a signature line");
    bad("signature", &b, "a changed seal signature");
    // The seal's time (no longer the checkpoint's).
    let at = seal.header.start + find(&good[seal.header.clone()], br#""time":"#).expect("time") + 8;
    bad("seal-time", &damaged(&good, at, |b| if b == b'1' { b'2' } else { b'1' }), "a changed seal time");
    // The first frame's tag, and the last frame's trailing tag.
    bad("first-tag", &damaged(&good, 0, flip), "a changed first tag");
    bad("last-tag", &damaged(&good, good.len() - 1, flip), "a changed last tag");
    // A cut tail: one byte, part of the last seal, the whole last seal (no CONTAINER.pending).
    bad("cut-1", &good[..good.len() - 1], "a file cut by one byte");
    bad("cut-100", &good[..good.len() - 100], "a file cut inside its last seal");
    let last = all.last().expect("frames");
    if all.len() > 1 && all[all.len() - 2].kind() != "seal" {
        bad("cut-seal", &good[..last.offset], "a file without its last seal");
    }
    // Bytes after the last seal (a torn tail with no CONTAINER.pending).
    let mut torn = good.clone();
    torn.extend_from_slice(&good[all[1].offset..all[1].header.start + 2]);
    bad("torn", &torn, "a partial frame after the last seal");
}

fn t(k: u64) -> String {
    (T0 + k).to_string()
}

fn artifact(target: &str, dir: &str) -> String {
    format!("{target}={dir}")
}

#[test]
fn worked_examples_of_format_md_section_12() {
    if !python_ready("worked_examples_of_format_md_section_12") {
        return;
    }
    let s = Sandbox::new();
    // 12.1: the key file, `dare init`.
    let key = "PRIVATE+KEY+example.com/demo+0a3e8996+AQABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f\n";
    std::fs::write(s.path("k"), key).expect("write");
    s.dare(&[
        "init",
        "demo.dare",
        "--key",
        "k",
        "--origin",
        "example.com/demo",
        "--name",
        "demo",
        "--time",
        "1764057600",
    ]);
    let init = s.path("init.dare");
    std::fs::copy(s.path("demo.dare"), &init).expect("copy");
    // 12.2: two one-file builds, a publish and a heartbeat.
    s.write("a", "bin/hello", b"#!/bin/sh\necho hello\n", 0o755);
    s.write("b", "bin/hello", b"#!/bin/sh\necho hi\n", 0o755);
    let (a, b) = (artifact(LINUX, "a"), artifact(MAC, "b"));
    s.dare(&[
        "publish",
        "demo.dare",
        "--key",
        "k",
        "--version",
        "1.0.0",
        "--artifact",
        &a,
        "--artifact",
        &b,
        "--time",
        "1764144000",
    ]);
    s.dare(&["seal", "demo.dare", "--key", "k", "--time", "1764230400"]);
    let full = s.path("demo.dare");

    let stats = assert_ok(&s, &init, "full");
    assert_eq!((stat(&stats, "seals"), stat(&stats, "tiles"), stat(&stats, "maps")), (1, 1, 1));
    let stats = assert_ok(&s, &full, "full");
    assert_eq!((stat(&stats, "entries"), stat(&stats, "indexes"), stat(&stats, "heartbeats")), (2, 2, 1));

    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/FORMAT.md");
    let (code, out) = python("worked_examples.py", &[&doc, &init, &full]);
    eprintln!("{out}");
    assert_eq!(code, 0, "FORMAT.md section 12 differs from what dare makes:\n{out}");
    assert!(out.lines().last().is_some_and(|l| l.starts_with("OK: ")), "{out}");
}

#[test]
fn full_container_with_every_feature_and_its_replicas() {
    if !python_ready("full_container_with_every_feature_and_its_replicas") {
        return;
    }
    let s = Sandbox::new();
    s.keygen("k", "example.com/indep");
    s.keygen("k2", "example.com/indep-2026");
    let c = s.path("app.dare");
    let cs = c.to_string_lossy().into_owned();
    let url = format!("file://{cs}");
    let replica = s.path("state/replica.dare");
    s.dare(&["init", &cs, "--key", "k", "--origin", "example.com/indep", "--name", "Indep app", "--time", &t(0)]);
    assert_ok(&s, &c, "full");

    // 1.0.0 of three targets: README and COMMON are identical in all three, so stored once.
    s.build("linux", "bin/app", 1);
    s.build("mac", "bin/app", 2);
    s.build("windows", "bin/app.exe", 3);
    let (l, m, w) = (artifact(LINUX, "linux"), artifact(MAC, "mac"), artifact(WINDOWS, "windows"));
    let publish = |version: &str, channel: &str, key: &str, time: u64, artifacts: &[&str]| {
        let time = t(time);
        let mut args =
            vec!["publish", cs.as_str(), "--key", key, "--version", version, "--channel", channel, "--time", &time];
        for a in artifacts {
            args.extend(["--artifact", a]);
        }
        s.dare(&args);
    };
    publish("1.0.0", "stable", "k", 10, &[&l, &m, &w]);
    let st = assert_ok(&s, &c, "full");
    assert_eq!((stat(&st, "entries"), stat(&st, "indexes"), stat(&st, "files")), (5, 3, 9), "{st:?}");
    assert_eq!(stat(&st, "files_shared"), 4, "README and COMMON of mac and windows are linux's: {st:?}");

    // The same linux build on the beta channel: an index naming only existing entries.
    publish("1.1.0-beta.1", "beta", "k", 20, &[&l]);
    let st = assert_ok(&s, &c, "full");
    assert_eq!((stat(&st, "entries"), stat(&st, "indexes"), stat(&st, "files_shared")), (5, 4, 7), "{st:?}");

    // 1.1.0: linux's executable and README change a little (deltas), a file is
    // added; mac is unchanged (shares everything); windows' executable changes.
    patch(&s, "linux", "bin/app", 1000);
    s.write("linux", "share/doc/README", readme(3).as_bytes(), 0o644);
    s.write("linux", "share/NEW", b"new in 1.1.0\n", 0o644);
    patch(&s, "windows", "bin/app.exe", 20_000);
    publish("1.1.0", "stable", "k", 30, &[&l, &m, &w]);
    let st = assert_ok(&s, &c, "full");
    assert!(stat(&st, "deltas") >= 3, "linux's app and README, windows' app.exe: {st:?}");
    assert_eq!(stat(&st, "deltas"), stat(&st, "deltas_applied"), "{st:?}");
    assert!(stat(&st, "entries_zstd") >= 2, "the READMEs are compressed: {st:?}");
    assert!(stat(&st, "index_patches") >= 2, "linux's and windows' listings changed: {st:?}");

    // A heartbeat, then the first replica: from a path.
    s.dare(&["seal", &cs, "--key", "k", "--time", &t(40)]);
    assert_eq!(stat(&assert_ok(&s, &c, "full"), "heartbeats"), 1);
    let up = s.update(&cs, &["k.pub"]);
    assert_eq!(up["version"], "1.1.0", "{up}");
    let st = assert_ok(&s, &replica, "partial");
    assert_eq!((stat(&st, "header_only_indexes"), stat(&st, "listings")), (1, 1), "{st:?}");

    // A key rotation to k2 (a keys leaf, sealed by k and k2): the replica
    // (from a file:// URL) still verifies with the genesis root.
    rotate(&s, &c, "k", "k2", T0 + 50);
    let st = assert_ok(&s, &c, "full");
    assert_eq!(stat(&st, "keys"), 1);
    s.update(&url, &["k.pub"]);
    assert_ok(&s, &replica, "partial");
    // A release signed by k2 alone, and a heartbeat by k2.
    patch(&s, "linux", "bin/app", 5000);
    publish("1.2.0", "stable", "k2", 60, &[&l]);
    let st = assert_ok(&s, &c, "full");
    assert!(stat(&st, "deltas_applied") >= 4, "{st:?}");
    s.dare(&["seal", &cs, "--key", "k2", "--time", &t(70)]);
    let st = assert_ok(&s, &c, "full");
    assert_eq!((stat(&st, "heartbeats"), stat(&st, "keys")), (2, 1), "{st:?}");

    assert_damage_detected(&s, &c);
    assert_damage_detected(&s, &replica);
}

/// After a rotation, `dare update` writes a replica
/// `[genesis][index][manifest][proof][seal]` whose seal only the new root
/// signs, and no `keys` leaf: neither `dare verify` nor the reader (FORMAT.md
/// 11: "the first frame is the genesis (its trust root signs)") accepts it.

#[test]
fn a_rotation_seal_needs_both_roots() {
    if !python_ready("a_rotation_seal_needs_both_roots") {
        return;
    }
    let s = Sandbox::new();
    s.keygen("k", "example.com/rot");
    s.keygen("k2", "example.com/rot-next");
    let c = s.path("rot.dare");
    let cs = c.to_string_lossy().into_owned();
    s.dare(&["init", &cs, "--key", "k", "--origin", "example.com/rot", "--time", &t(0)]);
    rotate(&s, &c, "k", "k2", T0 + 10);
    assert_ok(&s, &c, "full");

    // Re-encode the last seal with its members in another order: still valid (1.1).
    let good = std::fs::read(&c).expect("read");
    let seal = frames(&good).pop().expect("the seal");
    assert_eq!(seal.kind(), "seal");
    let reencoded = |h: &serde_json::Value| {
        let mut b = good[..seal.offset].to_vec();
        b.extend(encode_frame(&serde_json::to_vec(h).expect("json"), b""));
        b
    };
    let sorted = s.path("sorted.dare");
    std::fs::write(&sorted, reencoded(&seal.h)).expect("write");
    assert_ne!(std::fs::read(&sorted).expect("read"), good, "serde_json sorts the members");
    assert_ok(&s, &sorted, "full");

    // Without either key's signature line, the rotation seal is rejected.
    let note = seal.h["checkpoint"].as_str().expect("checkpoint");
    for (who, name) in [("old", "example.com/rot "), ("new", "example.com/rot-next ")] {
        let lines: Vec<&str> = note.lines().filter(|l| !l.starts_with(&format!("\u{2014} {name}"))).collect();
        assert_eq!(lines.len(), note.lines().count() - 1, "one line of {name}");
        let mut h = seal.h.clone();
        h["checkpoint"] = serde_json::Value::String(lines.join("\n") + "\n");
        assert_bad(&s, &format!("rotation-without-{who}"), &reencoded(&h), None, "a rotation seal missing a root");
    }
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
    s.build("wasm", "bin/app.wasm", 7);
    let a = artifact("wasm32-wasip1", "wasm");
    s.dare(&["publish", &cs, "--key", "k", "--key", "other", "--version", "2.0.0+build.7", "--artifact", &a]);
    assert_ok(&s, &c, "full");
    // One signature is not enough: the reader must reject a seal whose
    // second signature line is damaged.
    assert_damage_detected(&s, &c);
}

#[test]
fn a_level_of_256_full_tiles_has_a_page() {
    if !python_ready("a_level_of_256_full_tiles_has_a_page") {
        return;
    }
    let s = Sandbox::new();
    s.keygen("k", "example.com/many");
    let c = s.path("many.dare");
    let cs = c.to_string_lossy().into_owned();
    s.dare(&["init", &cs, "--key", "k", "--origin", "example.com/many", "--time", &t(0)]);
    // 2 + 65532 entries + index + manifest = 65536 leaves: 256 full level-0
    // tiles (one page), a full level-1 tile and a level-2 tile of width 1.
    for d in 0..256 {
        for i in 0..256 {
            if d * 256 + i < 65_532 {
                s.write("many", &format!("d{d:03}/f{i:03}"), format!("file {d} {i}\n").as_bytes(), 0o644);
            }
        }
    }
    let a = artifact(LINUX, "many");
    s.dare(&["publish", &cs, "--key", "k", "--version", "1.0.0", "--artifact", &a, "--time", &t(10)]);
    let st = assert_ok(&s, &c, "full");
    assert_eq!((stat(&st, "pages"), stat(&st, "tiles")), (1, 1 + 256 + 1 + 1), "{st:?}");
    // A later seal's map still names the page.
    s.build("mac", "bin/app", 1);
    s.dare(&[
        "publish",
        &cs,
        "--key",
        "k",
        "--version",
        "1.0.0",
        "--artifact",
        &artifact(MAC, "mac"),
        "--time",
        &t(20),
    ]);
    let st = assert_ok(&s, &c, "full");
    assert_eq!(stat(&st, "pages"), 1, "{st:?}");

    let good = std::fs::read(&c).expect("read");
    let all = frames(&good);
    let page = all.iter().find(|f| f.kind() == "page").expect("a page");
    assert_eq!(page.payload.len(), 2048);
    assert_bad(&s, "page-low", &damaged(&good, page.payload.start + 8 * 100 + 7, flip), None, "a page offset");
    assert_bad(&s, "page-high", &damaged(&good, page.payload.start + 8 * 255, flip), None, "a page offset");
    // The last map's first slot is the page's payload offset.
    let map = all.iter().rfind(|f| f.kind() == "map").expect("a map");
    let n = map.h["size"].as_u64().expect("size");
    let slot = map.payload.start + 32 * (n - 1).count_ones() as usize;
    let named = u64::from_be_bytes(good[slot..slot + 8].try_into().expect("8 bytes"));
    assert_eq!(named as usize, page.payload.start, "the map's first slot is the page");
    assert_bad(&s, "map-page-slot", &damaged(&good, slot + 7, flip), None, "a map slot naming the page");
    assert_bad(
        &s,
        "full-tile",
        &damaged(&good, all.iter().find(|f| f.kind() == "tile").expect("tile").payload.start, flip),
        None,
        "a full tile",
    );
}

#[test]
fn torn_tails_and_the_pending_file() {
    if !python_ready("torn_tails_and_the_pending_file") {
        return;
    }
    let s = Sandbox::new();
    s.keygen("k", "example.com/torn");
    let c = s.path("torn.dare");
    let cs = c.to_string_lossy().into_owned();
    s.dare(&["init", &cs, "--key", "k", "--origin", "example.com/torn", "--time", &t(0)]);
    s.build("linux", "bin/app", 1);
    s.dare(&[
        "publish",
        &cs,
        "--key",
        "k",
        "--version",
        "1.0.0",
        "--artifact",
        &artifact(LINUX, "linux"),
        "--time",
        &t(10),
    ]);
    let sealed = std::fs::read(&c).expect("read").len();
    s.build("linux", "bin/app", 2);
    s.dare(&[
        "publish",
        &cs,
        "--key",
        "k",
        "--version",
        "1.1.0",
        "--artifact",
        &artifact(LINUX, "linux"),
        "--time",
        &t(20),
    ]);
    let good = std::fs::read(&c).expect("read");
    let all = frames(&good);
    let last_seal = all.last().expect("frames");
    let pending = format!("{{\"sealed_len\":{sealed}}}\n");

    // A crash mid-frame, and one after whole frames but before the seal.
    for (name, cut) in [("mid-frame", sealed + 1000), ("before-seal", last_seal.offset)] {
        let file = s.path(&format!("{name}.dare"));
        std::fs::write(&file, &good[..cut]).expect("write");
        std::fs::write(s.path(&format!("{name}.dare.pending")), &pending).expect("write");
        let (code, out) = python("dare_reader.py", &[&file]);
        assert_eq!(code, 0, "{name}: a torn tail the pending file explains:\n{out}");
        assert!(out.contains(&format!("warning: torn tail of {} bytes at {sealed}", cut - sealed)), "{out}");
        assert_ok(&s, &file, "full");
        // Without the pending file, or with another sealed_len: rejected.
        assert_bad(&s, &format!("{name}-no-pending"), &good[..cut], None, "a torn tail without pending file");
        let wrong = format!("{{\"sealed_len\":{}}}\n", sealed - 1);
        assert_bad(
            &s,
            &format!("{name}-wrong-pending"),
            &good[..cut],
            Some(&wrong),
            "a pending file for another length",
        );
    }
    // A file that ends with a seal but breaks in the middle is not a torn
    // tail, pending file or not (FORMAT.md 10).
    let index = all.iter().rfind(|f| f.kind() == "index").expect("an index");
    let broken = damaged(&good, index.offset + index.len - 1, flip);
    assert_bad(&s, "broken-middle", &broken, Some(&pending), "a break before a final seal");
}

#[test]
fn a_partial_container_of_several_segments() {
    if !python_ready("a_partial_container_of_several_segments") {
        return;
    }
    let s = Sandbox::new();
    s.keygen("k", "example.com/seg");
    let c = s.path("seg.dare");
    let cs = c.to_string_lossy().into_owned();
    s.dare(&["init", &cs, "--key", "k", "--origin", "example.com/seg", "--time", &t(0)]);
    s.build("linux", "bin/app", 1);
    s.build("mac", "bin/app", 2);
    let (l, m) = (artifact(LINUX, "linux"), artifact(MAC, "mac"));
    s.dare(&["publish", &cs, "--key", "k", "--version", "1.0.0", "--artifact", &l, "--artifact", &m, "--time", &t(10)]);
    s.dare(&[
        "publish",
        &cs,
        "--key",
        "k",
        "--version",
        "2.0.0-rc.1",
        "--channel",
        "beta",
        "--artifact",
        &l,
        "--time",
        &t(20),
    ]);
    patch(&s, "linux", "bin/app", 300);
    s.write("linux", "share/doc/README", readme(2).as_bytes(), 0o644);
    s.dare(&["publish", &cs, "--key", "k", "--version", "1.0.1", "--artifact", &l, "--time", &t(30)]);
    s.dare(&["seal", &cs, "--key", "k", "--time", &t(40)]);
    assert!(stat(&assert_ok(&s, &c, "full"), "deltas") >= 2);

    // Seals 1 (linux's index), 2 (mac's older index and beta's, with their
    // entries), 3 (linux's new index, its entries and deltas) and the heartbeat 4.
    let p = s.path("segments.dare");
    let (stable, beta) = (format!("stable/{LINUX}"), format!("beta/{LINUX}"));
    let segments =
        [format!("1:{stable}"), format!("2:stable/{MAC},{beta}:entries"), format!("3:{stable}:entries"), "4:".into()];
    let mut args: Vec<&Path> = vec![&c, &p];
    args.extend(segments.iter().map(Path::new));
    let (code, out) = python("make_partial.py", &args);
    assert_eq!(code, 0, "{out}");
    let st = assert_ok(&s, &p, "partial");
    assert_eq!((stat(&st, "proofs"), stat(&st, "seals"), stat(&st, "heartbeats")), (3, 4, 1), "{st:?}");
    assert!(stat(&st, "deltas_applied") >= 2, "{st:?}");
    assert_damage_detected(&s, &p);

    // FORMAT.md 11: leaves in any order (indices come from the proof), and
    // proof nodes the recomputation does not use (a child of a node taken
    // whole, a repeated node, a node not complete in the tree) are ignored;
    // a node given twice with different hashes is not.
    let both = format!("1:{stable},stable/{MAC}");
    let flags = [
        ("reverse", true),
        ("extra", true),
        ("repeat", true),
        ("incomplete", true),
        ("header-only", true),
        ("header-only,reverse", true),
        ("conflict", false),
    ];
    for (flag, ok) in flags {
        let file = s.path(&format!("segments-{flag}.dare"));
        let first = format!("{both}:{flag}");
        let (code, out) = python("make_partial.py", &[&c, &file, Path::new(&first), Path::new(&segments[2])]);
        assert_eq!(code, 0, "{out}");
        if ok {
            assert_ok(&s, &file, "partial");
        } else {
            assert_bad(&s, &format!("segments-{flag}"), &std::fs::read(&file).expect("read"), None, flag);
        }
    }
}

#[test]
fn conformance_cases_written_from_format_md() {
    if !python_ready("conformance_cases_written_from_format_md") {
        return;
    }
    let s = Sandbox::new();
    let dir = s.path("cases");
    let (code, out) = python("conformance.py", &[&dir]);
    assert_eq!(code, 0, "{out}");
    let (mut wrong, mut accepted) = (Vec::new(), Vec::new());
    for line in out.lines() {
        let (name, why) = line.split_once(": ").expect("NAME: why");
        let file = dir.join(format!("{name}.dare"));
        let accept = name.starts_with("ok-");
        let (code, reader) = python("dare_reader.py", &[&file]);
        if (code == 0) != accept {
            wrong.push(format!("the reader disagrees on {name} ({why}): {}", reader.trim()));
        }
        let verify = s.run(&["verify", &file.to_string_lossy()]);
        if verify.status.success() != accept {
            let err = String::from_utf8_lossy(&verify.stderr);
            wrong.push(format!("dare verify disagrees on {name} ({why}): {}", err.trim()));
        }
        if accept {
            accepted.push(file);
        }
    }
    assert!(out.lines().count() >= 90, "{out}");
    assert!(wrong.is_empty(), "FORMAT.md, dare verify and the reader disagree:\n{}", wrong.join("\n"));
    for file in accepted {
        assert_ok(&s, &file, "full");
    }
}

/// FORMAT.md 11 lets a partial container hold any leaf, and its seals are
/// checked "as in a full container", so a segment holding the `keys` leaf of
/// a rotation, sealed by both roots, hands over to the new root. dare verify
/// refuses keys frames in partial containers ("rotation in partial
/// containers is not supported yet").
#[test]
fn partial_container_with_a_rotation() {
    if !python_ready("partial_container_with_a_rotation") {
        return;
    }
    let s = Sandbox::new();
    s.keygen("k", "example.com/indep");
    s.keygen("k2", "example.com/indep-2026");
    let c = s.path("app.dare");
    let cs = c.to_string_lossy().into_owned();
    s.dare(&["init", &cs, "--key", "k", "--origin", "example.com/indep", "--time", &t(0)]);
    s.build("linux", "bin/app", 1);
    let l = artifact(LINUX, "linux");
    s.dare(&["publish", &cs, "--key", "k", "--version", "1.0.0", "--artifact", &l, "--time", &t(10)]);
    rotate(&s, &c, "k", "k2", T0 + 20);
    patch(&s, "linux", "bin/app", 5000);
    s.dare(&["publish", &cs, "--key", "k2", "--version", "1.1.0", "--artifact", &l, "--time", &t(30)]);
    let p = s.path("rotated.dare");
    let stable = format!("stable/{LINUX}");
    let segments = [format!("1:{stable}"), format!("2:{stable}:keys"), format!("3:{stable}")];
    let mut args: Vec<&Path> = vec![&c, &p];
    args.extend(segments.iter().map(Path::new));
    let (code, out) = python("make_partial.py", &args);
    assert_eq!(code, 0, "{out}");
    assert_eq!(stat(&assert_ok(&s, &p, "partial"), "keys"), 1);
}

#[test]
fn json_rules_of_section_1_1() {
    if !python_ready("json_rules_of_section_1_1") {
        return;
    }
    let s = Sandbox::new();
    s.keygen("k", "example.com/json");
    let c = s.path("json.dare");
    s.dare(&["init", &c.to_string_lossy(), "--key", "k", "--origin", "example.com/json", "--time", &t(0)]);
    let good = std::fs::read(&c).expect("read");
    let seal = frames(&good).pop().expect("the seal");
    let raw = std::str::from_utf8(&good[seal.header.clone()]).expect("UTF-8").to_owned();
    // The last frame, re-encoded with another header (nothing refers to a seal).
    let with = |header: &str| {
        let mut b = good[..seal.offset].to_vec();
        b.extend(encode_frame(header.as_bytes(), b""));
        b
    };
    let time = format!(r#""time":{}"#, t(0));
    let accepted = [
        ("pretty", serde_json::to_string_pretty(&seal.h).expect("json")),
        ("spaces", format!(" \t{}\r\n ", raw.replace(',', " , ").replace(':', " : "))),
        ("escapes", raw.replace(r#""kind":"seal""#, r#""\u006bind":"s\u0065al""#)),
        ("order", raw.replace(&format!(",{time}"), "").replacen('{', &format!("{{{time},"), 1)),
    ];
    for (name, header) in accepted {
        assert_ne!(header, raw, "{name}");
        let file = s.path(&format!("ok-{name}.dare"));
        std::fs::write(&file, with(&header)).expect("write");
        assert_ok(&s, &file, "full");
    }
    let rejected = [
        ("duplicate", format!("{},{time}}}", &raw[..raw.len() - 1])),
        ("unknown", raw.replacen('{', r#"{"extra":0,"#, 1)),
        ("fraction", raw.replace(&time, &format!("{time}.0"))),
        ("exponent", raw.replace(&time, r#""time":175e7"#)),
        ("bom", format!("\u{feff}{raw}")),
        ("array", format!("[{raw}]")),
        ("trailing", format!("{raw}x")),
        ("kind-case", raw.replace(r#""kind":"seal""#, r#""kind":"Seal""#)),
    ];
    for (name, header) in rejected {
        assert_ne!(header, raw, "{name}");
        assert_bad(&s, &format!("json-{name}"), &with(&header), None, name);
    }
}

/// One file of a private release made by [`private_release`], as stored.
struct Stored {
    at: dare_container::header::LeafRef,
    key: PayloadKey,
    content: Vec<u8>,
}

/// Appends a release of `files` (path, mode, content) for `LINUX` on the
/// private channel `private` sealed to `to`, with the library, as FORMAT.md
/// 13.3 lays it out: an exchange, the new contents as private entries (a
/// file whose content `before` holds at its path is named, not stored again;
/// a changed one also gets a private delta from its `before` content), a
/// private index, a seal. Returns what each path now names. The entry of
/// the path `wrong_key` (if any) is sealed under another leaf's key: every
/// stored digest holds, but it does not open under the key its listing gives.
#[allow(clippy::too_many_arguments)]
fn private_release(
    container: &Path,
    signer: &SigningKey,
    to: &Recipients,
    version: &str,
    files: &[(&str, u32, Vec<u8>)],
    before: &HashMap<String, Stored>,
    time: u64,
    wrong_key: Option<&str>,
) -> HashMap<String, Stored> {
    use dare_container::header::{Compression, Delta, DeltaRef, Entry, FileRecord, Sha256Hex};
    use std::io::Write;
    let digest = |b: &[u8]| Sha256Hex(dare_container::hashio::sha256(b));
    let k = ContentKey::generate().expect("a content key");
    let mut a = Appender::open(container).expect("open for appending");
    let x = a.append_exchange("private", &wrap_content_key(&k, to).expect("wrap")).expect("exchange");
    let (mut records, mut now) = (Vec::new(), HashMap::new());
    for (path, mode, content) in files {
        let sha = digest(content);
        let old = before.get(*path);
        let stored = match old.filter(|o| o.content == *content) {
            Some(o) => Stored { at: o.at, key: o.key, content: content.clone() },
            None => {
                let packed = zstd::bulk::compress(content, 3).expect("zstd");
                let (payload, compression) = if packed.len() < content.len() {
                    (packed, Compression::Zstd)
                } else {
                    (content.clone(), Compression::None)
                };
                let key = k.payload_key(a.next_leaf());
                let sealing = if wrong_key == Some(*path) { k.payload_key(a.next_leaf() + 1) } else { key };
                let sealed = seal_all(&sealing, &payload);
                let entry = Entry {
                    size: content.len() as u64,
                    sha256: k.keyed_digest(&sha),
                    stored_size: sealed.len() as u64,
                    stored_sha256: digest(&sealed),
                    compression,
                    sealed: Some(x),
                };
                let at = a.append_entry(entry, &mut &sealed[..]).expect("entry");
                Stored { at, key, content: content.clone() }
            }
        };
        let mut deltas = Vec::new();
        if let Some(o) = old.filter(|o| o.content != *content) {
            let mut enc = zstd::stream::write::Encoder::with_ref_prefix(Vec::new(), 19, &o.content).expect("zstd");
            enc.write_all(content).expect("zstd");
            let patch = enc.finish().expect("zstd");
            let key = k.payload_key(a.next_leaf());
            let sealed = seal_all(&key, &patch);
            let base = digest(&o.content);
            let delta = Delta {
                base: k.keyed_digest(&base),
                base_size: o.content.len() as u64,
                size: content.len() as u64,
                sha256: k.keyed_digest(&sha),
                stored_size: sealed.len() as u64,
                stored_sha256: digest(&sealed),
                sealed: Some(x),
            };
            let at = a.append_delta(delta, &mut &sealed[..]).expect("delta");
            deltas.push(DeltaRef { base, leaf: at.leaf, offset: at.offset, length: at.length, key: Some(key) });
        }
        records.push(FileRecord {
            path: path.to_string(),
            mode: *mode,
            size: content.len() as u64,
            sha256: sha,
            entry: stored.at,
            deltas,
            key: Some(stored.key),
        });
        now.insert(path.to_string(), stored);
    }
    a.append_sealed_index("private", LINUX, version, &records, &k, x).expect("private index");
    a.seal(&[signer], time).expect("seal");
    now
}

/// Runs the reader on `file` with the identity `id` (and `--extract dir`);
/// returns its exit code, last line and counts.
fn read_with(file: &Path, id: &Path, dir: &Path) -> (i32, String, Stats) {
    let (code, stdout) = python("dare_reader.py", &[file, Path::new("--identity"), id, Path::new("--extract"), dir]);
    let last = stdout.lines().last().unwrap_or_default().to_owned();
    let stats = stdout
        .lines()
        .find_map(|l| l.strip_prefix("stats: "))
        .map(|l| l.split(' ').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.into(), v.into())).collect())
        .unwrap_or_default();
    (code, last, stats)
}

/// A container `app.dare` for the private-channel tests, made by `dare
/// init` with the key `k`: the key, the path and the path as text.
fn private_container(s: &Sandbox) -> (SigningKey, std::path::PathBuf, String) {
    s.keygen("k", "example.com/private");
    let signer = SigningKey::parse(&std::fs::read_to_string(s.path("k")).expect("key")).expect("key");
    let c = s.path("app.dare");
    let cs = c.to_string_lossy().into_owned();
    s.dare(&["init", &cs, "--key", "k", "--origin", "example.com/private", "--time", &t(0)]);
    (signer, c, cs)
}

#[test]
fn a_private_channel_verifies_without_a_key_and_opens_with_one() {
    if !python_ready("a_private_channel_verifies_without_a_key_and_opens_with_one") {
        return;
    }
    let s = Sandbox::new();
    let (signer, c, cs) = private_container(&s);
    // A plain release beside the private channel.
    s.build("linux", "bin/app", 1);
    let l = artifact(LINUX, "linux");
    s.dare(&["publish", &cs, "--key", "k", "--version", "1.0.0", "--artifact", &l, "--time", &t(10)]);
    // Readers: `reader` gets both private releases, `gone` only the first
    // (removed from the recipients, 13.4), `stranger` none.
    for id in ["reader", "gone", "stranger"] {
        s.dare(&["keygen", "--encryption", "--out", id]);
    }
    let recipients = |ids: &[&str]| {
        let pubs: Vec<String> =
            ids.iter().map(|i| std::fs::read_to_string(s.path(&format!("{i}.pub"))).expect("pub")).collect();
        Recipients::parse(pubs.iter().map(String::as_str)).expect("recipients")
    };
    // 1.0.0: an incompressible file of several chunks (stored as is) and a
    // compressible one (zstd); 1.1.0 changes the first (a new entry and a
    // delta) and names the second's entry of 1.0.0 again.
    let app1 = noise(7, 3 * 65536 + 1000);
    let mut app2 = app1.clone();
    app2[70_000..70_016].copy_from_slice(b"version 1.1.0 ok");
    let v1 = vec![("bin/app", 0o755, app1), ("share/doc/README", 0o644, readme(0).into_bytes())];
    let v2 = vec![("bin/app", 0o755, app2), ("share/doc/README", 0o644, readme(0).into_bytes())];
    let first =
        private_release(&c, &signer, &recipients(&["reader", "gone"]), "1.0.0", &v1, &HashMap::new(), T0 + 20, None);
    private_release(&c, &signer, &recipients(&["reader"]), "1.1.0", &v2, &first, T0 + 30, None);

    // Without a key: every stored digest, the sealed refs and the release rules.
    let st = assert_ok(&s, &c, "full");
    assert_eq!(
        [
            stat(&st, "exchanges"),
            stat(&st, "sealed_entries"),
            stat(&st, "sealed_deltas"),
            stat(&st, "sealed_indexes"),
            stat(&st, "listings_opened"),
        ],
        [2, 3, 1, 2, 0],
        "{st:?}"
    );
    let ok = python("dare_reader.py", &[&c]).1.lines().last().expect("a line").to_owned();

    // A recipient of both: every listing, entry and delta opens to the original bytes.
    let (code, last, st) = read_with(&c, &s.path("reader"), &s.path("out-reader"));
    assert_eq!((code, &last), (0, &ok), "{st:?}");
    assert_eq!(
        [
            stat(&st, "exchanges_opened"),
            stat(&st, "listings_opened"),
            stat(&st, "files_opened"),
            stat(&st, "deltas_applied")
        ],
        [2, 2, 4, 1],
        "{st:?}"
    );
    for (version, files) in [("1.0.0", &v1), ("1.1.0", &v2)] {
        for (path, _, content) in files.iter() {
            let got = s.path("out-reader").join("private").join(LINUX).join(version).join(path);
            assert_eq!(&std::fs::read(&got).expect("extracted"), content, "{version} {path}");
        }
    }
    // A removed recipient still reads the release it was given, not the next one.
    let (code, last, st) = read_with(&c, &s.path("gone"), &s.path("out-gone"));
    assert_eq!((code, &last), (0, &ok), "{st:?}");
    assert_eq!([stat(&st, "exchanges_opened"), stat(&st, "exchanges_not_recipient")], [1, 1], "{st:?}");
    assert!(s.path("out-gone/private").join(LINUX).join("1.0.0/bin/app").exists());
    assert!(!s.path("out-gone/private").join(LINUX).join("1.1.0").exists());
    // Not a recipient at all: said so, distinctly.
    let (code, last, _) = read_with(&c, &s.path("stranger"), &s.path("out-stranger"));
    assert_eq!(code, 3, "{last}");
    assert!(last.starts_with("NOT A RECIPIENT: "), "{last}");
    assert!(!s.path("out-stranger").exists());

    // Flipped ciphertext bytes: refused by dare verify and by the reader,
    // with or without the key.
    let good = std::fs::read(&c).expect("read");
    let all = frames(&good);
    let sealed: Vec<&Frame> = all.iter().filter(|f| f.h.get("sealed").is_some()).collect();
    let of = |kind: &str| sealed.iter().filter(|f| f.kind() == kind).map(|f| f.payload.clone()).collect::<Vec<_>>();
    let (entry, delta, index) = (of("entry")[0].clone(), of("delta")[0].clone(), of("index")[1].clone());
    let exchange = all.iter().rfind(|f| f.kind() == "exchange").expect("an exchange").payload.clone();
    for (name, at) in [
        ("private-entry", entry.start + 70_000),
        ("private-entry-tag", entry.end - 1),
        ("private-delta", delta.start + 3),
        ("private-index", index.start + 5),
        ("exchange", exchange.end - 2),
    ] {
        let bytes = damaged(&good, at, flip);
        assert_bad(&s, name, &bytes, None, name);
        let (code, last, _) = read_with(&s.path(&format!("bad-{name}.dare")), &s.path("reader"), &s.path("out-bad"));
        assert_eq!(code, 1, "{name}: the reader with the key accepts it: {last}");
        assert!(last.starts_with("BAD: frame "), "{name}: {last}");
    }
}

#[test]
fn a_private_entry_sealed_under_another_key_is_refused_by_its_reader() {
    if !python_ready("a_private_entry_sealed_under_another_key_is_refused_by_its_reader") {
        return;
    }
    let s = Sandbox::new();
    let (signer, c, _) = private_container(&s);
    s.dare(&["keygen", "--encryption", "--out", "reader"]);
    let to = Recipients::parse([std::fs::read_to_string(s.path("reader.pub")).expect("pub").as_str()]).expect("to");
    let files = vec![("bin/app", 0o755, noise(3, 5000)), ("share/doc/README", 0o644, readme(1).into_bytes())];
    private_release(&c, &signer, &to, "1.0.0", &files, &HashMap::new(), T0 + 20, Some("share/doc/README"));
    // Every stored digest holds: a mirror, and a reader without the key, cannot tell.
    let st = assert_ok(&s, &c, "full");
    assert_eq!(stat(&st, "sealed_entries"), 2, "{st:?}");
    // The recipient can, and refuses it: the chunk does not authenticate under the listing's key.
    let (code, last, _) = read_with(&c, &s.path("reader"), &s.path("out"));
    assert_eq!(code, 1, "{last}");
    assert!(last.starts_with("BAD: frame ") && last.contains("does not authenticate"), "{last}");
}

#[test]
fn a_private_channel_published_by_the_cli_opens_in_the_reader() {
    if !python_ready("a_private_channel_published_by_the_cli_opens_in_the_reader") {
        return;
    }
    let s = Sandbox::new();
    s.keygen("k", "example.com/cli-private");
    let c = s.path("app.dare");
    let cs = c.to_string_lossy().into_owned();
    s.dare(&["init", &cs, "--key", "k", "--origin", "example.com/cli-private", "--time", &t(0)]);
    // The publisher's identity (for reuse and deltas) and a client's, both recipients.
    for id in ["publisher", "client", "stranger"] {
        s.dare(&["keygen", "--encryption", "--out", id]);
    }
    std::fs::write(
        s.path("recipients"),
        format!(
            "# who reads the private channel\n{}{}",
            std::fs::read_to_string(s.path("publisher.pub")).expect("pub"),
            std::fs::read_to_string(s.path("client.pub")).expect("pub")
        ),
    )
    .expect("write");
    let l = artifact(LINUX, "linux");
    let publish = |version: &str, time: u64| {
        let time = t(time);
        s.dare(&[
            "publish",
            &cs,
            "--key",
            "k",
            "--version",
            version,
            "--channel",
            "internal",
            "--artifact",
            &l,
            "--encrypt-to",
            "recipients",
            "--identity",
            "publisher",
            "--time",
            &time,
        ]);
    };
    s.build("linux", "bin/app", 1);
    publish("1.0.0", 10);
    let v1: Vec<(String, Vec<u8>)> = ["bin/app", "share/doc/README", "share/COMMON"]
        .iter()
        .map(|p| (p.to_string(), std::fs::read(s.path("linux").join(p)).expect("read")))
        .collect();
    // 1.1.0: the executable changes a little (a delta against 1.0.0's), the rest is named again.
    patch(&s, "linux", "bin/app", 1000);
    publish("1.1.0", 20);
    // A plain channel beside it.
    s.dare(&["publish", &cs, "--key", "k", "--version", "1.0.0", "--artifact", &l, "--time", &t(30)]);

    let st = assert_ok(&s, &c, "full");
    assert_eq!([stat(&st, "exchanges"), stat(&st, "sealed_indexes")], [2, 2], "{st:?}");
    assert!(stat(&st, "sealed_entries") >= 4, "{st:?}");
    let ok = python("dare_reader.py", &[&c]).1.lines().last().expect("a line").to_owned();
    let (code, last, st) = read_with(&c, &s.path("client"), &s.path("out"));
    assert_eq!((code, &last), (0, &ok), "{st:?}");
    assert_eq!([stat(&st, "exchanges_opened"), stat(&st, "listings_opened"), stat(&st, "files_opened")], [2, 2, 6]);
    for (path, content) in &v1 {
        let got = s.path("out/internal").join(LINUX).join("1.0.0").join(path);
        assert_eq!(&std::fs::read(&got).expect("extracted"), content, "1.0.0 {path}");
    }
    let app = s.path("out/internal").join(LINUX).join("1.1.0/bin/app");
    assert_eq!(std::fs::read(app).expect("extracted"), std::fs::read(s.path("linux/bin/app")).expect("read"));
    // The 1.1.0 executable's delta opens and, applied to 1.0.0's, gives it.
    assert_eq!([stat(&st, "deltas_applied"), stat(&st, "deltas_unapplied")], [1, 0], "{st:?}");
    let (code, last, _) = read_with(&c, &s.path("stranger"), &s.path("out-stranger"));
    assert_eq!(code, 3, "{last}");
    assert!(last.starts_with("NOT A RECIPIENT: "), "{last}");

    // A flipped byte of a private entry's ciphertext: refused by both.
    let good = std::fs::read(&c).expect("read");
    let entry = frames(&good)
        .into_iter()
        .find(|f| f.kind() == "entry" && f.h.get("sealed").is_some())
        .expect("a private entry")
        .payload;
    assert_bad(&s, "cli-private-entry", &damaged(&good, entry.start + entry.len() / 2, flip), None, "ciphertext");
}
